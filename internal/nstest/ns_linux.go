package nstest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// run is Main for Linux: the parent re-executes itself in a new mount
// namespace; the child sets the namespace up, verifies it and runs m.
func run(m *testing.M, cfg Config) int {
	if os.Getenv(envInside) != "" {
		return runInside(m, cfg)
	}
	if os.Geteuid() != 0 {
		return m.Run()
	}
	code, err := reexec()
	if err != nil {
		// No CAP_SYS_ADMIN (an unprivileged container): run the tests
		// here; the ones that need the namespace skip (or fail under E2E).
		fmt.Fprintf(os.Stderr, "nstest: cannot create a mount namespace, running outside: %v\n", err)
		os.Setenv("CERTAGENT_NSTEST_WHY", "cannot create a mount namespace: "+err.Error())
		return m.Run()
	}
	return code
}

// reexec runs this test binary again, with the same arguments, in a new
// mount namespace, and returns its exit code. err is non-nil only when the
// child could not be started.
func reexec() (int, error) {
	scratch, err := os.MkdirTemp("", "certagent-nstest-")
	if err != nil {
		return 0, err
	}
	// The child mounts a tmpfs here; the host only ever sees an empty dir.
	defer os.Remove(scratch)
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), envInside+"="+scratch, envHostPID+"="+strconv.Itoa(os.Getpid()))
	// Unshareflags (unlike Cloneflags) makes Go remount / MS_REC|MS_PRIVATE
	// in the child, so no mount made there propagates to the host.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 1, nil
	}
	return 0, nil
}

func runInside(m *testing.M, cfg Config) int {
	if os.Getenv(envReady) == "1" {
		// A child of the set-up process (a fuzz worker, say) shares its
		// namespace: check, do not mount again.
		if err := checkPrivate(mustMounts(), os.Getenv(envInside)); err != nil {
			fmt.Fprintf(os.Stderr, "nstest: refusing to run tests: %v\n", err)
			return ExitNotIsolated
		}
		insideVerified = true
		return m.Run()
	}
	if err := setup(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "nstest: refusing to run tests: %v\n", err)
		return ExitNotIsolated
	}
	insideVerified = true
	os.Setenv(envReady, "1")
	return m.Run()
}

func mustMounts() []Mount {
	ms, _ := Mounts()
	return ms
}

// setup makes every configured path private and verifies it.
func setup(cfg Config) error {
	if err := checkOwnNamespace(); err != nil {
		return err
	}
	scratch := os.Getenv(envInside)
	if err := syscall.Mount("nstest-scratch", scratch, "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", scratch, err)
	}
	var private []string
	for i, dir := range cfg.Overlays {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			missing = append(missing, dir)
			continue
		}
		if err := overlay(dir, filepath.Join(scratch, "o"+strconv.Itoa(i))); err != nil {
			return err
		}
		private = append(private, dir)
	}
	for i, f := range cfg.Files {
		if st, err := os.Stat(f); err != nil || !st.Mode().IsRegular() {
			missing = append(missing, f)
			continue
		}
		cp := filepath.Join(scratch, "f"+strconv.Itoa(i))
		if err := copyFile(f, cp); err != nil {
			return err
		}
		if err := syscall.Mount(cp, f, "", syscall.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s over %s: %w", cp, f, err)
		}
		private = append(private, f)
	}
	for _, dir := range cfg.Tmpfs {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			missing = append(missing, dir)
			continue
		}
		if err := syscall.Mount("nstest-tmpfs", dir, "tmpfs", 0, "mode=0755"); err != nil {
			return fmt.Errorf("mount tmpfs on %s: %w", dir, err)
		}
		private = append(private, dir)
	}
	if err := mkdirAll(filepath.Join(scratch, "home")); err != nil {
		return err
	}
	private = append(private, scratch)
	if err := verifyPrivate(private); err != nil {
		return err
	}
	if !cfg.KeepHooks {
		// Only after verification: these files are inside the overlay.
		if err := maskHooks("/etc/ca-certificates/update.d"); err != nil {
			return err
		}
	}
	return nil
}

// checkOwnNamespace fails unless our mount namespace differs from the
// parent's (the host's).
func checkOwnNamespace() error {
	host := os.Getenv(envHostPID)
	ours, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return err
	}
	theirs, err := os.Readlink("/proc/" + host + "/ns/mnt")
	if err != nil {
		return fmt.Errorf("read the host's mount namespace: %w", err)
	}
	if ours == theirs {
		return fmt.Errorf("still in the host's mount namespace %s", ours)
	}
	return nil
}

// overlay mounts a copy-on-write overlay over dir with its upper layer under
// base (on the scratch tmpfs). Where overlayfs refuses (an exotic lower
// filesystem), it falls back to a full copy bind-mounted over dir.
func overlay(dir, base string) error {
	upper, work := filepath.Join(base, "u"), filepath.Join(base, "w")
	for _, d := range []string{upper, work} {
		if err := mkdirAll(d); err != nil {
			return err
		}
	}
	opts := "lowerdir=" + dir + ",upperdir=" + upper + ",workdir=" + work
	if err := syscall.Mount("nstest-overlay", dir, "overlay", 0, opts); err == nil {
		return nil
	}
	cp := filepath.Join(base, "copy")
	if err := mkdirAll(cp); err != nil {
		return err
	}
	if out, err := exec.Command("/bin/cp", "-a", dir+"/.", cp+"/").CombinedOutput(); err != nil {
		return fmt.Errorf("copy %s: %v: %s", dir, err, out)
	}
	if err := syscall.Mount(cp, dir, "", syscall.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind a copy over %s: %w", dir, err)
	}
	return nil
}

func mkdirAll(d string) error {
	if err := os.MkdirAll(d, 0o755); err != nil {
		return fmt.Errorf("mkdir %s: %w", d, err)
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, st.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func maskHooks(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("mask hook: %w", err)
		}
	}
	return nil
}

// Mount is one line of /proc/self/mountinfo.
type Mount struct {
	Point  string
	FSType string
	Source string
	// Shared reports whether the mount propagates to a peer group (a
	// "shared:N" optional field): a mount below it could reach the host.
	Shared bool
}

// Mounts parses /proc/self/mountinfo, in mount order.
func Mounts() ([]Mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseMountinfo(f)
}

func parseMountinfo(r io.Reader) ([]Mount, error) {
	var out []Mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" && i >= 6 {
				sep = i
				break
			}
		}
		if sep < 0 || len(fields) < sep+3 {
			return nil, fmt.Errorf("nstest: malformed mountinfo line %q", sc.Text())
		}
		m := Mount{Point: unescapeMount(fields[4]), FSType: fields[sep+1], Source: fields[sep+2]}
		for _, opt := range fields[6:sep] {
			if strings.HasPrefix(opt, "shared:") {
				m.Shared = true
			}
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// IsPrivate reports whether path's top-most mount is one nstest made
// (overlay, tmpfs or a bind from the scratch tmpfs) and does not propagate.
// Helpers that delete files check it first.
func IsPrivate(path string) bool {
	ms, err := Mounts()
	if err != nil {
		return false
	}
	return checkPrivate(ms, path) == nil
}

func checkPrivate(ms []Mount, path string) error {
	var top *Mount
	for i := range ms {
		if ms[i].Point == path {
			top = &ms[i]
		}
	}
	if top == nil {
		return fmt.Errorf("%s is not a mount point in this namespace", path)
	}
	if top.Shared {
		return fmt.Errorf("%s is a shared mount: changes could propagate to the host", path)
	}
	switch {
	case top.FSType == "overlay" && top.Source == "nstest-overlay",
		// Our tmpfs mounts, and binds from the scratch tmpfs (which show
		// the tmpfs's source).
		top.FSType == "tmpfs" && strings.HasPrefix(top.Source, "nstest-"):
		return nil
	}
	return fmt.Errorf("%s is a %s mount from %s, not one of ours", path, top.FSType, top.Source)
}

func verifyPrivate(paths []string) error {
	ms, err := Mounts()
	if err != nil {
		return err
	}
	for _, p := range paths {
		if err := checkPrivate(ms, p); err != nil {
			return err
		}
	}
	return nil
}
