# Every target works on a fresh machine with Go and Debian packages: tools and
# the control plane are built from pinned modules into the per-user cache
# (${XDG_CACHE_HOME:-~/.cache}/leasehold), so later clones reuse them.

GO        ?= go
PKGS      := ./...
# Integration suites each start a real kube-apiserver and etcd; on 2 cores
# they run one package at a time.
TEST_FLAGS ?= -race -count=1 -timeout=30m

.PHONY: all build test test-unit test-integration lint verify generate controlplane packages up clean soak bench fuzz chaos

all: build

build:
	$(GO) build -o bin/leasehold ./cmd/leasehold

## test: everything CI runs: lint, generated-file check, unit and integration tests.
test: controlplane packages verify
	LEASEHOLD_ASSETS_DIR="$$(hack/controlplane.sh)" $(GO) test $(TEST_FLAGS) -p 1 -tags integration $(PKGS)

## test-unit: the fast tests only; no control plane needed.
test-unit: packages
	$(GO) test -race $(PKGS)

## test-integration: the integration suites only.
test-integration: controlplane packages
	LEASEHOLD_ASSETS_DIR="$$(hack/controlplane.sh)" $(GO) test $(TEST_FLAGS) -p 1 -tags integration $(PKGS)

## soak: the lease exclusion test at full size (5 Lockers x 20 goroutines x 2,000 acquisitions); not in CI.
soak: controlplane
	LEASEHOLD_SOAK=1 LEASEHOLD_ASSETS_DIR="$$(hack/controlplane.sh)" $(GO) test -race -count=1 -timeout=3h -tags integration -run TestIntegrationConcurrentLockers -v ./lease/

## bench: leasehold against the original design's algorithm and a create-only floor (S1-S5; the lock micro-benchmarks are S5), written to docs/benchmarks.md with its plot; BENCH_FLAGS such as --scenarios S1 --reps 3.
BENCH_FLAGS ?=
bench: controlplane
	LEASEHOLD_ASSETS_DIR="$$(hack/controlplane.sh)" $(GO) run ./bench/cmd/bench $(BENCH_FLAGS)

## chaos: every fault-injection scenario CHAOS_RUNS times (default 5; `make test` runs each once), written to docs/reliability.md.
CHAOS_RUNS ?= 5
chaos: controlplane
	LEASEHOLD_ASSETS_DIR="$$(hack/controlplane.sh)" $(GO) test -count=1 -timeout=4h -tags integration -run TestChaos -v ./test/chaos/ \
		-args -chaos.runs=$(CHAOS_RUNS) -chaos.report="$(CURDIR)/docs/reliability.md" -chaos.command="make chaos CHAOS_RUNS=$(CHAOS_RUNS)"

## fuzz: run each fuzz target for FUZZTIME (CI runs only their seed corpora).
FUZZTIME ?= 60s
fuzz:
	$(GO) test -run '^$$' -fuzz=FuzzExponential -fuzztime=$(FUZZTIME) ./backoff/
	$(GO) test -run '^$$' -fuzz=FuzzLeaseName -fuzztime=$(FUZZTIME) ./lease/
	$(GO) test -run '^$$' -fuzz=FuzzParseToken -fuzztime=$(FUZZTIME) ./lease/
	$(GO) test -run '^$$' -fuzz=FuzzDecodeAlertmanager -fuzztime=$(FUZZTIME) ./gateway/signal/
	$(GO) test -run '^$$' -fuzz=FuzzDecodeKubernetesEvent -fuzztime=$(FUZZTIME) ./gateway/signal/

lint:
	hack/verify-gofmt.sh
	$(GO) vet $(PKGS)
	$(GO) vet -tags integration $(PKGS)

verify: lint
	hack/verify-generated.sh

generate:
	"$$(hack/tools.sh controller-gen)" object paths=./api/... crd paths=./api/... output:crd:artifacts:config=config/crd

## controlplane: build kube-apiserver and etcd once (about 10 minutes on 2 cores the first time).
controlplane:
	@hack/controlplane.sh >/dev/null

## packages: install the Debian packages the tests run (Alertmanager); only what is missing.
packages:
	@hack/packages.sh

## up: start the local control plane with the CRDs and print how to reach it.
up: controlplane
	$(GO) run ./cmd/leasehold up

clean:
	rm -rf bin
