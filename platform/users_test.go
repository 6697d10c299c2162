package platform

import (
	"os"
	"path/filepath"
	"testing"

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
