# Joblet — build, run and test the whole suite.
SHELL := /bin/bash
MODULES := proto deploy logd isolator gateway rnx supervisor
BIN := bin
BINARIES := joblet:supervisor joblet-isolator:isolator joblet-logd:logd joblet-gateway:gateway rnx:rnx
GO ?= go
PROTOC_GEN_GO := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.0
TOOLS := $(CURDIR)/.tools
PROTOS = $(shell cd proto && find . -name '*.proto' -not -path './gen/*' | sed 's|^\./||' | sort)

.PHONY: all build run test unit e2e vet fmt-check proto proto-check deps bench clean

all: build

## build: compile every binary into bin/
build:
	@mkdir -p $(BIN)
	@for b in $(BINARIES); do name=$${b%%:*}; mod=$${b##*:}; \
		echo "go build $$name"; \
		$(GO) build -trimpath -o $(BIN)/$$name ./$$mod/cmd/$$name || exit 1; done

## run: start the whole suite in embedded mode, in the foreground (root)
run: build
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

## e2e: end-to-end tests of the real suite through bin/rnx (root)
e2e: build
	cd e2e && JOBLET_E2E_REQUIRED=$${JOBLET_E2E_REQUIRED:-1} $(GO) test -count=1 -v -timeout 15m ./... 2>&1 | tee /tmp/joblet-e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)' ; exit $${PIPESTATUS[0]}

## proto: regenerate the Go code from the .proto files
proto:
	@GOBIN=$(TOOLS) $(GO) install $(PROTOC_GEN_GO) && GOBIN=$(TOOLS) $(GO) install $(PROTOC_GEN_GO_GRPC)
	cd proto && PATH=$(TOOLS):$$PATH protoc -I . -I /usr/include \
		--go_out=gen --go_opt=module=github.com/joblet-dev/joblet/proto/gen \
		--go-grpc_out=gen --go-grpc_opt=module=github.com/joblet-dev/joblet/proto/gen $(PROTOS)

## proto-check: fail when the committed generated code differs from a fresh generation
proto-check: proto
	@git diff --exit-code --stat -- proto/gen && echo "generated code: up to date"

## bench: benchmarks (see issue 9)
bench:
	@for m in $(MODULES); do (cd $$m && $(GO) test -run '^$$' -bench . -benchtime 2x ./...) || exit 1; done

clean:
	rm -rf $(BIN) $(TOOLS)
