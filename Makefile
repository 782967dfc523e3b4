# Alcove — see README.md. Tool versions are pinned in hack/*.sh.
SHELL := /bin/bash
GO ?= go
BIN := bin/alcove
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
PKGS := ./...
# Integration tests start real daemons; keep the default run well under 25 minutes.
TEST_FLAGS ?= -count=1 -timeout 20m
RUN_ARGS ?= --dir ./alcove-data

.PHONY: all build test unit fuzz fuzz-short sanity bench-meta test-takeover test-failover bench-read-barrier test-crash fsx bench-fuse lint vet fmt-check staticcheck proto proto-check run bench clean e2e-extender bench-extender k8s-bins \
	manifests manifests-check e2e conformance conformance-slow cluster-up cluster-down test-load bench-load minio bench-s3 test-s3-large bench-write

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/alcove

## run: the all-in-one cluster in the foreground (Ctrl-C stops it)
run: build
	./$(BIN) local $(RUN_ARGS)

## test: generated code and manifests, lint, unit and integration tests (they replay every fuzz target's
## seed corpus), csi-sanity, a short run of every fuzz target (CI then runs `make e2e`)
test: proto-check manifests-check lint unit sanity fuzz-short

unit: minio
	./hack/python-venv.sh
	$(GO) test $(TEST_FLAGS) $$($(GO) list $(PKGS) | grep -v /test/sanity)

## minio: the MinIO server the S3 tests run against, built into .cache/bin (cold ~2.5 min; a test server only, never linked)
minio:
	./hack/minio.sh >/dev/null

## fuzz: every Go fuzz target (hack/fuzz.sh finds them) for FUZZTIME each, one after another;
## FUZZ_RUN=regexp picks targets, FUZZ_PARALLEL sets fuzz workers (default 1). See SECURITY.md.
FUZZTIME ?= 10m
fuzz:
	FUZZTIME=$(FUZZTIME) ./hack/fuzz.sh

## fuzz-short: the same targets for FUZZ_SHORT each (part of `make test`)
FUZZ_SHORT ?= 10s
fuzz-short:
	FUZZTIME=$(FUZZ_SHORT) ./hack/fuzz.sh

## sanity: the CSI conformance suite (csi-sanity) against the real driver with real FUSE mounts
sanity:
	./hack/sanity.sh

lint: fmt-check vet staticcheck

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

staticcheck:
	./hack/tools.sh staticcheck
	./.cache/bin/staticcheck $(PKGS)

proto:
	./hack/gen-proto.sh

proto-check:
	./hack/check-proto.sh

## bench: read-throughput ratios (short-circuit vs tmpfs, remote vs raw TCP)
bench:
	./hack/bench-read.sh

## test-load: the job tier's acceptance load: distributedLoad of a 4 GiB tree onto two workers (separate
## processes), --percent 50, --nodes (make test runs the same test on 256 MiB); LOAD_BYTES tunes the size
LOAD_BYTES ?= 4GB
test-load:
	ALCOVE_LOAD_BYTES=$(LOAD_BYTES) $(GO) test -count=1 -timeout 30m -run '^TestDistributedLoad$$' -v ./test/integration/

## bench-load: LOAD job throughput of a cold tree vs reading it straight from the UFS, and a reader's
## latency during a load with and without the bandwidth cap (ALCOVE_BENCH_LOAD_MB, ALCOVE_BENCH_CAP_MB)
bench-load:
	ALCOVE_BENCH=1 $(GO) test -count=1 -timeout 30m -run '^TestLoadThroughput$$' -v ./test/bench/ | grep -v -e '^=== RUN' -e '^--- PASS' -e '^PASS' -e '^ok' -e '^[IW][0-9]'

## bench-meta: the master's metadata path: META_FILES empty files created through a real master by
## 64 callers, getStatus/s, a 100 k-entry listing, RSS and disk per million files, start-up after kill -9;
## then the master's live Go heap per file (TestHeapPerFile, in process). BENCHMARKS.md has the results.
META_FILES ?= 1000000
bench-meta:
	set -o pipefail; ALCOVE_BENCH=1 ALCOVE_BENCH_META_FILES=$(META_FILES) $(GO) test -count=1 -timeout 3h -run '^TestMetaBench$$' -v ./test/bench/ | grep -v -e '^=== RUN' -e '^--- PASS' -e '^PASS' -e '^ok' -e '^[IW][0-9]'
	set -o pipefail; ALCOVE_BENCH=1 $(GO) test -count=1 -timeout 30m -run '^TestHeapPerFile$$' -v ./engine/master/ | grep '^|'

## test-takeover: the FUSE live-upgrade test alone, TAKEOVER_RUNS times (default 10; also part of `make test`)
TAKEOVER_RUNS ?= 10
test-takeover:
	$(GO) test -count=$(TAKEOVER_RUNS) -timeout 30m -run '^TestTakeover$$' -v ./engine/fuse/

## test-failover: HA masters: kill -9 the leader of 3 `alcove master` processes FAILOVER_KILLS times
## (default 50; `make test` runs 10) under concurrent clients; fail-over p50/p99, nothing lost, porcupine-checked history
FAILOVER_KILLS ?= 50
test-failover:
	ALCOVE_FAILOVER_KILLS=$(FAILOVER_KILLS) $(GO) test -count=1 -timeout 40m -run '^TestFailover$$' -v ./test/failover/

## bench-read-barrier: GetStatus on the leader of 3 masters with the linearizable-read check and without it
bench-read-barrier:
	$(GO) test -run XXX -bench BenchmarkGetStatusReadBarrier -benchtime 3s ./engine/master/

## bench-s3: a 1 GiB object in MinIO read cold through fs cat and FUSE vs a raw parallel ranged GET, then warm (passthrough)
bench-s3: minio
	./hack/bench-s3.sh

## test-s3-large: the S3 tests at acceptance size (a 1 GiB file through multipart, a 10,000-object listing); make test runs smaller ones
test-s3-large: minio
	ALCOVE_S3_LARGE=1 $(GO) test -count=1 -timeout 30m -v -run 'TestS3Large' ./test/s3/

## test-crash: the crash-consistency suites on crashfs with more rounds (CRASH_ROUNDS, default 40; make test runs a few);
## replay a failure with ALCOVE_CRASH_SEED=<logged seed> (test/crashfs/README.md)
CRASH_ROUNDS ?= 40
test-crash:
	ALCOVE_CRASH_ROUNDS=$(CRASH_ROUNDS) $(GO) test -count=1 -timeout 30m -v -run '^(TestMasterCrashConsistency|TestWorkerCacheCrashConsistency|TestRandomNamespace|TestBoltKill9)$$' ./test/integration/ ./test/crashfs/

## fsx: the fsx replay, 10,000 random operations (holes, truncates up, unlinks and renames of open files)
## on the VFS in process and through a FUSE mount, each diffed against a local directory (FSX_SEED to vary)
FSX_OPS ?= 10000
fsx:
	FSX_OPS=$(FSX_OPS) $(GO) test -count=1 -timeout 30m -run '^TestFSX$$' -v ./engine/vfs/ ./engine/fuse/

## bench-fuse: FUSE sequential read (passthrough) vs tmpfs, first uncached read, 4 KiB random IOPS
bench-fuse:
	./hack/bench-fuse.sh

## bench-write: small-file creates, ls -lR, sequential writes and cold reads through FUSE, and master
## creates/s at 1/8/64 clients, each next to its baseline (ALCOVE_BENCH_FILES, ALCOVE_BENCH_MB)
bench-write:
	set -o pipefail; ALCOVE_BENCH=1 $(GO) test -count=1 -timeout 60m -run '^TestWriteThroughput$$' -v ./test/bench/ | grep -v -e '^=== RUN' -e '^--- PASS' -e '^PASS' -e '^ok' -e '^[IWE][0-9]\{4\} '

## k8s-bins: etcd, kube-apiserver, kube-scheduler for e2e tests into .cache/k8s/bin (cold ~6.5 min, warm instant)
k8s-bins:
	./hack/k8s-bins.sh

## e2e-extender: the scheduler extender against a real etcd + kube-apiserver + kube-scheduler (also run by `make test`)
e2e-extender: k8s-bins
	ALCOVE_E2E=1 $(GO) test -count=1 -timeout 15m -v -run TestExtender ./test/e2e/

## bench-extender: /prioritize latency (1,000 nodes, 1 M blocks) and index memory
bench-extender:
	$(GO) test -run XXX -bench BenchmarkPrioritize -benchtime 3000x ./extender/
	$(GO) test -run XXX -bench BenchmarkCacheIndex1MBlocks -benchtime 1x ./engine/master/

## manifests: render deploy/manifests (plain YAML for kubectl) from the Helm chart deploy/helm/alcove
manifests:
	./hack/manifests.sh

## manifests-check: fail if deploy/manifests is stale (helm is built by hack/k8s-bins.sh: cold ~1 min)
manifests-check:
	./hack/manifests.sh --check

## e2e: the chart on a real two-node cluster (kubelets, containerd, kube-proxy in namespaces of their
## own; kube-scheduler with the extender): PVC, pods, word-count Job, CSI node restart, uninstall;
## Spark-shaped placement next to the data; subPath and symlinks in pods; the storage conformance suite's
## fast subset (hack/e2e.sh; root)
e2e:
	./hack/e2e.sh

## conformance: the Kubernetes storage suite (v1.33.13 test/e2e/storage/external) against the chart, fast
## subset; -slow: the [Slow] specs (hack/conformance.sh; results in .cache/conformance/<subset>)
conformance:
	./hack/conformance.sh fast

conformance-slow:
	./hack/conformance.sh slow

## cluster-up / cluster-down: the e2e cluster for manual use (NODES=2; hack/cluster.sh run kubectl get pods -A)
NODES ?= 1
cluster-up:
	./hack/cluster.sh up --nodes $(NODES)

cluster-down:
	./hack/cluster.sh down

clean:
	rm -rf bin
