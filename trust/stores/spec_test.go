package stores

import (
	"runtime"
	"testing"
)

func TestParseSpec(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the table's paths are Unix paths")
	}
	tests := []struct {
		name     string
		want     Spec
		wantName string
		wantErr  bool
	}{
		{name: "system", want: Spec{Kind: "system"}, wantName: "system"},
		{name: "nss", want: Spec{Kind: "nss"}, wantName: "nss"},
		{name: "firefox-policy", want: Spec{Kind: "firefox-policy"}, wantName: "firefox-policy"},
		{name: "java", want: Spec{Kind: "java"}, wantName: "java"},
		{name: "dir:/srv/ca/", want: Spec{Kind: "dir", Path: "/srv/ca"}, wantName: "dir:/srv/ca"},
		{name: "dir:/srv//x/../ca", want: Spec{Kind: "dir", Path: "/srv/ca"}, wantName: "dir:/srv/ca"},
		{name: "bundle:/etc/ssl/ours.pem", want: Spec{Kind: "bundle", Path: "/etc/ssl/ours.pem"}, wantName: "bundle:/etc/ssl/ours.pem"},
		{name: "system:/etc", wantErr: true},
		{name: "nss:", wantErr: true},
		{name: "dir", wantErr: true},
		{name: "dir:", wantErr: true},
		{name: "dir:relative", wantErr: true},
		{name: "bundle:./b.pem", wantErr: true},
		{name: "dir:/", wantErr: true},
		{name: "dir:/..", wantErr: true},
		{name: "keychain", wantErr: true},
		{name: "", wantErr: true},
		{name: "DIR:/srv/ca", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSpec(tt.name)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseSpec(%q) = %+v, want an error", tt.name, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSpec(%q): %v", tt.name, err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if got.String() != tt.wantName {
				t.Errorf("String: got %q, want %q", got.String(), tt.wantName)
			}
			again, err := ParseSpec(got.String())
			if err != nil || again != got {
				t.Errorf("ParseSpec(String()): got %+v, %v, want %+v", again, err, got)
			}
		})
	}
}
