package dashboard_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/controlplane/cli"
	"github.com/certagent/certagent/internal/testenv"
)

// chromiumPath is Debian's chromium, installed by scripts/install-deps.sh.
const chromiumPath = "/usr/bin/chromium"

// envScreenshots names a directory to write the pages' screenshots to
// (scripts regenerate docs/dashboard-*.png with it); unset, none are kept.
const envScreenshots = "CERTPLANE_SCREENSHOTS"

// lockedBuffer collects serve's log from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// plane is a real `certplane serve` on SQLite with one account.
type plane struct {
	base    string // http://127.0.0.1:PORT
	dataDir string
	account string
	write   string // a write token
	read    string // a read token
	device  string // a device token, made by the first checkIn
	logs    *lockedBuffer
}

// runCLI runs one certplane command and returns its stdout.
func runCLI(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Main(context.Background(), args, cli.Env{Stdout: &out, Stderr: &errb})
	require.Equal(t, 0, code, "certplane %s: %s", strings.Join(args, " "), errb.String())
	return strings.TrimSpace(out.String())
}

// startPlane runs `certplane serve` in-process on a free port, with the
// given deploy delay, and creates an account with a write and a read token.
func startPlane(t *testing.T, delay string) *plane {
	t.Helper()
	dir := t.TempDir()
	p := &plane{dataDir: dir, logs: &lockedBuffer{}}
	p.account = runCLI(t, "account", "create", "--data-dir", dir, "--name", "Acme Corp")
	p.write = runCLI(t, "token", "create", "--data-dir", dir, "--account", p.account, "--scope", "write")
	p.read = runCLI(t, "token", "create", "--data-dir", dir, "--account", p.account, "--scope", "read")

	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan int, 1)
	go func() {
		done <- cli.Main(ctx, []string{"serve", "--listen", "127.0.0.1:0", "--data-dir", dir, "--deploy-delay", delay},
			cli.Env{Stdout: p.logs, Stderr: p.logs, Ready: func(a net.Addr) { ready <- a }})
	}()
	select {
	case a := <-ready:
		p.base = "http://" + a.String()
	case code := <-done:
		cancel()
		t.Fatalf("serve exited with %d: %s", code, p.logs.String())
	}
	t.Cleanup(func() {
		cancel()
		assert.Equal(t, 0, <-done, "serve exit code; logs:\n%s", p.logs.String())
		if t.Failed() {
			t.Logf("certplane serve's log:\n%s", p.logs.String())
		}
	})
	return p
}

// api calls the certplane API with the write token.
func (p *plane) api(t *testing.T, method, path string, body io.Reader) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, p.base+"/client/v4/accounts/"+p.account+path, body)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+p.write)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

// apiPath calls the certplane API at an account path with the write token.
func (p *plane) apiPath(t *testing.T, method, path string) (int, []byte) {
	t.Helper()
	return p.api(t, method, path, nil)
}

// resultOf returns the envelope's result.
func resultOf(t *testing.T, body []byte) json.RawMessage {
	t.Helper()
	var env struct {
		Result json.RawMessage `json:"result"`
	}
	require.NoError(t, json.Unmarshal(body, &env), "%s", body)
	return env.Result
}

// checkIn reports a device holding the given roots trusted in every store
// it manages (system, and nss for one user), as certagent does.
func (p *plane) checkIn(t *testing.T, host, osName string, fingerprints ...string) {
	t.Helper()
	if p.device == "" {
		p.device = runCLI(t, "token", "create", "--data-dir", p.dataDir, "--account", p.account, "--scope", "device")
	}
	c, err := api.NewClient(p.base+"/client/v4", p.account, p.device)
	require.NoError(t, err)
	in := api.CheckIn{Hostname: host, OS: osName, OSVersion: "1.0", AgentVersion: "0.9.0", SyncedAt: api.Time{Time: time.Now()}}
	for _, fp := range fingerprints {
		in.Roots = append(in.Roots, api.RootState{Fingerprint: fp, Stores: []api.StoreState{
			{Store: "system", State: api.StateTrusted}, {Store: "nss", User: "alice", State: api.StateTrusted}}})
	}
	_, err = c.CheckIn(context.Background(), uuid.NewString(), "", in)
	require.NoError(t, err, "check in %s", host)
}

// newBrowser starts headless chromium with its own profile and a download
// directory, at a laptop-sized window.
func newBrowser(t *testing.T) (ctx context.Context, downloads string) {
	t.Helper()
	chromium := testenv.RequireTool(t, chromiumPath, "chromium")
	profile := t.TempDir()
	downloads = t.TempDir()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1366, 900),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("lang", "en-US"),
		// Chromium writes crash reports and caches under HOME: keep them in
		// the test's directory (CI may run with HOME unset or read-only).
		chromedp.Env("HOME="+profile, "XDG_CONFIG_HOME="+profile, "XDG_CACHE_HOME="+profile),
	)
	if os.Geteuid() == 0 {
		// Chromium refuses to run as root with its sandbox on.
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// The first Run opens the tab on ctx itself: a tab opened under a
	// step's timeout would close with that step.
	require.NoError(t, chromedp.Do(ctx), "start chromium")
	_, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: downloads,
	})
	require.NoError(t, err, "start chromium and allow downloads")
	return ctx, downloads
}

// stepTimeout bounds one browser step, so a page that never shows what the
// test waits for fails the test instead of hanging it. Generous: `make test`
// runs every package at once on a small CI machine.
const stepTimeout = time.Minute

// step runs browser actions within stepTimeout. It ends once the page has
// loaded (stylesheet and script included): a step's wait for an element
// of a new page succeeds while its stylesheet may still be on the way, and
// the next click, aimed at where the unstyled page put its target, would
// land elsewhere once the style applies and do nothing (seen under load:
// "open the devices page" and "confirm the deletion" never navigated);
// checkAccessible would also judge the unstyled page.
func step(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	actions = append(actions, chromedp.Poll[chromedp.Void](`document.readyState === "complete"`))
	if err := chromedp.Do(sctx, actions...); err != nil {
		body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		t.Fatalf("%s: %v\npage %s, text:\n%s", what, err, loc, body)
	}
}

// submit clicks a control that loads a new page with a message, and waits
// for that message (the old page's one is removed first, so it cannot be
// mistaken for the new one).
func submit(t *testing.T, ctx context.Context, what string, sel chromedp.CSS) {
	t.Helper()
	step(t, ctx, what,
		chromedp.Evaluate[chromedp.Void](`(function(){var f=document.getElementById("flash");if(f)f.remove()})()`),
		chromedp.Click(sel),
		chromedp.WaitVisible(chromedp.ID("flash")))
}

// eval evaluates a JavaScript expression on the page.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(sctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	require.NoError(t, err, "evaluate %s", expr)
	return v
}

// screenshot saves the page as PNG under $CERTPLANE_SCREENSHOTS, if set.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv(envScreenshots)
	if dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err, "screenshot %s", name)
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644))
}

// login logs in with token using only the keyboard: Tab from the top of
// the page to the token field, type, Enter.
func login(t *testing.T, ctx context.Context, p *plane, token string) {
	t.Helper()
	step(t, ctx, "open the dashboard", chromedp.Navigate(p.base+"/dashboard/"),
		chromedp.WaitVisible(chromedp.ID("token")))
	loc, err := chromedp.Run(ctx, chromedp.Location())
	require.NoError(t, err)
	assert.Equal(t, p.base+"/dashboard/login", loc, "an anonymous visit lands on the login page")
	for i := 0; i < 5 && eval[string](t, ctx, `document.activeElement.id`) != "token"; i++ {
		step(t, ctx, "tab", chromedp.KeyEvent("\t"))
	}
	require.Equal(t, "token", eval[string](t, ctx, `document.activeElement.id`), "Tab reaches the token field")
	step(t, ctx, "type the token and press Enter",
		chromedp.KeyEvent(token), chromedp.KeyEvent("\r"),
		chromedp.WaitVisible(chromedp.ID("certs")))
}

// rowStatus returns the status word shown for a certificate.
func rowStatus(t *testing.T, ctx context.Context, id string) string {
	t.Helper()
	return eval[string](t, ctx, fmt.Sprintf(`(function(){var r=document.getElementById("cert-%s");return r?r.querySelector(".status").textContent:"(gone)"})()`, id))
}

// waitStatus waits, without reloading, until the row shows want.
func waitStatus(t *testing.T, ctx context.Context, id, want string) {
	t.Helper()
	step(t, ctx, "wait for "+want, chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`tr[data-id=%q][data-status=%q]`, id, want))))
}

// flash returns the page's one-shot message.
func flash(t *testing.T, ctx context.Context) string {
	t.Helper()
	return eval[string](t, ctx, `(document.getElementById("flash")||{textContent:""}).textContent`)
}

// checkAccessible fails for a visible form control without an accessible
// name, and for visible text below WCAG AA contrast.
func checkAccessible(t *testing.T, ctx context.Context, page string) {
	t.Helper()
	unlabelled := eval[[]string](t, ctx, `(function(){
		var bad=[];
		document.querySelectorAll("input,select,textarea,button,a[href],summary").forEach(function(el){
			if (el.type==="hidden") return;
			var r=el.getBoundingClientRect(); if (r.width===0&&r.height===0) return;
			var name=(el.getAttribute("aria-label")||"").trim();
			if (!name && el.getAttribute("aria-labelledby")) name="x";
			if (!name && el.labels && el.labels.length) name=el.labels[0].textContent.trim();
			if (!name && /^(BUTTON|A|SUMMARY)$/.test(el.tagName)) name=el.textContent.trim();
			if (!name) bad.push(el.outerHTML.slice(0,120));
		});
		return bad;})()`)
	assert.Empty(t, unlabelled, "%s: controls without an accessible name", page)
	lowContrast := eval[[]string](t, ctx, `(function(){
		function rgb(s){var m=s.match(/[\d.]+/g);return m?m.map(Number):[0,0,0,0];}
		function lum(c){var a=c.slice(0,3).map(function(v){v/=255;return v<=0.03928?v/12.92:Math.pow((v+0.055)/1.055,2.4)});return 0.2126*a[0]+0.7152*a[1]+0.0722*a[2];}
		function bg(el){for(;el;el=el.parentElement){var c=rgb(getComputedStyle(el).backgroundColor);if(c.length<4||c[3]>0)return c;}return [255,255,255,1];}
		var bad=[];
		document.querySelectorAll("body *").forEach(function(el){
			var own=Array.prototype.some.call(el.childNodes,function(n){return n.nodeType===3&&n.textContent.trim()});
			if(!own) return;
			var r=el.getBoundingClientRect(); if(r.width===0||r.height===0) return;
			var cs=getComputedStyle(el); if(cs.visibility==="hidden") return;
			var l1=lum(rgb(cs.color)),l2=lum(bg(el));
			var ratio=(Math.max(l1,l2)+0.05)/(Math.min(l1,l2)+0.05);
			var large=parseFloat(cs.fontSize)>=24||(parseFloat(cs.fontSize)>=18.66&&Number(cs.fontWeight)>=700);
			if(ratio<(large?3:4.5)) bad.push(el.tagName+" "+el.textContent.trim().slice(0,40)+" "+ratio.toFixed(2));
		});
		return bad;})()`)
	assert.Empty(t, lowContrast, "%s: text below WCAG AA contrast", page)
}

// checkFits fails if a table scrolls sideways inside its box at the
// laptop width.
func checkFits(t *testing.T, ctx context.Context, page string) {
	t.Helper()
	over := eval[[]string](t, ctx, `Array.prototype.filter.call(document.querySelectorAll(".tablewrap"),function(w){return w.scrollWidth>w.clientWidth+1}).map(function(w){return w.scrollWidth+">"+w.clientWidth})`)
	assert.Empty(t, over, "%s: a table scrolls sideways at 1366 px", page)
}

// checkPhone renders the current page at a phone's width and fails if it
// scrolls sideways; it takes the phone screenshot and restores the laptop.
func checkPhone(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	step(t, ctx, "phone viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)), chromedp.Reload())
	overflow := eval[bool](t, ctx, `document.documentElement.scrollWidth > window.innerWidth + 1`)
	assert.False(t, overflow, "%s scrolls sideways at 390 px", name)
	screenshot(t, ctx, name+"-phone")
	step(t, ctx, "laptop viewport", chromedp.EmulateViewport(1366, 900), chromedp.Reload())
}

// waitFile waits for a finished download named name.
func waitFile(t *testing.T, dir, name string) []byte {
	t.Helper()
	deadline := time.Now().Add(stepTimeout)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil && len(b) > 0 {
			return b
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("read download %s: %v", name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	entries, _ := os.ReadDir(dir)
	t.Fatalf("download %s did not finish; the directory has %v", name, entries)
	return nil
}

// cookie returns the browser's value of the session cookie (HttpOnly, so
// only the DevTools protocol can read it).
func cookie(t *testing.T, ctx context.Context, base string) *network.Cookie {
	t.Helper()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/dashboard/"}})
	require.NoError(t, err)
	for _, c := range res.Cookies {
		if c.Name == "certplane_session" {
			return c
		}
	}
	return nil
}

// get fetches a dashboard URL outside the browser with the given session
// cookie and returns the status and where a redirect points.
func get(t *testing.T, url, session string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	req.AddCookie(&http.Cookie{Name: "certplane_session", Value: session})
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Location")
}
