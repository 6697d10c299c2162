package stores

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/certagent/certagent/trust/runtimes"
)

// Spec is one parsed store name of certagent's config: a kind, and for the
// kinds that live in a file or directory of the admin's choosing, its path.
// The grammar is "KIND" or "KIND:PATH"; only "bundle" and "dir" take a path.
type Spec struct {
	// Kind is "system", "nss", "firefox-policy", "java", "runtimes",
	// "bundle" or "dir".
	Kind string
	// Path is the clean absolute path of a bundle: or dir: store; empty
	// for the other kinds.
	Path string
}

// ParseSpec parses a store name, refusing unknown kinds, a path where the
// kind takes none, a missing or relative path, and the root directory.
func ParseSpec(name string) (Spec, error) {
	kind, arg, hasArg := strings.Cut(name, ":")
	switch kind {
	case "system", "nss", "firefox-policy", "java", runtimes.Name:
		if hasArg {
			return Spec{}, fmt.Errorf("%q takes no argument", name)
		}
		return Spec{Kind: kind}, nil
	case "dir", "bundle":
		if arg == "" {
			return Spec{}, fmt.Errorf("%q needs a path, like %s:/var/lib/certagent/%s", name, kind, kind)
		}
		if !filepath.IsAbs(arg) {
			return Spec{}, fmt.Errorf("%q needs an absolute path, like %s:/var/lib/certagent/%s", name, kind, kind)
		}
		p := filepath.Clean(arg)
		if p == string(filepath.Separator) || p == filepath.VolumeName(p)+string(filepath.Separator) {
			return Spec{}, fmt.Errorf("%q: refusing the root directory", name)
		}
		return Spec{Kind: kind, Path: p}, nil
	default:
		return Spec{}, fmt.Errorf("unknown store %q (want system, nss, firefox-policy, java, runtimes, bundle:PATH or dir:PATH)", name)
	}
}

// String is the canonical name: "dir:/a/" and "dir:/a" are the same store,
// and the ledger keys its entries by this form.
func (s Spec) String() string {
	if s.Path == "" {
		return s.Kind
	}
	return s.Kind + ":" + s.Path
}
