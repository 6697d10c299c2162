package platform

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func testPipeName() string {
	return fmt.Sprintf(`\\.\pipe\certagent-test-%d-%d`, os.Getpid(), time.Now().UnixNano())
}

// A second daemon cannot take the pipe: the first listener creates it with
// FILE_FLAG_FIRST_PIPE_INSTANCE. Wine 8 does not enforce that flag, so the
// Wine tier skips this test (scripts/wine-test.sh); Windows must pass it.
func TestLocalAPIPipeSingleInstance(t *testing.T) {
	path := testPipeName()
	ln, err := ListenLocalAPI(path)
	require.NoError(t, err)
	defer ln.Close()
	_, err = ListenLocalAPI(path)
	require.Error(t, err, "a second listener on the same pipe")
	assert.True(t, errors.Is(err, ErrDaemonRunning), "got %v, want ErrDaemonRunning", err)
}

// The LocalAPI's named pipe for real: a client connects, the server learns
// the client's process and account, and bytes flow both ways.
func TestLocalAPIPipe(t *testing.T) {
	path := testPipeName()
	ln, err := ListenLocalAPI(path)
	require.NoError(t, err)
	defer ln.Close()

	type accepted struct {
		pc   PeerCred
		line string
		err  error
	}
	done := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- accepted{err: err}
			return
		}
		defer c.Close()
		pc, err := PeerCredOf(c)
		if err != nil {
			done <- accepted{err: err}
			return
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err != nil {
			done <- accepted{err: err}
			return
		}
		_, err = c.Write([]byte("pong!"))
		done <- accepted{pc: pc, line: string(buf), err: err}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := DialLocalAPI(ctx, path)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("ping!"))
	require.NoError(t, err)
	reply := make([]byte, 5)
	_, err = io.ReadFull(c, reply)
	require.NoError(t, err)
	assert.Equal(t, "pong!", string(reply))

	a := <-done
	require.NoError(t, a.err)
	assert.Equal(t, "ping!", a.line)
	assert.Equal(t, os.Getpid(), a.pc.PID, "the server sees the client's process")
	assert.NotEmpty(t, a.pc.User, "the client's account is named")
	t.Logf("client %s pid %d admin %v", a.pc.User, a.pc.PID, a.pc.Admin)
}

func TestDialMissingPipe(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := DialLocalAPI(ctx, `\\.\pipe\certagent-test-nobody-listens`)
	require.Error(t, err)
}
