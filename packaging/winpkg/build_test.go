package winpkg

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/certagent/certagent/internal/testenv"
)

func tool(t *testing.T, name, pkg string) string {
	t.Helper()
	return testenv.RequireTool(t, name, pkg)
}

// exeDir holds the test program; TestMain removes it.
var exeDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if exeDir != "" {
		os.RemoveAll(exeDir)
	}
	os.Exit(code)
}

// windowsExe builds a tiny real Windows program once: the MSI tests need a
// PE file (osslsigncode signs only real ones), not the whole agent.
var windowsExe = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "certagent-winpkg-exe-")
	if err != nil {
		return "", err
	}
	exeDir = dir
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main\n\nfunc main() {}\n"), 0o644); err != nil {
		return "", err
	}
	exe := filepath.Join(dir, "certagent.exe")
	cmd := exec.Command("go", "build", "-trimpath", "-o", exe, src)
	cmd.Env = append(os.Environ(), "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0", "GO111MODULE=off")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build (windows): %v: %s", err, out)
	}
	return exe, nil
})

func buildMSI(t *testing.T, opts Options) string {
	t.Helper()
	tool(t, "wixl", "wixl")
	tool(t, "msibuild", "msitools")
	exe, err := windowsExe()
	require.NoError(t, err)
	opts.Exe = exe
	if opts.Arch == "" {
		opts.Arch = "amd64"
	}
	if opts.OutDir == "" {
		opts.OutDir = t.TempDir()
	}
	p, err := Build(context.Background(), opts)
	require.NoError(t, err)
	return p
}

// table reads one MSI table with msiinfo, as rows keyed by column name.
func table(t *testing.T, msi, name string) []map[string]string {
	t.Helper()
	msiinfo := tool(t, "msiinfo", "msitools")
	out, err := exec.Command(msiinfo, "export", msi, name).CombinedOutput()
	require.NoError(t, err, "msiinfo export %s: %s", name, out)
	lines := strings.Split(strings.TrimRight(string(out), "\r\n"), "\n")
	require.GreaterOrEqual(t, len(lines), 3, "table %s", name)
	cols := strings.Split(strings.TrimRight(lines[0], "\r"), "\t")
	var rows []map[string]string
	for _, l := range lines[3:] { // column names, column types, table name and keys
		f := strings.Split(strings.TrimRight(l, "\r"), "\t")
		row := map[string]string{}
		for i, c := range cols {
			if i < len(f) {
				row[c] = f[i]
			}
		}
		rows = append(rows, row)
	}
	return rows
}

func find(rows []map[string]string, col, val string) map[string]string {
	for _, r := range rows {
		if r[col] == val {
			return r
		}
	}
	return nil
}

func TestMSITables(t *testing.T) {
	msi := buildMSI(t, Options{Version: "1.2.3.7", Name: "1.2.3-git7"})
	assert.Equal(t, "certagent-1.2.3-git7-x64.msi", filepath.Base(msi))

	t.Run("service", func(t *testing.T) {
		svc := find(table(t, msi, "ServiceInstall"), "Name", "certagent")
		require.NotNil(t, svc, "ServiceInstall row")
		assert.Equal(t, "16", svc["ServiceType"], "own process")
		assert.Equal(t, "2", svc["StartType"], "automatic (made delayed by ServiceDelayedStart)")
		assert.Equal(t, "LocalSystem", svc["StartName"])
		assert.Equal(t, "run", svc["Arguments"])
		ctl := find(table(t, msi, "ServiceControl"), "Name", "certagent")
		require.NotNil(t, ctl, "ServiceControl row")
		// start on install (1), stop on install (2) and uninstall (0x20),
		// delete on uninstall (0x80).
		assert.Equal(t, strconv.Itoa(0x1|0x2|0x20|0x80), ctl["Event"])
	})

	t.Run("properties", func(t *testing.T) {
		props := table(t, msi, "Property")
		secure := find(props, "Property", "SecureCustomProperties")
		require.NotNil(t, secure)
		for p := range Properties {
			assert.Contains(t, strings.Split(secure["Value"], ";"), p, "secure property")
			assert.Nil(t, find(props, "Property", p), "%s must have no default: an upgrade would overwrite the saved value", p)
		}
		hidden := find(props, "Property", "MsiHiddenProperties")
		require.NotNil(t, hidden)
		assert.Contains(t, hidden["Value"], "API_TOKEN")
		assert.Equal(t, "1.2.3.7", find(props, "Property", "ProductVersion")["Value"])
		assert.Equal(t, UpgradeCode, find(props, "Property", "UpgradeCode")["Value"])
	})

	t.Run("registry", func(t *testing.T) {
		reg := table(t, msi, "Registry")
		comps := table(t, msi, "Component")
		locs := table(t, msi, "RegLocator")
		search := table(t, msi, "AppSearch")
		for prop, name := range Properties {
			r := find(reg, "Name", name)
			require.NotNil(t, r, "registry value %s", name)
			assert.Equal(t, "2", r["Root"], "HKLM")
			assert.Equal(t, `SOFTWARE\Policies\certagent`, r["Key"])
			assert.Equal(t, "["+prop+"]", r["Value"])
			c := find(comps, "Component", r["Component_"])
			require.NotNil(t, c)
			assert.Equal(t, prop, c["Condition"], "an unset property writes nothing")
			attrs, _ := strconv.Atoi(c["Attributes"])
			assert.NotZero(t, attrs&0x100, "64-bit component")
			// Remember-property: AppSearch reads the value back...
			l := find(locs, "Name", name)
			require.NotNil(t, l, "RegLocator for %s", name)
			typ, _ := strconv.Atoi(l["Type"])
			assert.Equal(t, 0x2, typ&0xf, "raw")
			assert.NotZero(t, typ&0x10, "64-bit view")
			s := find(search, "Signature_", l["Signature_"])
			require.NotNil(t, s)
			assert.Equal(t, "SAVED_"+prop, s["Property"])
		}
	})

	t.Run("upgrade", func(t *testing.T) {
		up := table(t, msi, "Upgrade")
		require.Len(t, up, 2)
		upg := find(up, "ActionProperty", "WIX_UPGRADE_DETECTED")
		require.NotNil(t, upg)
		assert.Equal(t, UpgradeCode, upg["UpgradeCode"])
		assert.Equal(t, "1.2.3.7", upg["VersionMax"])
		assert.Equal(t, strconv.Itoa(0x1|0x200), upg["Attributes"], "migrate features, max inclusive")
		down := find(up, "ActionProperty", "WIX_DOWNGRADE_DETECTED")
		require.NotNil(t, down)
		assert.Equal(t, "1.2.3.7", down["VersionMin"])
		assert.Equal(t, "2", down["Attributes"], "detect only")
	})

	t.Run("custom actions", func(t *testing.T) {
		ca := table(t, msi, "CustomAction")
		seq := table(t, msi, "InstallExecuteSequence")
		ui := table(t, msi, "InstallUISequence")
		at := func(rows []map[string]string, action string) int {
			r := find(rows, "Action", action)
			require.NotNil(t, r, "%s not sequenced", action)
			n, err := strconv.Atoi(r["Sequence"])
			require.NoError(t, err)
			return n
		}
		typ := func(action string) int {
			r := find(ca, "Action", action)
			require.NotNil(t, r, "custom action %s", action)
			n, _ := strconv.Atoi(r["Type"])
			return n
		}
		const deferred, noImpersonate = 0x400, 0x800
		for prop := range Properties {
			a := "SET_" + prop
			assert.Equal(t, 51, typ(a)&0x3f, "%s sets a property", a)
			assert.Equal(t, "[SAVED_"+prop+"]", find(ca, "Action", a)["Target"])
			for _, rows := range [][]map[string]string{seq, ui} {
				n := at(rows, a)
				assert.Greater(t, n, at(rows, "AppSearch"), a)
				assert.Less(t, n, at(rows, "LaunchConditions"), a)
				assert.Equal(t, "NOT "+prop+" AND SAVED_"+prop, find(rows, "Action", a)["Condition"])
			}
		}
		purge := find(ca, "Action", "PurgeRoots")
		require.NotNil(t, purge)
		assert.Equal(t, "CertagentExe", purge["Source"])
		assert.Equal(t, "uninstall --purge", purge["Target"])
		assert.Equal(t, deferred|noImpersonate, typ("PurgeRoots")&(deferred|noImpersonate), "deferred, as SYSTEM")
		n := at(seq, "PurgeRoots")
		assert.Greater(t, n, at(seq, "StopServices"), "purge after the daemon stopped")
		assert.Less(t, n, at(seq, "DeleteServices"))
		assert.Less(t, n, at(seq, "RemoveFiles"), "purge while the exe exists")
		assert.Equal(t, `REMOVE="ALL" AND NOT UPGRADINGPRODUCTCODE`, find(seq, "Action", "PurgeRoots")["Condition"], "never purge on a major upgrade")
		for _, a := range []string{"ServiceRecovery", "ServiceRecoveryFlag", "ServiceDelayedStart"} {
			assert.Equal(t, 34, typ(a)&0x3f, "%s runs an exe from a directory", a)
			assert.Equal(t, deferred|noImpersonate, typ(a)&(deferred|noImpersonate))
			assert.Contains(t, find(ca, "Action", a)["Target"], "sc.exe")
			n := at(seq, a)
			assert.Greater(t, n, at(seq, "InstallServices"))
			assert.Less(t, n, at(seq, "StartServices"))
		}
		at(seq, "RemoveExistingProducts")
		at(seq, "FindRelatedProducts")
	})

	t.Run("msidump", func(t *testing.T) {
		msidump := tool(t, "msidump", "msitools")
		dir := t.TempDir()
		out, err := exec.Command(msidump, "-d", dir, "-t", msi).CombinedOutput()
		require.NoError(t, err, "%s", out)
		for _, tbl := range []string{"ServiceInstall", "ServiceControl", "Upgrade", "CustomAction", "Registry", "AppSearch"} {
			b, err := os.ReadFile(filepath.Join(dir, tbl+".idt"))
			require.NoError(t, err, "msidump wrote no %s.idt", tbl)
			assert.NotEmpty(t, bytes.TrimSpace(b), tbl)
		}
		b, err := os.ReadFile(filepath.Join(dir, "ServiceInstall.idt"))
		require.NoError(t, err)
		assert.Contains(t, string(b), "LocalSystem")
	})

	t.Run("file", func(t *testing.T) {
		msiextract := tool(t, "msiextract", "msitools")
		dir := t.TempDir()
		out, err := exec.Command(msiextract, "-C", dir, msi).CombinedOutput()
		require.NoError(t, err, "%s", out)
		exe, err := windowsExe()
		require.NoError(t, err)
		want, err := os.ReadFile(exe)
		require.NoError(t, err)
		var got []byte
		_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.Name() == "certagent.exe" {
				got, _ = os.ReadFile(p)
			}
			return nil
		})
		assert.True(t, bytes.Equal(want, got), "the MSI carries the exe unchanged")
	})
}

// codeSigning mints a throwaway CA and a code-signing leaf, written as PEM.
func codeSigning(t *testing.T) (caFile, certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	caKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "certagent test code-signing CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "certagent test publisher"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	require.NoError(t, err)
	write := func(name, typ string, der []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode))
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER, 0o644), write("cert.pem", "CERTIFICATE", leafDER, 0o644),
		write("key.pem", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key), 0o600)
}

func TestMSISigned(t *testing.T) {
	oss := tool(t, "osslsigncode", "osslsigncode")
	ca, cert, key := codeSigning(t)
	msi := buildMSI(t, Options{Version: "1.2.3", SignCert: cert, SignKey: key})
	out, err := exec.Command(oss, "verify", "-CAfile", ca, "-in", msi).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "Signature verification: ok")

	// The exe inside was signed before it went in.
	dir := t.TempDir()
	o, err := exec.Command(tool(t, "msiextract", "msitools"), "-C", dir, msi).CombinedOutput()
	require.NoError(t, err, "%s", o)
	var exe string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == "certagent.exe" {
			exe = p
		}
		return nil
	})
	require.NotEmpty(t, exe)
	out, err = exec.Command(oss, "verify", "-CAfile", ca, "-in", exe).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "Signature verification: ok")

	// And a different CA does not vouch for it.
	otherCA, _, _ := codeSigning(t)
	_, err = exec.Command(oss, "verify", "-CAfile", otherCA, "-in", msi).CombinedOutput()
	assert.Error(t, err, "verified against an unrelated CA")
}

func TestBuildBadOptions(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "x.exe")
	require.NoError(t, os.WriteFile(exe, []byte("MZ"), 0o644))
	out := filepath.Join(dir, "out")
	tests := []struct {
		name string
		opts Options
	}{
		{"arm64", Options{Version: "1.0.0", Arch: "arm64", Exe: exe, OutDir: out}},
		{"no version", Options{Arch: "amd64", Exe: exe, OutDir: out}},
		{"non-numeric version", Options{Version: "1.2.3-git5", Arch: "amd64", Exe: exe, OutDir: out}},
		{"SQL in the version", Options{Version: "1.0.0' OR '1'='1", Arch: "amd64", Exe: exe, OutDir: out}},
		{"cert without key", Options{Version: "1.0.0", Arch: "amd64", Exe: exe, OutDir: out, SignCert: "c.pem"}},
		{"name with a slash", Options{Version: "1.0.0", Name: "../x", Arch: "amd64", Exe: exe, OutDir: out}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(context.Background(), tt.opts)
			if !errors.Is(err, ErrBadOptions) {
				t.Errorf("got %v, want %v", err, ErrBadOptions)
			}
			assert.NoDirExists(t, out, "nothing written")
		})
	}
}

func TestMSIReproducible(t *testing.T) {
	mtime := time.Unix(1700000000, 0)
	a := buildMSI(t, Options{Version: "1.2.3", MTime: mtime})
	b := buildMSI(t, Options{Version: "1.2.3", MTime: mtime})
	ab, err := os.ReadFile(a)
	require.NoError(t, err)
	bb, err := os.ReadFile(b)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(ab, bb), "two unsigned builds differ")

	out, err := exec.Command(tool(t, "msiinfo", "msitools"), "suminfo", a).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "Created: "+mtime.Local().Format("Mon Jan _2 15:04:05 2006"))
	assert.Contains(t, string(out), "Template: x64;1033")
	props := table(t, a, "Property")
	assert.Equal(t, ProductCode("1.2.3"), find(props, "Property", "ProductCode")["Value"])
	assert.NotEqual(t, ProductCode("1.2.3"), ProductCode("1.2.4"), "a new version needs a new ProductCode")
}

// TestScFailureArgsMatchTheAgent: the MSI's sc.exe recovery is the schedule
// `certagent service install` sets, and what the docs state.
func TestScFailureArgsMatchTheAgent(t *testing.T) {
	assert.Equal(t, "reset= 86400 actions= restart/5000/restart/5000/restart/60000", ScFailureArgs())
	for _, doc := range []string{"../README.md", "../../docs/daemon.md"} {
		b, err := os.ReadFile(doc)
		require.NoError(t, err)
		assert.Contains(t, strings.Join(strings.Fields(string(b)), " "), "5 s, 5 s, then 60 s", doc)
	}
}
