package platform

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseOSRelease(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		id     string
		like   []string
		pretty string
	}{
		{"debian", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n", "debian", nil, "Debian GNU/Linux 12 (bookworm)"},
		{"ubuntu", "ID=ubuntu\nID_LIKE=debian\nPRETTY_NAME=\"Ubuntu 24.04 LTS\"\n", "ubuntu", []string{"debian"}, "Ubuntu 24.04 LTS"},
		{"rocky", "ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n", "rocky", []string{"rhel", "centos", "fedora"}, ""},
		{"opensuse", "ID=\"opensuse-leap\"\nID_LIKE=\"suse opensuse\"\n# comment\n\n", "opensuse-leap", []string{"suse", "opensuse"}, ""},
		{"single quotes and escapes", "ID='alpine'\nPRETTY_NAME=\"say \\\"hi\\\" \\$HOME\"\n", "alpine", nil, "say \"hi\" $HOME"},
		{"upper-case id", "ID=Arch\n", "arch", nil, ""},
		{"empty", "", "", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := ParseOSRelease([]byte(tt.in))
			require.NoError(t, err)
			assert.Equal(t, tt.id, o.ID)
			assert.Equal(t, tt.like, o.IDLike)
			assert.Equal(t, tt.pretty, o.PrettyName)
		})
	}
}

func TestParseOSReleaseHostile(t *testing.T) {
	for _, in := range []string{
		"ID=\"debian\n",              // unterminated
		"just words\n",               // not an assignment
		"=debian\n",                  // no key
		"ID=deb ian\n",               // unquoted space
		"ID=$(rm -rf /)\n",           // shell
		"ID=\"debian\" trailing\n",   // text after the quote
		string(make([]byte, 70<<10)), // too big
	} {
		_, err := ParseOSRelease([]byte(in))
		assert.Error(t, err, "%q", in)
	}
}

func TestReadOSRelease(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "os-release")
	require.NoError(t, os.WriteFile(p, []byte("ID=fedora\n"), 0o644))
	o, err := ReadOSRelease(p)
	require.NoError(t, err)
	assert.Equal(t, "fedora", o.ID)
	assert.Equal(t, []string{"fedora"}, o.IDs())
	_, err = ReadOSRelease(filepath.Join(dir, "missing"))
	assert.ErrorIs(t, err, ErrNoOSRelease)
}

func FuzzParseOSRelease(f *testing.F) {
	f.Add([]byte("ID=debian\nID_LIKE=\"a b\"\n"))
	f.Add([]byte("PRETTY_NAME='x'\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := ParseOSRelease(b)
		if err != nil {
			return
		}
		for _, id := range o.IDs() {
			if id == "" {
				t.Fatalf("empty id in %q", o.IDs())
			}
		}
	})
}
