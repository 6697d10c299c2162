package platform

func osVersion() string {
	r, err := ReadOSRelease("")
	if err != nil {
		return ""
	}
	return linuxVersion(r)
}
