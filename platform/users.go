package platform

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// UsersOptions say where the passwd database is and which accounts count as
// people. The zero value reads /etc/passwd and /etc/group.
type UsersOptions struct {
	// PasswdFile and GroupFile override /etc/passwd and /etc/group (tests).
	PasswdFile, GroupFile string
	// MinUID and MaxUID bound regular accounts; zero means 1000 and 60000,
	// the defaults of login.defs (UID_MIN, UID_MAX) on every distro we
	// serve. nobody (65534) is outside.
	MinUID, MaxUID int
	// ExcludeRoot drops root. By default root counts: admins do run
	// browsers as root on workstations, and root's NSS databases are as
	// real as anyone's.
	ExcludeRoot bool
	// Getent is getent(1)'s path, for people the passwd file does not
	// list (LDAP, SSSD, AD through NSS). "" means DefaultGetent when
	// PasswdFile is the default and none otherwise (tests of a passwd file
	// stay hermetic); "-" means none.
	Getent string
	// HomeRoots are directories whose entries name candidate users (a
	// directory user's home is usually created under /home at first
	// login); nil means DefaultHomeRoots.
	HomeRoots []string
	// RunUserDir holds one directory per logged-in uid (systemd-logind's
	// XDG_RUNTIME_DIR); "" means /run/user.
	RunUserDir string
}

// DefaultGetent is getent's path on every distro we serve.
const DefaultGetent = "/usr/bin/getent"

// DefaultHomeRoots are where homes are created (/var/home: Fedora Atomic).
var DefaultHomeRoots = []string{"/home", "/var/home"}

// maxCandidates bounds the names and uids handed to one getent run: a
// machine with more homes than this is a file server, not a laptop.
const maxCandidates = 2000

// getentTimeout bounds the directory lookup (an unreachable LDAP server
// must not stall a pass).
const getentTimeout = 20 * time.Second

// noLoginShells are shells that mean "this account never logs in".
var noLoginShells = map[string]bool{
	"nologin": true, "false": true, "true": true, "sync": true, "shutdown": true, "halt": true,
}

// maxPasswd bounds what we read from passwd and group files.
const maxPasswd = 16 << 20

// LocalUsers returns the people on this machine: root (unless excluded) and
// every account with MinUID ≤ uid ≤ MaxUID whose shell is a real login shell
// that exists and whose home is an existing directory other than /.
// Accounts come from the passwd file and, for people a directory service
// (LDAP, SSSD, AD) knows, from NSS through getent: not by enumerating the
// directory (a company's whole LDAP), but by asking about the candidates
// this machine shows, the names of the directories under /home and the uids
// with a session under /run/user. Supplementary groups come from the group
// file (getent initgroups for directory users). Sorted by name.
func LocalUsers(o UsersOptions) ([]User, error) {
	return localUsers(o, nil)
}

// UserLister is LocalUsers for callers that ask every pass (the nss store):
// it asks the directory again only when the candidates changed (a new home,
// a new session) or DirectoryTTL passed, so a quiet pass starts no getent.
// Safe for concurrent use.
type UserLister struct {
	o   UsersOptions
	now func() time.Time

	mu    sync.Mutex // guards the fields below
	keys  string     // the candidates last asked about
	at    time.Time  // when
	found []User     // what the directory answered
}

// DirectoryTTL is how long a directory answer is reused while the
// candidates stay the same (a user's shell or uid changed in LDAP).
const DirectoryTTL = 10 * time.Minute

// NewUserLister returns a lister for o.
func NewUserLister(o UsersOptions) *UserLister { return &UserLister{o: o, now: time.Now} }

// Users returns the people, as LocalUsers does.
func (l *UserLister) Users() ([]User, error) { return localUsers(l.o, l) }

// lookup returns the directory's answer for keys, from the cache when
// it is fresh.
func (l *UserLister) lookup(keys []string, ask func() []User) []User {
	k := strings.Join(keys, "\x00")
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.found != nil && k == l.keys && l.now().Sub(l.at) < DirectoryTTL {
		return l.found
	}
	l.found, l.keys, l.at = ask(), k, l.now()
	if l.found == nil {
		l.found = []User{}
	}
	return l.found
}

// Sources are the files and directories whose change may change what
// LocalUsers returns, besides the directory service (asked again at least
// every DirectoryTTL) and the shells and homes of accounts: the passwd and
// group files, the home roots (a new home) and the sessions directory (a
// new session). The daemon watches them for the nss store.
func (o UsersOptions) Sources() []string {
	o = o.withDefaults()
	return append([]string{o.PasswdFile, o.GroupFile, o.RunUserDir}, o.HomeRoots...)
}

// withDefaults fills in the defaults the zero value stands for.
func (o UsersOptions) withDefaults() UsersOptions {
	if o.PasswdFile == "" {
		o.PasswdFile = "/etc/passwd"
		if o.Getent == "" {
			o.Getent = DefaultGetent
		}
	}
	if o.Getent == "-" {
		o.Getent = ""
	}
	if o.HomeRoots == nil {
		o.HomeRoots = DefaultHomeRoots
	}
	if o.RunUserDir == "" {
		o.RunUserDir = "/run/user"
	}
	if o.GroupFile == "" {
		o.GroupFile = "/etc/group"
	}
	if o.MinUID == 0 {
		o.MinUID = 1000
	}
	if o.MaxUID == 0 {
		o.MaxUID = 60000
	}
	return o
}

func localUsers(o UsersOptions, cache *UserLister) ([]User, error) {
	o = o.withDefaults()
	pw, err := readBounded(o.PasswdFile)
	if err != nil {
		return nil, fmt.Errorf("platform: users: %w", err)
	}
	all, err := ParsePasswd(pw)
	if err != nil {
		return nil, fmt.Errorf("platform: users: %s: %w", o.PasswdFile, err)
	}
	var groups map[string][]int
	if gr, err := readBounded(o.GroupFile); err == nil {
		groups = parseGroupMembers(gr)
	} else if !os.IsNotExist(err) {
		return nil, fmt.Errorf("platform: users: %w", err)
	}
	seen := make(map[string]bool)
	uids := make(map[int]bool)
	var out []User
	for _, u := range all {
		// Every passwd name and uid is known, person or not: getent would
		// only answer the same.
		known := seen[u.Name]
		seen[u.Name], uids[u.UID] = true, true
		if known || !isPerson(u, o) {
			continue
		}
		u.Groups = groups[u.Name]
		out = append(out, u)
	}
	if o.Getent != "" {
		for _, u := range directoryUsers(o, seen, uids, cache) {
			if !seen[u.Name] && isPerson(u, o) {
				seen[u.Name] = true
				out = append(out, u)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// directoryUsers asks NSS about the candidates the passwd file does not
// know: names of directories under the home roots and uids with a session.
// A lookup that fails (no getent, directory unreachable) finds nobody; the
// passwd file's people are still served.
func directoryUsers(o UsersOptions, names map[string]bool, uids map[int]bool, cache *UserLister) []User {
	var keys []string
	asked := make(map[string]bool)
	ask := func(k string) {
		if !asked[k] && len(keys) < maxCandidates {
			asked[k] = true
			keys = append(keys, k)
		}
	}
	for _, root := range o.HomeRoots {
		ents, err := os.ReadDir(root)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if n := e.Name(); e.IsDir() && !names[n] && validUserName(n) {
				ask(n)
			}
		}
	}
	if ents, err := os.ReadDir(o.RunUserDir); err == nil {
		for _, e := range ents {
			if uid, err := strconv.Atoi(e.Name()); err == nil && uid > 0 && !uids[uid] {
				ask(strconv.Itoa(uid))
			}
		}
	}
	if len(keys) == 0 {
		return nil
	}
	if cache != nil {
		return cache.lookup(keys, func() []User { return getentUsers(o, keys) })
	}
	return getentUsers(o, keys)
}

// getentUsers runs getent for keys.
func getentUsers(o UsersOptions, keys []string) []User {
	ctx, cancel := context.WithTimeout(context.Background(), getentTimeout)
	defer cancel()
	// One run for every key; exit 2 means some were not found, and the
	// found ones are still printed.
	out, err := exec.CommandContext(ctx, o.Getent, append([]string{"passwd", "--"}, keys...)...).Output()
	if err != nil && len(out) == 0 {
		return nil
	}
	if len(out) > maxPasswd {
		return nil
	}
	found, err := ParsePasswd(out)
	if err != nil {
		return nil
	}
	for i := range found {
		found[i].Groups = initgroups(ctx, o.Getent, found[i])
	}
	return found
}

// initgroups returns u's supplementary groups from NSS ("NAME gid gid…").
func initgroups(ctx context.Context, getent string, u User) []int {
	out, err := exec.CommandContext(ctx, getent, "initgroups", "--", u.Name).Output()
	if err != nil {
		return nil
	}
	f := strings.Fields(string(out))
	var gs []int
	for _, g := range f[min(1, len(f)):] {
		if gid, err := strconv.ParseUint(g, 10, 31); err == nil && int(gid) != u.GID {
			gs = append(gs, int(gid))
		}
	}
	return gs
}

// validUserName reports whether a directory name can be a user name worth
// asking about: what useradd and directory services allow, no option-like
// or hidden names.
func validUserName(n string) bool {
	if n == "" || len(n) > 64 || n[0] == '-' || n[0] == '.' || n == "lost+found" {
		return false
	}
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-@$", r)) {
			return false
		}
	}
	return true
}

func isPerson(u User, o UsersOptions) bool {
	if u.UID == 0 {
		if o.ExcludeRoot || u.Name != "root" {
			return false
		}
	} else if u.UID < o.MinUID || u.UID > o.MaxUID {
		return false
	}
	if !filepath.IsAbs(u.Shell) || noLoginShells[filepath.Base(u.Shell)] {
		return false
	}
	if st, err := os.Stat(u.Shell); err != nil || st.IsDir() {
		return false
	}
	if !filepath.IsAbs(u.Home) || filepath.Clean(u.Home) == "/" {
		return false
	}
	st, err := os.Stat(u.Home)
	return err == nil && st.IsDir()
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > maxPasswd {
		return nil, fmt.Errorf("%s is %d bytes, more than %d", path, st.Size(), maxPasswd)
	}
	return os.ReadFile(path)
}

// ParsePasswd parses passwd(5) lines (name:pw:uid:gid:gecos:home:shell).
// Comments, blank lines and NIS "+"/"-" lines are skipped; a line with the
// wrong number of fields or a non-numeric id is an error.
func ParsePasswd(data []byte) ([]User, error) {
	var out []User
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "+") || strings.HasPrefix(line, "-") {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) != 7 {
			return nil, fmt.Errorf("line %d: %d fields, want 7", n, len(f))
		}
		uid, err1 := strconv.ParseUint(f[2], 10, 31)
		gid, err2 := strconv.ParseUint(f[3], 10, 31)
		if err1 != nil || err2 != nil || f[0] == "" {
			return nil, fmt.Errorf("line %d: bad name or id", n)
		}
		out = append(out, User{Name: f[0], UID: int(uid), GID: int(gid), Home: f[5], Shell: f[6]})
	}
	return out, sc.Err()
}

// parseGroupMembers maps each user to the gids of the groups that list it
// as a member. Malformed lines are ignored: groups only refine what a
// command may access, and a broken line must not hide a user.
func parseGroupMembers(data []byte) map[string][]int {
	out := make(map[string][]int)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) != 4 {
			continue
		}
		gid, err := strconv.ParseUint(f[2], 10, 31)
		if err != nil {
			continue
		}
		for _, m := range strings.Split(f[3], ",") {
			if m = strings.TrimSpace(m); m != "" {
				out[m] = append(out[m], int(gid))
			}
		}
	}
	return out
}
