// Package agent is certagent's reconcile engine: it loads the config, polls
// the control plane for the account's certificates (the source), computes
// what each trust store must change (the plan, a pure function of the
// desired set, the ledger and what every store holds), applies the plan one
// batch per store, and records what it installed in the ledger so that it
// only ever removes its own roots.
//
// The rules it enforces are DESIGN.md §6: desired = available and
// policy-accepted; fail static (a failed, unauthenticated or malformed answer
// removes nothing); touch only our own (ledger) plus exact retired
// fingerprints; converge idempotently (a pass with nothing to change writes
// no file and calls no store's Apply); crash-safe (the ledger records intent
// before the stores change and the outcome after, so the next pass completes
// an interrupted one without duplicates); per-target truth.
package agent
