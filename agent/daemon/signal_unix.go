//go:build !windows

package daemon

import (
	"os"
	"os/signal"
	"syscall"
)

// hangups delivers SIGHUP, the conventional "reload your config".
func hangups() <-chan os.Signal {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGHUP)
	return c
}
