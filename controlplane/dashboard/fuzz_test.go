package dashboard_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// FuzzForms posts hostile form bodies to every write route with a valid
// session and CSRF token: each gets an answer below 500, never a crash,
// and the session survives.
func FuzzForms(f *testing.F) {
	for _, seed := range []string{
		"validity=custom&days=30", "validity=custom&days=-1", "validity=custom&days=99999999999999999999",
		"validity=%00", "days=1e3&validity=custom", "min_readiness=NaN&device_active_days=7",
		"min_readiness=1e309&device_active_days=1", "min_readiness=50%25&device_active_days=0x10",
		"name=%0a%0d&certificates=-----BEGIN%20CERTIFICATE-----&private_key=x", "force=1", "%zz", "a=" + strings.Repeat("x", 70000),
	} {
		for route := range 6 {
			f.Add(uint8(route), seed)
		}
	}
	fx := newFixture(f, false)
	f.Fuzz(func(t *testing.T, route uint8, body string) {
		b := fx.client(t)
		if b.login(fx.write).status != http.StatusSeeOther {
			t.Fatal("login failed")
		}
		paths := []string{"/dashboard/certificates/generate", "/dashboard/certificates/upload", "/dashboard/settings",
			"/dashboard/certificates/" + fx.first + "/turn-on", "/dashboard/certificates/" + fx.first + "/activate",
			"/dashboard/certificates/" + fx.first + "/delete"}
		path := paths[int(route)%len(paths)]
		req, err := http.NewRequest(http.MethodPost, fx.srv.URL+path, strings.NewReader(body+"&csrf_token="+url.QueryEscape(b.csrf)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", fx.srv.URL)
		resp, err := b.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("POST %s %q: status %d", path, body, resp.StatusCode)
		}
		if got := b.do(http.MethodGet, "/dashboard/certificates", nil, nil).status; got != http.StatusOK {
			t.Fatalf("after POST %s %q: the list answers %d", path, body, got)
		}
	})
}
