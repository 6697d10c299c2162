//go:build !linux && !darwin && !windows

package platform

func osVersion() string { return "" }
