#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager and kube-scheduler from the k8s.io/kubernetes Go
# module pinned in ci/gobuild/kubernetes/go.mod into <cache>/kubernetes/<version>/ (the sandbox's
# control plane). Skipped when the three binaries are there. Needs only Go; a cold build takes
# about a quarter of an hour on two cores.
# Usage: ci/build-kubernetes.sh [CACHE_DIR]   (default: $ETCD_CHART_CACHE or <repo>/.cache)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${1:-${ETCD_CHART_CACHE:-$repo/.cache}}
module=$repo/ci/gobuild/kubernetes
log() { printf 'build-kubernetes: %s\n' "$*" >&2; }

command -v go >/dev/null || { log "error: Go is not installed (needed to build the Kubernetes control plane)"; exit 2; }
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly

version=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3; exit}' "$module/go.mod")
[ -n "$version" ] || { log "error: $module/go.mod does not require k8s.io/kubernetes"; exit 2; }
target=$cache/kubernetes/$version
programs=(kube-apiserver kube-controller-manager kube-scheduler)
missing=0
for program in "${programs[@]}"; do [ -x "$target/$program" ] || missing=1; done
[ "$missing" = 1 ] || exit 0

log "building ${programs[*]} $version (about 15 minutes on a cold Go cache)"
mkdir -p "$cache/kubernetes"
work=$(mktemp -d "$cache/kubernetes/.build-$version.XXXXXX")
trap 'rm -rf "$work"' EXIT
# One invocation: the three commands share most packages, which then compile once.
# The version variables are what the API server reports at /version (Helm checks a chart's
# kubeVersion against it); a plain `go build` leaves them at v0.0.0-master.
minor=${version#v1.}; minor=${minor%%.*}
stamp=k8s.io/component-base/version
ldflags="-s -w -X $stamp.gitVersion=$version -X $stamp.gitMajor=1 -X $stamp.gitMinor=$minor"
ldflags+=" -X $stamp.gitTreeState=clean -X $stamp.buildDate=1970-01-01T00:00:00Z"
go build -C "$module" -trimpath -ldflags="$ldflags" \
  -o "$work/" "${programs[@]/#/k8s.io/kubernetes/cmd/}"
reported=$("$work/kube-apiserver" --version | awk '{print $2}')
if [ "$reported" != "$version" ]; then
  log "error: the kube-apiserver built from $module reports version $reported, expected $version"
  exit 2
fi
rm -rf "$target"
mv "$work" "$target"
trap - EXIT
chmod 0755 "$target"
