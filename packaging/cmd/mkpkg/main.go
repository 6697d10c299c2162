// Command mkpkg builds certagent's native packages from prebuilt binaries:
//
//	mkpkg -describe "$(git describe --tags --always --dirty)" -commits "$(git rev-list --count HEAD)" \
//	      -bindir build/bin -out dist linux|windows|macos ...
//
// Binaries are looked up as BINDIR/certagent-GOOS-GOARCH[.exe]. Every
// timestamp comes from SOURCE_DATE_EPOCH, so two runs over the same inputs
// give the same bytes. Signed MSIs are the exception: Authenticode records
// the signing time.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"time"

	"github.com/certagent/certagent/packaging"
	"github.com/certagent/certagent/packaging/linuxpkg"
	"github.com/certagent/certagent/packaging/macpkg"
	"github.com/certagent/certagent/packaging/winpkg"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mkpkg:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fl := flag.NewFlagSet("mkpkg", flag.ContinueOnError)
	describe := fl.String("describe", "", "git describe --tags --always --dirty output (required)")
	commits := fl.Int("commits", 0, "git rev-list --count HEAD (versions untagged builds)")
	binDir := fl.String("bindir", "bin", "directory holding certagent-GOOS-GOARCH[.exe]")
	outDir := fl.String("out", "dist", "output directory")
	linuxArchs := fl.String("linux-archs", "amd64,arm64", "comma-separated GOARCHes for the Linux packages")
	msiCert := fl.String("msi-cert", "", "Authenticode certificate chain (PEM) for the exe and MSI")
	msiKey := fl.String("msi-key", "", "Authenticode private key (PEM)")
	msiTS := fl.String("msi-timestamp", "", "RFC 3161 timestamp URL for Authenticode")
	pkgCert := fl.String("pkg-cert", "", "certificate chain (PEM, leaf first) for the pkg's xar signature")
	pkgKey := fl.String("pkg-key", "", "RSA private key (PEM) for the pkg's xar signature")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *describe == "" || fl.NArg() == 0 {
		fl.Usage()
		return errors.New("need -describe and at least one of linux, windows, macos")
	}
	v, err := packaging.ParseVersion(*describe, *commits)
	if err != nil {
		return err
	}
	mtime, err := sourceDateEpoch()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	bin := func(goos, arch string) string {
		name := "certagent-" + goos + "-" + arch
		if goos == "windows" {
			name += ".exe"
		}
		return filepath.Join(*binDir, name)
	}
	for _, target := range fl.Args() {
		switch target {
		case "linux":
			for _, arch := range splitComma(*linuxArchs) {
				out, err := linuxpkg.Build(ctx, linuxpkg.Options{
					Version: v.Semver, Arch: arch, Binary: bin("linux", arch), OutDir: *outDir, MTime: mtime,
				})
				if err != nil {
					return err
				}
				printAll(out...)
			}
		case "windows":
			out, err := winpkg.Build(ctx, winpkg.Options{
				Version: v.MSI, Name: v.Display, Arch: "amd64", Exe: bin("windows", "amd64"), OutDir: *outDir,
				SignCert: *msiCert, SignKey: *msiKey, TimestampURL: *msiTS, MTime: mtime,
			})
			if err != nil {
				return err
			}
			printAll(out)
		case "macos":
			out, err := macpkg.Build(ctx, macpkg.Options{
				Version: v.Mac, Name: v.Display, AMD64: bin("darwin", "amd64"), ARM64: bin("darwin", "arm64"),
				OutDir: *outDir, MTime: mtime, SignCert: *pkgCert, SignKey: *pkgKey,
			})
			if err != nil {
				return err
			}
			printAll(out)
		default:
			return fmt.Errorf("unknown target %q (want linux, windows or macos)", target)
		}
	}
	return nil
}

// sourceDateEpoch reads SOURCE_DATE_EPOCH (reproducible-builds.org); unset
// means the Unix epoch, never the current time.
func sourceDateEpoch() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want seconds since 1970", s)
	}
	return time.Unix(n, 0).UTC(), nil
}

func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	return out
}

func printAll(paths ...string) {
	for _, p := range paths {
		fmt.Println(p)
	}
}
