# sentinel: `make demo` runs the main job on the local lab, `make test` runs the tests.
GO      ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: build test test-deps fuzz demo bench lint clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/ ./cmd/...

# The end-to-end tests spawn hundreds of short-lived processes; -parallel 4
# keeps both cores busy while others wait on their children.
test: test-deps
	$(GO) vet ./...
	$(GO) test -timeout 25m -parallel 4 ./...

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
	./scripts/demo.sh

bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./...
	./scripts/bench-cache.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin
