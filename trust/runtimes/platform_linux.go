package runtimes

// DefaultDir holds the bundle on Linux.
const DefaultDir = "/usr/local/share/certagent/runtimes"

// platformSystemRoots is nil: the bundle store's distro table applies.
var platformSystemRoots []string

func newWiring(o Options) wiring {
	w := &fileWiring{root: o.Root, run: o.Runner, log: o.Logger.Named(Name)}
	if o.Root == "" {
		w.systemctl = DefaultSystemctl
	}
	return w
}
