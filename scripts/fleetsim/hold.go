package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// holdResult is the server memory with N long-polls held at once.
type holdResult struct {
	Started   time.Time  `json:"started"`
	DB        string     `json:"db"`
	Held      int        `json:"held"`
	LoadAvg   string     `json:"loadavg_start"`
	Certplane holdSample `json:"certplane"`
	Baseline  holdSample `json:"baseline"`
}

type holdSample struct {
	Target  string  `json:"target"`
	IdleRSS float64 `json:"idle_rss_mib"`
	HeldRSS float64 `json:"held_rss_mib"`
	// SettledRSS is the RSS again settleTime after the profiles (whose
	// heap profile runs a GC): what a server that freed the memory of
	// the requests' arrival (certplane parks held requests) gave back
	// to the OS by then.
	SettledRSS float64 `json:"held_rss_settled_mib"`
	PerHeld    float64 `json:"kib_per_held_request"`
	FDs        int     `json:"fds"`
	Threads    int     `json:"threads"`
	Answered   int64   `json:"answered_early"`
	// From the server's own runtime (certplane only, via --pprof): Go's
	// MemStats while the requests are held.
	StackInuse float64 `json:"stack_inuse_mib,omitempty"`
	HeapInuse  float64 `json:"heap_inuse_mib,omitempty"`
	Goroutines int     `json:"goroutines,omitempty"`
	// Profiles are the files the heap and goroutine profiles went to.
	Profiles []string `json:"profiles,omitempty"`
}

// holdBench opens n connections to a real certplane, each holding a
// long-poll (`?wait=50s` with a current If-None-Match), samples the
// server's RSS, then does the same against the bare baseline server whose
// handler just waits: the difference is what certplane adds per held
// request.
func holdBench(ctx context.Context, o benchOptions, n int, outDir string, logf func(string, ...any)) (*holdResult, error) {
	res := &holdResult{Started: time.Now().UTC(), DB: o.DB, Held: n, LoadAvg: loadavg()}
	pl, err := startPlane(ctx, o.WorkDir, "hold", o.DB, o.PGDSN, o.Certplane, time.Second)
	if err != nil {
		return nil, err
	}
	defer pl.Close()
	srv, acct, tok := pl.server, pl.Account, pl.ReadToken
	path := "/accounts/" + acct + "/gateway/certificates?wait=50s"
	logf("hold: %d long-polls on certplane (%s)", n, o.DB)
	res.Certplane, err = holdOn(ctx, srv.URL+path, tok, pl.ETag, n, srv.Pid(), func(s *holdSample) {
		profileHeld(ctx, srv.Pprof, filepath.Join(outDir, "hold-"+o.DB+"-"+res.Started.Format("20060102T150405")), s, logf)
	})
	if err != nil {
		return nil, err
	}
	res.Certplane.Target = "certplane " + o.DB
	srv.Stop()

	base, err := startBaseline(ctx)
	if err != nil {
		return nil, err
	}
	defer base.Stop()
	addr := base.Addr
	logf("hold: %d held requests on the bare net/http server", n)
	res.Baseline, err = holdOn(ctx, "http://"+addr+"/client/v4"+path, tok, baselineETag, n, base.Pid, func(s *holdSample) {
		profileHeld(ctx, base.Pprof, filepath.Join(outDir, "hold-baseline-"+res.Started.Format("20060102T150405")), s, logf)
	})
	if err != nil {
		return nil, err
	}
	res.Baseline.Target = "bare net/http, handler waits"
	return res, nil
}

// holdOn sends n held requests, each on its own connection, waits until
// all are written and the server has had a moment to park them, samples
// the server, and cancels them.
func holdOn(ctx context.Context, target, tok, etag string, n, pid int, whileHeld func(*holdSample)) (holdSample, error) {
	var out holdSample
	idle, err := sampleProc(pid)
	if err != nil {
		return out, err
	}
	out.IdleRSS = float64(idle.RSS) / (1 << 20)
	hctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	var written, answered atomic.Int64
	for range n {
		wg.Go(func() {
			tr := &http.Transport{DisableKeepAlives: true}
			defer tr.CloseIdleConnections()
			trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { written.Add(1) }}
			req, err := http.NewRequestWithContext(httptrace.WithClientTrace(hctx, trace), http.MethodGet, target, nil)
			if err != nil {
				return
			}
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("If-None-Match", etag)
			resp, err := tr.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
				if hctx.Err() == nil {
					answered.Add(1)
				}
			}
		})
	}
	deadline := time.Now().Add(40 * time.Second)
	for written.Load() < int64(n) {
		if time.Now().After(deadline) {
			return out, fmt.Errorf("fleetsim: only %d of %d held requests sent in 40s", written.Load(), n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Let the server read and park the last requests.
	time.Sleep(3 * time.Second)
	s, err := sampleProc(pid)
	if err != nil {
		return out, err
	}
	out.HeldRSS = float64(s.RSS) / (1 << 20)
	out.PerHeld = float64(s.RSS-idle.RSS) / 1024 / float64(n)
	out.FDs, out.Threads = s.FDs, s.Threads
	out.Answered = answered.Load()
	if whileHeld != nil {
		whileHeld(&out)
	}
	time.Sleep(settleTime)
	if s, err = sampleProc(pid); err != nil {
		return out, err
	}
	out.SettledRSS = float64(s.RSS) / (1 << 20)
	return out, nil
}

// settleTime is how long after the profiles holdOn samples the RSS again.
const settleTime = 10 * time.Second

// profileHeld saves the server's heap profile (text form, which ends with
// Go's MemStats) and goroutine profile (stacks grouped, with counts) while
// the requests are held, and notes the stack and heap in use.
func profileHeld(ctx context.Context, addr, prefix string, s *holdSample, logf func(string, ...any)) {
	for _, p := range []struct{ name, query string }{{"heap", "gc=1&debug=1"}, {"goroutine", "debug=1"}} {
		body, err := fetchText(ctx, "http://"+addr+"/debug/pprof/"+p.name+"?"+p.query)
		if err != nil {
			logf("hold: %s profile: %v", p.name, err)
			continue
		}
		file := prefix + "-" + p.name + ".txt"
		if err := os.WriteFile(file, body, 0o644); err != nil {
			logf("hold: %v", err)
			continue
		}
		s.Profiles = append(s.Profiles, filepath.Base(file))
		for line := range strings.Lines(string(body)) {
			var v float64
			switch {
			case p.name == "heap" && strings.HasPrefix(line, "# Stack = "):
				fmt.Sscan(strings.TrimPrefix(line, "# Stack = "), &v)
				s.StackInuse = v / (1 << 20)
			case p.name == "heap" && strings.HasPrefix(line, "# HeapInuse = "):
				fmt.Sscan(strings.TrimPrefix(line, "# HeapInuse = "), &v)
				s.HeapInuse = v / (1 << 20)
			case p.name == "goroutine" && strings.HasPrefix(line, "goroutine profile: total "):
				fmt.Sscan(strings.TrimPrefix(line, "goroutine profile: total "), &s.Goroutines)
			}
		}
	}
}

func fetchText(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return io.ReadAll(resp.Body)
}
