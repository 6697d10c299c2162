package platform

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
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
}

// noLoginShells are shells that mean "this account never logs in".
var noLoginShells = map[string]bool{
	"nologin": true, "false": true, "true": true, "sync": true, "shutdown": true, "halt": true,
}

// maxPasswd bounds what we read from passwd and group files.
const maxPasswd = 16 << 20

// LocalUsers returns the people on this machine according to the passwd
// file: root (unless excluded) and every account with MinUID ≤ uid ≤ MaxUID
// whose shell is a real login shell that exists and whose home is an
// existing directory other than /. Supplementary groups come from the group
// file. Sorted by name. Directory-service (LDAP, SSSD) accounts are not in
// the passwd file and are not returned.
func LocalUsers(o UsersOptions) ([]User, error) {
	if o.PasswdFile == "" {
		o.PasswdFile = "/etc/passwd"
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
	var out []User
	for _, u := range all {
		if seen[u.Name] || !isPerson(u, o) {
			continue
		}
		seen[u.Name] = true
		u.Groups = groups[u.Name]
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
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
