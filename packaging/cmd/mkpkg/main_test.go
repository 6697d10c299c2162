package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRunRejects(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  string
		want string
	}{
		{"no describe", []string{"linux"}, "", "need -describe"},
		{"no target", []string{"-describe", "v1.0.0"}, "", "need -describe"},
		{"bad describe", []string{"-describe", "nonsense!", "linux"}, "", "not git describe output"},
		{"unknown target", []string{"-describe", "v1.0.0", "-bindir", t.TempDir(), "solaris"}, "", "unknown target"},
		{"bad epoch", []string{"-describe", "v1.0.0", "linux"}, "yesterday", "SOURCE_DATE_EPOCH"},
		{"missing binary", []string{"-describe", "v1.0.0", "-bindir", t.TempDir(), "-out", t.TempDir(), "linux"}, "", "binary"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("SOURCE_DATE_EPOCH", tt.env)
			err := run(tt.args)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestSourceDateEpoch(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	got, err := sourceDateEpoch()
	if err != nil || !got.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("got %v, %v, want %v", got, err, time.Unix(1700000000, 0))
	}
	t.Setenv("SOURCE_DATE_EPOCH", "")
	if got, _ := sourceDateEpoch(); got.Unix() != 0 {
		t.Errorf("unset: got %v, want the Unix epoch", got)
	}
}

func TestSplitComma(t *testing.T) {
	for in, want := range map[string][]string{
		"amd64,arm64": {"amd64", "arm64"}, "amd64": {"amd64"}, "": nil, ",amd64,,": {"amd64"},
	} {
		if got := splitComma(in); !slices.Equal(got, want) {
			t.Errorf("splitComma(%q): got %q, want %q", in, got, want)
		}
	}
}
