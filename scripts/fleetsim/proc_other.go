//go:build !linux

package main

import "errors"

var errNoProc = errors.New("fleetsim: process sampling needs Linux /proc")

func sampleProc(pid int) (procSample, error) { return procSample{}, errNoProc }

func raiseFileLimit() (uint64, error) { return 0, errNoProc }
