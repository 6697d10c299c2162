package platform

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestProgramStartStop(t *testing.T) {
	t.Run("stop cancels the daemon and waits", func(t *testing.T) {
		stopped := make(chan struct{})
		p := &program{timeout: 10 * time.Second, run: func(ctx context.Context) error {
			<-ctx.Done()
			close(stopped)
			return nil
		}}
		require.NoError(t, p.Start(nil))
		require.NoError(t, p.Stop(nil))
		select {
		case <-stopped:
		default:
			t.Fatal("Stop returned before the daemon stopped")
		}
	})
	t.Run("a daemon failing by itself reports it", func(t *testing.T) {
		boom := errors.New("listen: address in use")
		got := make(chan error, 1)
		p := &program{timeout: 10 * time.Second, run: func(context.Context) error { return boom },
			onFailure: func(err error) { got <- err }}
		require.NoError(t, p.Start(nil))
		select {
		case err := <-got:
			require.ErrorIs(t, err, boom)
		case <-time.After(30 * time.Second):
			t.Fatal("OnFailure not called")
		}
		<-p.done
		require.ErrorIs(t, p.err, boom)
	})
	t.Run("a clean stop is not a failure", func(t *testing.T) {
		p := &program{timeout: 10 * time.Second, run: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() },
			onFailure: func(err error) { t.Errorf("OnFailure(%v) after Stop", err) }}
		require.NoError(t, p.Start(nil))
		require.NoError(t, p.Stop(nil))
	})
}
