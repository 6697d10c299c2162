package platform

// ServiceName is the launchd label: reverse-DNS like every LaunchDaemon,
// and the same label the .pkg installs and the com.apple.servicemanagement
// profile names, so `certagent service install` and the package manage one
// daemon, not two.
const ServiceName = "dev.certagent.agent"
