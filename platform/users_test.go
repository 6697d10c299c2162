package platform

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLocalUsers(t *testing.T) {
	dir := t.TempDir()
	home := func(name string) string {
		p := filepath.Join(dir, "home", name)
		require.NoError(t, os.MkdirAll(p, 0o755))
		return p
	}
	shell := filepath.Join(dir, "bash")
	require.NoError(t, os.WriteFile(shell, []byte("#!/bin/sh\n"), 0o755))
	passwd := "root:x:0:0:root:" + home("root") + ":" + shell + "\n" +
		"daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n" +
		"# a comment\n\n" +
		"alice:x:1000:1000:Alice:" + home("alice") + ":" + shell + "\n" +
		"bob:x:1001:1001::" + home("bob") + ":/usr/sbin/nologin\n" + // no login
		"carol:x:1002:1002::" + filepath.Join(dir, "missing") + ":" + shell + "\n" + // no home
		"dave:x:1003:1003::/:" + shell + "\n" + // home is /
		"erin:x:1004:1004::" + home("erin") + ":" + filepath.Join(dir, "no-such-shell") + "\n" +
		"nobody:x:65534:65534::" + home("nobody") + ":" + shell + "\n" +
		"svc:x:999:999::" + home("svc") + ":" + shell + "\n" + // system account
		"toor:x:0:0::" + home("toor") + ":" + shell + "\n" + // a second uid 0 is not root
		"+nisuser::::::\n" +
		"alice:x:1000:1000:dup:" + home("alice") + ":" + shell + "\n"
	group := "sudo:x:27:alice\naudio:x:29:alice,bob\nbroken\n"
	pf, gf := filepath.Join(dir, "passwd"), filepath.Join(dir, "group")
	require.NoError(t, os.WriteFile(pf, []byte(passwd), 0o644))
	require.NoError(t, os.WriteFile(gf, []byte(group), 0o644))

	users, err := LocalUsers(UsersOptions{PasswdFile: pf, GroupFile: gf})
	require.NoError(t, err)
	var names []string
	for _, u := range users {
		names = append(names, u.Name)
	}
	assert.Equal(t, []string{"alice", "root"}, names)
	assert.Equal(t, []int{27, 29}, users[0].Groups)
	assert.Equal(t, 1000, users[0].UID)
	assert.Equal(t, home("alice"), users[0].Home)

	users, err = LocalUsers(UsersOptions{PasswdFile: pf, GroupFile: gf, ExcludeRoot: true, MinUID: 999})
	require.NoError(t, err)
	names = names[:0]
	for _, u := range users {
		names = append(names, u.Name)
	}
	assert.Equal(t, []string{"alice", "svc"}, names)
}

func TestParsePasswdHostile(t *testing.T) {
	for _, in := range []string{
		"alice:x:1000:1000:/home/alice:/bin/sh\n", // 6 fields
		"alice:x:-1:1000::/home/alice:/bin/sh\n",
		"alice:x:99999999999:1000::/home/alice:/bin/sh\n",
		":x:1:1::/:/bin/sh\n",
	} {
		_, err := ParsePasswd([]byte(in))
		assert.Error(t, err, "%q", in)
	}
}

func FuzzParsePasswd(f *testing.F) {
	f.Add([]byte("root:x:0:0:root:/root:/bin/bash\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		us, err := ParsePasswd(b)
		if err != nil {
			return
		}
		for _, u := range us {
			if u.Name == "" || u.UID < 0 || u.GID < 0 {
				t.Fatalf("bad user %+v", u)
			}
		}
	})
}

// TestDirectoryUsers finds people NSS knows but the passwd file does not,
// from the homes and sessions on the machine, with one getent run for every
// candidate and no enumeration of the directory.
func TestDirectoryUsers(t *testing.T) {
	dir := t.TempDir()
	shell := filepath.Join(dir, "bash")
	require.NoError(t, os.WriteFile(shell, []byte("#!/bin/sh\n"), 0o755))
	homes, run := filepath.Join(dir, "home"), filepath.Join(dir, "run-user")
	for _, d := range []string{"alice", "dana", "erin", "lost+found", "-rf", "ghost", ".cache"} {
		require.NoError(t, os.MkdirAll(filepath.Join(homes, d), 0o755))
	}
	// frank has a session but his home is elsewhere; 1000 is alice's.
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "srv/frank"), 0o755))
	for _, d := range []string{"1000", "7001", "0", "notauid"} {
		require.NoError(t, os.MkdirAll(filepath.Join(run, d), 0o755))
	}
	pf := filepath.Join(dir, "passwd")
	require.NoError(t, os.WriteFile(pf, []byte("alice:x:1000:1000::"+filepath.Join(homes, "alice")+":"+shell+"\n"), 0o644))
	// The stand-in directory: answers what it knows, like getent (exit 2
	// when a key is unknown), and logs what it was asked.
	log := filepath.Join(dir, "asked")
	dirPasswd := "dana:*:5001:5001:Dana:" + filepath.Join(homes, "dana") + ":" + shell + "\n" +
		"erin:*:5002:5002::" + filepath.Join(homes, "erin") + ":/usr/sbin/nologin\n" +
		"frank:*:7001:7001::" + filepath.Join(dir, "srv/frank") + ":" + shell + "\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "dir-passwd"), []byte(dirPasswd), 0o644))
	getent := filepath.Join(dir, "getent")
	script := "#!/bin/sh\necho \"$@\" >> " + log + "\n" +
		"db=$1; shift; [ \"$1\" = -- ] && shift\n" +
		"if [ \"$db\" = initgroups ]; then [ \"$1\" = dana ] && echo 'dana 5001 27 44'; exit 0; fi\n" +
		"rc=0; for k in \"$@\"; do awk -F: -v k=\"$k\" '$1==k || $3==k' " + filepath.Join(dir, "dir-passwd") + " | grep . || rc=2; done; exit $rc\n"
	require.NoError(t, os.WriteFile(getent, []byte(script), 0o755))

	users, err := LocalUsers(UsersOptions{PasswdFile: pf, GroupFile: filepath.Join(dir, "none"), Getent: getent, HomeRoots: []string{homes}, RunUserDir: run})
	require.NoError(t, err)
	var got []string
	for _, u := range users {
		got = append(got, u.Name)
	}
	assert.Equal(t, []string{"alice", "dana", "frank"}, got, "erin has no login shell; ghost is unknown")
	assert.Equal(t, []int{27, 44}, users[1].Groups)
	assert.Equal(t, 5001, users[1].UID)
	asked, err := os.ReadFile(log)
	require.NoError(t, err)
	assert.Equal(t, "passwd -- dana erin ghost 7001\ninitgroups -- dana\ninitgroups -- erin\ninitgroups -- frank\n", string(asked),
		"one passwd lookup of the candidates only: no passwd-file names, no hidden or option-like names, no enumeration")

	// A passwd file given without Getent stays hermetic; a getent that
	// fails finds nobody more.
	users, err = LocalUsers(UsersOptions{PasswdFile: pf, GroupFile: filepath.Join(dir, "none"), HomeRoots: []string{homes}, RunUserDir: run})
	require.NoError(t, err)
	assert.Len(t, users, 1)
	users, err = LocalUsers(UsersOptions{PasswdFile: pf, GroupFile: filepath.Join(dir, "none"), Getent: filepath.Join(dir, "no-getent"), HomeRoots: []string{homes}, RunUserDir: run})
	require.NoError(t, err)
	assert.Len(t, users, 1)
}

// TestDirectoryUsersHostileAnswers: whatever getent prints, nobody beyond
// what it properly describes is added and the passwd file's people stay.
func TestDirectoryUsersHostileAnswers(t *testing.T) {
	dir := t.TempDir()
	shell := filepath.Join(dir, "bash")
	require.NoError(t, os.WriteFile(shell, []byte("#!/bin/sh\n"), 0o755))
	homes := filepath.Join(dir, "home")
	for _, d := range []string{"alice", "mallory"} {
		require.NoError(t, os.MkdirAll(filepath.Join(homes, d), 0o755))
	}
	pf := filepath.Join(dir, "passwd")
	require.NoError(t, os.WriteFile(pf, []byte("alice:x:1000:1000::"+filepath.Join(homes, "alice")+":"+shell+"\n"), 0o644))
	for name, answer := range map[string]string{
		"malformed":   "mallory:x:notanumber:1::/home:/bin/sh\n",
		"short":       "mallory:x:1001\n",
		"root again":  "mallory:x:0:0::" + filepath.Join(homes, "mallory") + ":" + shell + "\n",
		"home is /":   "mallory:x:1001:1001::/:" + shell + "\n",
		"binary junk": "\x00\x01\xff:::\n",
		"empty":       "",
	} {
		t.Run(name, func(t *testing.T) {
			getent := filepath.Join(t.TempDir(), "getent")
			require.NoError(t, os.WriteFile(filepath.Join(filepath.Dir(getent), "answer"), []byte(answer), 0o644))
			require.NoError(t, os.WriteFile(getent, []byte("#!/bin/sh\n[ \"$1\" = passwd ] && cat "+filepath.Join(filepath.Dir(getent), "answer")+"\nexit 0\n"), 0o755))
			users, err := LocalUsers(UsersOptions{PasswdFile: pf, GroupFile: filepath.Join(dir, "none"), Getent: getent, HomeRoots: []string{homes}, RunUserDir: filepath.Join(dir, "none")})
			require.NoError(t, err)
			var names []string
			for _, u := range users {
				names = append(names, u.Name)
			}
			assert.Equal(t, []string{"alice"}, names)
		})
	}
}

// TestUserListerAsksTheDirectoryOnlyOnChange: a quiet pass starts no
// getent; a new home, or the TTL, asks again.
func TestUserListerAsksTheDirectoryOnlyOnChange(t *testing.T) {
	dir := t.TempDir()
	shell := filepath.Join(dir, "bash")
	require.NoError(t, os.WriteFile(shell, []byte("#!/bin/sh\n"), 0o755))
	homes := filepath.Join(dir, "home")
	require.NoError(t, os.MkdirAll(filepath.Join(homes, "dana"), 0o755))
	pf := filepath.Join(dir, "passwd")
	require.NoError(t, os.WriteFile(pf, nil, 0o644))
	log := filepath.Join(dir, "asked")
	getent := filepath.Join(dir, "getent")
	require.NoError(t, os.WriteFile(getent, []byte("#!/bin/sh\n[ \"$1\" = passwd ] || exit 0\necho \"$@\" >> "+log+"\n"+
		"echo dana:x:5001:5001::"+filepath.Join(homes, "dana")+":"+shell+"\n"), 0o755))
	l := NewUserLister(UsersOptions{PasswdFile: pf, GroupFile: filepath.Join(dir, "none"), Getent: getent, HomeRoots: []string{homes}, RunUserDir: filepath.Join(dir, "none")})
	now := time.Now()
	l.now = func() time.Time { return now }
	asked := func() int {
		b, _ := os.ReadFile(log)
		return strings.Count(string(b), "\n")
	}
	for range 3 {
		users, err := l.Users()
		require.NoError(t, err)
		require.Len(t, users, 1)
	}
	assert.Equal(t, 1, asked(), "quiet passes reuse the answer")
	require.NoError(t, os.MkdirAll(filepath.Join(homes, "erin"), 0o755))
	_, err := l.Users()
	require.NoError(t, err)
	assert.Equal(t, 2, asked(), "a new home asks again")
	now = now.Add(DirectoryTTL)
	_, err = l.Users()
	require.NoError(t, err)
	assert.Equal(t, 3, asked(), "an old answer is refreshed")
}
