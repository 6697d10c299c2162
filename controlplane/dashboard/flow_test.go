package dashboard_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBrowserWriteFlow drives the product docs' whole certificate flow in
// headless Chromium against a real `certplane serve` on SQLite.
func TestBrowserWriteFlow(t *testing.T) {
	// The deploy delay is how long a certificate stays Pending: the test
	// reads "Pending" on the page loaded after each click, and a -race run
	// on two loaded cores can take more than 2 s to get there.
	p := startPlane(t, "5s")
	ctx, downloads := newBrowser(t)

	step(t, ctx, "open the login page", chromedp.Navigate(p.base+"/dashboard/login"), chromedp.WaitVisible(chromedp.ID("token")))
	checkAccessible(t, ctx, "login")
	screenshot(t, ctx, "dashboard-login")
	login(t, ctx, p, p.write)
	checkAccessible(t, ctx, "certificates")
	session := cookie(t, ctx, p.base)
	require.NotNil(t, session, "a session cookie after login")
	assert.True(t, session.HTTPOnly, "session cookie HttpOnly")
	assert.Equal(t, "Strict", string(session.SameSite), "session cookie SameSite")

	// The new account's root is there, Available and In-Use.
	initial := eval[string](t, ctx, `document.querySelector("tbody tr[data-id]").dataset.id`)
	assert.Equal(t, "Available and In-Use", rowStatus(t, ctx, initial))

	// Generate a 30-day root: it appears Inactive.
	step(t, ctx, "generate a 30-day root",
		chromedp.Click(chromedp.ID("validity-custom")),
		chromedp.SendKeys(chromedp.ID("days"), "30"),
		chromedp.Focus(chromedp.ID("generate")),
		chromedp.KeyEvent("\r"), // keyboard only
		chromedp.WaitVisible(chromedp.ID("flash")))
	assert.Contains(t, flash(t, ctx), "Generated certificate")
	id := eval[string](t, ctx, `document.querySelector('tbody tr[data-status="Inactive"]').dataset.id`)
	require.NotEmpty(t, id)
	assert.Equal(t, "Inactive", rowStatus(t, ctx, id))
	code, body := p.api(t, http.MethodGet, "/gateway/certificates/"+id, nil)
	require.Equal(t, http.StatusOK, code, "%s", body)
	var got struct {
		Result struct {
			ExpiresOn string `json:"expires_on"`
			CreatedAt string `json:"created_at"`
			Status    string `json:"binding_status"`
		} `json:"result"`
	}
	require.NoError(t, json.Unmarshal(body, &got))
	assert.Equal(t, "inactive", got.Result.Status)
	assert.Contains(t, eval[string](t, ctx, `document.getElementById("quota").textContent`), "1 of 3 generations used")

	// Activate: Pending, then Available on screen without a reload.
	submit(t, ctx, "activate", chromedp.CSS(fmt.Sprintf(`#cert-%s button.activate`, id)))
	assert.Equal(t, "Pending", rowStatus(t, ctx, id))
	eval[bool](t, ctx, `window.noReloadMarker = true`)
	waitStatus(t, ctx, id, "Available")
	assert.True(t, eval[bool](t, ctx, `window.noReloadMarker === true`), "the page was not reloaded")
	assert.Contains(t, eval[string](t, ctx, `document.getElementById("live").textContent`), "is now Available",
		"the change is announced to screen readers")

	// Two devices check in: one trusts both roots, one only the first.
	// Readiness is 1 of 2 (50%), below the default minimum of 95%.
	fps := map[string]string{}
	for _, c := range []string{initial, id} {
		code, body := p.api(t, http.MethodGet, "/gateway/certificates/"+c, nil)
		require.Equal(t, http.StatusOK, code)
		var cert struct {
			Result struct{ Fingerprint string } `json:"result"`
		}
		require.NoError(t, json.Unmarshal(body, &cert))
		fps[c] = cert.Result.Fingerprint
	}
	p.checkIn(t, "laptop-ready", "linux", fps[initial], fps[id])
	p.checkIn(t, "laptop-behind", "darwin", fps[initial])
	step(t, ctx, "reload the list", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("certs")))
	assert.Equal(t, "trusted on 1 of 2 devices", eval[string](t, ctx,
		fmt.Sprintf(`document.querySelector("#cert-%s td.readiness a").textContent`, id)))
	checkFits(t, ctx, "certificates")
	screenshot(t, ctx, "dashboard-certificates")

	// Turning it on is refused by the guard, with the API's message; the
	// override turns it on.
	step(t, ctx, "open the turn-on page", chromedp.Click(chromedp.CSS(fmt.Sprintf(`#cert-%s a.turnon`, id))),
		chromedp.WaitVisible(chromedp.ID("confirm-turn-on")))
	assert.Contains(t, eval[string](t, ctx, `document.getElementById("readiness").textContent`), "trusted on 1 of 2 devices (50%")
	assert.Contains(t, eval[string](t, ctx, `document.getElementById("guard").textContent`), "laptop-behind", "the guard lists the device not ready")
	checkAccessible(t, ctx, "turn-on")
	screenshot(t, ctx, "dashboard-turn-on")
	submit(t, ctx, "confirm without the override", chromedp.CSS("#confirm-turn-on"))
	code, apiBody := p.api(t, http.MethodPatch, "/gateway/configuration",
		strings.NewReader(fmt.Sprintf(`{"settings":{"certificate":{"id":%q}}}`, id)))
	require.Equal(t, http.StatusConflict, code, "%s", apiBody)
	var guard struct {
		Errors []struct{ Message string } `json:"errors"`
	}
	require.NoError(t, json.Unmarshal(apiBody, &guard))
	assert.Equal(t, "Refused: "+guard.Errors[0].Message, flash(t, ctx), "the dashboard refuses with the API's message")
	assert.Contains(t, guard.Errors[0].Message, "ready on 1 of 2 active devices (50%), below the minimum of 95%")
	step(t, ctx, "tick the override with the keyboard", chromedp.Focus(chromedp.ID("force")), chromedp.KeyEvent(" "))
	require.True(t, eval[bool](t, ctx, `document.getElementById("force").checked`), "the override is ticked")
	submit(t, ctx, "confirm with the override", chromedp.CSS("#confirm-turn-on"))
	assert.Contains(t, flash(t, ctx), "Turned on")
	assert.Equal(t, "Available and In-Use", rowStatus(t, ctx, id))
	assert.Equal(t, "Available", rowStatus(t, ctx, initial), "the previous root is demoted to Available")

	// The devices page lists both; filtered to the new root, only the one
	// not ready.
	step(t, ctx, "open the devices page", chromedp.Click(chromedp.CSS(`nav a[href="/dashboard/devices"]`)),
		chromedp.WaitVisible(chromedp.ID("devices")))
	checkAccessible(t, ctx, "devices")
	hosts := eval[[]string](t, ctx, `Array.prototype.map.call(document.querySelectorAll("#devices tbody .name"),function(e){return e.textContent})`)
	assert.ElementsMatch(t, []string{"laptop-ready", "laptop-behind"}, hosts)
	checkFits(t, ctx, "devices")
	screenshot(t, ctx, "dashboard-devices")
	step(t, ctx, "filter to not ready", chromedp.SetValue(chromedp.ID("not_ready"), id), chromedp.Click(chromedp.ID("filter")),
		chromedp.WaitVisible(chromedp.ID("filter-summary")))
	step(t, ctx, "wait for the filtered list", chromedp.WaitVisible(chromedp.CSS(`#devices td[data-label="Missing from"]`)))
	hosts = eval[[]string](t, ctx, `Array.prototype.map.call(document.querySelectorAll("#devices tbody .name"),function(e){return e.textContent})`)
	assert.Equal(t, []string{"laptop-behind"}, hosts, "devices not ready for the new root")

	// Settings: a refused value gets the API's words; a good one is saved.
	step(t, ctx, "open settings", chromedp.Click(chromedp.CSS(`nav a[href="/dashboard/settings"]`)),
		chromedp.WaitVisible(chromedp.ID("settings-form")))
	checkAccessible(t, ctx, "settings")
	assert.Equal(t, "95", eval[string](t, ctx, `document.getElementById("min_readiness").value`))
	screenshot(t, ctx, "dashboard-settings")
	step(t, ctx, "bad active days", chromedp.SetValue(chromedp.ID("device_active_days"), "0"),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("settings-form").noValidate = true`))
	submit(t, ctx, "save bad settings", chromedp.CSS("#save-settings"))
	assert.Contains(t, flash(t, ctx), "device_active_days must be 1..")
	step(t, ctx, "good settings", chromedp.SetValue(chromedp.ID("min_readiness"), "50"), chromedp.SetValue(chromedp.ID("device_active_days"), "14"))
	submit(t, ctx, "save settings", chromedp.CSS("#save-settings"))
	assert.Equal(t, "Settings saved.", flash(t, ctx))
	code, body = p.apiPath(t, http.MethodGet, "/certplane/settings")
	require.Equal(t, http.StatusOK, code)
	assert.JSONEq(t, `{"min_readiness":0.5,"device_active_days":14}`, string(resultOf(t, body)))
	step(t, ctx, "back to the list", chromedp.Click(chromedp.CSS(`nav a[href="/dashboard/certificates"]`)), chromedp.WaitVisible(chromedp.ID("certs")))

	// Download both formats and compare them with the API's.
	for _, format := range []string{"pem", "crt"} {
		step(t, ctx, "download "+format, chromedp.Click(chromedp.CSS(fmt.Sprintf(`#cert-%s a[href$="format=%s"]`, id, format))))
		file := waitFile(t, downloads, id+"."+format)
		code, want := p.api(t, http.MethodGet, "/gateway/certificates/"+id+"/download?format="+format, nil)
		require.Equal(t, http.StatusOK, code)
		assert.Equal(t, want, file, "the dashboard's .%s is the API's", format)
	}

	// The in-use root cannot be deactivated: the button is disabled with the
	// reason, and a forged POST gets the API's 409 and words.
	assert.True(t, eval[bool](t, ctx, fmt.Sprintf(`document.querySelector('#cert-%s [aria-describedby="why-deact-%s"]').disabled`, id, id)))
	res := eval[[]string](t, ctx, fmt.Sprintf(`(function(){
		var csrf=document.querySelector('input[name=csrf_token]').value;
		return fetch("/dashboard/certificates/%s/deactivate",{method:"POST",body:new URLSearchParams({csrf_token:csrf})})
			.then(function(r){return r.text().then(function(t){return [String(r.status),t]})});})()`, id))
	code, apiBody = p.api(t, http.MethodPost, "/gateway/certificates/"+id+"/deactivate", nil)
	require.Equal(t, http.StatusConflict, code)
	var env struct {
		Errors []struct{ Message string } `json:"errors"`
	}
	require.NoError(t, json.Unmarshal(apiBody, &env))
	assert.Equal(t, "409", res[0], "refusal status")
	assert.Contains(t, res[1], htmlEscape(env.Errors[0].Message), "the dashboard refuses with the API's message")

	// Turn the first root back on, then deactivate ours: Pending, then
	// Inactive, again without a reload; then delete it.
	step(t, ctx, "open the first root's turn-on page", chromedp.Navigate(p.base+"/dashboard/certificates/"+initial+"/turn-on"))
	submit(t, ctx, "turn the first root back on", chromedp.CSS("#confirm-turn-on"))
	assert.Equal(t, "Available and In-Use", rowStatus(t, ctx, initial))
	submit(t, ctx, "deactivate", chromedp.CSS(fmt.Sprintf(`#cert-%s button.deactivate`, id)))
	assert.Equal(t, "Pending", rowStatus(t, ctx, id))
	waitStatus(t, ctx, id, "Inactive")
	step(t, ctx, "open the delete page", chromedp.Click(chromedp.CSS(fmt.Sprintf(`#cert-%s a.delete`, id))),
		chromedp.WaitVisible(chromedp.ID("confirm-delete")))
	checkAccessible(t, ctx, "delete")
	submit(t, ctx, "confirm the deletion", chromedp.CSS("#confirm-delete"))
	assert.Contains(t, flash(t, ctx), "Deleted")
	assert.Equal(t, "(gone)", rowStatus(t, ctx, id))
	code, _ = p.api(t, http.MethodGet, "/gateway/certificates/"+id, nil)
	assert.Equal(t, http.StatusNotFound, code, "deleted through the dashboard means gone from the API")

	// Upload a custom root: it appears Inactive, of type Custom.
	certPEM, keyPEM := newCA(t, "Example Inc. Inspection CA")
	step(t, ctx, "open the upload form", chromedp.Click(chromedp.CSS("#upload-details > summary")),
		chromedp.WaitVisible(chromedp.ID("up-name")),
		chromedp.SendKeys(chromedp.ID("up-name"), "Example root"),
		chromedp.SetValue(chromedp.ID("up-cert"), certPEM),
		chromedp.SetValue(chromedp.ID("up-key"), keyPEM))
	submit(t, ctx, "upload", chromedp.CSS("#upload"))
	assert.Contains(t, flash(t, ctx), "Uploaded custom certificate")
	assert.Equal(t, []string{"Custom", "Inactive"}, eval[[]string](t, ctx,
		`(function(){var n=Array.prototype.find.call(document.querySelectorAll("#certs .name"),function(e){return e.textContent==="Example root"});
		if(!n) return [];var tr=n.closest("tr");return [tr.querySelector('td[data-label="Type"]').textContent, tr.dataset.status]})()`))

	// A POST without the CSRF token is refused.
	status := eval[int](t, ctx, `fetch("/dashboard/certificates/generate",{method:"POST",body:new URLSearchParams({validity:"recommended"})}).then(function(r){return r.status})`)
	assert.Equal(t, http.StatusForbidden, status, "POST without CSRF token")

	checkPhone(t, ctx, "dashboard-certificates")

	// Log out: the session is gone, on the server too.
	step(t, ctx, "log out", chromedp.Click(chromedp.CSS(`form[action="/dashboard/logout"] button`)),
		chromedp.WaitVisible(chromedp.ID("token")))
	assert.Nil(t, cookie(t, ctx, p.base), "the browser dropped the session cookie")
	code, loc := get(t, p.base+"/dashboard/certificates", session.Value)
	assert.Equal(t, http.StatusSeeOther, code, "the old session cookie no longer works")
	assert.True(t, strings.HasPrefix(loc, "/dashboard/login"), "redirect to login: got %q", loc)
}

// TestBrowserReadOnly: a read token sees the list without any write
// control, its forged POSTs get 403, and revoking it ends the session.
func TestBrowserReadOnly(t *testing.T) {
	p := startPlane(t, "2s")
	ctx, _ := newBrowser(t)
	login(t, ctx, p, p.read)
	checkAccessible(t, ctx, "certificates (read-only)")
	screenshot(t, ctx, "dashboard-read-only")

	forms := eval[[]string](t, ctx, `Array.prototype.map.call(document.querySelectorAll("form"),function(f){return f.getAttribute("action")})`)
	assert.Equal(t, []string{"/dashboard/logout"}, forms, "a read token gets no write form")
	buttons := eval[[]string](t, ctx, `Array.prototype.map.call(document.querySelectorAll("button:not(.copy)"),function(b){return b.textContent.trim()})`)
	assert.Equal(t, []string{"Log out"}, buttons, "a read token gets no write button")
	assert.Contains(t, eval[string](t, ctx, `document.querySelector(".notice").textContent`), "read-only")

	initial := eval[string](t, ctx, `document.querySelector("tbody tr[data-id]").dataset.id`)
	csrf := eval[string](t, ctx, `document.querySelector('input[name=csrf_token]').value`)
	for _, path := range []string{"/generate", "/" + initial + "/deactivate", "/" + initial + "/turn-on", "/upload"} {
		res := eval[[]string](t, ctx, fmt.Sprintf(`fetch("/dashboard/certificates%s",{method:"POST",body:new URLSearchParams({csrf_token:%q,validity:"recommended"})})
			.then(function(r){return r.text().then(function(t){return [String(r.status),t]})})`, path, csrf))
		assert.Equal(t, "403", res[0], "forged POST %s", path)
		assert.Contains(t, res[1], "this operation needs a write token", "forged POST %s: the API's words", path)
	}
	code, body := p.api(t, http.MethodGet, "/gateway/certificates", nil)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, 1, strings.Count(string(body), `"id"`), "nothing was generated")

	// Revoking the token ends the session at the next request.
	runCLI(t, "token", "revoke", "--data-dir", p.dataDir, "--account", p.account, "--id", p.read)
	step(t, ctx, "reload after revocation", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("token")))
	assert.Contains(t, flash(t, ctx), "revoked")
}

// htmlEscape is how html/template writes an apostrophe and friends.
func htmlEscape(s string) string {
	return strings.NewReplacer("'", "&#39;", `"`, "&#34;", "&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
