package nstest

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseMountinfo(t *testing.T) {
	in := `22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 0:30 / / rw,relatime shared:1 - overlay overlay rw,lowerdir=/a
90 27 0:40 / /etc/ssl/certs rw,relatime - overlay nstest-overlay rw,lowerdir=/etc/ssl/certs
91 27 0:41 /f0 /etc/ca-certificates.conf rw - tmpfs nstest-scratch rw
92 27 0:42 / /with\040space rw master:3 - tmpfs nstest-tmpfs rw
`
	ms, err := parseMountinfo(strings.NewReader(in))
	require.NoError(t, err)
	require.Len(t, ms, 5)
	tests := []struct {
		path    string
		private bool
	}{
		{"/", false}, // shared, and not ours
		{"/proc", false},
		{"/etc/ssl/certs", true},
		{"/etc/ca-certificates.conf", true},
		{"/with space", true},
		{"/not/mounted", false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			err := checkPrivate(ms, tt.path)
			assert.Equal(t, tt.private, err == nil, "checkPrivate(%s): got %v", tt.path, err)
		})
	}
	_, err = parseMountinfo(strings.NewReader("garbage line\n"))
	assert.Error(t, err)
}
