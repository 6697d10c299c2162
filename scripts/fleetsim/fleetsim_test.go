package main

import (
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/trust"
)

// wrkOutput is what wrk 4.1.0 (Debian) printed for one of our runs.
const wrkOutput = `Running 5s test @ http://127.0.0.1:36115/client/v4/accounts/x/gateway/certificates
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.21ms    4.02ms  61.94ms   89.12%
    Req/Sec    10.93k     1.20k   13.51k    71.00%
  Latency Distribution
     50%    2.67ms
     75%    3.90ms
     90%    6.71ms
     99%   10.92ms
  108765 requests in 5.01s, 21.37MB read
Requests/sec:  21699.40
Transfer/sec:      4.26MB
`

func TestParseWrk(t *testing.T) {
	var got wrkResult
	require.NoError(t, parseWrk(wrkOutput, &got))
	assert.InDelta(t, 21699.40, got.RPS, 0.001)
	assert.InDelta(t, 2.67, got.P50ms, 0.001)
	assert.InDelta(t, 10.92, got.P99ms, 0.001)
	assert.Equal(t, int64(108765), got.Requests)
	assert.Empty(t, got.Errors)

	var bad wrkResult
	require.Error(t, parseWrk("unable to connect to 127.0.0.1:1 Connection refused\n", &bad))

	var errs wrkResult
	require.NoError(t, parseWrk(wrkOutput+"  Socket errors: connect 0, read 12, write 0, timeout 3\n", &errs))
	assert.Contains(t, errs.Errors, "read 12")
}

func TestParseWrkDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
	}{
		{"456.00us", 0.456}, {"2.67ms", 2.67}, {"1.01s", 1010}, {"2.00m", 120000}, {"fast", 0},
	} {
		t.Run(tc.in, func(t *testing.T) {
			assert.InDelta(t, tc.want, parseWrkDuration(tc.in), 1e-9)
		})
	}
}

func TestQuantiles(t *testing.T) {
	sorted := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	assert.Equal(t, 5.0, quantileF(sorted, 0.50))
	assert.Equal(t, 10.0, quantileF(sorted, 0.99))
	assert.Equal(t, 1.0, quantileF(sorted, 0))
	assert.Equal(t, 0.0, quantileF(nil, 0.5))

	d := []time.Duration{9, 1, 5, 3, 7}
	assert.Equal(t, time.Duration(5), quantileD(d, 0.5))
	assert.Equal(t, time.Duration(9), quantileD(d, 0.99))
}

func TestMedianPicksTheMiddleRun(t *testing.T) {
	got := median([]wrkResult{{RPS: 30, P50ms: 3}, {RPS: 10, P50ms: 1}, {RPS: 20, P50ms: 2}})
	assert.Equal(t, 20.0, got.RPS)
	assert.Equal(t, 2.0, got.P50ms, "the latencies come from the same run")
}

func TestSampleProcReadsThisProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		_, err := sampleProc(os.Getpid())
		require.Error(t, err)
		return
	}
	s, err := sampleProc(os.Getpid())
	require.NoError(t, err)
	assert.Positive(t, s.RSS)
	assert.GreaterOrEqual(t, s.PeakRSS, s.RSS)
	assert.Positive(t, s.Threads)
	assert.Positive(t, s.FDs)
	_, err = sampleProc(1 << 30)
	require.Error(t, err, "no such process")
}

func TestCountersSub(t *testing.T) {
	a := counters{Requests: 10, Held: 4, OK: 3, NotMod: 6, Failed: 1, WireIn: 1000, WireOut: 500}
	b := counters{Requests: 4, Held: 1, OK: 1, NotMod: 3, Failed: 0, WireIn: 400, WireOut: 200}
	got := a.sub(b)
	assert.Equal(t, counters{Requests: 6, Held: 3, OK: 2, NotMod: 3, Failed: 1, WireIn: 600, WireOut: 300}, got)
}

// TestThinDeviceNotesAvailableRootsOnce: a thin device counts a watched
// root when an answer shows it available, once, and nothing else.
func TestThinDeviceNotesAvailableRootsOnce(t *testing.T) {
	f := newFleet(1)
	var boot, next trust.Fingerprint
	boot[0], next[0] = 1, 2
	f.watch[0].Store(&boot)
	f.watch[1].Store(&next)
	d := &thinDevice{f: f}
	cert := func(fp trust.Fingerprint, st api.BindingStatus) api.Certificate {
		return api.Certificate{Fingerprint: fp.String(), BindingStatus: st}
	}

	d.note([]api.Certificate{cert(boot, api.StatusAvailable), cert(next, api.StatusPendingDeployment)})
	assert.Equal(t, 1, f.count(0), "the available root")
	assert.Equal(t, 0, f.count(1), "a root still deploying is not installable yet")

	d.note([]api.Certificate{cert(boot, api.StatusAvailable), cert(next, api.StatusAvailable), {Fingerprint: "not hex"}})
	d.note([]api.Certificate{cert(next, api.StatusAvailable)})
	assert.Equal(t, 1, f.count(0), "counted once")
	assert.Equal(t, 1, f.count(1), "counted once")
	select {
	case <-f.all[1]:
	default:
		t.Error("the one device has the root: all[1] should be closed")
	}
}
