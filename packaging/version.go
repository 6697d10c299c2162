package packaging

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// ErrBadVersion reports a git describe string we cannot turn into a package
// version.
var ErrBadVersion = errors.New("packaging: bad version")

// Version is one build's version in the spellings each package format needs.
type Version struct {
	// Semver is what the Linux builder gets: "1.2.3" for a tagged commit,
	// "1.2.4-git5" five commits after v1.2.3. nfpm renders the prerelease
	// as 1.2.4~git5 (deb, rpm), 1.2.4_git5 (apk) and 1.2.4git5 (Arch):
	// each sorts after 1.2.3 and before the 1.2.4 release in its package
	// manager.
	Semver string
	// MSI is Windows Installer's numeric a.b.c.d (a, b ≤ 255, c ≤ 65535);
	// the commit count is the fourth field, which Windows Installer ignores
	// when comparing, hence AllowSameVersionUpgrades in the WiX source.
	MSI string
	// Display is the git describe string without its leading "v", for the
	// pkg and MSI names and the pkg's version.
	Display string
}

// describeRE matches `git describe --tags --always --dirty` output.
var describeRE = regexp.MustCompile(`^v?(\d+)\.(\d+)\.(\d+)(?:-(\d+)-g([0-9a-f]+))?(-dirty)?$`)
var hashRE = regexp.MustCompile(`^[0-9a-f]{4,40}(-dirty)?$`)

// ParseVersion turns `git describe --tags --always --dirty` output (and the
// commit count, `git rev-list --count HEAD`, used when there is no tag) into
// package versions. Untagged history is 0.0.1-gitN.
func ParseVersion(describe string, commits int) (Version, error) {
	if commits < 0 {
		return Version{}, fmt.Errorf("%w: negative commit count %d", ErrBadVersion, commits)
	}
	if m := describeRE.FindStringSubmatch(describe); m != nil {
		maj, _ := strconv.Atoi(m[1])
		minor, _ := strconv.Atoi(m[2])
		patch, _ := strconv.Atoi(m[3])
		if maj > 255 || minor > 255 || patch > 65534 {
			return Version{}, fmt.Errorf("%w: %q is beyond what MSI versions can hold", ErrBadVersion, describe)
		}
		if m[4] == "" {
			return Version{
				Semver:  fmt.Sprintf("%d.%d.%d", maj, minor, patch),
				MSI:     fmt.Sprintf("%d.%d.%d", maj, minor, patch),
				Display: strings.TrimPrefix(describe, "v"),
			}, nil
		}
		n, _ := strconv.Atoi(m[4])
		return Version{
			Semver:  fmt.Sprintf("%d.%d.%d-git%d", maj, minor, patch+1, n),
			MSI:     fmt.Sprintf("%d.%d.%d.%d", maj, minor, patch+1, n%65536),
			Display: strings.TrimPrefix(describe, "v"),
		}, nil
	}
	if hashRE.MatchString(describe) {
		return Version{
			Semver:  fmt.Sprintf("0.0.1-git%d", commits),
			MSI:     fmt.Sprintf("0.0.1.%d", commits%65536),
			Display: strings.TrimPrefix(describe, "v"),
		}, nil
	}
	return Version{}, fmt.Errorf("%w: %q is not git describe output", ErrBadVersion, describe)
}
