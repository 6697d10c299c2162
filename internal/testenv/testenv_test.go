package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestSkipOrFail runs the helpers in a child test binary, once plainly and
// once under CERTAGENT_E2E=1, and checks the first skips and the second
// fails, each naming what is missing.
func TestSkipOrFail(t *testing.T) {
	if os.Getenv("TESTENV_CHILD") != "" {
		return
	}
	tests := []struct {
		name, run, want string
	}{
		{name: "missing tool", run: "TestChildTool", want: "no-such-tool-xyz not found: install some-pkg"},
		{name: "missing env", run: "TestChildEnv", want: "TESTENV_NOPE is not set: export it"},
		{name: "skipf", run: "TestChildSkipf", want: "gone 42"},
	}
	for _, tc := range tests {
		for _, e2e := range []bool{false, true} {
			name := tc.name
			if e2e {
				name += " under E2E"
			}
			t.Run(name, func(t *testing.T) {
				cmd := exec.Command(os.Args[0], "-test.run=^"+tc.run+"$", "-test.v")
				cmd.Env = append(os.Environ(), "TESTENV_CHILD=1", EnvE2E+"=")
				if e2e {
					cmd.Env = append(cmd.Env, EnvE2E+"=1")
				}
				out, err := cmd.CombinedOutput()
				if !strings.Contains(string(out), tc.want) {
					t.Fatalf("output %q does not name %q", out, tc.want)
				}
				if got, want := err != nil, e2e; got != want {
					t.Fatalf("child failed: got %v, want %v\n%s", got, want, out)
				}
				if got, want := strings.Contains(string(out), "--- SKIP"), !e2e; got != want {
					t.Fatalf("child skipped: got %v, want %v\n%s", got, want, out)
				}
			})
		}
	}
}

func TestChildTool(t *testing.T) {
	if os.Getenv("TESTENV_CHILD") == "" {
		return
	}
	RequireTool(t, "no-such-tool-xyz", "some-pkg")
	t.Fatal("RequireTool returned for a missing tool")
}

func TestChildEnv(t *testing.T) {
	if os.Getenv("TESTENV_CHILD") == "" {
		return
	}
	RequireEnv(t, "TESTENV_NOPE", "export it")
	t.Fatal("RequireEnv returned for an unset variable")
}

func TestChildSkipf(t *testing.T) {
	if os.Getenv("TESTENV_CHILD") == "" {
		return
	}
	Skipf(t, "gone %d", 42)
	t.Fatal("Skipf returned")
}

func TestRequireToolFinds(t *testing.T) {
	if got := RequireTool(t, os.Args[0], "none"); got != os.Args[0] {
		t.Fatalf("got %v, want %v", got, os.Args[0])
	}
}
