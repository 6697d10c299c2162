package nss

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust"
)

// Where NSS databases live, relative to a home directory.
var (
	// chromiumDBs are the shared NSS databases Chrome and Chromium (and most
	// other NSS programs) read: ~/.pki/nssdb, ~/.local/share/pki/nssdb
	// (Chromium 146+ on XDG layouts) and snap Chromium's private copy.
	chromiumDBs = []string{
		".pki/nssdb",
		".local/share/pki/nssdb",
		"snap/chromium/current/.pki/nssdb",
	}
	// firefoxRoots hold a profiles.ini each: deb/tarball, snap, flatpak,
	// and the XDG location of Firefox 147+.
	firefoxRoots = []string{
		".mozilla/firefox",
		"snap/firefox/common/.mozilla/firefox",
		".var/app/org.mozilla.firefox/.mozilla/firefox",
		".config/mozilla/firefox",
	}
	// chromiumProfiles are evidence that a user runs a Chromium-based
	// browser, which reads ~/.pki/nssdb but never creates it.
	chromiumProfiles = []string{
		".config/chromium",
		".config/google-chrome",
		".config/google-chrome-beta",
		".config/google-chrome-unstable",
		".config/BraveSoftware/Brave-Browser",
		".config/microsoft-edge",
		"snap/chromium/common/chromium",
	}
)

// maxProfilesINI bounds what we read of a user's profiles.ini.
const maxProfilesINI = 256 << 10

// db is one NSS database we serve.
type db struct {
	target trust.Target
	dir    string
	// user runs certutil; nil means root (the system database).
	user *platform.User
	// create says the database does not exist yet and is made on the
	// first install (a Chromium user without ~/.pki/nssdb).
	create bool
	// firefox reports whether the database is a Firefox profile's.
	firefox bool
}

// discover finds every database of every user and the system database.
// It only looks at files.
func (s *Store) discover() ([]db, []trust.Skip, error) {
	users, err := s.users()
	if err != nil {
		return nil, nil, err
	}
	var dbs []db
	var skips []trust.Skip
	for i := range users {
		u := &users[i]
		found, sk := userDBs(u)
		skips = append(skips, sk...)
		if len(found) == 0 {
			skips = append(skips, trust.Skip{Target: trust.Target{User: u.Name}, Reason: "no NSS database"})
		}
		dbs = append(dbs, found...)
	}
	if s.systemDB != "" {
		switch dbState(s.systemDB) {
		case dbSQL:
			dbs = append(dbs, db{target: trust.Target{Path: s.systemDB}, dir: s.systemDB})
		case dbLegacy:
			skips = append(skips, legacySkip(trust.Target{Path: s.systemDB}))
		}
	}
	return dbs, skips, nil
}

func legacySkip(t trust.Target) trust.Skip {
	return trust.Skip{Target: t, Reason: "legacy dbm database (cert8.db); certutil cannot write it safely, start the browser once to upgrade it"}
}

type state int

const (
	dbNone state = iota
	dbSQL
	dbLegacy
)

// dbState says what kind of NSS database dir holds.
func dbState(dir string) state {
	if isRegular(filepath.Join(dir, "cert9.db")) {
		return dbSQL
	}
	if isRegular(filepath.Join(dir, "cert8.db")) {
		return dbLegacy
	}
	return dbNone
}

func isRegular(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// userDBs returns u's databases and the ones that exist but cannot be
// served.
func userDBs(u *platform.User) ([]db, []trust.Skip) {
	var out []db
	var skips []trust.Skip
	seen := make(map[string]bool)
	add := func(dir string, firefox bool) {
		dir = filepath.Clean(dir)
		if seen[dir] {
			return
		}
		seen[dir] = true
		t := trust.Target{User: u.Name, Path: dir}
		switch dbState(dir) {
		case dbSQL:
			out = append(out, db{target: t, dir: dir, user: u, firefox: firefox})
		case dbLegacy:
			skips = append(skips, legacySkip(t))
		default:
			if isDir(dir) {
				// A Firefox profile that was never started has no
				// database yet; Firefox will create it.
				skips = append(skips, trust.Skip{Target: t, Reason: "no cert9.db yet (profile never started)"})
			}
		}
	}
	for _, rel := range chromiumDBs {
		if dir := filepath.Join(u.Home, rel); dbState(dir) != dbNone {
			add(dir, false)
		}
	}
	for _, rel := range firefoxRoots {
		root := filepath.Join(u.Home, rel)
		for _, p := range firefoxProfiles(root) {
			add(p, true)
		}
	}
	// Chromium reads ~/.pki/nssdb but does not create it: for a user who
	// runs a Chromium-based browser and has no shared database, we create
	// one on the first install (as that user).
	hasShared := dbState(filepath.Join(u.Home, chromiumDBs[0])) != dbNone || dbState(filepath.Join(u.Home, chromiumDBs[1])) != dbNone
	if !hasShared {
		for _, rel := range chromiumProfiles {
			if isDir(filepath.Join(u.Home, rel)) {
				dir := filepath.Join(u.Home, chromiumDBs[0])
				out = append(out, db{target: trust.Target{User: u.Name, Path: dir}, dir: dir, user: u, create: true})
				break
			}
		}
	}
	return out, skips
}

// firefoxProfiles returns the profile directories profiles.ini in root
// names. The file is the user's, so it is read only if it is a regular file
// (not a link to something of root's), and a relative Path may not climb
// out of root. An absolute Path is allowed, as Firefox allows it: certutil
// runs as the user, so it reaches only what the user could.
func firefoxProfiles(root string) []string {
	// Open without following a final symlink, then check what was opened:
	// checking the path first and opening it after would let the user swap
	// in a link between the two.
	f, err := openNoFollow(filepath.Join(root, "profiles.ini"))
	if err != nil {
		return nil
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() || st.Size() > maxProfilesINI {
		return nil
	}
	return parseProfilesINI(io.LimitReader(f, maxProfilesINI), root)
}

// parseProfilesINI reads [Profile*] and [Install*] sections: Path= with
// IsRelative=1 (the default) is relative to root; Install sections' Default=
// is always relative.
func parseProfilesINI(r io.Reader, root string) []string {
	type section struct {
		name, path, def string
		relative        bool
	}
	var secs []section
	cur := -1
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(strings.TrimPrefix(sc.Text(), "\ufeff"))
		if line == "" || line[0] == ';' || line[0] == '#' {
			continue
		}
		if line[0] == '[' && strings.HasSuffix(line, "]") {
			secs = append(secs, section{name: line[1 : len(line)-1], relative: true})
			cur = len(secs) - 1
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || cur < 0 {
			continue
		}
		switch strings.TrimSpace(k) {
		case "Path":
			secs[cur].path = strings.TrimSpace(v)
		case "IsRelative":
			secs[cur].relative = strings.TrimSpace(v) != "0"
		case "Default":
			secs[cur].def = strings.TrimSpace(v)
		}
	}
	var out []string
	rel := func(p string) {
		if p != "" && filepath.IsLocal(p) {
			out = append(out, filepath.Join(root, p))
		}
	}
	for _, s := range secs {
		switch {
		case strings.HasPrefix(s.name, "Profile"):
			if s.relative {
				rel(s.path)
			} else if filepath.IsAbs(s.path) {
				out = append(out, filepath.Clean(s.path))
			}
		case strings.HasPrefix(s.name, "Install"):
			rel(s.def)
		}
	}
	return out
}

// parseList parses `certutil -L` output into nickname lines with their
// trust attributes, in order (a nickname shared by several certificates
// appears once per certificate).
func parseList(out []byte) []listed {
	var res []listed
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), " \t")
		i := strings.LastIndexAny(line, " \t")
		if i < 0 {
			continue
		}
		attrs := line[i+1:]
		nick := strings.TrimSpace(line[:i])
		if nick == "" || !isTrustAttrs(attrs) || nick == "Certificate Nickname" {
			continue
		}
		res = append(res, listed{nick: nick, trust: attrs})
	}
	return res
}

type listed struct {
	nick, trust string
}

// isTrustAttrs reports whether s looks like "C,," or "CT,C,c" or "u,u,u".
func isTrustAttrs(s string) bool {
	if strings.Count(s, ",") != 2 {
		return false
	}
	for _, r := range s {
		if r != ',' && !strings.ContainsRune("pPcCTuwskiIDv", r) {
			return false
		}
	}
	return true
}

// trustedForTLS reports whether the SSL field of attrs holds C: a CA
// trusted to issue server certificates.
func trustedForTLS(attrs string) bool {
	ssl, _, _ := strings.Cut(attrs, ",")
	return strings.ContainsRune(ssl, 'C')
}

// Paths implements trust.PathDeclarer. Write: every local user's home
// (certutil creates ~/.pki/nssdb and changes profile databases) and the
// directories homes live in, so a user added later is covered, plus the
// system database. Watch: the database directories and profile roots of
// every user (a new profile, a deleted entry), each Firefox profile that
// holds a database, the system database, and where the users come from
// (passwd, group, the home roots, the sessions directory: a new user or
// home). Not watched: a user's first Chromium profile (which makes us
// create ~/.pki/nssdb) and directory-service users; the daemon's periodic
// full pass finds those.
func (s *Store) Paths() trust.Paths {
	var p trust.Paths
	seen := map[string]bool{}
	add := func(list *[]string, d string) {
		if !seen[d] {
			seen[d] = true
			*list = append(*list, d)
		}
	}
	users, err := s.users()
	if err != nil {
		users = nil
	}
	for _, u := range users {
		if u.Home == "" || !filepath.IsAbs(u.Home) || filepath.Clean(u.Home) == "/" {
			continue
		}
		home := filepath.Clean(u.Home)
		if parent := filepath.Dir(home); parent != "/" {
			add(&p.Write, parent)
		}
		add(&p.Write, home)
	}
	if s.systemDB != "" {
		add(&p.Write, s.systemDB)
	}
	seen = map[string]bool{}
	for _, u := range users {
		if u.Home == "" || !filepath.IsAbs(u.Home) {
			continue
		}
		for _, rel := range chromiumDBs {
			add(&p.Watch, filepath.Join(u.Home, rel))
		}
		for _, rel := range firefoxRoots {
			root := filepath.Join(u.Home, rel)
			add(&p.Watch, root)
			for _, d := range profileDBDirs(root) {
				add(&p.Watch, d)
			}
		}
	}
	if s.systemDB != "" {
		add(&p.Watch, s.systemDB)
	}
	for _, src := range s.userSources {
		add(&p.Watch, src)
	}
	return p
}

// profileDBDirs lists the subdirectories of root that hold an NSS database.
func profileDBDirs(root string) []string {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(root, e.Name())
		if _, err := os.Stat(filepath.Join(dir, "cert9.db")); err == nil {
			out = append(out, dir)
		}
	}
	return out
}

var _ trust.PathDeclarer = (*Store)(nil)
