package controlplane_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/controlplane"
)

// checkAnswer holds every handler to the same contract whatever the body:
// a v4 envelope, a 2xx/4xx status (never 500), success exactly on 200, and
// nothing changed unless it succeeded.
func checkAnswer(t *testing.T, f *fixture, before int64, r response) {
	t.Helper()
	ok := r.status >= 200 && r.status <= 299
	switch r.status {
	case 200, 201, 202, 400, 404, 409, 413, 429:
	default:
		t.Fatalf("status %d, body %s", r.status, r.body)
	}
	if r.env.Success != ok {
		t.Fatalf("success %v with status %d", r.env.Success, r.status)
	}
	if !ok {
		if string(r.env.Result) != "null" || len(r.env.Errors) == 0 || r.env.Errors[0].Message == "" {
			t.Fatalf("failure envelope malformed: %s", r.body)
		}
		if after := f.revision(t); after != before {
			t.Fatalf("refused request (%d) changed the account: revision %d -> %d", r.status, before, after)
		}
	}
}

func FuzzGenerateBody(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"validity_period_days":30}`, `{"validity_period_days":0}`,
		`{"validity_period_days":10951}`, `{"key_type":"rsa-2048"}`, `{"validity_period_days":"1"}`, `[]`, `null`,
		`{"a":1}`, `{"validity_period_days":1e400}`, `{"validity_period_days":-1}`, "{\"validity_period_days\":\x00}"} {
		f.Add(s)
	}
	fx := newFixture(f)
	f.Fuzz(func(t *testing.T, body string) {
		before := fx.revision(t)
		r := fx.do(t, "POST", fx.gw("/certificates"), fx.write, body)
		checkAnswer(t, fx, before, r)
		if r.status == 200 {
			var c api.Certificate
			if err := json.Unmarshal(r.env.Result, &c); err != nil || c.BindingStatus != api.StatusInactive {
				t.Fatalf("generate answered %s", r.body)
			}
		}
	})
}

func FuzzActivateBody(f *testing.F) {
	for _, s := range []string{``, `{}`, ` { } `, `{"x":1}`, `null`, `{}{}`, `"x"`} {
		f.Add(s)
	}
	fx := newFixture(f)
	f.Fuzz(func(t *testing.T, body string) {
		before := fx.revision(t)
		// The bootstrap certificate is available: activation is a no-op.
		r := fx.do(t, "POST", fx.gw("/certificates/"+fx.first+"/activate"), fx.write, body)
		checkAnswer(t, fx, before, r)
		if fx.revision(t) != before {
			t.Fatalf("activating an available certificate changed the account")
		}
	})
}

func FuzzConfigurationBody(f *testing.F) {
	for _, s := range []string{`{"settings":{"certificate":{"id":"00000000-0000-0000-0000-000000000000"}}}`,
		`{"settings":{"certificate":{"id":"X","in_use":true}}}`, `{"settings":{}}`, `{"settings":null}`,
		`{"settings":{"tls_decrypt":{"enabled":true}}}`, `{"settings":{"tls_decrypt":[]}}`, `{}`, `{"settings":{"certificate":null}}`,
		`{"settings":{"certificate":{"id":1}}}`} {
		f.Add(s, false)
		f.Add(s, true)
	}
	fx := newFixture(f)
	f.Fuzz(func(t *testing.T, body string, put bool) {
		method := "PATCH"
		if put {
			method = "PUT"
		}
		before := fx.revision(t)
		r := fx.do(t, method, fx.gw("/configuration"), fx.write, body)
		checkAnswer(t, fx, before, r)
		if r.status == 200 {
			var conf api.GatewayConfiguration
			if err := json.Unmarshal(r.env.Result, &conf); err != nil || conf.Settings.Certificate == nil {
				t.Fatalf("configuration answered %s", r.body)
			}
		}
	})
}

func FuzzUploadBody(f *testing.F) {
	certPEM, keyPEM := mintCA(f)
	good, _ := json.Marshal(api.UploadRequest{Name: "byo", Certificates: certPEM, PrivateKey: keyPEM, CA: true})
	for _, s := range []string{string(good), `{}`, `{"ca":true}`, `{"ca":true,"certificates":"x","private_key":"y"}`,
		`{"ca":"yes"}`, `{"name":"` + "\x01" + `","ca":true}`} {
		f.Add(s)
	}
	fx := newFixture(f)
	path := controlplane.APIPrefix + "/accounts/" + fx.account + "/mtls_certificates"
	f.Fuzz(func(t *testing.T, body string) {
		before := fx.revision(t)
		r := fx.do(t, "POST", path, fx.write, body)
		checkAnswer(t, fx, before, r)
	})
}

// FuzzCheckIn throws bodies and device ids at the check-in route: a clear
// 2xx/4xx envelope every time, and a device stored only when it succeeded.
func FuzzCheckIn(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"os":"linux"}`, `{"os":"linux","roots":[{"fingerprint":"AB","stores":[]}]}`,
		`{"os":"linux","roots":[{"fingerprint":"` + strings.Repeat("ab", 32) + `","stores":[{"store":"nss","user":"u","state":"trusted"}]}]}`,
		`{"os":"linux","roots":null}`, `{"os":"windows","hostname":"\u0000"}`, `[]`, `null`, `{"os":"linux"}{}`} {
		f.Add("00000000-0000-4000-8000-000000000001", s)
		f.Add("not-a-uuid", s)
	}
	fx := newFixture(f)
	dev := fx.deviceToken(f)
	f.Fuzz(func(t *testing.T, id, body string) {
		if id == "" || id == "." || id == ".." {
			return
		}
		id = url.PathEscape(id)
		before := fx.revision(t)
		n := deviceCount(t, fx)
		r := fx.checkIn(t, dev, id, "", body)
		switch r.status {
		case 200:
		case 400, 403, 404, 413, 429:
			if string(r.env.Result) != "null" || len(r.env.Errors) == 0 {
				t.Fatalf("failure envelope malformed: %s", r.body)
			}
			if got := deviceCount(t, fx); got != n {
				t.Fatalf("refused check-in (%d) stored a device: %d -> %d", r.status, n, got)
			}
		default:
			t.Fatalf("status %d, body %s", r.status, r.body)
		}
		if after := fx.revision(t); after != before {
			t.Fatalf("a check-in changed the certificate revision")
		}
	})
}

func deviceCount(t *testing.T, f *fixture) int {
	r := f.do(t, "GET", f.cp("/devices"), f.read, "")
	if r.status != 200 || r.env.ResultInfo == nil {
		t.Fatalf("list devices: %d %s", r.status, r.body)
	}
	return r.env.ResultInfo.TotalCount
}
