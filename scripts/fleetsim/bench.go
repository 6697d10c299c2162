package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"
)

// baselineETag is what the bare handler answers; any fixed strong tag.
const baselineETag = `"0123abcd-1"`

// serveBaseline is the baseline: a bare net/http server whose only handler
// writes a fixed 304 with an ETag, no auth, no database. It is what a 304
// costs in Go's HTTP stack alone; certplane's number divided by it says
// how much our auth and revision read add.
func serveBaseline(ctx context.Context, listen, pprofAddr string) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("fleetsim: baseline listen: %w", err)
	}
	if pprofAddr != "" {
		// Profiles on their own listener, as certplane --pprof serves them,
		// so the held requests' memory can be compared like for like.
		pl, err := net.Listen("tcp", pprofAddr)
		if err != nil {
			return fmt.Errorf("fleetsim: baseline pprof listen: %w", err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		ps := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = ps.Serve(pl) }()
		defer ps.Close()
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// With ?wait it holds the request like a long-poll that never
			// sees a change: the floor for what a held request costs.
			if d, err := time.ParseDuration(r.URL.Query().Get("wait")); err == nil && d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-r.Context().Done():
				}
				t.Stop()
			}
			w.Header().Set("ETag", baselineETag)
			w.WriteHeader(http.StatusNotModified)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// wrkResult is one wrk run.
type wrkResult struct {
	Target      string  `json:"target"`
	Connections int     `json:"connections"`
	Threads     int     `json:"threads"`
	Seconds     float64 `json:"seconds"`
	RPS         float64 `json:"requests_per_s"`
	P50ms       float64 `json:"p50_ms"`
	P99ms       float64 `json:"p99_ms"`
	Requests    int64   `json:"requests"`
	Errors      string  `json:"errors,omitempty"`
	ServerCPU   float64 `json:"server_cpu_percent"`
	ServerRSS   float64 `json:"server_rss_mib"`
	// Status is what a single request with the same headers got, checked
	// before the run: both targets must be measured answering 304.
	Status int `json:"status"`
}

// benchResult compares certplane's 304 with the baseline's.
type benchResult struct {
	Started   time.Time `json:"started"`
	DB        string    `json:"db"`
	LoadAvg   string    `json:"loadavg_start"`
	Certplane wrkResult `json:"certplane"`
	Baseline  wrkResult `json:"baseline"`
	// Ratio is certplane's median requests/s over the baseline's.
	Ratio float64 `json:"ratio"`
	// Rounds are the per-round ratios.
	Rounds []float64 `json:"round_ratios"`
}

type benchOptions struct {
	DB          string
	Duration    time.Duration
	Connections int
	Threads     int
	Rounds      int
	Certplane   string
	WorkDir     string
	PGDSN       string
}

// bench304 measures 304 throughput of a real certplane and of the bare
// baseline handler, back to back, with the same load generator (wrk) and
// the same headers.
func bench304(ctx context.Context, o benchOptions, logf func(string, ...any)) (*benchResult, error) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		return nil, errors.New("fleetsim: wrk not found; run scripts/install-deps.sh")
	}
	res := &benchResult{Started: time.Now().UTC(), DB: o.DB, LoadAvg: loadavg()}
	pl, err := startPlane(ctx, o.WorkDir, "bench", o.DB, o.PGDSN, o.Certplane, time.Second)
	if err != nil {
		return nil, err
	}
	defer pl.Close()
	srv, acct, tok := pl.server, pl.Account, pl.ReadToken
	listURL := srv.URL + "/accounts/" + acct + "/gateway/certificates"
	headers := []string{"Authorization: Bearer " + tok, "If-None-Match: " + pl.ETag}

	// The baseline runs as its own process, like certplane, so its CPU
	// and memory are measured the same way.
	base, err := startBaseline(ctx)
	if err != nil {
		return nil, err
	}
	defer base.Stop()
	addr := base.Addr
	baseURL := "http://" + addr + "/client/v4/accounts/" + acct + "/gateway/certificates"
	baseHeaders := []string{"Authorization: Bearer " + tok, "If-None-Match: " + baselineETag}

	// Alternate the two targets round by round: on a machine shared with
	// other work, load drifts over a minute; each round's ratio compares
	// neighbours, and the medians are what the table shows.
	var cps, bases []wrkResult
	for r := range o.Rounds {
		logf("bench: round %d/%d: certplane (%s) 304 for %s", r+1, o.Rounds, o.DB, o.Duration)
		cp, err := runWrk(ctx, wrk, listURL, headers, o, srv.Pid())
		if err != nil {
			return nil, err
		}
		logf("bench: round %d/%d: bare net/http 304 for %s", r+1, o.Rounds, o.Duration)
		bl, err := runWrk(ctx, wrk, baseURL, baseHeaders, o, base.Pid)
		if err != nil {
			return nil, err
		}
		cps, bases = append(cps, cp), append(bases, bl)
		res.Rounds = append(res.Rounds, cp.RPS/bl.RPS)
	}
	res.Certplane, res.Baseline = median(cps), median(bases)
	res.Certplane.Target = "certplane " + o.DB
	res.Baseline.Target = "bare net/http 304"
	if res.Baseline.RPS > 0 {
		res.Ratio = res.Certplane.RPS / res.Baseline.RPS
	}
	return res, nil
}

func waitListening(ctx context.Context, addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("fleetsim: nothing listens on %s", addr)
}

// runWrk checks that one request gets a 304, then runs wrk and samples the
// server process around it.
func runWrk(ctx context.Context, wrk, target string, headers []string, o benchOptions, pid int) (wrkResult, error) {
	out := wrkResult{Connections: o.Connections, Threads: o.Threads}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return out, err
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return out, fmt.Errorf("fleetsim: probe %s: %w", target, err)
	}
	resp.Body.Close()
	out.Status = resp.StatusCode
	if resp.StatusCode != http.StatusNotModified {
		return out, fmt.Errorf("fleetsim: probe %s: HTTP %d, want 304", target, resp.StatusCode)
	}
	args := []string{"-t", strconv.Itoa(o.Threads), "-c", strconv.Itoa(o.Connections),
		"-d", strconv.Itoa(int(o.Duration/time.Second)) + "s", "--latency", "--timeout", "10s"}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	args = append(args, target)
	p0, err := sampleProc(pid)
	if err != nil {
		return out, err
	}
	cmd := exec.CommandContext(ctx, wrk, args...)
	b, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("fleetsim: wrk: %w", err)
	}
	p1, err := sampleProc(pid)
	if err != nil {
		return out, err
	}
	if err := parseWrk(string(b), &out); err != nil {
		return out, err
	}
	secs := p1.At.Sub(p0.At).Seconds()
	out.Seconds = secs
	out.ServerCPU = 100 * (p1.CPU - p0.CPU).Seconds() / secs
	out.ServerRSS = float64(p1.RSS) / (1 << 20)
	return out, nil
}

// parseWrk reads wrk's text report: "Requests/sec:", the --latency
// percentiles, "N requests in", and socket errors.
func parseWrk(s string, out *wrkResult) error {
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "Requests/sec:") && len(f) == 2:
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return fmt.Errorf("fleetsim: wrk Requests/sec %q: %w", f[1], err)
			}
			out.RPS = v
		case len(f) == 2 && f[0] == "50%":
			out.P50ms = parseWrkDuration(f[1])
		case len(f) == 2 && f[0] == "99%":
			out.P99ms = parseWrkDuration(f[1])
		case len(f) >= 3 && f[1] == "requests" && f[2] == "in":
			out.Requests, _ = strconv.ParseInt(f[0], 10, 64)
		case strings.HasPrefix(line, "Socket errors:") || strings.HasPrefix(line, "Non-2xx or 3xx"):
			out.Errors = strings.TrimSpace(out.Errors + " " + line)
		}
	}
	if out.RPS == 0 {
		return fmt.Errorf("fleetsim: no Requests/sec in wrk output: %.400s", s)
	}
	return nil
}

// parseWrkDuration turns wrk's "1.23ms", "456.00us", "1.01s" into ms.
func parseWrkDuration(s string) float64 {
	for _, u := range []struct {
		suffix string
		ms     float64
	}{{"us", 0.001}, {"ms", 1}, {"s", 1000}, {"m", 60000}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0
			}
			return f * u.ms
		}
	}
	return 0
}

// median returns the run with the median requests/s.
func median(rs []wrkResult) wrkResult {
	s := append([]wrkResult(nil), rs...)
	sort.Slice(s, func(i, j int) bool { return s[i].RPS < s[j].RPS })
	return s[len(s)/2]
}
