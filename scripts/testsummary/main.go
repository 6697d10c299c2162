// Command testsummary reads `go test -json` on stdin, prints the usual
// per-package lines, compiler errors, the output of failing tests and the
// list of skipped tests, and ends with
//
//	N passed, N failed, N skipped
//
// counting top-level tests (Test functions), with subtests (t.Run) counted on
// a line of their own, so the totals say how many tests there are rather
// than how many table rows. A package that failed outside any test (it did
// not build, TestMain exited non-zero, a panic or a timeout between tests)
// is one more failure, whether or not other packages had failing tests. It
// exits 1 when anything failed. Before the totals it lists the slowest
// top-level tests (go test's Elapsed), so a CI log says where the time goes.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

func main() {
	if !summarize(os.Stdin, os.Stdout) {
		os.Exit(1)
	}
}

// event is one line of `go test -json` (cmd/test2json, and cmd/go's
// build-output and build-fail events, which name ImportPath).
type event struct {
	Action      string
	Package     string
	ImportPath  string
	Test        string
	Output      string
	FailedBuild string
	// Elapsed is a finished test's or package's wall time in seconds.
	Elapsed float64
}

// slowestShown is how many of the slowest tests the report lists.
const slowestShown = 10

// timing is one finished top-level test's wall time.
type timing struct {
	name    string
	seconds float64
}

// counts are pass/fail/skip totals of one kind of test.
type counts struct{ passed, failed, skipped int }

func (c counts) String() string {
	return fmt.Sprintf("%d passed, %d failed, %d skipped", c.passed, c.failed, c.skipped)
}

// summarize reads the events from in, writes the report to out and
// reports whether everything passed.
func summarize(in io.Reader, out io.Writer) bool {
	var tests, subtests counts
	var skips []string
	var timings []timing
	output := map[string][]string{} // package/test → output lines, kept until the test ends
	testFailed := map[string]bool{} // packages with a failing test
	var pkgFailures []string        // packages that failed outside any test, with why
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			// Anything else (go vet, a tool's own output) goes straight through.
			fmt.Fprintln(out, string(line))
			continue
		}
		key := e.Package + " " + e.Test
		sub := strings.Contains(e.Test, "/")
		tally := &tests
		if sub {
			tally = &subtests
		}
		if e.Test != "" && !sub && (e.Action == "pass" || e.Action == "fail") {
			timings = append(timings, timing{e.Package + "." + e.Test, e.Elapsed})
		}
		switch e.Action {
		case "build-output":
			// Compiler errors: `# pkg` then file:line: message.
			fmt.Fprint(out, e.Output)
		case "output":
			output[key] = append(output[key], e.Output)
			if e.Test == "" && (strings.HasPrefix(e.Output, "ok ") || strings.HasPrefix(e.Output, "FAIL") || strings.HasPrefix(e.Output, "?")) {
				fmt.Fprint(out, e.Output)
			}
		case "pass":
			if e.Test != "" {
				tally.passed++
			}
			delete(output, key)
		case "skip":
			if e.Test != "" {
				tally.skipped++
				skips = append(skips, e.Package+"."+e.Test)
			}
			delete(output, key)
		case "fail":
			switch {
			case e.Test != "":
				tally.failed++
				testFailed[e.Package] = true
				fmt.Fprintf(out, "--- FAIL: %s %s\n", e.Package, e.Test)
				for _, o := range output[key] {
					fmt.Fprint(out, "    "+o)
				}
			case e.FailedBuild != "":
				pkgFailures = append(pkgFailures, e.Package+" (build failed: "+e.FailedBuild+")")
			case !testFailed[e.Package]:
				// TestMain's exit code, a panic or a timeout outside a
				// test: its output is all there is to go on.
				pkgFailures = append(pkgFailures, e.Package+" (failed outside any test)")
				for _, o := range output[key] {
					if !strings.HasPrefix(o, "FAIL") {
						fmt.Fprint(out, "    "+o)
					}
				}
			}
			delete(output, key)
		}
	}
	if err := sc.Err(); err != nil {
		pkgFailures = append(pkgFailures, "reading go test -json: "+err.Error())
	}
	if len(skips) > 0 {
		sort.Strings(skips)
		fmt.Fprintln(out, "skipped tests:")
		for _, s := range skips {
			fmt.Fprintln(out, "  "+s)
		}
	}
	if len(pkgFailures) > 0 {
		sort.Strings(pkgFailures)
		fmt.Fprintln(out, "packages that failed outside any test (each counted as one failure):")
		for _, p := range pkgFailures {
			fmt.Fprintln(out, "  "+p)
		}
	}
	if len(timings) > 0 {
		sort.SliceStable(timings, func(i, j int) bool { return timings[i].seconds > timings[j].seconds })
		fmt.Fprintln(out, "slowest tests:")
		for _, tm := range timings[:min(len(timings), slowestShown)] {
			fmt.Fprintf(out, "  %7.1fs %s\n", tm.seconds, tm.name)
		}
	}
	fmt.Fprintf(out, "subtests: %s\n", subtests)
	total := tests
	total.failed += len(pkgFailures)
	fmt.Fprintln(out, total)
	return total.failed == 0 && subtests.failed == 0
}
