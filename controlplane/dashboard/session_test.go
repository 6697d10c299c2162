package dashboard

import (
	"testing"
	"time"

	"github.com/certagent/certagent/controlplane"
)

// TestSessionTableBounded: past the cap a login ends the session idle the
// longest, never a recently used one.
func TestSessionTableBounded(t *testing.T) {
	const maxSessions = 50
	now := time.Unix(1_800_000_000, 0)
	s := newSessions(time.Hour, 12*time.Hour, func() time.Time { return now })
	s.max = maxSessions
	p := controlplane.Principal{TokenID: "0123456789abcdef", AccountID: "a", Scope: "write"}
	first, _, err := s.create(p)
	if err != nil {
		t.Fatal(err)
	}
	var recent string
	for i := 1; i < maxSessions; i++ {
		now = now.Add(time.Millisecond)
		c, _, err := s.create(p)
		if err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			recent = c
		}
	}
	if _, ok := s.get(recent); !ok { // used now: no longer the idlest after first
		t.Fatal("a live session is missing before the cap")
	}
	if got := s.len(); got != maxSessions {
		t.Fatalf("sessions: got %d, want %d", got, maxSessions)
	}
	now = now.Add(time.Millisecond)
	if _, _, err := s.create(p); err != nil {
		t.Fatal(err)
	}
	if got := s.len(); got != maxSessions {
		t.Fatalf("sessions after one more login: got %d, want %d", got, maxSessions)
	}
	if _, ok := s.get(first); ok {
		t.Error("the session idle the longest survived the cap")
	}
	if _, ok := s.get(recent); !ok {
		t.Error("a recently used session was evicted")
	}
}

// TestSessionExpiry: idle and maximum age, on the session table's clock.
func TestSessionExpiry(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := newSessions(30*time.Minute, 2*time.Hour, func() time.Time { return now })
	c, _, err := s.create(controlplane.Principal{TokenID: "0123456789abcdef", AccountID: "a", Scope: "read"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		advance time.Duration
		want    bool
	}{
		{29 * time.Minute, true},
		{29 * time.Minute, true},
		{29 * time.Minute, true},
		{29 * time.Minute, true},
		{5 * time.Minute, false}, // 2 h old
	}
	for i, tt := range tests {
		now = now.Add(tt.advance)
		if _, ok := s.get(c); ok != tt.want {
			t.Fatalf("step %d (+%s): live got %v, want %v", i, tt.advance, ok, tt.want)
		}
	}
	if _, ok := s.get(""); ok {
		t.Error("an empty cookie found a session")
	}
	if _, ok := s.get("nope"); ok {
		t.Error("an unknown cookie found a session")
	}
}
