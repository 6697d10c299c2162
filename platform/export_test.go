package platform

// DecodeManagedPlist exposes the plist decoder to the external tests, which
// feed its output to the agent's config loader.
var DecodeManagedPlist = decodeManagedPlist
