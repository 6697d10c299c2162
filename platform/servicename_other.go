//go:build !darwin

package platform

// ServiceName is the service's name: the systemd unit and the Windows
// service.
const ServiceName = "certagent"
