# certagent: the endpoint agent and its control plane.
#   make demo   control plane + agent end to end, no root needed
#   make test   every test (as root with CERTAGENT_E2E=1: real trust stores in namespaces)

SHELL    := /bin/bash
.SHELLFLAGS := -o pipefail -c

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X github.com/certagent/certagent/internal/buildinfo.Version=$(VERSION)
GOFLAGS_BUILD := -trimpath -ldflags '$(LDFLAGS)'
BIN      := bin
PLATFORMS := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64
# The tools have modules of their own, so the product's go.mod lists only
# what certagent and certplane link. `go ... ./...` at the root does not
# enter them: every target that runs over the tree visits each.
TOOL_MODULES := packaging scripts/fleetsim
# in-modules runs $(1) in the root module, then in each tool module.
in-modules = $(1) && for m in $(TOOL_MODULES); do (cd $$m && $(1)) || exit 1; done

.PHONY: all build test demo cross bench lint fuzz clean fleetsim screenshots

all: build

build:
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o $(BIN)/ ./cmd/certagent ./cmd/certplane

# go test -race -json through scripts/testsummary: the usual package lines,
# compiler errors, the output of failing tests, the list of skipped tests, a
# "subtests: N passed, N failed, N skipped" line and a closing
# "N passed, N failed, N skipped" line counting top-level tests (a package
# that failed outside any test, e.g. did not build, counts as one failure).
# -race: the daemon, the LocalAPI and the server are concurrent (cgo: gcc).
test:
	$(call in-modules,$(GO) vet ./...)
	$(GO) build -o $(BIN)/testsummary ./scripts/testsummary
	{ rc=0; for m in . $(TOOL_MODULES); do \
		(cd $$m && CGO_ENABLED=1 $(GO) test -race -json -count=1 -timeout 60m ./...) || rc=1; \
	done; exit $$rc; } | $(BIN)/testsummary

demo: build
	./scripts/demo.sh

# Vet and build every package for every OS we ship on.
cross:
	@set -e; for p in $(PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; \
		echo "cross $$os/$$arch"; \
		for m in . $(TOOL_MODULES); do \
			(cd $$m && GOOS=$$os GOARCH=$$arch CGO_ENABLED=0 $(GO) vet ./... && \
			GOOS=$$os GOARCH=$$arch CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o /dev/null ./...); \
		done; \
	done

bench:
	$(call in-modules,$(GO) test -run '^$$' -bench . -benchmem -count=1 ./...)

# bin/fleetsim, the fleet simulator behind docs/performance.md.
fleetsim:
	cd scripts/fleetsim && $(GO) build -o $(CURDIR)/$(BIN)/fleetsim .

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(call in-modules,$(GO) vet ./...)

clean:
	rm -rf $(BIN) dist

# docs/dashboard-*.png: headless Chromium's screenshots of every dashboard
# page, taken by the browser tests against a real certplane serve.
screenshots:
	CERTPLANE_SCREENSHOTS=$(CURDIR)/docs $(GO) test -count=1 -run '^TestBrowser' ./controlplane/dashboard/

# Native packages into dist/, with SHA256SUMS (packaging/README.md):
#   make package            deb, rpm, apk, Arch (amd64, arm64), x64 MSI, macOS pkg
#   make package-linux|package-windows|package-macos
# Reproducible: every timestamp is the last commit's (SOURCE_DATE_EPOCH),
# binaries are built -trimpath, the version comes from git describe
# (scripts/package-repro.sh builds twice and compares). Signing:
#   make package MKPKG_FLAGS='-msi-cert C.pem -msi-key K.pem -pkg-cert C.pem -pkg-key K.pem'
PKG_VERSION := $(VERSION)
PKG_EPOCH   := $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
PKG_COMMITS := $(shell git rev-list --count HEAD 2>/dev/null || echo 0)
PKG_BIN     := $(BIN)/pkg
PKG_DIST    := dist
# mkpkg is built in packaging's own module and run from the root.
MKPKG = cd packaging && $(GO) build -trimpath -o $(CURDIR)/$(BIN)/mkpkg ./cmd/mkpkg && cd $(CURDIR) && \
	SOURCE_DATE_EPOCH=$(PKG_EPOCH) $(BIN)/mkpkg -describe '$(PKG_VERSION)' \
	-commits $(PKG_COMMITS) -bindir $(PKG_BIN) -out $(PKG_DIST) $(MKPKG_FLAGS)
# pkg-bin builds certagent for GOOS $(1), GOARCH $(2), suffix $(3).
pkg-bin = CGO_ENABLED=0 GOOS=$(1) GOARCH=$(2) $(GO) build -trimpath \
	-ldflags '-s -w -X github.com/certagent/certagent/internal/buildinfo.Version=$(PKG_VERSION)' \
	-o $(PKG_BIN)/certagent-$(1)-$(2)$(3) ./cmd/certagent
PKG_SUMS = cd $(PKG_DIST) && ls | grep -E '\.(deb|rpm|apk|pkg\.tar\.zst|msi|pkg)$$' | LC_ALL=C sort | xargs sha256sum > SHA256SUMS

.PHONY: package package-linux package-windows package-macos

package: package-linux package-windows package-macos

package-linux:
	$(call pkg-bin,linux,amd64)
	$(call pkg-bin,linux,arm64)
	$(MKPKG) linux
	$(PKG_SUMS)

package-windows:
	$(call pkg-bin,windows,amd64,.exe)
	$(MKPKG) windows
	$(PKG_SUMS)

package-macos:
	$(call pkg-bin,darwin,amd64)
	$(call pkg-bin,darwin,arm64)
	$(MKPKG) macos
	$(PKG_SUMS)
