package runtimes

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/certagent/certagent/platform"
	"github.com/certagent/certagent/trust"
)

// Finding is one runtime found on this machine and the CA stores it will
// load, each read for the fingerprints it holds.
type Finding struct {
	// Runtime is the runtime's name ("node", "python requests", "Firefox").
	Runtime string `json:"runtime"`
	// Program is where it was found.
	Program string `json:"program"`
	// Sources are the CA stores it loads, as resolved for a new session.
	Sources []Source `json:"sources"`
	// Rule says how the sources combine: RuleAny (one holding the root is
	// enough), RuleAll (each is a separate profile or database and all must
	// hold it), RulePolicyOrAll (Firefox: the policy, or every profile).
	Rule Rule `json:"rule"`
	// Note is what the reader should know (a store that cannot be read).
	Note string `json:"note,omitempty"`
}

// Rule is how a finding's sources combine.
type Rule string

// The rules.
const (
	RuleAny         Rule = "any"
	RuleAll         Rule = "all"
	RulePolicyOrAll Rule = "policy-or-all"
)

// Source is one CA store a runtime loads.
type Source struct {
	// What says what it is and why it is used ("NODE_EXTRA_CA_CERTS from
	// /etc/profile.d/certagent-runtimes.sh").
	What string `json:"what"`
	// Path is the file, database or keystore.
	Path string `json:"path,omitempty"`
	// Policy marks Firefox's enterprise policy among its profiles.
	Policy bool `json:"policy,omitempty"`
	// Err is why it could not be read ("" when it was).
	Err string `json:"error,omitempty"`

	fps map[trust.Fingerprint]bool
}

// NewSource returns a source that was read and holds fps (for callers that
// read a store themselves, and tests).
func NewSource(what, path string, fps ...trust.Fingerprint) Source {
	s := Source{What: what, Path: path, fps: make(map[trust.Fingerprint]bool, len(fps))}
	for _, fp := range fps {
		s.fps[fp] = true
	}
	return s
}

// Holds reports whether the source was read and holds fp.
func (s Source) Holds(fp trust.Fingerprint) bool { return s.fps[fp] }

// Trusts reports whether the runtime will trust fp, and whether that can be
// told at all (false when a store it needs could not be read or it has
// none we can read).
func (f Finding) Trusts(fp trust.Fingerprint) (trusted, known bool) {
	readable, held, profiles, profilesHeld := 0, 0, 0, 0
	policy := false
	for _, s := range f.Sources {
		if s.Err != "" {
			continue
		}
		readable++
		if s.Holds(fp) {
			held++
		}
		if s.Policy {
			policy = policy || s.Holds(fp)
			continue
		}
		profiles++
		if s.Holds(fp) {
			profilesHeld++
		}
	}
	switch f.Rule {
	case RuleAll:
		if readable < len(f.Sources) || readable == 0 {
			return false, false
		}
		return held == readable, true
	case RulePolicyOrAll:
		if policy {
			return true, true
		}
		return profiles > 0 && profilesHeld == profiles, readable == len(f.Sources)
	default:
		if held > 0 {
			return true, true
		}
		return false, readable == len(f.Sources) && readable > 0
	}
}

// ProbeOptions are what the probe reads; the zero value probes this
// machine as the calling user would see it.
type ProbeOptions struct {
	// LookPath finds a program; nil means exec.LookPath over $PATH and
	// the usual system directories.
	LookPath func(name string) (string, error)
	// Runner runs the programs asked where they look (node, python3, git,
	// keytool), each bounded by Timeout; nil means a platform.ExecRunner.
	Runner platform.Runner
	// Getenv returns a variable as a new login session gets it and where
	// from; nil means this process's environment, else certagent's wiring.
	Getenv func(name string) (value, from string)
	// SystemBundle is the OS's CA file (OpenSSL, curl, git); "" means the
	// first distro bundle that exists.
	SystemBundle string
	// Home is the calling user's home (~/.aws/config, ~/.curlrc); "" means
	// $HOME.
	Home string
	// Browsers lists Firefox's policy and every NSS database's roots; nil
	// means browsers are not probed.
	Browsers func(ctx context.Context) (policy *trust.Inventory, policyErr error, nssInv *trust.Inventory, nssErr error)
	// Timeout bounds each program run; 0 means 10 s.
	Timeout time.Duration
}

// systemDirs are searched after $PATH: status runs under sudo and service
// managers with short ones.
var systemDirs = []string{"/usr/local/bin", "/usr/bin", "/bin", "/opt/homebrew/bin", "/snap/bin"}

func (o *ProbeOptions) defaults() {
	if o.LookPath == nil {
		o.LookPath = func(name string) (string, error) {
			if p, err := exec.LookPath(name); err == nil {
				return p, nil
			}
			for _, d := range systemDirs {
				p := filepath.Join(d, name)
				if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
					return p, nil
				}
			}
			return "", exec.ErrNotFound
		}
	}
	if o.Runner == nil {
		o.Runner = &platform.ExecRunner{}
	}
	if o.Getenv == nil {
		wired := WiredSettings("")
		o.Getenv = func(name string) (string, string) {
			if v := os.Getenv(name); v != "" {
				return v, "this environment"
			}
			if v := wired[name]; v != "" {
				return v, "certagent's " + ProfileScript + " (new logins)"
			}
			return "", ""
		}
	}
	if o.SystemBundle == "" {
		for _, p := range systemBundles {
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
				o.SystemBundle = p
				break
			}
		}
	}
	if o.Home == "" {
		o.Home, _ = os.UserHomeDir()
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
}

// systemBundles are the distro CA files, most common first (macOS's is
// /etc/ssl/cert.pem).
var systemBundles = []string{
	"/etc/ssl/certs/ca-certificates.crt",
	"/etc/pki/tls/certs/ca-bundle.crt",
	"/etc/ssl/ca-bundle.pem",
	"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
	"/etc/ssl/cert.pem",
}

// WiredSettings returns the variables certagent's profile script sets (what
// a new login shell gets), read from the file itself; empty when it is
// absent or not ours. root prefixes the path (tests).
func WiredSettings(root string) map[string]string {
	out := make(map[string]string)
	data, _, ours, err := ownership(filepath.Join(root, ProfileScript))
	if err != nil || !ours {
		return out
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		_, assign, ok := strings.Cut(sc.Text(), "|| export ")
		if !ok {
			continue
		}
		if k, v, ok := strings.Cut(strings.TrimSpace(assign), "="); ok {
			out[k] = v
		}
	}
	return out
}

// Probe finds the runtimes on this machine and reads the CA stores each
// will load. Every program run is bounded by o.Timeout and the probes run
// side by side, so the whole takes about one timeout at worst. Runtimes not
// installed are left out.
func Probe(ctx context.Context, o ProbeOptions) []Finding {
	o.defaults()
	pr := &prober{ProbeOptions: o}
	if b := o.Browsers; b != nil {
		// Firefox and Chromium share one listing of the NSS databases.
		var once sync.Once
		var pol, inv *trust.Inventory
		var polErr, invErr error
		pr.Browsers = func(ctx context.Context) (*trust.Inventory, error, *trust.Inventory, error) {
			once.Do(func() { pol, polErr, inv, invErr = b(ctx) })
			return pol, polErr, inv, invErr
		}
	}
	probes := []func(context.Context, *prober) *Finding{
		probeNode, probeRequests, probeCertifi, probePip, probeAWS, probeGcloud,
		probeGit, probeCurl, probeJava, probeFirefox, probeChromium,
	}
	out := make([]*Finding, len(probes))
	var wg sync.WaitGroup
	for i, p := range probes {
		wg.Go(func() { out[i] = p(ctx, pr) })
	}
	wg.Wait()
	var res []Finding
	for _, f := range out {
		if f != nil {
			res = append(res, *f)
		}
	}
	return res
}

// run runs a program briefly and returns its stdout and stderr.
func (o *ProbeOptions) run(ctx context.Context, path string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	env := []string{"PATH=" + platform.DefaultPath, "LANG=C"}
	if o.Home != "" {
		env = append(env, "HOME="+o.Home)
	}
	return o.Runner.Run(ctx, platform.Cmd{Path: path, Args: args, Env: env})
}

// maxBundle bounds what is read of a CA file.
const maxBundle = 32 << 20

// fileSource reads a PEM file's fingerprints.
func fileSource(what, path string) Source {
	s := Source{What: what, Path: path}
	f, err := os.Open(path)
	if err != nil {
		s.Err = err.Error()
		return s
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxBundle))
	if err != nil {
		s.Err = err.Error()
		return s
	}
	s.fps = pemFingerprints(data)
	return s
}

func pemFingerprints(data []byte) map[trust.Fingerprint]bool {
	fps := make(map[trust.Fingerprint]bool)
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" || b.Type == "TRUSTED CERTIFICATE" {
			fps[trust.FingerprintOf(b.Bytes)] = true
		}
	}
	return fps
}

// envFile returns the source a CA-file variable names, if set.
func (o *ProbeOptions) envFile(name string) (Source, bool) {
	v, from := o.Getenv(name)
	if v == "" {
		return Source{}, false
	}
	return fileSource(name+" from "+from, v), true
}

func (o *ProbeOptions) system(what string) Source {
	if o.SystemBundle == "" {
		return Source{What: what, Err: "no system CA file found"}
	}
	return fileSource(what, o.SystemBundle)
}

func probeNode(ctx context.Context, o *prober) *Finding {
	prog, err := o.LookPath("node")
	if err != nil {
		if prog, err = o.LookPath("nodejs"); err != nil {
			return nil
		}
	}
	f := &Finding{Runtime: "node", Program: prog, Rule: RuleAny}
	out, err := o.run(ctx, prog, "-p", `JSON.stringify({openssl: !!process.config.variables.node_use_openssl_ca, version: process.version})`)
	var info struct {
		OpenSSL bool   `json:"openssl"`
		Version string `json:"version"`
	}
	if err != nil || json.Unmarshal(bytes.TrimSpace(out), &info) != nil {
		f.Note = fmt.Sprintf("could not ask node where it looks: %v", err)
	}
	f.Sources = append(f.Sources, Source{What: "its built-in Mozilla roots " + info.Version, fps: map[trust.Fingerprint]bool{}})
	opts, _ := o.Getenv("NODE_OPTIONS")
	if info.OpenSSL || strings.Contains(opts, "--use-openssl-ca") || strings.Contains(opts, "--use-system-ca") {
		f.Sources = append(f.Sources, o.system("the OS store (built with, or NODE_OPTIONS asks for, the system CA)"))
	}
	if s, ok := o.envFile("NODE_EXTRA_CA_CERTS"); ok {
		f.Sources = append(f.Sources, s)
	}
	return f
}

// pythonInfo asks python3 where requests, certifi and pip look.
type pythonInfo struct {
	Requests string `json:"requests"`
	Certifi  string `json:"certifi"`
	Pip      string `json:"pip"`
	PipCert  string `json:"pip_vendored"`
}

const pythonScript = `import json
d = {}
try:
    import requests.utils
    d["requests"] = requests.utils.DEFAULT_CA_BUNDLE_PATH
except Exception:
    pass
try:
    import certifi
    d["certifi"] = certifi.where()
except Exception:
    pass
try:
    import pip
    d["pip"] = pip.__version__
    from pip._vendor import certifi as pc
    d["pip_vendored"] = pc.where()
except Exception:
    pass
print(json.dumps(d))`

// prober is one Probe run: the options and what its probes share.
type prober struct {
	ProbeOptions

	pyOnce sync.Once
	pyProg string      // set by pyOnce
	pyInfo *pythonInfo // set by pyOnce; nil without python3
}

// python runs the script once per Probe; the three python probes share it.
func (o *prober) python(ctx context.Context) (string, *pythonInfo) {
	o.pyOnce.Do(func() {
		prog, err := o.LookPath("python3")
		if err != nil {
			return
		}
		o.pyProg, o.pyInfo = prog, &pythonInfo{}
		out, err := o.run(ctx, prog, "-c", pythonScript)
		if err == nil {
			_ = json.Unmarshal(lastLine(out), o.pyInfo)
		}
	})
	return o.pyProg, o.pyInfo
}

func lastLine(b []byte) []byte {
	b = bytes.TrimSpace(b)
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		return b[i+1:]
	}
	return b
}

func probeRequests(ctx context.Context, o *prober) *Finding {
	prog, info := o.python(ctx)
	if info == nil || info.Requests == "" {
		return nil
	}
	f := &Finding{Runtime: "python requests", Program: prog, Rule: RuleAny}
	for _, v := range []string{"REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"} {
		if s, ok := o.envFile(v); ok {
			f.Sources = append(f.Sources, s)
			return f
		}
	}
	f.Sources = append(f.Sources, fileSource("requests' default (DEFAULT_CA_BUNDLE_PATH)", info.Requests))
	return f
}

func probeCertifi(ctx context.Context, o *prober) *Finding {
	prog, info := o.python(ctx)
	if info == nil || info.Certifi == "" {
		return nil
	}
	return &Finding{Runtime: "python certifi", Program: prog, Rule: RuleAny,
		Sources: []Source{fileSource("certifi.where() (httpx, urllib3 and others that use certifi)", info.Certifi)}}
}

func probePip(ctx context.Context, o *prober) *Finding {
	prog, info := o.python(ctx)
	if info == nil || info.Pip == "" {
		return nil
	}
	f := &Finding{Runtime: "pip", Program: prog + " -m pip " + info.Pip, Rule: RuleAny}
	if s, ok := o.envFile("PIP_CERT"); ok {
		f.Sources = append(f.Sources, s)
		return f
	}
	// pip's own config files, as pip resolves them.
	out, err := o.run(ctx, prog, "-m", "pip", "config", "list")
	if err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(l), "=")
			if ok && (k == "global.cert" || k == "download.cert" || k == "install.cert") {
				f.Sources = append(f.Sources, fileSource("pip config "+k, strings.Trim(v, `'"`)))
				return f
			}
		}
	}
	if info.PipCert != "" {
		f.Sources = append(f.Sources, fileSource("pip's vendored certifi", info.PipCert))
	}
	return f
}

func probeAWS(_ context.Context, o *prober) *Finding {
	prog, err := o.LookPath("aws")
	if err != nil {
		return nil
	}
	f := &Finding{Runtime: "aws", Program: prog, Rule: RuleAny}
	if s, ok := o.envFile("AWS_CA_BUNDLE"); ok {
		f.Sources = append(f.Sources, s)
		return f
	}
	if v := iniValue(filepath.Join(o.Home, ".aws", "config"), "default", "ca_bundle"); v != "" {
		f.Sources = append(f.Sources, fileSource("ca_bundle in ~/.aws/config", v))
		return f
	}
	f.Sources = append(f.Sources, Source{What: "the roots bundled with the AWS CLI", Err: "not set: the CLI uses its own bundled roots (set AWS_CA_BUNDLE; the runtimes store does)"})
	return f
}

func probeGcloud(_ context.Context, o *prober) *Finding {
	prog, err := o.LookPath("gcloud")
	if err != nil {
		return nil
	}
	f := &Finding{Runtime: "gcloud", Program: prog, Rule: RuleAny}
	if s, ok := o.envFile("CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE"); ok {
		f.Sources = append(f.Sources, s)
		return f
	}
	user := filepath.Join(o.Home, ".config", "gcloud", "configurations", "config_default")
	real, _ := filepath.EvalSymlinks(prog)
	install := filepath.Join(filepath.Dir(filepath.Dir(real)), "properties")
	for _, p := range []string{user, install} {
		if v := iniValue(p, "core", "custom_ca_certs_file"); v != "" {
			f.Sources = append(f.Sources, fileSource("core/custom_ca_certs_file in "+p, v))
			return f
		}
	}
	f.Sources = append(f.Sources, Source{What: "the roots bundled with the Cloud SDK", Err: "not set: gcloud uses its own bundled roots (set CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE; the runtimes store does)"})
	return f
}

func probeGit(ctx context.Context, o *prober) *Finding {
	prog, err := o.LookPath("git")
	if err != nil {
		return nil
	}
	f := &Finding{Runtime: "git", Program: prog, Rule: RuleAny}
	if s, ok := o.envFile("GIT_SSL_CAINFO"); ok {
		f.Sources = append(f.Sources, s)
		return f
	}
	if out, err := o.run(ctx, prog, "config", "--get", "http.sslCAInfo"); err == nil && len(bytes.TrimSpace(out)) > 0 {
		f.Sources = append(f.Sources, fileSource("http.sslCAInfo (git config)", string(bytes.TrimSpace(out))))
		return f
	}
	f.Sources = append(f.Sources, o.system("the OS store (libcurl's default)"))
	return f
}

func probeCurl(_ context.Context, o *prober) *Finding {
	prog, err := o.LookPath("curl")
	if err != nil {
		return nil
	}
	f := &Finding{Runtime: "curl", Program: prog, Rule: RuleAny}
	for _, v := range []string{"CURL_CA_BUNDLE", "SSL_CERT_FILE"} {
		if s, ok := o.envFile(v); ok {
			f.Sources = append(f.Sources, s)
			return f
		}
	}
	if v := curlrcCACert(filepath.Join(o.Home, ".curlrc")); v != "" {
		f.Sources = append(f.Sources, fileSource("cacert in ~/.curlrc", v))
		return f
	}
	f.Sources = append(f.Sources, o.system("the OS store (curl's default)"))
	return f
}

func probeJava(ctx context.Context, o *prober) *Finding {
	prog, err := o.LookPath("java")
	if err != nil {
		return nil
	}
	f := &Finding{Runtime: "java", Program: prog, Rule: RuleAny}
	home, _ := o.Getenv("JAVA_HOME")
	if home == "" {
		real, err := filepath.EvalSymlinks(prog)
		if err != nil {
			real = prog
		}
		home = filepath.Dir(filepath.Dir(real))
	}
	cacerts := filepath.Join(home, "lib", "security", "cacerts")
	keytool := filepath.Join(home, "bin", "keytool")
	s := Source{What: "the JDK's cacerts", Path: cacerts}
	out, err := o.run(ctx, keytool, "-list", "-rfc", "-keystore", cacerts, "-storepass", "changeit")
	if err != nil {
		s.Err = fmt.Sprintf("keytool -list: %v", err)
	} else {
		s.fps = pemFingerprints(out)
	}
	f.Sources = append(f.Sources, s)
	return f
}

// isFirefoxDB reports whether an NSS database path is a Firefox profile's.
func isFirefoxDB(p string) bool { return strings.Contains(p, "mozilla/firefox") }

func probeFirefox(ctx context.Context, o *prober) *Finding {
	if o.Browsers == nil {
		return nil
	}
	prog, err := o.LookPath("firefox")
	if err != nil {
		if prog, err = o.LookPath("firefox-esr"); err != nil {
			return nil
		}
	}
	f := &Finding{Runtime: "Firefox", Program: prog, Rule: RulePolicyOrAll}
	pol, polErr, inv, nssErr := o.Browsers(ctx)
	ps := Source{What: "enterprise policy Certificates.Install (imported into every profile at start)", Policy: true}
	if polErr != nil {
		ps.Err = polErr.Error()
	} else {
		ps.fps = inventoryFPs(pol, func(trust.Target) bool { return true })
	}
	f.Sources = append(f.Sources, ps)
	f.Sources = append(f.Sources, nssSources(inv, nssErr, isFirefoxDB, "profile of user ")...)
	return f
}

func probeChromium(ctx context.Context, o *prober) *Finding {
	if o.Browsers == nil {
		return nil
	}
	var prog string
	for _, n := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "brave-browser", "microsoft-edge"} {
		if p, err := o.LookPath(n); err == nil {
			prog = p
			break
		}
	}
	if prog == "" {
		return nil
	}
	f := &Finding{Runtime: "Chromium", Program: prog, Rule: RuleAll}
	_, _, inv, nssErr := o.Browsers(ctx)
	f.Sources = nssSources(inv, nssErr, func(p string) bool { return !isFirefoxDB(p) }, "NSS database of user ")
	if len(f.Sources) == 0 {
		f.Note = "no ~/.pki/nssdb: Chromium on Linux reads only that and its built-in roots (the nss store creates it)"
	}
	return f
}

func nssSources(inv *trust.Inventory, err error, keep func(string) bool, what string) []Source {
	if err != nil {
		return []Source{{What: "NSS databases", Err: err.Error()}}
	}
	if inv == nil {
		return nil
	}
	var out []Source
	for _, t := range inv.Targets {
		if t.User == "" || !keep(t.Path) {
			continue
		}
		out = append(out, Source{What: what + t.User, Path: t.Path, fps: inventoryFPs(inv, func(x trust.Target) bool { return x == t })})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

func inventoryFPs(inv *trust.Inventory, in func(trust.Target) bool) map[trust.Fingerprint]bool {
	fps := make(map[trust.Fingerprint]bool)
	if inv == nil {
		return fps
	}
	for _, e := range inv.Entries {
		if in(e.Target) {
			fps[e.FP] = true
		}
	}
	return fps
}

// iniValue reads key in [section] of a small INI file; "" when absent.
func iniValue(path, section, key string) string {
	data, err := readSmall(path)
	if err != nil {
		return ""
	}
	cur := ""
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]") {
			cur = strings.TrimSpace(l[1 : len(l)-1])
			continue
		}
		if k, v, ok := strings.Cut(l, "="); ok && cur == section && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// curlrcCACert reads a cacert option from a .curlrc.
func curlrcCACert(path string) string {
	data, err := readSmall(path)
	if err != nil {
		return ""
	}
	v := ""
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		for _, k := range []string{"cacert", "--cacert"} {
			if rest, ok := strings.CutPrefix(l, k); ok && (strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, "=") || strings.HasPrefix(rest, ":")) {
				v = strings.Trim(strings.TrimSpace(strings.TrimLeft(rest, " =:")), `"`)
			}
		}
	}
	return v
}

func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 1<<20+1))
	if err != nil {
		return nil, err
	}
	if len(data) > 1<<20 {
		return nil, errors.New("too large")
	}
	return data, nil
}
