package main

// cmdMDMProfile is a placeholder until the macOS engineer's implementation lands: that
// change deletes this file and adds the real cmdMDMProfile.
func cmdMDMProfile(args []string) int { return notInBuild("mdm-profile") }
