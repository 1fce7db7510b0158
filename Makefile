# regmend — build, test, demo, benchmark, and the image and manifests that ship it.
#
# Real components used by the tests (containerd, ctr, containerd's runc shim,
# the distribution registry, crictl, helm) are built from Go modules pinned in
# go.mod and tools/go.mod into $(TOOLS), a cache this Makefile owns; they are
# rebuilt only when a go.mod changes.

GO       ?= go
TOOLS    := $(CURDIR)/.cache/bin
BIN      := $(CURDIR)/bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X github.com/regmend/regmend/cmd/regmend/internal/version.Version=$(VERSION)
TESTTIMEOUT ?= 14m

export REGMEND_TOOLS := $(TOOLS)
export REGMEND_BIN   := $(BIN)

SHELL := /bin/bash

.PHONY: all build tools kube-tools bench-tools test test-kube unit e2e demo bench lint fmt clean image image-push manifests

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

# The runc shim is what `ctr run` needs to run regmend's image as a
# container; it comes from the same containerd module as the daemon, so they
# always match.
$(TOOLS)/containerd $(TOOLS)/ctr $(TOOLS)/containerd-shim-runc-v2: go.mod go.sum
	$(GO) build -o $(TOOLS)/ github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/ctr \
		github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2
	@touch $(TOOLS)/containerd $(TOOLS)/ctr $(TOOLS)/containerd-shim-runc-v2

$(TOOLS)/registry $(TOOLS)/crictl: tools/go.mod tools/go.sum
	cd tools && $(GO) build -o $(TOOLS)/ github.com/distribution/distribution/v3/cmd/registry sigs.k8s.io/cri-tools/cmd/crictl
	@touch $(TOOLS)/registry $(TOOLS)/crictl


$(TOOLS)/helm: tools/go.mod tools/go.sum
	cd tools && $(GO) build -o $(TOOLS)/ helm.sh/helm/v3/cmd/helm
	@touch $@

# The one-node cluster of `make test-kube`: etcd and the Kubernetes
# components from the modules pinned in tools/go.mod. Not part of `tools`:
# a cold build takes long, and only test-kube needs them.
# Their version is stamped as Kubernetes' own build does (the node reports
# it); without it they say v0.0.0-master.
KUBETOOLS := $(TOOLS)/kube-apiserver $(TOOLS)/kube-controller-manager $(TOOLS)/kube-scheduler $(TOOLS)/kubelet
KUBEVERSION = $(shell cd tools && $(GO) list -m -f '{{.Version}}' k8s.io/kubernetes)
KUBELDFLAGS = -X k8s.io/component-base/version.gitVersion=$(KUBEVERSION) -X k8s.io/component-base/version.gitTreeState=clean
$(KUBETOOLS): tools/go.mod tools/go.sum
	cd tools && $(GO) build -ldflags '$(KUBELDFLAGS)' -o $(TOOLS)/ k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
		k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet
	@touch $(KUBETOOLS)

# etcd's main package is its server module's root; named for the binary.
$(TOOLS)/etcd: tools/go.mod tools/go.sum
	cd tools && $(GO) build -o $(TOOLS)/etcd go.etcd.io/etcd/server/v3
	@touch $@

kube-tools: $(KUBETOOLS) $(TOOLS)/etcd

# Tools only the benchmarks compare against (the publisher scenario):
# regclient's regctl and go-containerregistry's crane, pinned in
# tools/go.mod. They are not in `tools`, which `make test` needs. skopeo
# comes from Debian.
$(TOOLS)/regctl $(TOOLS)/crane: tools/go.mod tools/go.sum
	cd tools && $(GO) build -o $(TOOLS)/ github.com/regclient/regclient/cmd/regctl github.com/google/go-containerregistry/cmd/crane
	@touch $(TOOLS)/regctl $(TOOLS)/crane

bench-tools: $(TOOLS)/regctl $(TOOLS)/crane
	@command -v skopeo >/dev/null 2>&1 || { echo "make bench needs skopeo (the publisher scenario): apt-get install skopeo"; exit 1; }

tools: $(TOOLS)/containerd $(TOOLS)/ctr $(TOOLS)/registry $(TOOLS)/crictl $(TOOLS)/containerd-shim-runc-v2 $(TOOLS)/helm

# Unit packages: everything but the suites under test/ that drive real
# containerd and registries.
UNIT = $(shell $(GO) list ./... | grep -v '/test/')
# The suites under test/ but the real-cluster one (make test-kube).
SUITES = $(shell $(GO) list ./test/... | grep -v '/test/kube')

# Unit tests under the race detector, then the end-to-end suite against real
# containerd, registry and crictl.
test: build tools lint
	$(GO) test -race -timeout $(TESTTIMEOUT) $(UNIT)
	$(GO) test -timeout $(TESTTIMEOUT) $(SUITES)

# The chart on a one-node cluster (etcd, kube-apiserver, controller-manager,
# scheduler, kubelet) on the test containerd: install as the README says,
# heal an orphan (Events on the Node), deny a digest through the chart's
# ConfigMap, uninstall. Run after `make test` by .ci/run.
test-kube: build tools kube-tools image
	$(GO) test -count=1 -timeout 20m -v ./test/kube/...

unit:
	$(GO) test -race $(UNIT)

e2e: build tools
	$(GO) test -timeout $(TESTTIMEOUT) -v -count=1 ./test/e2e/...

demo: build tools
	@$(GO) test -count=1 -run TestDemo ./test/demo -v 2>&1 | grep -v -e '^=== RUN' -e '^--- PASS' -e '^PASS' -e '^ok '; exit $${PIPESTATUS[0]}

# Side-by-side benchmarks against real components; prints the table and
# writes test/bench/RESULTS.md. BENCHFLAGS adds flags (-benchruns N, ...).
bench: build tools bench-tools
	$(GO) test -count=1 -v -timeout 30m -run '^TestBenchTable$$' ./test/bench -benchtable $(BENCHFLAGS)

# The node agent's image: a static regmend per platform plus the CA bundle,
# assembled by internal/imagebuild into an OCI image layout (no container
# engine). Times come from the commit, so a rebuild of the same commit gives
# the same digests.
IMAGE_PLATFORMS   ?= linux/amd64 linux/arm64
IMAGE_SOURCE      ?= https://github.com/regmend/regmend
REVISION          ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
CA_BUNDLE         ?= /etc/ssl/certs/ca-certificates.crt

image:
	@for p in $(IMAGE_PLATFORMS); do \
	  echo "build regmend for $$p"; \
	  CGO_ENABLED=0 GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) build -trimpath -ldflags '$(LDFLAGS)' \
	    -o $(BIN)/$${p%/*}_$${p#*/}/regmend ./cmd/regmend || exit 1; \
	done
	$(GO) run ./internal/imagebuild/cmd/imagebuild build -o $(BIN)/image -ca-bundle $(CA_BUNDLE) \
	  -version $(VERSION) -revision $(REVISION) -source $(IMAGE_SOURCE) -created $(SOURCE_DATE_EPOCH) \
	  $(foreach p,$(IMAGE_PLATFORMS),$(p)=$(BIN)/$(subst /,_,$(p))/regmend)

# The end-to-end suite runs this image as the DaemonSet would.
test e2e: image

# make image-push IMAGE=registry/repo:tag [PUSHFLAGS=-insecure]; credentials
# come from the docker config.json.
image-push: image
	@test -n "$(IMAGE)" || { echo "set IMAGE=registry/repo:tag"; exit 2; }
	$(GO) run ./internal/imagebuild/cmd/imagebuild push $(PUSHFLAGS) $(BIN)/image $(IMAGE)

# deploy/manifests/regmend.yaml: the chart rendered for users without Helm.
# test/deploy checks in make test that it is up to date.
manifests: $(TOOLS)/helm
	$(GO) test -count=1 -run '^TestManifestsUpToDate$$' ./test/deploy -update

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.cache/*')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN)
