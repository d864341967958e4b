# Joblet — build, run and test the whole suite.
SHELL := /bin/bash
MODULES := proto deploy logd isolator gateway rnx supervisor scheduler netd bench
BIN := bin
BINARIES := joblet:supervisor joblet-isolator:isolator joblet-shim:isolator joblet-sandbox-init:isolator joblet-logd:logd joblet-gateway:gateway rnx:rnx joblet-scheduler:scheduler joblet-netd:netd
GO ?= go
PROTOC_GEN_GO := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.0
TOOLS := $(CURDIR)/.tools
PROTOS = $(shell cd proto && find . -name '*.proto' -not -path './gen/*' | sed 's|^\./||' | sort)

.PHONY: all build run test unit e2e vet fmt-check proto proto-check deps bench clean deb vm-test fuzz reliability build-race

all: build

## build: compile every binary into bin/ (static, as the .deb ships them: no dynamic loader at each
## start of a job's shim, init and exec stage). The per-job helpers (shim, init) are stripped, as the
## .deb's binaries are: the isolator keeps a sealed in-memory copy of each; the daemons keep their
## symbols for perf (make bench -perf)
HELPERS := joblet-shim joblet-sandbox-init
## grpcnotrace: gRPC without golang.org/x/net/trace (and html/template with it), which nothing here
## uses: rnx 19.7 -> 14.8 MB, fewer pages to fault in at each start
TAGS := grpcnotrace
## Each binary is linked to a temporary name and copied into place: the page cache the linker leaves
## (it writes through a shared mapping) made a fresh rnx start 0.15-0.5 ms of CPU slower than the
## same bytes written by write(2), as dpkg and cp write them (bench/README.md, session 9, rnx's own
## part); the rename also replaces a binary that is running.
build:
	@mkdir -p $(BIN)
	@for b in $(BINARIES); do name=$${b%%:*}; mod=$${b##*:}; \
		echo "go build $$name"; flags=; case " $(HELPERS) " in *" $$name "*) flags="-ldflags=-s -w" ;; esac; \
		CGO_ENABLED=0 $(GO) build -trimpath -tags $(TAGS) $${flags:+"$$flags"} -o $(BIN)/.$$name.link ./$$mod/cmd/$$name || exit 1; \
		cp $(BIN)/.$$name.link $(BIN)/.$$name.copy && mv -f $(BIN)/.$$name.copy $(BIN)/$$name && rm -f $(BIN)/.$$name.link || exit 1; done
	@$(MAKE) --no-print-directory $(BIN)/$(REAPER)

## The job's PID 1 once its command runs (isolator/sandbox/handover.go): a few KB of C, no libc
## (isolator/sandbox/sandboxtest.ReaperCFLAGS has the same flags, for the tests)
REAPER := joblet-sandbox-reaper
REAPER_SRC := isolator/sandbox/reaper/reaper.c
REAPER_CFLAGS := -static -nostdlib -ffreestanding -fno-stack-protector -fno-asynchronous-unwind-tables \
	-fno-pie -no-pie -Os -Wall -Wextra -Werror -Wl,--build-id=none -s
%/$(REAPER): $(REAPER_SRC)
	@mkdir -p $(@D)
	@echo "cc $(REAPER)"
	@$(CC) $(REAPER_CFLAGS) -o $@ $<

## run: start the whole suite in embedded mode, in the foreground (root)
run: deps build
	./$(BIN)/joblet

## test: every test — formatting, vet, generated code, unit and root integration tests, end to end
test: deps build fmt-check vet proto-check unit e2e

## deps: install the Debian packages the tests need, when missing (root)
deps:
	@scripts/deps.sh

fmt-check:
	@out=$$(git ls-files -co --exclude-standard '*.go' | grep -v '\.pb\.go$$' | xargs gofmt -l); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi; echo "gofmt: clean"

vet:
	@for m in $(MODULES) e2e; do (cd $$m && $(GO) vet ./...) || exit 1; done; echo "go vet: clean"

## unit: unit and root integration tests of every module, with the race detector
unit:
	@set -o pipefail; for m in $(MODULES); do echo "== $$m"; (cd $$m && $(GO) test -race -count=1 ./...) || exit 1; done

## fuzz: run every fuzz target (func Fuzz* in the modules) for FUZZTIME each; `make test` runs only their seed corpora
FUZZTIME ?= 30s
fuzz:
	@for f in $$(grep -rl --include='*_test.go' '^func Fuzz' $(MODULES) | sort); do \
		dir=$$(dirname $$f); mod=$${dir%%/*}; pkg=./$${dir#*/}; [ "$$dir" = "$$mod" ] && pkg=.; \
		for n in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
			echo "== $$dir $$n ($(FUZZTIME))"; \
			(cd $$mod && $(GO) test -run '^$$' -fuzz "^$$n$$" -fuzztime $(FUZZTIME) $$pkg) || exit 1; \
		done; done

## e2e: end-to-end tests of the real suite through bin/rnx (root)
e2e: build
	cd e2e && JOBLET_E2E_REQUIRED=$${JOBLET_E2E_REQUIRED:-1} $(GO) test -count=1 -timeout 15m ./...

## reliability: issue 10's tests in their long form, in two runs (see docs/reliability.md): every e2e test with
## the 5,000-job soak against bin/ (leaks: fds, threads, kernel objects and RSS), then every e2e test (the soak
## short) against daemons built with the race detector (bin-race/), where a data race in any log fails the run
BIN_RACE := bin-race
build-race:
	@mkdir -p $(BIN_RACE)
	@for b in $(BINARIES); do name=$${b%%:*}; mod=$${b##*:}; \
		if [ $$name = joblet-sandbox-init ]; then \
			echo "go build $$name (without -race: it runs inside each job's memory limit)"; \
			CGO_ENABLED=0 $(GO) build -trimpath -tags $(TAGS) -o $(BIN_RACE)/$$name ./$$mod/cmd/$$name || exit 1; continue; fi; \
		echo "go build -race $$name"; \
		$(GO) build -race -trimpath -tags $(TAGS) -o $(BIN_RACE)/$$name ./$$mod/cmd/$$name || exit 1; done
	@$(MAKE) --no-print-directory $(BIN_RACE)/$(REAPER)

reliability: build build-race
	cd e2e && JOBLET_RELIABILITY=full JOBLET_E2E_REQUIRED=1 \
		$(GO) test -count=1 -v -timeout 60m ./... 2>&1 | tee $(CURDIR)/$(BIN)/reliability.log; \
		exit $${PIPESTATUS[0]}
	cd e2e && JOBLET_BIN_DIR=$(CURDIR)/$(BIN_RACE) JOBLET_E2E_REQUIRED=1 \
		$(GO) test -count=1 -v -timeout 90m ./... 2>&1 | tee $(CURDIR)/$(BIN_RACE)/reliability.log; \
		exit $${PIPESTATUS[0]}

## proto: regenerate the Go code from the .proto files
proto:
	@GOBIN=$(TOOLS) $(GO) install $(PROTOC_GEN_GO) && GOBIN=$(TOOLS) $(GO) install $(PROTOC_GEN_GO_GRPC)
	cd proto && PATH=$(TOOLS):$$PATH protoc -I . -I /usr/include \
		--go_out=gen --go_opt=module=github.com/joblet-dev/joblet/proto/gen \
		--go-grpc_out=gen --go-grpc_opt=module=github.com/joblet-dev/joblet/proto/gen $(PROTOS)

## proto-check: fail when the committed generated code differs from a fresh generation
proto-check: proto
	@git diff --exit-code --stat -- proto/gen && echo "generated code: up to date"

## bench: the performance table of issue 9 against its baselines (root; see bench/README.md)
bench: build
	@command -v bwrap >/dev/null || apt-get install -y bubblewrap || { apt-get update && apt-get install -y bubblewrap; }
	$(GO) build -trimpath -o $(BIN)/joblet-bench ./bench/cmd/joblet-bench
	./$(BIN)/joblet-bench -bin $(BIN) -out bench/results

## deb: build dist/joblet_<version>_amd64.deb (static daemons, rnx, units, config template) with nfpm
NFPM := github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
DIST := dist
VERSION ?= $(shell deploy/version.sh)
deb:
	@GOBIN=$(TOOLS) $(GO) install $(NFPM)
	@rm -rf $(DIST)/stage && mkdir -p $(DIST)/stage/lib
	@for b in $(BINARIES) joblet-certs:deploy; do name=$${b%%:*}; mod=$${b##*:}; \
		case $$name in joblet-*) out=$(DIST)/stage/lib/$$name ;; rnx) out=$(DIST)/stage/rnx ;; *) continue ;; esac; \
		echo "go build $$name (static)"; \
		CGO_ENABLED=0 $(GO) build -trimpath -tags $(TAGS) -ldflags=-s -o $$out ./$$mod/cmd/$$name || exit 1; done
	@$(MAKE) --no-print-directory $(DIST)/stage/lib/$(REAPER)
	VERSION=$(VERSION) $(TOOLS)/nfpm pkg --config deploy/nfpm.yaml --packager deb \
		--target $(DIST)/joblet_$(VERSION)_amd64.deb

## vm-test: install the .deb in a Debian VM with real systemd and cgroup v2 and test the units (slow; not part of test)
vm-test:
	deploy/test/vm-test.sh

clean:
	rm -rf $(BIN) $(BIN_RACE) $(TOOLS) $(DIST)
