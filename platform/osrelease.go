package platform

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// OSReleasePaths are where os-release(5) lives, in lookup order.
var OSReleasePaths = []string{"/etc/os-release", "/usr/lib/os-release"}

// OSRelease is what os-release(5) says about the distribution.
type OSRelease struct {
	// ID is the lower-case distribution id ("debian", "fedora", "opensuse-leap").
	ID string
	// IDLike are the ids of related distributions, closest first.
	IDLike []string
	// Name, PrettyName, VersionID and VariantID are informational.
	Name, PrettyName, VersionID, VariantID string
}

// IDs returns ID followed by IDLike: the order in which to look a
// distribution up in a table.
func (o OSRelease) IDs() []string {
	out := make([]string, 0, 1+len(o.IDLike))
	if o.ID != "" {
		out = append(out, o.ID)
	}
	return append(out, o.IDLike...)
}

func (o OSRelease) String() string {
	s := "ID=" + o.ID
	if len(o.IDLike) > 0 {
		s += " ID_LIKE=" + strings.Join(o.IDLike, " ")
	}
	return s
}

// ErrNoOSRelease is returned when no os-release file exists.
var ErrNoOSRelease = errors.New("platform: no os-release file")

// maxOSRelease bounds what we read: the real file is under 1 KiB.
const maxOSRelease = 64 << 10

// ReadOSRelease reads path, or, when path is "", the first of
// OSReleasePaths that exists.
func ReadOSRelease(path string) (OSRelease, error) {
	paths := OSReleasePaths
	if path != "" {
		paths = []string{path}
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return OSRelease{}, fmt.Errorf("platform: read %s: %w", p, err)
		}
		o, err := ParseOSRelease(b)
		if err != nil {
			return OSRelease{}, fmt.Errorf("platform: %s: %w", p, err)
		}
		return o, nil
	}
	return OSRelease{}, fmt.Errorf("%w (looked in %s)", ErrNoOSRelease, strings.Join(paths, ", "))
}

// ParseOSRelease parses os-release(5) content: KEY=VALUE lines, values
// optionally in single or double quotes with shell-style backslash escapes,
// comments and blank lines ignored. Lines that are not assignments are
// errors, as is an unterminated quote.
func ParseOSRelease(data []byte) (OSRelease, error) {
	if len(data) > maxOSRelease {
		return OSRelease{}, fmt.Errorf("os-release is %d bytes, more than %d", len(data), maxOSRelease)
	}
	var o OSRelease
	sc := bufio.NewScanner(bytes.NewReader(data))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, raw, ok := strings.Cut(line, "=")
		if !ok || key == "" || strings.ContainsAny(key, " \t\"'") {
			return OSRelease{}, fmt.Errorf("line %d: not KEY=VALUE: %q", n, line)
		}
		val, err := unquoteOSRelease(raw)
		if err != nil {
			return OSRelease{}, fmt.Errorf("line %d: %s: %w", n, key, err)
		}
		switch key {
		case "ID":
			o.ID = strings.ToLower(val)
		case "ID_LIKE":
			o.IDLike = strings.Fields(strings.ToLower(val))
		case "NAME":
			o.Name = val
		case "PRETTY_NAME":
			o.PrettyName = val
		case "VERSION_ID":
			o.VersionID = val
		case "VARIANT_ID":
			o.VariantID = val
		}
	}
	if err := sc.Err(); err != nil {
		return OSRelease{}, err
	}
	return o, nil
}

func unquoteOSRelease(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	q := s[0]
	if q != '"' && q != '\'' {
		if strings.ContainsAny(s, "\"'`$\\ ") {
			return "", fmt.Errorf("unquoted value %q has special characters", s)
		}
		return s, nil
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == q:
			if rest := strings.TrimSpace(s[i+1:]); rest != "" {
				return "", fmt.Errorf("text after the closing quote: %q", rest)
			}
			return b.String(), nil
		case c == '\\' && q == '"' && i+1 < len(s):
			i++
			b.WriteByte(s[i])
		default:
			b.WriteByte(c)
		}
	}
	return "", fmt.Errorf("unterminated quote in %q", s)
}
