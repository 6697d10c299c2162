package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/internal/testenv"
)

func ev(action, pkg, test string) string {
	return `{"Action":"` + action + `","Package":"` + pkg + `","Test":"` + test + `"}`
}

func TestSummarize(t *testing.T) {
	tests := []struct {
		name      string
		events    []string
		ok        bool
		last      string
		subtests  string
		mustPrint []string
	}{
		{
			name: "subtests are not tests",
			events: []string{ev("pass", "p", "TestA/one"), ev("pass", "p", "TestA/two"), ev("skip", "p", "TestA/three"),
				ev("pass", "p", "TestA"), ev("skip", "p", "TestB"), ev("pass", "p", "")},
			ok: true, last: "1 passed, 0 failed, 1 skipped", subtests: "subtests: 2 passed, 0 failed, 1 skipped",
			mustPrint: []string{"p.TestA/three", "p.TestB"},
		},
		{
			name: "a build failure counts even when a test failed elsewhere",
			events: []string{
				`{"ImportPath":"q [q.test]","Action":"build-output","Output":"# q [q.test]\n"}`,
				`{"ImportPath":"q [q.test]","Action":"build-output","Output":"q/q_test.go:5:28: undefined: nope\n"}`,
				`{"ImportPath":"q [q.test]","Action":"build-fail"}`,
				`{"Action":"output","Package":"q","Output":"FAIL\tq [build failed]\n"}`,
				`{"Action":"fail","Package":"q","FailedBuild":"q [q.test]"}`,
				ev("fail", "p", "TestA/x"), ev("fail", "p", "TestA"), ev("fail", "p", "")},
			ok: false, last: "0 passed, 2 failed, 0 skipped", subtests: "subtests: 0 passed, 1 failed, 0 skipped",
			mustPrint: []string{"q/q_test.go:5:28: undefined: nope", "q (build failed: q [q.test])", "--- FAIL: p TestA"},
		},
		{
			name: "TestMain exiting non-zero after passing tests",
			events: []string{ev("pass", "p", "TestA"), `{"Action":"output","Package":"p","Output":"leaked goroutine\n"}`,
				ev("fail", "p", "")},
			ok: false, last: "1 passed, 1 failed, 0 skipped", mustPrint: []string{"leaked goroutine", "p (failed outside any test)"},
		},
		{
			name:   "a package that failed through its test is counted once",
			events: []string{ev("fail", "p", "TestA"), ev("fail", "p", "")},
			ok:     false, last: "0 passed, 1 failed, 0 skipped",
		},
		{
			name: "the slowest top-level tests are listed, slowest first, subtests not",
			events: []string{`{"Action":"pass","Package":"p","Test":"TestFast","Elapsed":0.5}`,
				`{"Action":"pass","Package":"p","Test":"TestSlow/sub","Elapsed":90}`,
				`{"Action":"pass","Package":"p","Test":"TestSlow","Elapsed":91.25}`,
				`{"Action":"fail","Package":"q","Test":"TestMid","Elapsed":12}`},
			ok: false, last: "2 passed, 1 failed, 0 skipped",
			mustPrint: []string{"slowest tests:\n     91.2s p.TestSlow\n     12.0s q.TestMid\n      0.5s p.TestFast\nsubtests:"},
		},
		{
			name:   "non-JSON lines pass through",
			events: []string{"# vet says hello", ev("pass", "p", "TestA")},
			ok:     true, last: "1 passed, 0 failed, 0 skipped", mustPrint: []string{"# vet says hello"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			ok := summarize(strings.NewReader(strings.Join(tc.events, "\n")+"\n"), &out)
			assert.Equal(t, tc.ok, ok, "%s", out.String())
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			assert.Equal(t, tc.last, lines[len(lines)-1], "%s", out.String())
			if tc.subtests != "" {
				assert.Contains(t, out.String(), tc.subtests)
			}
			for _, s := range tc.mustPrint {
				assert.Contains(t, out.String(), s)
			}
		})
	}
}

// TestSummarizeRealGoTest runs the real `go test -json` over a module with
// a passing package (with subtests and skips), one that does not compile
// and one whose subtest fails, so the counts are checked against what the
// go command really emits, not what we think it emits.
func TestSummarizeRealGoTest(t *testing.T) {
	goBin := testenv.RequireTool(t, "go", "golang-go")
	dir := t.TempDir()
	files := map[string]string{
		"go.mod":      "module example.com/ts\n\ngo 1.22\n",
		"a/a_test.go": "package a\n\nimport \"testing\"\n\nfunc TestA(t *testing.T) {\n\tt.Run(\"one\", func(t *testing.T) {})\n\tt.Run(\"two\", func(t *testing.T) { t.Skip(\"no\") })\n}\n\nfunc TestSkip(t *testing.T) { t.Skip(\"why\") }\n",
		"b/b_test.go": "package b\n\nimport \"testing\"\n\nfunc TestB(t *testing.T) { undefinedThing() }\n",
		"c/c_test.go": "package c\n\nimport \"testing\"\n\nfunc TestC(t *testing.T) {\n\tt.Run(\"sub\", func(t *testing.T) { t.Fatal(\"bad\") })\n}\n",
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	}
	cmd := exec.Command(goBin, "test", "-json", "-count=1", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off", "GOTOOLCHAIN=local")
	raw, _ := cmd.Output() // fails, as it should
	var out bytes.Buffer
	ok := summarize(bytes.NewReader(raw), &out)
	assert.False(t, ok)
	s := out.String()
	assert.Contains(t, s, "undefined: undefinedThing", "the compiler error is shown")
	assert.Contains(t, s, "example.com/ts/b (build failed")
	assert.Contains(t, s, "subtests: 1 passed, 1 failed, 1 skipped")
	lines := strings.Split(strings.TrimSpace(s), "\n")
	assert.Equal(t, "1 passed, 2 failed, 1 skipped", lines[len(lines)-1], "%s", s)
}
