package controlplane_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"slices"
	"sort"
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

func TestErrors(t *testing.T) {
	f := newFixture(t)
	other, err := f.svc.CreateAccount(context.Background(), "other")
	require.NoError(t, err)
	otherTok, err := f.svc.CreateToken(context.Background(), other.ID, storage.ScopeWrite)
	require.NoError(t, err)
	certPEM, _ := mintCA(t)
	upload := func(m map[string]any) string {
		b, _ := json.Marshal(m)
		return string(b)
	}
	unknown := uuid.NewString()
	tests := []struct {
		name          string
		method, path  string
		token, body   string
		status        int
		codes         []int
		pointer       string
		messageSubstr string
	}{
		{"unknown route", "GET", controlplane.APIPrefix + "/nope", f.read, "", 404, []int{7003, 7000}, "", "Could not route"},
		{"outside the API", "GET", "/admin", "", "", 404, []int{7003, 7000}, "", ""},
		{"trailing slash", "GET", f.gw("/certificates/"), f.read, "", 404, []int{7003, 7000}, "", ""},
		{"empty segment", "GET", controlplane.APIPrefix + "/accounts//gateway/certificates", f.read, "", 404, []int{7003, 7000}, "", ""},
		{"dot segment", "GET", f.gw("/./certificates"), f.read, "", 404, []int{7003, 7000}, "", ""},
		{"HEAD is not served", "HEAD", f.gw("/certificates"), f.read, "", 405, []int{1004}, "", "GET, POST"},
		{"no token", "GET", f.gw("/certificates"), "", "", 401, []int{10000}, "", "Authentication error"},
		{"malformed token", "GET", f.gw("/certificates"), "hunter2", "", 401, []int{10000}, "", ""},
		{"unknown token", "GET", f.gw("/certificates"), "cpt_0000000000000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "", 401, []int{10000}, "", ""},
		{"another account's token", "GET", f.gw("/certificates"), otherTok, "", 403, []int{10000}, "", ""},
		{"not an account id", "GET", controlplane.APIPrefix + "/accounts/ACME/gateway/certificates", f.read, "", 404, []int{7003}, "", ""},
		{"read token writes", "POST", f.gw("/certificates"), f.read, "{}", 403, []int{10001}, "", "write token"},
		{"read token configures", "PATCH", f.gw("/configuration"), f.read, `{"settings":{}}`, 403, []int{10001}, "", ""},
		{"cert id not a UUID", "GET", f.gw("/certificates/../../x"), f.read, "", 404, []int{7003, 7000}, "", ""},
		{"cert id garbage", "GET", f.gw("/certificates/xyz"), f.read, "", 404, []int{7003}, "", ""},
		{"unknown cert", "GET", f.gw("/certificates/" + unknown), f.read, "", 404, []int{7003}, "", ""},
		{"unknown cert activate", "POST", f.gw("/certificates/" + unknown + "/activate"), f.write, "{}", 404, []int{7003}, "", ""},
		{"wrong method", "PUT", f.gw("/certificates"), f.write, "{}", 405, []int{1004}, "", "GET, POST"},
		{"malformed JSON", "POST", f.gw("/certificates"), f.write, "{", 400, []int{1002}, "", "unexpected end"},
		{"syntax error", "POST", f.gw("/certificates"), f.write, `{"validity_period_days":}`, 400, []int{1002}, "", "malformed JSON"},
		{"not an object", "POST", f.gw("/certificates"), f.write, `[]`, 400, []int{1002}, "", "JSON object"},
		{"trailing data", "POST", f.gw("/certificates"), f.write, `{}{}`, 400, []int{1002}, "", "after the object"},
		{"unknown field", "POST", f.gw("/certificates"), f.write, `{"validity_days":30}`, 400, []int{1001}, "", `"validity_days"`},
		{"days as string", "POST", f.gw("/certificates"), f.write, `{"validity_period_days":"30"}`, 400, []int{1002}, "/validity_period_days", "want int"},
		{"days null", "POST", f.gw("/certificates"), f.write, `{"validity_period_days":null}`, 400, []int{1002}, "/validity_period_days", "got JSON null"},
		{"days true", "POST", f.gw("/certificates"), f.write, `{"validity_period_days":true}`, 400, []int{1002}, "/validity_period_days", "want int"},
		{"days object", "POST", f.gw("/certificates"), f.write, `{"validity_period_days":{}}`, 400, []int{1002}, "/validity_period_days", ""},
		{"days array", "POST", f.gw("/certificates"), f.write, `{"validity_period_days":[30]}`, 400, []int{1002}, "/validity_period_days", ""},
		{"days overflow", "POST", f.gw("/certificates"), f.write, `{"validity_period_days":1e400}`, 400, []int{1002}, "", ""},
		{"days negative", "POST", f.gw("/certificates"), f.write, `{"validity_period_days":-1}`, 400, []int{1001}, "/validity_period_days", "1..10950"},
		{"key type null", "POST", f.gw("/certificates"), f.write, `{"key_type":null}`, 400, []int{1002}, "/key_type", "got JSON null"},
		{"key type number", "POST", f.gw("/certificates"), f.write, `{"key_type":1}`, 400, []int{1002}, "/key_type", "want string"},
		{"days fraction", "POST", f.gw("/certificates"), f.write, `{"validity_period_days":1.5}`, 400, []int{1002}, "", ""},
		{"days zero", "POST", f.gw("/certificates"), f.write, `{"validity_period_days":0}`, 400, []int{1001}, "/validity_period_days", "1..10950"},
		{"days too many", "POST", f.gw("/certificates"), f.write, `{"validity_period_days":10951}`, 400, []int{1001}, "/validity_period_days", ""},
		{"bad key type", "POST", f.gw("/certificates"), f.write, `{"key_type":"dsa"}`, 400, []int{1001}, "/key_type", ""},
		{"too large", "POST", f.gw("/certificates"), f.write, `{"x":"` + strings.Repeat("a", controlplane.MaxBodyBytes) + `"}`, 413, []int{1003}, "", ""},
		{"activate with fields", "POST", f.gw("/certificates/" + unknown + "/activate"), f.write, `{"force":true}`, 400, []int{1001}, "", ""},
		{"config without settings", "PATCH", f.gw("/configuration"), f.write, `{}`, 400, []int{1001}, "/settings", ""},
		{"config empty body", "PUT", f.gw("/configuration"), f.write, ``, 400, []int{1002}, "", "empty"},
		{"config bad id", "PATCH", f.gw("/configuration"), f.write, `{"settings":{"certificate":{"id":"x"}}}`, 400, []int{1001}, "/settings/certificate/id", ""},
		{"config unknown cert", "PATCH", f.gw("/configuration"), f.write, `{"settings":{"certificate":{"id":"` + unknown + `"}}}`, 400, []int{1001}, "", "no such certificate"},
		{"config cert field", "PATCH", f.gw("/configuration"), f.write, `{"settings":{"certificate":{"id":"` + unknown + `","x":1}}}`, 400, []int{1001}, "/settings/certificate", ""},
		{"config setting not object", "PATCH", f.gw("/configuration"), f.write, `{"settings":{"tls_decrypt":true}}`, 400, []int{1001}, "/settings/tls_decrypt", ""},
		{"upload not ca", "POST", controlplane.APIPrefix + "/accounts/" + f.account + "/mtls_certificates", f.write, upload(map[string]any{"name": "x", "certificates": certPEM, "private_key": "k", "ca": false}), 400, []int{1001}, "/ca", ""},
		{"upload bad cert", "POST", controlplane.APIPrefix + "/accounts/" + f.account + "/mtls_certificates", f.write, upload(map[string]any{"name": "x", "certificates": "nope", "private_key": "k", "ca": true}), 400, []int{1010}, "/certificates", ""},
		{"upload bad key", "POST", controlplane.APIPrefix + "/accounts/" + f.account + "/mtls_certificates", f.write, upload(map[string]any{"name": "x", "certificates": certPEM, "private_key": "k", "ca": true}), 400, []int{1011}, "/private_key", ""},
		{"upload no key", "POST", controlplane.APIPrefix + "/accounts/" + f.account + "/mtls_certificates", f.write, upload(map[string]any{"certificates": certPEM, "ca": true}), 400, []int{1001}, "/private_key", ""},
		{"list bad wait", "GET", f.gw("/certificates?wait=soon"), f.read, "", 400, []int{1001}, "", "wait"},
		{"download bad format", "GET", f.gw("/certificates/" + f.first + "/download?format=pfx"), f.read, "", 400, []int{1001}, "", "pem or crt"},
		{"delete in use", "DELETE", f.gw("/certificates/" + f.first), f.write, "", 409, []int{1102}, "", "inactive"},
		{"deactivate in use", "POST", f.gw("/certificates/" + f.first + "/deactivate"), f.write, "", 409, []int{1103}, "", ""},
	}
	rev := f.revision(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.do(t, tt.method, tt.path, tt.token, tt.body)
			require.Equal(t, tt.status, r.status, "body: %s", r.body)
			assert.False(t, r.env.Success)
			assert.Equal(t, "null", string(r.env.Result))
			assert.NotNil(t, r.env.Messages)
			var codes []int
			for _, e := range r.env.Errors {
				codes = append(codes, e.Code)
			}
			assert.Equal(t, tt.codes, codes)
			if tt.messageSubstr != "" {
				assert.Contains(t, r.env.Errors[0].Message, tt.messageSubstr)
			}
			if tt.pointer != "" {
				require.NotNil(t, r.env.Errors[0].Source)
				assert.Equal(t, tt.pointer, r.env.Errors[0].Source.Pointer)
			}
			switch tt.status {
			case 401:
				assert.Contains(t, r.header.Get("WWW-Authenticate"), "Bearer")
			case 405:
				assert.Equal(t, "GET, POST", r.header.Get("Allow"))
			}
		})
	}
	assert.Equal(t, rev, f.revision(t), "refused requests must change nothing")
	certs, _, err := f.svc.Rules().List(context.Background(), f.account)
	require.NoError(t, err)
	assert.Len(t, certs, 1)
}

func TestEmptyBodiesAreAccepted(t *testing.T) {
	f := newFixture(t)
	r := f.do(t, "POST", f.gw("/certificates"), f.write, "")
	require.Equal(t, 200, r.status, "%s", r.body)
	var c api.Certificate
	require.NoError(t, json.Unmarshal(r.env.Result, &c))
	assert.Equal(t, api.StatusInactive, c.BindingStatus)
	r = f.do(t, "POST", f.gw("/certificates/"+c.ID+"/activate"), f.write, "")
	require.Equal(t, 202, r.status, "%s", r.body)
	// Upper-case ids are the same id.
	r = f.do(t, "GET", f.gw("/certificates/"+strings.ToUpper(c.ID)), f.read, "")
	require.Equal(t, 200, r.status, "%s", r.body)
}

func TestCertificateWireShape(t *testing.T) {
	f := newFixture(t)
	r := f.do(t, "GET", f.gw("/certificates"), f.read, "")
	require.Equal(t, 200, r.status)
	assert.True(t, r.env.Success)
	assert.Equal(t, []api.Message{}, r.env.Errors)
	var raw []map[string]any
	require.NoError(t, json.Unmarshal(r.env.Result, &raw))
	require.Len(t, raw, 1)
	for _, k := range []string{"id", "binding_status", "certificate", "fingerprint", "in_use", "issuer_org", "issuer_raw",
		"type", "created_at", "updated_at", "uploaded_on", "expires_on"} {
		assert.Contains(t, raw[0], k)
	}
	assert.Equal(t, "0001-01-01T00:00:00Z", raw[0]["uploaded_on"], "a managed certificate was never uploaded")
	assert.True(t, strings.HasSuffix(raw[0]["certificate"].(string), "-----END CERTIFICATE-----\n"))
	assert.NotContains(t, string(r.body), "PRIVATE")
}

func TestListETag(t *testing.T) {
	f := newFixture(t)
	r := f.do(t, "GET", f.gw("/certificates"), f.read, "")
	require.Equal(t, 200, r.status)
	etag := r.header.Get("ETag")
	require.NotEmpty(t, etag)
	assert.False(t, strings.HasPrefix(etag, "W/"), "the list ETag is strong")

	before := f.backend.certReads.Load()
	for _, inm := range []string{etag, "W/" + etag, `"zzz", ` + etag, "*"} {
		r = f.do(t, "GET", f.gw("/certificates"), f.read, "", "If-None-Match", inm)
		assert.Equal(t, http.StatusNotModified, r.status, "If-None-Match %s", inm)
		assert.Empty(t, r.body)
		assert.Equal(t, etag, r.header.Get("ETag"))
	}
	assert.Equal(t, before, f.backend.certReads.Load(), "a 304 must not load certificates")

	r = f.do(t, "GET", f.gw("/certificates"), f.read, "", "If-None-Match", `"stale"`)
	assert.Equal(t, 200, r.status)

	_, err := f.svc.Generate(context.Background(), f.account, controlplane.GenerateRequest{})
	require.NoError(t, err)
	r = f.do(t, "GET", f.gw("/certificates"), f.read, "", "If-None-Match", etag)
	require.Equal(t, 200, r.status, "a change must invalidate the tag")
	assert.NotEqual(t, etag, r.header.Get("ETag"))
}

func TestLongPoll(t *testing.T) {
	f := newFixture(t)
	r := f.do(t, "GET", f.gw("/certificates"), f.read, "")
	etag := r.header.Get("ETag")

	got := make(chan response, 1)
	go func() { got <- f.do(t, "GET", f.gw("/certificates?wait=50s"), f.read, "", "If-None-Match", etag) }()
	require.Eventually(t, func() bool { return f.svc.Hub().Waiting(f.account) == 1 }, 10*time.Second, time.Millisecond)
	// Generating (inactive) and activating (pending_deployment) change
	// nothing an agent acts on; the deployment completing does.
	id := f.available(t)
	res := <-got
	require.Equal(t, 200, res.status)
	var certs []api.Certificate
	require.NoError(t, json.Unmarshal(res.env.Result, &certs))
	require.Len(t, certs, 2)
	found := false
	for _, c := range certs {
		if c.ID == id {
			found = true
			assert.Equal(t, api.StatusAvailable, c.BindingStatus, "answered once it is available, not before")
		}
	}
	assert.True(t, found, "the new certificate is in the answer")
	assert.NotEqual(t, etag, res.header.Get("ETag"))

	// A shutdown releases held requests with a 304.
	etag = res.header.Get("ETag")
	go func() { got <- f.do(t, "GET", f.gw("/certificates?wait=50s"), f.read, "", "If-None-Match", etag) }()
	require.Eventually(t, func() bool { return f.svc.Hub().Waiting(f.account) == 1 }, 10*time.Second, time.Millisecond)
	f.stopping()
	res = <-got
	assert.Equal(t, http.StatusNotModified, res.status)
	assert.Equal(t, etag, res.header.Get("ETag"))
}

func TestConfiguration(t *testing.T) {
	f := newFixture(t)
	second := f.available(t)
	r := f.do(t, "GET", f.gw("/configuration"), f.read, "")
	require.Equal(t, 200, r.status)
	var conf api.GatewayConfiguration
	require.NoError(t, json.Unmarshal(r.env.Result, &conf))
	assert.Equal(t, f.first, conf.Settings.Certificate.ID)

	r = f.do(t, "PATCH", f.gw("/configuration"), f.write,
		`{"settings":{"certificate":{"id":"`+second+`","in_use":true},"tls_decrypt":{"enabled":true}}}`)
	require.Equal(t, 200, r.status, "%s", r.body)
	require.NoError(t, json.Unmarshal(r.env.Result, &conf))
	assert.Equal(t, second, conf.Settings.Certificate.ID)
	assert.JSONEq(t, `{"enabled":true}`, string(conf.Settings.Extra["tls_decrypt"]))

	r = f.do(t, "PATCH", f.gw("/configuration"), f.write, `{"settings":{"fips":{"tls":true}}}`)
	require.Equal(t, 200, r.status, "%s", r.body)
	require.NoError(t, json.Unmarshal(r.env.Result, &conf))
	assert.Equal(t, second, conf.Settings.Certificate.ID, "PATCH without certificate keeps it")
	assert.Len(t, conf.Settings.Extra, 2, "PATCH merges collections")

	// PUT replaces everything: without a certificate, none is in use.
	r = f.do(t, "PUT", f.gw("/configuration"), f.write, `{"settings":{"fips":{"tls":false}}}`)
	require.Equal(t, 200, r.status, "%s", r.body)
	require.NoError(t, json.Unmarshal(r.env.Result, &conf))
	assert.Equal(t, api.NilUUID, conf.Settings.Certificate.ID)
	assert.Len(t, conf.Settings.Extra, 1)

	r = f.do(t, "PUT", f.gw("/configuration"), f.write, `{"settings":{"certificate":{"id":"`+f.first+`"}}}`)
	require.Equal(t, 200, r.status, "%s", r.body)
	r = f.do(t, "PATCH", f.gw("/configuration"), f.write, `{"settings":{"certificate":{"id":"`+api.NilUUID+`"}}}`)
	require.Equal(t, 200, r.status, "%s", r.body)
	certs, _, err := f.svc.Rules().List(context.Background(), f.account)
	require.NoError(t, err)
	for _, c := range certs {
		assert.False(t, c.InUse, "the nil UUID turns every certificate off")
	}
}

func TestUploadSealsTheKey(t *testing.T) {
	f := newFixture(t)
	certPEM, keyPEM := mintCA(t)
	body, _ := json.Marshal(api.UploadRequest{Name: "byo", Certificates: certPEM, PrivateKey: keyPEM, CA: true})
	r := f.do(t, "POST", controlplane.APIPrefix+"/accounts/"+f.account+"/mtls_certificates", f.write, string(body))
	require.Equal(t, 200, r.status, "%s", r.body)
	assert.NotContains(t, string(r.body), "PRIVATE KEY")
	var m api.MTLSCertificate
	require.NoError(t, json.Unmarshal(r.env.Result, &m))
	assert.Equal(t, "byo", m.Name)
	assert.Equal(t, certPEM, m.Certificates)

	r = f.do(t, "GET", f.gw("/certificates/"+m.ID), f.read, "")
	require.Equal(t, 200, r.status)
	var c api.Certificate
	require.NoError(t, json.Unmarshal(r.env.Result, &c))
	assert.Equal(t, api.TypeCustom, c.Type)
	assert.False(t, c.UploadedOn.IsZero())

	// The key opens from the database and equals what was uploaded...
	key, err := f.svc.PrivateKey(context.Background(), f.account, m.ID)
	require.NoError(t, err)
	block, _ := pem.Decode([]byte(keyPEM))
	want, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	require.NoError(t, err)
	assert.True(t, want.(*ecdsa.PrivateKey).Equal(key))
	// ...but is nowhere in the database file in the clear.
	for _, p := range []string{f.dbPath, f.dbPath + "-wal"} {
		data, err := os.ReadFile(p)
		if os.IsNotExist(err) {
			continue
		}
		require.NoError(t, err)
		assert.False(t, bytes.Contains(data, block.Bytes), "%s holds the key in the clear", p)
		d, err := want.(*ecdsa.PrivateKey).Bytes()
		require.NoError(t, err)
		assert.False(t, bytes.Contains(data, d), "%s holds the private scalar", p)
	}
	assert.NotContains(t, f.logs.String(), "PRIVATE KEY")
}

func TestRequestLog(t *testing.T) {
	f := newFixture(t)
	f.do(t, "GET", f.gw("/certificates"), f.read, "")
	f.do(t, "GET", f.gw("/certificates"), "cpt_0123456789abcdef.secretsecretsecretsecretsecretsecretsecre", "")
	logs := f.logs.String()
	var line map[string]any
	require.NoError(t, json.Unmarshal([]byte(strings.SplitN(logs, "\n", 2)[0]), &line))
	assert.Equal(t, "request", line["@message"])
	assert.Equal(t, "GET", line["method"])
	assert.Equal(t, float64(200), line["status"])
	assert.Equal(t, f.account, line["account"])
	assert.NotEmpty(t, line["duration"])
	secret := f.read[strings.Index(f.read, ".")+1:]
	assert.NotContains(t, logs, secret)
	assert.NotContains(t, logs, "secretsecret")
	assert.NotContains(t, logs, "Bearer")
}

func TestHealthz(t *testing.T) {
	f := newFixture(t)
	r := f.do(t, "GET", "/healthz", "", "")
	assert.Equal(t, 200, r.status)
	assert.Equal(t, "ok\n", string(r.body))
	r = f.do(t, "HEAD", "/healthz", "", "")
	assert.Equal(t, 200, r.status)
	r = f.do(t, "POST", "/healthz", "", "")
	assert.Equal(t, 404, r.status)
	assert.False(t, r.env.Success)
}

func TestConcurrentUseOverHTTP(t *testing.T) {
	f := newFixture(t)
	ids := []string{f.first, f.available(t), f.available(t), f.available(t)}
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := ids[i%len(ids)]
			if i%2 == 0 {
				f.do(t, "PATCH", f.gw("/configuration"), f.write, `{"settings":{"certificate":{"id":"`+id+`"}}}`)
			} else {
				f.do(t, "POST", f.gw("/certificates/"+id+"/deactivate"), f.write, "{}")
			}
		}()
	}
	wg.Wait()
	certs, _, err := f.svc.Rules().List(context.Background(), f.account)
	require.NoError(t, err)
	inUse := 0
	for _, c := range certs {
		if c.InUse {
			inUse++
			assert.Equal(t, api.StatusAvailable, c.Status)
		}
	}
	assert.Equal(t, 1, inUse, "exactly one certificate in use")
}

func mintCA(t testing.TB) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "BYO Root", Organization: []string{"Example Inc."}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
}

func TestMTLSStore(t *testing.T) {
	f := newFixture(t)
	base := controlplane.APIPrefix + "/accounts/" + f.account + "/mtls_certificates"
	r := f.do(t, "GET", base, f.read, "")
	require.Equal(t, 200, r.status)
	assert.JSONEq(t, `[]`, string(r.env.Result), "the bootstrap certificate is not a custom one")

	certPEM, keyPEM := mintCA(t)
	body, _ := json.Marshal(api.UploadRequest{Name: "byo", Certificates: certPEM, PrivateKey: keyPEM, CA: true})
	r = f.do(t, "POST", base, f.write, string(body))
	require.Equal(t, 200, r.status, "%s", r.body)
	var m api.MTLSCertificate
	require.NoError(t, json.Unmarshal(r.env.Result, &m))

	r = f.do(t, "GET", base, f.read, "")
	var list []api.MTLSCertificate
	require.NoError(t, json.Unmarshal(r.env.Result, &list))
	require.Len(t, list, 1)
	assert.Equal(t, m.ID, list[0].ID)
	r = f.do(t, "GET", base+"/"+m.ID, f.read, "")
	require.Equal(t, 200, r.status)
	r = f.do(t, "GET", base+"/"+f.first, f.read, "")
	assert.Equal(t, 404, r.status, "a gateway-managed root is not in the mTLS store")
	r = f.do(t, "DELETE", base+"/"+f.first, f.write, "")
	assert.Equal(t, 404, r.status)

	// Same lifecycle rule as the gateway delete.
	_, err := f.svc.Rules().Activate(context.Background(), f.account, m.ID)
	require.NoError(t, err)
	r = f.do(t, "DELETE", base+"/"+m.ID, f.write, "")
	assert.Equal(t, 409, r.status)
	assert.Equal(t, controlplane.CodeDeleteNotInactive, r.env.Errors[0].Code)
	_, err = f.svc.Rules().Deactivate(context.Background(), f.account, m.ID)
	require.NoError(t, err)
	f.clock.Advance(time.Minute)
	_, err = f.svc.Rules().CompleteDue(context.Background())
	require.NoError(t, err)
	r = f.do(t, "DELETE", base+"/"+m.ID, f.write, "")
	require.Equal(t, 200, r.status, "%s", r.body)
	r = f.do(t, "GET", f.gw("/certificates/"+m.ID), f.read, "")
	assert.Equal(t, 404, r.status, "gone from the gateway list too")
}

func TestTokenID(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"0123456789abcdef", "0123456789abcdef", true},
		{"cpt_0123456789abcdef.secretsecret", "0123456789abcdef", true},
		{" cpt_0123456789abcdef.x\n", "0123456789abcdef", true},
		{"0123456789ABCDEF", "", false},
		{"0123456789abcde", "", false},
		{"cpt_0123456789abcdeg.S3CRETX", "", false},
		{"cpt_0123456789abcdef", "0123456789abcdef", true},
		{"", "", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := controlplane.TokenID(tc.in)
			if !tc.ok {
				require.Error(t, err)
				assert.NotContains(t, err.Error(), "S3CRETX", "the error must not echo the token")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

// TestRefusedGenerationsAreNotCounted: a generation refused for its body
// (null, a wrong type, out of range) spends none of the day's three; the
// fourth real one is refused with when the next is allowed, in the message
// and in Retry-After.
func TestRefusedGenerationsAreNotCounted(t *testing.T) {
	f := newFixture(t)
	for _, body := range []string{`{"validity_period_days":null}`, `{"validity_period_days":"30"}`, `{"validity_period_days":0}`,
		`{"key_type":null}`, `{"validity_period_days":null,"key_type":"rsa-2048"}`} {
		r := f.do(t, "POST", f.gw("/certificates"), f.write, body)
		require.Equal(t, 400, r.status, "%s: %s", body, r.body)
	}
	start := f.clock.Now()
	for i := 0; i < storage.GenerationsPerDay; i++ {
		r := f.do(t, "POST", f.gw("/certificates"), f.write, "")
		require.Equal(t, 200, r.status, "generation %d: %s", i+1, r.body)
		f.clock.Advance(time.Hour)
	}
	r := f.do(t, "POST", f.gw("/certificates"), f.write, "")
	require.Equal(t, 429, r.status, "%s", r.body)
	require.Len(t, r.env.Errors, 1)
	assert.Equal(t, controlplane.CodeDailyLimit, r.env.Errors[0].Code)
	// The oldest leaves the window just after 24 h; the message rounds up.
	next := start.Add(storage.GenerationWindow + time.Second).Truncate(time.Second).UTC()
	assert.Contains(t, r.env.Errors[0].Message, "the next generation is allowed at "+next.Format(time.RFC3339))
	// 3 h have passed since the first of the three: 21 h to wait, rounded up.
	assert.Equal(t, "75601", r.header.Get("Retry-After"))
	// At the time given, one is allowed again.
	f.clock.Advance(next.Sub(f.clock.Now()))
	r = f.do(t, "POST", f.gw("/certificates"), f.write, "")
	require.Equal(t, 200, r.status, "%s", r.body)
}

// TestCloudflareShapes pins what Cloudflare's published schema says and
// certplane once answered differently: activate 202, deactivate 201, the
// default validity, settings.certificate as {id} only, and the mTLS shapes.
func TestCloudflareShapes(t *testing.T) {
	f := newFixture(t)
	r := f.do(t, "POST", f.gw("/certificates"), f.write, "")
	require.Equal(t, 200, r.status, "%s", r.body)
	var c api.Certificate
	require.NoError(t, json.Unmarshal(r.env.Result, &c))
	assert.Equal(t, 1825*24*time.Hour, c.ExpiresOn.Sub(c.CreatedAt.Time).Round(time.Hour), "default validity_period_days is 1825")

	r = f.do(t, "POST", f.gw("/certificates/"+c.ID+"/activate"), f.write, "{}")
	assert.Equal(t, http.StatusAccepted, r.status, "activate: %s", r.body)
	assert.True(t, r.env.Success)
	r = f.do(t, "POST", f.gw("/certificates/"+c.ID+"/deactivate"), f.write, "{}")
	assert.Equal(t, http.StatusCreated, r.status, "deactivate: %s", r.body)
	assert.True(t, r.env.Success)

	for _, method := range []string{"GET", "PATCH", "PUT"} {
		body := ""
		if method != "GET" {
			body = `{"settings":{"certificate":{"id":"` + f.first + `","in_use":true}}}`
		}
		r = f.do(t, method, f.gw("/configuration"), f.write, body)
		require.Equal(t, 200, r.status, "%s: %s", method, r.body)
		var raw struct {
			Settings map[string]json.RawMessage `json:"settings"`
		}
		require.NoError(t, json.Unmarshal(r.env.Result, &raw))
		assert.JSONEq(t, `{"id":"`+f.first+`"}`, string(raw.Settings["certificate"]), method)
	}

	base := controlplane.APIPrefix + "/accounts/" + f.account + "/mtls_certificates"
	certPEM, keyPEM := mintCA(t)
	body, _ := json.Marshal(api.UploadRequest{Name: "byo", Certificates: certPEM, PrivateKey: keyPEM, CA: true})
	r = f.do(t, "POST", base, f.write, string(body))
	require.Equal(t, 200, r.status, "%s", r.body)
	keys := func(raw json.RawMessage) []string {
		var m map[string]any
		require.NoError(t, json.Unmarshal(raw, &m))
		var out []string
		for k := range m {
			out = append(out, k)
		}
		sort.Strings(out)
		return out
	}
	listed := []string{"ca", "certificates", "expires_on", "id", "issuer", "name", "serial_number", "signature", "type", "uploaded_on"}
	assert.Equal(t, append(slices.Clone(listed[:9]), "updated_at", "uploaded_on"), keys(r.env.Result), "upload (MTLSCertificateCreateResponse)")
	var up api.MTLSUpload
	require.NoError(t, json.Unmarshal(r.env.Result, &up))
	assert.Equal(t, api.TypeCustom, up.Type)
	r = f.do(t, "GET", base+"/"+up.ID, f.read, "")
	require.Equal(t, 200, r.status)
	assert.Equal(t, listed, keys(r.env.Result), "get (MTLSCertificate)")
	r = f.do(t, "GET", base, f.read, "")
	var list []json.RawMessage
	require.NoError(t, json.Unmarshal(r.env.Result, &list))
	require.Len(t, list, 1)
	assert.Equal(t, listed, keys(list[0]), "list (MTLSCertificate)")
	r = f.do(t, "DELETE", base+"/"+up.ID, f.write, "")
	require.Equal(t, 200, r.status, "%s", r.body)
	assert.Equal(t, listed, keys(r.env.Result), "delete (MTLSCertificate)")
}
