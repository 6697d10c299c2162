package controlplane_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/controlplane"
	"github.com/certagent/certagent/controlplane/storage"
)

func (f *fixture) cp(rest string) string {
	return controlplane.APIPrefix + "/accounts/" + f.account + "/certplane" + rest
}

func (f *fixture) deviceToken(tb testing.TB) string {
	tb.Helper()
	tok, err := f.svc.CreateToken(context.Background(), f.account, storage.ScopeDevice)
	require.NoError(tb, err)
	return tok
}

func (f *fixture) fingerprint(tb testing.TB, certID string) string {
	tb.Helper()
	r := f.do(tb, http.MethodGet, f.gw("/certificates/"+certID), f.read, "")
	require.Equal(tb, http.StatusOK, r.status)
	var c api.Certificate
	require.NoError(tb, json.Unmarshal(r.env.Result, &c))
	return c.Fingerprint
}

func checkInBody(roots ...api.RootState) string {
	b, _ := json.Marshal(api.CheckIn{Hostname: "laptop", OS: "linux", OSVersion: "debian 13", AgentVersion: "1.2.3",
		SyncedAt: api.Time{Time: time.Unix(1700000000, 0)}, Roots: roots})
	return string(b)
}

func trustedIn(fp string, stores ...string) api.RootState {
	r := api.RootState{Fingerprint: fp}
	for _, s := range stores {
		r.Stores = append(r.Stores, api.StoreState{Store: s, State: api.StateTrusted})
	}
	return r
}

func (f *fixture) checkIn(tb testing.TB, token, id, secret, body string) response {
	tb.Helper()
	hdr := []string{}
	if secret != "" {
		hdr = []string{api.HeaderDeviceSecret, secret}
	}
	return f.do(tb, http.MethodPut, f.cp("/devices/"+id), token, body, hdr...)
}

func (f *fixture) register(tb testing.TB, token, id, body string) string {
	tb.Helper()
	r := f.checkIn(tb, token, id, "", body)
	require.Equal(tb, http.StatusOK, r.status, "%s", r.body)
	var res api.CheckInResult
	require.NoError(tb, json.Unmarshal(r.env.Result, &res))
	require.Len(tb, res.DeviceSecret, 43)
	assert.Equal(tb, id, res.DeviceID)
	return res.DeviceSecret
}

func (f *fixture) device(tb testing.TB, id string) (api.Device, int) {
	tb.Helper()
	r := f.do(tb, http.MethodGet, f.cp("/devices/"+id), f.read, "")
	var d api.Device
	if r.status == http.StatusOK {
		require.NoError(tb, json.Unmarshal(r.env.Result, &d))
	}
	return d, r.status
}

func errCode(r response) int {
	if len(r.env.Errors) == 0 {
		return 0
	}
	return r.env.Errors[0].Code
}

func TestCheckInSecretAndScopes(t *testing.T) {
	f := newFixture(t)
	dev := f.deviceToken(t)
	fp := f.fingerprint(t, f.first)
	id := uuid.NewString()
	unknown := strings.Repeat("AB:", 31) + "AB"
	secret := f.register(t, dev, id, checkInBody(trustedIn(fp, "system", "nss"), trustedIn(unknown, "system")))

	d, status := f.device(t, id)
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, "laptop", d.Hostname)
	assert.False(t, d.Stale)
	require.Len(t, d.Roots, 1, "an unknown fingerprint is ignored, not stored")
	assert.Equal(t, fp, d.Roots[0].Fingerprint)
	seen := d.LastSeen

	f.clock.Advance(time.Minute)
	other := checkInBody()
	for _, tc := range []struct {
		name, secret string
	}{{"no secret", ""}, {"wrong secret", strings.Repeat("A", 43)}, {"short secret", "abc"}, {"another device's secret", f.register(t, dev, uuid.NewString(), other)}} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.checkIn(t, dev, id, tc.secret, other)
			assert.Equal(t, http.StatusForbidden, r.status)
			assert.Equal(t, controlplane.CodeDeviceSecret, errCode(r))
			assert.Equal(t, "null", string(r.env.Result))
			d, _ := f.device(t, id)
			assert.Equal(t, seen, d.LastSeen, "a refused check-in changes nothing")
			assert.Len(t, d.Roots, 1)
		})
	}
	r := f.checkIn(t, dev, id, secret, other)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	var res api.CheckInResult
	require.NoError(t, json.Unmarshal(r.env.Result, &res))
	assert.Empty(t, res.DeviceSecret, "the secret is given once")
	d, _ = f.device(t, id)
	assert.Empty(t, d.Roots)
	assert.True(t, d.LastSeen.After(seen.Time))

	// Scopes: a read token cannot check in; a device token can only list
	// certificates and check in; a write token can do both.
	r = f.checkIn(t, f.read, uuid.NewString(), "", other)
	assert.Equal(t, http.StatusForbidden, r.status)
	assert.Equal(t, controlplane.CodeScope, errCode(r))
	assert.Contains(t, r.env.Errors[0].Message, "device token")
	f.register(t, f.write, uuid.NewString(), other)
	assert.Equal(t, http.StatusOK, f.do(t, http.MethodGet, f.gw("/certificates"), dev, "").status)
	for _, rq := range []struct{ method, path, body string }{
		{http.MethodGet, f.gw("/certificates/" + f.first), ""},
		{http.MethodGet, f.gw("/certificates/" + f.first + "/download"), ""},
		{http.MethodPost, f.gw("/certificates"), "{}"},
		{http.MethodGet, f.gw("/configuration"), ""},
		{http.MethodPatch, f.gw("/configuration"), `{"settings":{"certificate":{"id":"` + f.first + `"}}}`},
		{http.MethodGet, f.cp("/devices"), ""},
		{http.MethodGet, f.cp("/devices/" + id), ""},
		{http.MethodDelete, f.cp("/devices/" + id), ""},
		{http.MethodGet, f.cp("/certificates/" + f.first + "/readiness"), ""},
		{http.MethodGet, f.cp("/settings"), ""},
		{http.MethodPatch, f.cp("/settings"), `{"min_readiness":0}`},
	} {
		r := f.do(t, rq.method, rq.path, dev, rq.body)
		assert.Equal(t, http.StatusForbidden, r.status, "%s %s", rq.method, rq.path)
		assert.Equal(t, controlplane.CodeScope, errCode(r), "%s %s", rq.method, rq.path)
	}
	_, status = f.device(t, id)
	assert.Equal(t, http.StatusOK, status, "the device token's DELETE did nothing")
	// A foreign account's device token is refused like any foreign token.
	a2, err := f.svc.CreateAccount(context.Background(), "other")
	require.NoError(t, err)
	foreign, err := f.svc.CreateToken(context.Background(), a2.ID, storage.ScopeDevice)
	require.NoError(t, err)
	assert.Equal(t, http.StatusForbidden, f.checkIn(t, foreign, uuid.NewString(), "", other).status)
}

func TestCheckInBadInput(t *testing.T) {
	f := newFixture(t)
	dev := f.deviceToken(t)
	fp := f.fingerprint(t, f.first)
	good := func(mut func(*api.CheckIn)) string {
		in := api.CheckIn{Hostname: "h", OS: "linux", Roots: []api.RootState{trustedIn(fp, "system")}}
		mut(&in)
		b, _ := json.Marshal(in)
		return string(b)
	}
	for _, tc := range []struct {
		name   string
		id     string
		body   string
		status int
		code   int
	}{
		{"not a uuid", "laptop-1", checkInBody(), http.StatusBadRequest, controlplane.CodeDeviceID},
		{"uuid without dashes", strings.ReplaceAll(uuid.NewString(), "-", ""), checkInBody(), http.StatusBadRequest, controlplane.CodeDeviceID},
		{"escaped slashes", "..%2f..%2fx", checkInBody(), http.StatusBadRequest, controlplane.CodeDeviceID},
		{"empty body", "", "", http.StatusBadRequest, controlplane.CodeMalformedJSON},
		{"not json", "", "hello", http.StatusBadRequest, controlplane.CodeMalformedJSON},
		{"array", "", "[]", http.StatusBadRequest, controlplane.CodeMalformedJSON},
		{"truncated", "", checkInBody()[:20], http.StatusBadRequest, controlplane.CodeMalformedJSON},
		{"unknown field", "", `{"os":"linux","root":[]}`, http.StatusBadRequest, controlplane.CodeValidation},
		{"wrong type", "", `{"os":"linux","roots":{}}`, http.StatusBadRequest, controlplane.CodeMalformedJSON},
		{"oversized", "", `{"hostname":"` + strings.Repeat("a", controlplane.MaxCheckInBytes) + `"}`, http.StatusRequestEntityTooLarge, controlplane.CodeBodyTooLarge},
		{"bad os", "", good(func(in *api.CheckIn) { in.OS = "plan9" }), http.StatusBadRequest, controlplane.CodeValidation},
		{"control chars", "", good(func(in *api.CheckIn) { in.Hostname = "a\x1b[31m" }), http.StatusBadRequest, controlplane.CodeValidation},
		{"long hostname", "", good(func(in *api.CheckIn) { in.Hostname = strings.Repeat("h", 300) }), http.StatusBadRequest, controlplane.CodeValidation},
		{"bad fingerprint", "", good(func(in *api.CheckIn) { in.Roots[0].Fingerprint = "zz" }), http.StatusBadRequest, controlplane.CodeValidation},
		{"bad state", "", good(func(in *api.CheckIn) { in.Roots[0].Stores[0].State = "ok" }), http.StatusBadRequest, controlplane.CodeValidation},
		{"no store name", "", good(func(in *api.CheckIn) { in.Roots[0].Stores[0].Store = "" }), http.StatusBadRequest, controlplane.CodeValidation},
		{"too many roots", "", good(func(in *api.CheckIn) {
			in.Roots = make([]api.RootState, controlplane.MaxCheckInRoots+1)
			for i := range in.Roots {
				in.Roots[i] = trustedIn(fp, "system")
			}
		}), http.StatusBadRequest, controlplane.CodeValidation},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := tc.id
			if id == "" {
				id = uuid.NewString()
			}
			r := f.checkIn(t, dev, id, "", tc.body)
			assert.Equal(t, tc.status, r.status, "%s", r.body)
			assert.Equal(t, tc.code, errCode(r), "%s", r.body)
			assert.False(t, r.env.Success)
			assert.Equal(t, "null", string(r.env.Result))
		})
	}
	r := f.do(t, http.MethodGet, f.cp("/devices"), f.read, "")
	require.Equal(t, http.StatusOK, r.status)
	assert.Equal(t, 0, r.env.ResultInfo.TotalCount, "nothing stored from a refused request")
	assert.Equal(t, http.StatusBadRequest, f.do(t, http.MethodGet, f.cp("/devices/nope"), f.read, "").status)
	assert.Equal(t, http.StatusNotFound, f.do(t, http.MethodGet, f.cp("/devices/"+uuid.NewString()), f.read, "").status)
}

func TestCheckInFlood(t *testing.T) {
	f := newFixture(t)
	dev := f.deviceToken(t)
	id, bystander := uuid.NewString(), uuid.NewString()
	secret := f.register(t, dev, id, checkInBody())
	other := f.register(t, dev, bystander, checkInBody())
	// Wrong-secret requests do not use up the device's allowance.
	for range controlplane.CheckInBurst * 2 {
		require.Equal(t, http.StatusForbidden, f.checkIn(t, dev, id, strings.Repeat("x", 43), checkInBody()).status)
	}
	for i := 1; i < controlplane.CheckInBurst; i++ {
		require.Equal(t, http.StatusOK, f.checkIn(t, dev, id, secret, checkInBody()).status, "check-in %d", i)
	}
	before, _ := f.device(t, id)
	f.clock.Advance(time.Second)
	fp := f.fingerprint(t, f.first)
	r := f.checkIn(t, dev, id, secret, checkInBody(trustedIn(fp, "system")))
	assert.Equal(t, http.StatusTooManyRequests, r.status)
	assert.Equal(t, controlplane.CodeCheckInRate, errCode(r))
	assert.Equal(t, "60", r.header.Get("Retry-After"))
	after, _ := f.device(t, id)
	assert.Equal(t, before.LastSeen, after.LastSeen, "nothing stored from a refused check-in")
	assert.Empty(t, after.Roots)
	assert.Equal(t, http.StatusOK, f.checkIn(t, dev, bystander, other, checkInBody()).status, "another device is not affected")
	f.clock.Advance(controlplane.CheckInRefill)
	assert.Equal(t, http.StatusOK, f.checkIn(t, dev, id, secret, checkInBody()).status, "the allowance refills")
}

// TestRegistrationFlood: a token registers at most its burst of new
// devices, then one per refill; a refused registration stores nothing,
// and neither known devices nor another token are held back.
func TestRegistrationFlood(t *testing.T) {
	f := newFixture(t)
	controlplane.SetRegistrationLimit(f.svc, 3, time.Minute)
	leaked, other := f.deviceToken(t), f.deviceToken(t)
	ids := []string{uuid.NewString(), uuid.NewString(), uuid.NewString()}
	secrets := make([]string, len(ids))
	for i, id := range ids {
		secrets[i] = f.register(t, leaked, id, checkInBody())
	}

	extra := uuid.NewString()
	r := f.checkIn(t, leaked, extra, "", checkInBody())
	assert.Equal(t, http.StatusTooManyRequests, r.status)
	assert.Equal(t, controlplane.CodeRegistrationRate, errCode(r))
	assert.Equal(t, "60", r.header.Get("Retry-After"))
	_, status := f.device(t, extra)
	assert.Equal(t, http.StatusNotFound, status, "a refused registration stores nothing")
	r = f.checkIn(t, leaked, extra, strings.Repeat("x", 43), checkInBody())
	assert.Equal(t, controlplane.CodeRegistrationRate, errCode(r), "a made-up secret does not make it a known device")

	for i, id := range ids {
		assert.Equal(t, http.StatusOK, f.checkIn(t, leaked, id, secrets[i], checkInBody()).status, "known device %d", i)
	}
	f.register(t, other, uuid.NewString(), checkInBody())

	f.clock.Advance(time.Minute)
	f.register(t, leaked, extra, checkInBody())
	r = f.checkIn(t, leaked, uuid.NewString(), "", checkInBody())
	assert.Equal(t, controlplane.CodeRegistrationRate, errCode(r), "one per refill")
}

// TestConcurrentRegistrations: registrations racing on one token get
// exactly its burst between them, and only those devices exist.
func TestConcurrentRegistrations(t *testing.T) {
	f := newFixture(t)
	controlplane.SetRegistrationLimit(f.svc, 5, time.Hour)
	tok := f.deviceToken(t)
	const n = 20
	ids := make([]string, n)
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := range ids {
		ids[i] = uuid.NewString()
		wg.Go(func() { statuses[i] = f.checkIn(t, tok, ids[i], "", checkInBody()).status })
	}
	wg.Wait()
	ok := 0
	for i, st := range statuses {
		_, stored := f.device(t, ids[i])
		switch st {
		case http.StatusOK:
			ok++
			assert.Equal(t, http.StatusOK, stored, "registered device %d is stored", i)
		case http.StatusTooManyRequests:
			assert.Equal(t, http.StatusNotFound, stored, "refused device %d is not stored", i)
		default:
			t.Errorf("device %d: status %d", i, st)
		}
	}
	assert.Equal(t, 5, ok)
}

func TestReadinessGuardAndSettings(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	dev := f.deviceToken(t)
	fp := f.fingerprint(t, f.first)
	next, err := f.svc.Generate(ctx, f.account, controlplane.GenerateRequest{})
	require.NoError(t, err)
	_, err = f.svc.Rules().Activate(ctx, f.account, next.ID)
	require.NoError(t, err)
	f.clock.Advance(time.Minute)
	_, err = f.svc.Rules().CompleteDue(ctx)
	require.NoError(t, err)
	use := fmt.Sprintf(`{"settings":{"certificate":{"id":%q}}}`, next.ID)

	// No devices: not guarded (and then back).
	require.Equal(t, http.StatusOK, f.do(t, http.MethodPatch, f.gw("/configuration"), f.write, use).status)
	_, err = f.svc.Use(ctx, f.account, f.first)
	require.NoError(t, err, "the first root is where it was: no active devices")

	f.clock.Advance(2 * storage.UnsummarizedMargin)
	secrets := map[string]string{}
	for i := 0; i < 4; i++ {
		id := fmt.Sprintf("00000000-0000-4000-8000-00000000000%d", i)
		secrets[id] = f.register(t, dev, id, checkInBody(trustedIn(fp, "system", "nss")))
	}
	var rd api.Readiness
	r := f.do(t, http.MethodGet, f.cp("/certificates/"+next.ID+"/readiness?per_page=3"), f.read, "")
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.NoError(t, json.Unmarshal(r.env.Result, &rd))
	assert.Equal(t, 4, rd.ActiveDevices)
	assert.Equal(t, 0, rd.Ready)
	assert.Equal(t, 4, rd.Missing)
	assert.Equal(t, 0.95, rd.MinReadiness)
	assert.Len(t, rd.NotReady, 3, "per_page pages not_ready")

	for _, method := range []string{http.MethodPatch, http.MethodPut} {
		r = f.do(t, method, f.gw("/configuration"), f.write, use)
		assert.Equal(t, http.StatusConflict, r.status, method)
		assert.Equal(t, controlplane.CodeNotReady, errCode(r))
		assert.Contains(t, r.env.Errors[0].Message, "ready on 0 of 4 active devices (0%), below the minimum of 95%")
		assert.Contains(t, r.env.Errors[0].Message, "?force=true")
	}
	_, err = f.svc.Use(ctx, f.account, next.ID)
	require.ErrorIs(t, err, storage.ErrNotReady, "the CLI's door is guarded too")
	assert.Equal(t, http.StatusBadRequest, f.do(t, http.MethodPatch, f.gw("/configuration?force=maybe"), f.write, use).status)

	// Three of four ready: 75% passes a lowered minimum.
	for id, sec := range secrets {
		if strings.HasSuffix(id, "3") {
			continue
		}
		require.Equal(t, http.StatusOK, f.checkIn(t, dev, id, sec, checkInBody(trustedIn(fp, "system"), trustedIn(next.Fingerprint, "system"))).status)
	}
	r = f.do(t, http.MethodGet, f.cp("/certificates/"+next.ID+"/readiness"), f.read, "")
	require.NoError(t, json.Unmarshal(r.env.Result, &rd))
	assert.Equal(t, api.Readiness{CertificateID: next.ID, Fingerprint: rd.Fingerprint, ActiveDevices: 4, Ready: 3, Missing: 1, Ratio: 0.75, MinReadiness: 0.95,
		NotReady: []api.NotReadyDevice{{DeviceID: "00000000-0000-4000-8000-000000000003", Hostname: "laptop", LastSeen: rd.NotReady[0].LastSeen, Missing: []string{"*"}}}}, rd)
	r = f.do(t, http.MethodPatch, f.gw("/configuration"), f.write, use)
	assert.Contains(t, r.env.Errors[0].Message, "ready on 3 of 4 active devices (75%), below the minimum of 95%")

	r = f.do(t, http.MethodPatch, f.cp("/settings"), f.write, `{"min_readiness":0.75}`)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	assert.JSONEq(t, `{"min_readiness":0.75,"device_active_days":7}`, string(r.env.Result))
	assert.Equal(t, http.StatusOK, f.do(t, http.MethodPatch, f.gw("/configuration"), f.write, use).status)
	// Back to the first root, which every device trusts; then force.
	assert.Equal(t, http.StatusOK, f.do(t, http.MethodPatch, f.gw("/configuration"), f.write, fmt.Sprintf(`{"settings":{"certificate":{"id":%q}}}`, f.first)).status)
	f.do(t, http.MethodPatch, f.cp("/settings"), f.write, `{"min_readiness":1}`)
	assert.Equal(t, http.StatusConflict, f.do(t, http.MethodPatch, f.gw("/configuration"), f.write, use).status)
	assert.Equal(t, http.StatusOK, f.do(t, http.MethodPatch, f.gw("/configuration?force=true"), f.write, use).status)
	// Re-asserting the certificate already in use is not guarded.
	assert.Equal(t, http.StatusOK, f.do(t, http.MethodPatch, f.gw("/configuration"), f.write, use).status)

	// Stale devices are not counted; with none active, nothing is guarded.
	f.do(t, http.MethodPatch, f.cp("/settings"), f.write, `{"device_active_days":1}`)
	f.clock.Advance(25 * time.Hour)
	r = f.do(t, http.MethodGet, f.cp("/certificates/"+f.first+"/readiness"), f.read, "")
	require.NoError(t, json.Unmarshal(r.env.Result, &rd))
	assert.Equal(t, 0, rd.ActiveDevices)
	assert.Equal(t, 4, rd.StaleExcluded)
	assert.Equal(t, 1.0, rd.Ratio)
	r = f.do(t, http.MethodGet, f.cp("/devices?stale=true&per_page=2&page=2"), f.read, "")
	require.Equal(t, http.StatusOK, r.status)
	assert.Equal(t, api.ResultInfo{Page: 2, PerPage: 2, Count: 2, TotalCount: 4}, *r.env.ResultInfo)

	// Bad settings and bad paging.
	for _, tc := range []struct{ path, body string }{
		{"/settings", `{"min_readiness":1.5}`},
		{"/settings", `{"min_readiness":-0.1}`},
		{"/settings", `{"device_active_days":0}`},
		{"/settings", `{"device_active_days":91}`},
		{"/settings", `{"device_active_days":"7"}`},
		{"/settings", `{"min":1}`},
	} {
		r := f.do(t, http.MethodPatch, f.cp(tc.path), f.write, tc.body)
		assert.Equal(t, http.StatusBadRequest, r.status, tc.body)
	}
	for _, q := range []string{"page=0", "per_page=0", "per_page=100000", "page=x", "stale=maybe"} {
		assert.Equal(t, http.StatusBadRequest, f.do(t, http.MethodGet, f.cp("/devices?"+q), f.read, "").status, q)
	}
	assert.Equal(t, http.StatusForbidden, f.do(t, http.MethodPatch, f.cp("/settings"), f.read, `{"min_readiness":0}`).status)
	r = f.do(t, http.MethodGet, f.cp("/settings"), f.read, "")
	assert.JSONEq(t, `{"min_readiness":1,"device_active_days":1}`, string(r.env.Result))
	assert.Equal(t, http.StatusNotFound, f.do(t, http.MethodGet, f.cp("/certificates/"+uuid.NewString()+"/readiness"), f.read, "").status)

	// Delete, then the device registers afresh with a new secret.
	id := "00000000-0000-4000-8000-000000000001"
	assert.Equal(t, http.StatusForbidden, f.do(t, http.MethodDelete, f.cp("/devices/"+id), f.read, "").status)
	assert.Equal(t, http.StatusOK, f.do(t, http.MethodDelete, f.cp("/devices/"+id), f.write, "").status)
	assert.Equal(t, http.StatusNotFound, f.do(t, http.MethodDelete, f.cp("/devices/"+id), f.write, "").status)
	assert.NotEqual(t, secrets[id], f.register(t, dev, id, checkInBody()))
}
