package packaging

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
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
	// Mac is the macOS pkg's version: dotted numbers, the tag's a.b.c with
	// the commit count after it as a fourth field ("1.2.3.5" five commits
	// after v1.2.3, "0.0.0.12" with no tag), so Jamf, Munki and Intune,
	// which compare dotted numbers, order it after 1.2.3 and before 1.2.4,
	// and every later commit after it.
	Mac string
	// Display names the MSI and pkg files: Semver, the Linux packages'
	// version (so every file of one build carries the same monotonic
	// version, never a commit hash), with "-dirty" for a dirty tree.
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
		dirty := m[6]
		if m[4] == "" {
			v := fmt.Sprintf("%d.%d.%d", maj, minor, patch)
			return Version{Semver: v, MSI: v, Mac: v, Display: v + dirty}, nil
		}
		n, _ := strconv.Atoi(m[4])
		semver := fmt.Sprintf("%d.%d.%d-git%d", maj, minor, patch+1, n)
		return Version{
			Semver:  semver,
			MSI:     fmt.Sprintf("%d.%d.%d.%d", maj, minor, patch+1, n%65536),
			Mac:     fmt.Sprintf("%d.%d.%d.%d", maj, minor, patch, n),
			Display: semver + dirty,
		}, nil
	}
	if m := hashRE.FindStringSubmatch(describe); m != nil {
		semver := fmt.Sprintf("0.0.1-git%d", commits)
		return Version{
			Semver:  semver,
			MSI:     fmt.Sprintf("0.0.1.%d", commits%65536),
			Mac:     fmt.Sprintf("0.0.0.%d", commits),
			Display: semver + m[1],
		}, nil
	}
	return Version{}, fmt.Errorf("%w: %q is not git describe output", ErrBadVersion, describe)
}
