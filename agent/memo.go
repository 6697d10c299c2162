package agent

import (
	"time"

	"github.com/certagent/certagent/internal/filestamp"
	"github.com/certagent/certagent/trust"
)

// passMemo keeps what a quiet pass would otherwise recompute from
// unchanged inputs: the ledger parsed from an unchanged file, and the
// evaluation of an unchanged answer while no certificate's validity
// boundary has passed. Guarded by Agent.passMu (only passes use it).
type passMemo struct {
	ledgerPath  string
	ledgerStamp filestamp.Stamp
	ledger      *Ledger

	evAnswer *answer
	evConfig *Config
	ev       *Evaluation
	// evFrom and evUntil bound the clock readings for which ev holds: no
	// certificate of the answer starts or stops being valid in between.
	evFrom, evUntil time.Time

	// parses keeps the last answer's certificates parsed, for the next
	// evaluation (a new answer usually repeats most of them).
	parses pemParses
}

// loadLedger returns the ledger at path, parsing the file only when its
// stamp moved. The caller gets its own copy.
func (m *passMemo) loadLedger(path string) (*Ledger, error) {
	st, statErr := filestamp.Of(path)
	if statErr == nil && m.ledger != nil && m.ledgerPath == path && m.ledgerStamp == st {
		return m.ledger.Clone(), nil
	}
	l, err := LoadLedger(path)
	if err != nil {
		m.ledger = nil
		return nil, err
	}
	m.ledger = nil
	if statErr == nil {
		// Stamped before the read: a rewrite in between changes the stamp
		// and the next pass reads again.
		m.ledgerPath, m.ledgerStamp, m.ledger = path, st, l.Clone()
	}
	return l, nil
}

// evaluate returns Evaluate(last.certs) as of now, reusing the previous
// evaluation of the same answer and config while now stays between the
// validity boundaries it was made within.
func (m *passMemo) evaluate(last *answer, cfg *Config, policy trust.Policy, now time.Time) (*Evaluation, error) {
	if m.ev != nil && m.evAnswer == last && m.evConfig == cfg && !now.Before(m.evFrom) && now.Before(m.evUntil) {
		return m.ev, nil
	}
	m.ev = nil
	ev, err := evaluate(last.certs, policy, cfg.Retired(), &m.parses)
	if err != nil {
		return nil, err
	}
	until := now.Add(time.Hour) // and at least hourly, whatever happens
	for _, c := range last.certs {
		tc, err := m.parses.parse(c.Certificate)
		if err != nil {
			continue
		}
		for _, b := range []time.Time{tc.X509.NotBefore, tc.X509.NotAfter} {
			if b.After(now) && b.Before(until) {
				until = b
			}
		}
	}
	m.evAnswer, m.evConfig, m.ev, m.evFrom, m.evUntil = last, cfg, ev, now, until
	return ev, nil
}
