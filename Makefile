# sentinel: `make demo` runs the main job on the local lab, `make test` runs the tests.
GO      ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: build test test-deps demo bench lint clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/ ./cmd/...

# The end-to-end tests spawn hundreds of short-lived processes; -parallel 4
# keeps both cores busy while others wait on their children.
test: test-deps
	$(GO) vet ./...
	$(GO) test -timeout 25m -parallel 4 ./...

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
