package nss

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust"
)

func TestParseProfilesINI(t *testing.T) {
	in := "\ufeff[General]\nStartWithLastProfile=1\n\n" +
		"[Profile0]\nName=default\nIsRelative=1\nPath=abcd.default\n\n" +
		"; comment\n[Profile1]\nName=abs\nIsRelative=0\nPath=/data/ff/work\n\n" +
		"[Profile2]\nName=escape\nPath=../../etc\n\n" +
		"[Profile3]\nName=relabs\nIsRelative=0\nPath=relative/but/marked/absolute\n\n" +
		"[Install4F96D1932A9F858E]\nDefault=xyz.default-release\nLocked=1\n"
	got := parseProfilesINI(strings.NewReader(in), "/home/a/.mozilla/firefox")
	assert.Equal(t, []string{
		"/home/a/.mozilla/firefox/abcd.default",
		"/data/ff/work",
		"/home/a/.mozilla/firefox/xyz.default-release",
	}, got)
}

func TestParseList(t *testing.T) {
	out := `
Certificate Nickname                                         Trust Attributes
                                                             SSL,S/MIME,JAR/XPI

certagent 0123                                               C,,  
Cloudflare for Teams ECC Certificate Authority - Cloudflare, Inc. CT,C,C
my client cert                                               u,u,u
intermediate                                                 ,,   
`
	got := parseList([]byte(out))
	assert.Equal(t, []listed{
		{"certagent 0123", "C,,"},
		{"Cloudflare for Teams ECC Certificate Authority - Cloudflare, Inc.", "CT,C,C"},
		{"my client cert", "u,u,u"},
		{"intermediate", ",,"},
	}, got)
	assert.True(t, trustedForTLS("CT,C,C"))
	assert.True(t, trustedForTLS("C,,"))
	assert.False(t, trustedForTLS(",C,"))
	assert.False(t, trustedForTLS("u,u,u"))
}

// touch creates path's directories and an empty file: discovery only looks
// at names.
func touch(t *testing.T, path string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, nil, 0o600))
}

func TestDiscover(t *testing.T) {
	root := t.TempDir()
	home := func(n string) string { return filepath.Join(root, "home", n) }
	users := []platform.User{
		{Name: "alice", UID: 1000, Home: home("alice")},
		{Name: "bob", UID: 1001, Home: home("bob")},
		{Name: "carol", UID: 1002, Home: home("carol")},
		{Name: "dave", UID: 1003, Home: home("dave")},
	}
	for _, u := range users {
		require.NoError(t, os.MkdirAll(u.Home, 0o755))
	}
	a := home("alice")
	touch(t, filepath.Join(a, ".pki/nssdb/cert9.db"))
	touch(t, filepath.Join(a, ".local/share/pki/nssdb/cert9.db"))
	touch(t, filepath.Join(a, "snap/chromium/current/.pki/nssdb/cert9.db"))
	// deb Firefox: a relative profile and one that was never started.
	touch(t, filepath.Join(a, ".mozilla/firefox/p1.default/cert9.db"))
	require.NoError(t, os.MkdirAll(filepath.Join(a, ".mozilla/firefox/fresh"), 0o755))
	abs := filepath.Join(root, "elsewhere/profile")
	touch(t, filepath.Join(abs, "cert9.db"))
	touch(t, filepath.Join(a, ".mozilla/firefox/profiles.ini"))
	require.NoError(t, os.WriteFile(filepath.Join(a, ".mozilla/firefox/profiles.ini"), []byte(
		"[Profile0]\nPath=p1.default\n[Profile1]\nPath=fresh\n[Profile2]\nIsRelative=0\nPath="+abs+"\n"), 0o644))
	// snap, flatpak and XDG Firefox.
	for _, r := range []string{"snap/firefox/common/.mozilla/firefox", ".var/app/org.mozilla.firefox/.mozilla/firefox", ".config/mozilla/firefox"} {
		touch(t, filepath.Join(a, r, "x.default/cert9.db"))
		require.NoError(t, os.WriteFile(filepath.Join(a, r, "profiles.ini"), []byte("[Install1]\nDefault=x.default\n"), 0o644))
	}
	// bob: nothing. carol: Chromium, no database. dave: a legacy database,
	// and a profiles.ini that is a link to a root file.
	require.NoError(t, os.MkdirAll(filepath.Join(home("carol"), ".config/chromium/Default"), 0o755))
	touch(t, filepath.Join(home("dave"), ".mozilla/firefox/old/cert8.db"))
	require.NoError(t, os.WriteFile(filepath.Join(root, "secret.ini"), []byte("[Profile0]\nPath=old\n"), 0o600))
	require.NoError(t, os.Symlink(filepath.Join(root, "secret.ini"), filepath.Join(home("dave"), ".mozilla/firefox/profiles.ini")))
	sys := filepath.Join(root, "etc/pki/nssdb")
	touch(t, filepath.Join(sys, "cert9.db"))

	s := New(Options{Users: func() ([]platform.User, error) { return users, nil }, SystemDB: sys})
	dbs, skips, err := s.discover()
	require.NoError(t, err)
	var got []string
	for _, d := range dbs {
		got = append(got, d.target.User+" "+strings.TrimPrefix(d.dir, root))
		if d.target.User == "" {
			assert.Nil(t, d.user, "the system database runs as root")
		} else {
			assert.Equal(t, d.target.User, d.user.Name)
		}
		assert.Equal(t, d.target.User == "carol", d.create, "%s", d.target)
	}
	sort.Strings(got)
	assert.Equal(t, []string{
		" /etc/pki/nssdb",
		"alice /elsewhere/profile",
		"alice /home/alice/.config/mozilla/firefox/x.default",
		"alice /home/alice/.local/share/pki/nssdb",
		"alice /home/alice/.mozilla/firefox/p1.default",
		"alice /home/alice/.pki/nssdb",
		"alice /home/alice/.var/app/org.mozilla.firefox/.mozilla/firefox/x.default",
		"alice /home/alice/snap/chromium/current/.pki/nssdb",
		"alice /home/alice/snap/firefox/common/.mozilla/firefox/x.default",
		"carol /home/carol/.pki/nssdb",
	}, got)
	reasons := map[string]string{}
	for _, sk := range skips {
		reasons[sk.Target.User+" "+strings.TrimPrefix(sk.Target.Path, root)] = sk.Reason
	}
	assert.Equal(t, "no NSS database", reasons["bob "])
	assert.Equal(t, "no NSS database", reasons["dave "])
	assert.Contains(t, reasons["alice /home/alice/.mozilla/firefox/fresh"], "never started")
	assert.Len(t, reasons, 3, "the linked profiles.ini is not followed: %v", reasons)
}

func TestCheckNamesThePackage(t *testing.T) {
	dir := t.TempDir()
	for id, pkg := range map[string]string{"debian": "libnss3-tools", "fedora": "nss-tools", "arch": "nss", "opensuse-leap\nID_LIKE=\"suse opensuse\"": "mozilla-nss-tools"} {
		p := filepath.Join(dir, "os-release")
		require.NoError(t, os.WriteFile(p, []byte("ID="+id+"\n"), 0o644))
		err := New(Options{Certutil: filepath.Join(dir, "certutil"), OSRelease: p}).Check(t.Context())
		require.ErrorIs(t, err, trust.ErrUnavailable)
		assert.Contains(t, err.Error(), "install "+pkg)
	}
}
