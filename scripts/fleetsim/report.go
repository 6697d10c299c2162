package main

import (
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// results are every measurement in a directory.
type results struct {
	runs    []*runResult
	benches []*benchResult
	holds   []*holdResult
}

// loadResults reads every run-*.json, bench-*.json and hold-*.json in dir.
func loadResults(dir string) (*results, error) {
	var runs []*runResult
	var benches []*benchResult
	var holds []*holdResult
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		switch {
		case strings.HasPrefix(name, "run-"):
			var r runResult
			if err := json.Unmarshal(b, &r); err != nil {
				return nil, fmt.Errorf("fleetsim: %s: %w", name, err)
			}
			runs = append(runs, &r)
		case strings.HasPrefix(name, "bench-"):
			var r benchResult
			if err := json.Unmarshal(b, &r); err != nil {
				return nil, fmt.Errorf("fleetsim: %s: %w", name, err)
			}
			benches = append(benches, &r)
		case strings.HasPrefix(name, "hold-"):
			var r holdResult
			if err := json.Unmarshal(b, &r); err != nil {
				return nil, fmt.Errorf("fleetsim: %s: %w", name, err)
			}
			holds = append(holds, &r)
		}
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].Started.Before(runs[j].Started) })
	sort.Slice(benches, func(i, j int) bool { return benches[i].Started.Before(benches[j].Started) })
	sort.Slice(holds, func(i, j int) bool { return holds[i].Started.Before(holds[j].Started) })
	return &results{runs: runs, benches: benches, holds: holds}, nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// writeTables prints the results as Markdown tables.
func writeTables(w io.Writer, res *results) {
	runs, benches := res.runs, res.benches
	if len(res.holds) > 0 {
		fmt.Fprintln(w, "| held long-polls | server | RSS idle | RSS holding | per held request | Go heap in use | goroutine stacks | goroutines | RSS 10 s later | ratio |")
		fmt.Fprintln(w, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
		for _, h := range res.holds {
			for _, s := range []holdSample{h.Certplane, h.Baseline} {
				ratio := ""
				if s.Target == h.Certplane.Target && h.Baseline.HeldRSS > 0 {
					ratio = fmt.Sprintf("%.2f× bare", s.HeldRSS/h.Baseline.HeldRSS)
				}
				settled := "–"
				if s.SettledRSS > 0 {
					settled = fmt.Sprintf("%.1f MiB", s.SettledRSS)
				}
				fmt.Fprintf(w, "| %d | %s | %.1f MiB | %.1f MiB | %.1f KiB | %.1f MiB | %.1f MiB | %d | %s | %s |\n",
					h.Held, s.Target, s.IdleRSS, s.HeldRSS, s.PerHeld, s.HeapInuse, s.StackInuse, s.Goroutines, settled, ratio)
			}
		}
		fmt.Fprintln(w)
	}
	if len(benches) > 0 {
		fmt.Fprintln(w, "| 304 poll target | requests/s | p50 | p99 | server CPU | server RSS | ratio |")
		fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|")
		for _, b := range benches {
			for _, r := range []wrkResult{b.Certplane, b.Baseline} {
				ratio := ""
				if r.Target == b.Certplane.Target {
					ratio = fmt.Sprintf("%.2f", b.Ratio)
					if len(b.Rounds) > 1 {
						lo, hi := b.Rounds[0], b.Rounds[0]
						for _, x := range b.Rounds {
							lo, hi = min(lo, x), max(hi, x)
						}
						ratio += fmt.Sprintf(" (rounds %.2f–%.2f)", lo, hi)
					}
				}
				fmt.Fprintf(w, "| %s | %.0f | %.2f ms | %.2f ms | %.0f%% | %.1f MiB | %s |\n",
					r.Target, r.RPS, r.P50ms, r.P99ms, r.ServerCPU, r.ServerRSS, ratio)
			}
		}
		fmt.Fprintln(w)
	}
	if len(runs) == 0 {
		return
	}
	fmt.Fprintln(w, "Steady state (fleet up to date):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| run | agents | mode | requests/s | p50 | p99 | held now | bytes/request | server CPU | server RSS | server fds |")
	fmt.Fprintln(w, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range runs {
		s := r.Steady
		p50, p99 := fmt.Sprintf("%.2f ms", s.P50ms), fmt.Sprintf("%.2f ms", s.P99ms)
		if s.Requests == s.Held {
			// Every request was a held long-poll: no latency to speak of.
			p50, p99 = "held", "held"
		}
		fmt.Fprintf(w, "| %s | %d | %s | %.1f | %s | %s | %d | %.0f | %.1f%% | %.1f MiB | %d |\n",
			r.DB, r.Agents, mode(r), s.RPS, p50, p99, s.HeldNow, s.BytesPerReq, s.ServerCPU, s.ServerRSSMiB, s.ServerFDs)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Convergence (activate → every agent's store holds the new root):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| run | agents | mode | poll interval | deploy delay | converged | p50 | p99 | all | requests | per agent | server CPU | fleet CPU | server peak RSS |")
	fmt.Fprintln(w, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range runs {
		c := r.Convergence
		fmt.Fprintf(w, "| %s | %d | %s | %.0f s | %.0f s | %d/%d | %.2f s | %.2f s | %.2f s | %d | %.2f | %.1f s | %.1f s | %.1f MiB |\n",
			r.DB, r.Agents, mode(r), r.PollSeconds, r.DeploySecs, c.Converged, r.Agents, c.P50s, c.P99s, c.MaxS,
			c.Phase.Requests, float64(c.Phase.Requests)/float64(max(1, r.Agents)), c.ServerCPU, c.FleetCPU, c.Phase.ServerPeak)
	}
}

func mode(r *runResult) string {
	m := "poll"
	if r.LongPoll {
		m = "long-poll"
	}
	if r.Thin {
		m += ", thin (no agent)"
	}
	return m
}

// plotConvergence draws, per run, the fraction of agents holding the new
// root against seconds since activation.
func plotConvergence(path string, runs []*runResult) error {
	p := plot.New()
	p.Title.Text = "certplane fleet convergence (activate → root installed)"
	p.X.Label.Text = "seconds after activate"
	p.Y.Label.Text = "fraction of agents holding the new root"
	p.X.Scale = plot.LogScale{}
	var ticks []plot.Tick
	for _, v := range []float64{0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300} {
		ticks = append(ticks, plot.Tick{Value: v, Label: fmt.Sprintf("%g", v)})
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	p.X.Min = 0.5
	p.Y.Min, p.Y.Max = 0, 1
	p.Legend.Top = false
	p.Legend.Left = false
	p.Add(plotter.NewGrid())
	palette := []color.Color{
		color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 255}, color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 255},
		color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 255}, color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 255},
		color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 255}, color.RGBA{R: 0x8c, G: 0x56, B: 0x4b, A: 255},
	}
	for i, r := range runs {
		ts := r.Convergence.Times
		if len(ts) == 0 {
			continue
		}
		pts := make(plotter.XYs, 0, len(ts))
		for j, t := range ts {
			pts = append(pts, plotter.XY{X: max(t, 0.5), Y: float64(j+1) / float64(r.Agents)})
		}
		line, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		line.Color = palette[i%len(palette)]
		line.Width = vg.Points(1.5)
		if !r.LongPoll {
			line.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
		}
		p.Add(line)
		p.Legend.Add(fmt.Sprintf("%s %d agents, %s (p99 %.1fs)", r.DB, r.Agents, mode(r), r.Convergence.P99s), line)
	}
	p.Legend.ThumbnailWidth = vg.Points(20)
	return p.Save(9*vg.Inch, 5*vg.Inch, path)
}
