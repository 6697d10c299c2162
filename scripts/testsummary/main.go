// Command testsummary reads `go test -json` on stdin, prints the usual
// per-package lines (and the output of failing tests), and ends with one
// line "N passed, N failed, N skipped" counting tests, so CI logs say how
// many tests ran, not just how many packages. It exits 1 when anything
// failed, including a package that did not build.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

func main() {
	var passed, failed, skipped int
	var skips []string
	output := map[string][]string{} // package/test → output lines, kept until the test ends
	pkgFailed := map[string]bool{}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 16<<20)
	for in.Scan() {
		line := in.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			// Build errors and other non-JSON lines go straight through.
			fmt.Println(string(line))
			continue
		}
		key := e.Package + " " + e.Test
		switch e.Action {
		case "output":
			output[key] = append(output[key], e.Output)
			if e.Test == "" && (strings.HasPrefix(e.Output, "ok ") || strings.HasPrefix(e.Output, "FAIL") || strings.HasPrefix(e.Output, "?")) {
				fmt.Print(e.Output)
			}
		case "pass":
			if e.Test != "" {
				passed++
			}
			delete(output, key)
		case "skip":
			if e.Test != "" {
				skipped++
				skips = append(skips, e.Package+"."+e.Test)
			}
			delete(output, key)
		case "fail":
			if e.Test != "" {
				failed++
				fmt.Printf("--- FAIL: %s %s\n", e.Package, e.Test)
				for _, o := range output[key] {
					fmt.Print("    " + o)
				}
			} else {
				pkgFailed[e.Package] = true
				if len(output[key]) > 0 {
					for _, o := range output[key] {
						if !strings.HasPrefix(o, "FAIL") {
							fmt.Print("    " + o)
						}
					}
				}
			}
			delete(output, key)
		}
	}
	if len(skips) > 0 {
		sort.Strings(skips)
		fmt.Println("skipped tests:")
		for _, s := range skips {
			fmt.Println("  " + s)
		}
	}
	if n := len(pkgFailed); n > 0 && failed == 0 {
		// A package that failed without a failing test (build error,
		// TestMain exit, panic outside a test) still fails the run.
		failed = n
	}
	fmt.Printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if failed > 0 {
		os.Exit(1)
	}
}
