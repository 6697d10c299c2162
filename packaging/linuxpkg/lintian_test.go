package linuxpkg_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/certagent/certagent/internal/nstest"
)

// TestLintian requires the deb to be lintian-clean at every level,
// pedantic and info included; the only silenced tags are the reasoned
// overrides in packaging/linux/lintian-overrides.
func TestLintian(t *testing.T) {
	lintian := nstest.Tool(t, "/usr/bin/lintian", "lintian")
	t.Parallel()
	deb := buildPackages(t, "1.0.0", "deb")["deb"]
	out, err := exec.Command(lintian, "--tag-display-limit", "0", "--display-info", "--pedantic", deb).CombinedOutput()
	var tags []string
	for _, line := range strings.Split(string(out), "\n") {
		// E: error, W: warning, I: info, P: pedantic, X: experimental.
		if len(line) > 2 && strings.Contains("EWIPX", line[:1]) && line[1] == ':' {
			tags = append(tags, line)
		}
	}
	if err != nil || len(tags) > 0 {
		t.Errorf("lintian: err %v, tags:\n%s\nfull output:\n%s", err, strings.Join(tags, "\n"), out)
	}
}
