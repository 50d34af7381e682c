# sentinel: `make demo` runs the main job on the local lab, `make test` runs the tests.

# The Go toolchain every target uses (go.mod's go line names the same
# version). The go command fetches it from the module proxy on first use,
# about 10 s on a new machine; it is exported so that the go commands the
# tests run (the end-to-end harness builds sentinel) use it too.
export GOTOOLCHAIN ?= go1.27.3

GO      ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
BIN     ?= bin

# The release build's flags, here and nowhere else (the tests run `make
# build BIN=...` rather than copy them): static (no cgo, so the binary that
# sentinel copies to every node runs on an old distribution's libc, or
# with none); -trimpath, no build id and no VCS stamp, so two builds of one
# commit are the same bytes wherever the tree is; stripped; the version
# stamped from git describe. No build tags: crash injection (-tags
# crashtest) is for test builds only.
BUILD_ENV   = CGO_ENABLED=0
BUILD_FLAGS = -trimpath -buildvcs=false -ldflags "-s -w -buildid= -X main.version=$(VERSION)"

# govulncheck runs offline (no vulnerability service is reachable from our
# machines) against a v1 database that golang.org/x/vulndb's cmd/indexdb
# writes from the OSV reports in that module's data/osv: built once per
# VULNDB_VERSION into VULNDB_DIR (about two minutes the first time, mostly
# building indexdb), then reused. A newer database is a change of this one
# line. govulncheck itself is pinned as a tool in go.mod.
VULNDB_VERSION = v0.0.0-20261105234957-e22db6528018
VULNDB_DIR    ?= $(HOME)/.cache/sentinel/vulndb/$(VULNDB_VERSION)

.PHONY: build deb tarball test test-e2e test-deps fuzz demo bench lint vulndb clean

build:
	$(BUILD_ENV) $(GO) build $(BUILD_FLAGS) -o $(BIN)/ ./cmd/...

# The Debian package: bin/sentinel_<version>-1_<arch>.deb, made by nfpm
# (a Go tool pinned in go.mod) from make build's binary, the unit, the
# conffile and the maintainer scripts in packaging/, and the man pages and
# completions that a build with -tags gendocs writes from the command tree
# (that build only, so cobra/doc stays out of the release binary). The
# Debian version is make build's when it is a number (v0.4.1 -> 0.4.1),
# else 0.0.0~git<describe>. File times are the commit's.
DEB_VERSION ?= $(shell printf %s '$(VERSION)' | sed -e 's/^v\([0-9]\)/\1/' -e '/^[0-9]/!s/^/0.0.0~git/' -e 's/[^A-Za-z0-9.+~]/./g')
DEB_ARCH    ?= $(shell $(GO) env GOARCH)
DEB_ROOT     = $(BIN)/deb-root
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
deb: build
	rm -rf $(DEB_ROOT) && mkdir -p $(DEB_ROOT)
	cp $(BIN)/sentinel $(DEB_ROOT)/sentinel
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(BUILD_ENV) $(GO) run -tags gendocs -ldflags "-X main.version=$(VERSION)" ./cmd/sentinel gendocs --out $(DEB_ROOT)
	sed 's|@DEB_ROOT@|$(DEB_ROOT)|g' packaging/nfpm.yaml >$(DEB_ROOT)/nfpm.yaml
	DEB_VERSION='$(DEB_VERSION)' DEB_ARCH=$(DEB_ARCH) SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) \
		$(GO) tool nfpm package --config $(DEB_ROOT)/nfpm.yaml --packager deb --target $(BIN)/
	rm -rf $(DEB_ROOT)

# The same contents as a tarball, for a machine without dpkg (see
# docs/operator.md, Install): bin/sentinel-<version>-linux-<arch>.tar.gz
# holding sentinel/ with the binary, the unit, the example configuration,
# man/man1 and completions. Reproducible like the binary.
TARBALL = $(BIN)/sentinel-$(DEB_VERSION)-linux-$(DEB_ARCH).tar.gz
tarball: build
	rm -rf $(DEB_ROOT) && mkdir -p $(DEB_ROOT)/sentinel
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(BUILD_ENV) $(GO) run -tags gendocs -ldflags "-X main.version=$(VERSION)" ./cmd/sentinel gendocs --out $(DEB_ROOT)/sentinel
	cp $(BIN)/sentinel packaging/sentinel-d.service packaging/sentinel-d.yaml $(DEB_ROOT)/sentinel/
	tar --sort=name --mtime=@$(SOURCE_DATE_EPOCH) --owner=0 --group=0 --numeric-owner -C $(DEB_ROOT) -cf - sentinel | gzip -n9 >$(TARBALL)
	rm -rf $(DEB_ROOT)

# Unit tests and the end-to-end tests of the core contracts. The
# end-to-end tests spawn hundreds of short-lived processes, and most run
# in parallel (t.Parallel; see cmd/sentinel/harness_test.go): -parallel 4
# keeps both cores busy while others wait on their children. The long
# scenarios skip here ("long scenario: run by make test-e2e").
test: test-deps
	$(GO) vet ./...
	$(GO) test -timeout 15m -parallel 4 ./...

# The long end-to-end scenarios: every test that calls longScenario(t),
# found in the sources so that a new one cannot be forgotten here, run with
# SENTINEL_E2E=long and nothing else (make test ran the others). CI runs
# both targets.
E2E_AWK   = /^func Test/ { name = $$2; sub(/\(.*/, "", name) } /longScenario\(t\)/ { print name }
E2E_DIRS  = $(shell grep -rl --include='*_test.go' 'longScenario(t)' . | xargs -r -n1 dirname | sort -u)
E2E_TESTS = $(shell awk '$(E2E_AWK)' $(addsuffix /*_test.go,$(E2E_DIRS)) | sort -u | paste -sd'|' -)
test-e2e: test-deps
	@test -n "$(E2E_TESTS)" || { echo "test-e2e: no test calls longScenario(t)"; exit 1; }
	@echo "test-e2e: $(E2E_TESTS)"
	SENTINEL_E2E=long $(GO) test -timeout 25m -parallel 4 -run '^($(E2E_TESTS))$$' $(E2E_DIRS)

# Every fuzz target in the repo, found in the sources so that a new one
# cannot be forgotten here, each for FUZZTIME. A failing input is written
# to the package's testdata/fuzz/<target>/: commit it as a regression test.
FUZZTIME ?= 15s
fuzz:
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' . | sort); do \
		pkg=$$(dirname $$f); \
		for name in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
			echo "fuzz: $$name in $$pkg for $(FUZZTIME)"; \
			$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

test-deps:
	./scripts/install-test-deps.sh

demo: build
	BIN='$(BIN)' ./scripts/demo.sh

# The Go benchmarks, then the cache script. BenchmarkFanOut (100 nodes
# staged from four sources) and BenchmarkStageThenWindow (twenty nodes,
# 64 MiB artifacts) take minutes each (see docs/development.md), over go
# test's default 10-minute timeout. The rollout's go first: they measure
# the journal's fsync latency, which the others' tens of GB written and
# removed would still weigh on for minutes after them.
bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./rollout/
	$(GO) test -timeout 90m -run '^$$' -bench . -benchmem $$($(GO) list ./... | grep -v '/rollout$$')
	./scripts/bench-cache.sh

lint: vulndb
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool govulncheck -db file://$(VULNDB_DIR) ./...

# The database is built beside its final place and renamed in, so an
# interrupted build leaves nothing that looks finished. The go commands run
# outside this module: vulndb is not one of its dependencies.
vulndb: $(VULNDB_DIR)/index/db.json
$(VULNDB_DIR)/index/db.json:
	@echo "vulndb: building the Go vulnerability database $(VULNDB_VERSION) in $(VULNDB_DIR)"
	@set -e; mkdir -p "$(dir $(VULNDB_DIR))"; \
	tmp=$$(mktemp -d "$(VULNDB_DIR).tmp.XXXXXX"); trap 'rm -rf "$$tmp"' EXIT; \
	cd "$$tmp"; \
	$(GO) mod download golang.org/x/vulndb@$(VULNDB_VERSION); \
	$(GO) run golang.org/x/vulndb/cmd/indexdb@$(VULNDB_VERSION) \
		-vulns "$$($(GO) env GOMODCACHE)/golang.org/x/vulndb@$(VULNDB_VERSION)/data/osv" -out "$$tmp/db"; \
	rm -rf "$(VULNDB_DIR)"; mv "$$tmp/db" "$(VULNDB_DIR)"

clean:
	rm -rf bin
