#!/usr/bin/env bash
# Builds etcd, etcdctl and etcdutl for every build module ci/gobuild/etcd-<minor>/ (one module per
# minor: one go.mod cannot require two versions of one module) into <cache>/etcd/v<version>/.
# The version is the one the module's go.mod pins for go.etcd.io/etcd/server/v3. A version whose
# three binaries are already there is not built again. Needs only Go (the go directive of the
# build modules names the oldest that works).
# Usage: ci/build-etcd.sh [CACHE_DIR]   (default: $ETCD_CHART_CACHE or <repo>/.cache)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${1:-${ETCD_CHART_CACHE:-$repo/.cache}}
log() { printf 'build-etcd: %s\n' "$*" >&2; }

command -v go >/dev/null || { log "error: Go is not installed (needed to build etcd 3.6 and 3.7)"; exit 2; }
# Build with the installed Go only: never fetch another toolchain behind the user's back.
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly

for module in "$repo"/ci/gobuild/etcd-*/; do
  module=${module%/}
  version=$(awk '$1 == "go.etcd.io/etcd/server/v3" {print $2; exit}' "$module/go.mod")
  [ -n "$version" ] || { log "error: $module/go.mod does not require go.etcd.io/etcd/server/v3"; exit 2; }
  target=$cache/etcd/$version
  if [ -x "$target/etcd" ] && [ -x "$target/etcdctl" ] && [ -x "$target/etcdutl" ]; then
    continue
  fi
  log "building etcd $version from $(basename "$module") (a few minutes on a cold Go cache)"
  mkdir -p "$cache/etcd"
  work=$(mktemp -d "$cache/etcd/.build-$version.XXXXXX")
  # One invocation for the three commands: they share most packages, which then compile once.
  go build -C "$module" -trimpath -ldflags='-s -w' -o "$work/" \
    go.etcd.io/etcd/server/v3 go.etcd.io/etcd/etcdctl/v3 go.etcd.io/etcd/etcdutl/v3
  mv "$work/server" "$work/etcd"
  reported=$("$work/etcd" --version | awk '/^etcd Version:/ {print $3}')
  if [ "v$reported" != "$version" ]; then
    log "error: the etcd built from $module reports version $reported, expected $version"
    rm -rf "$work"
    exit 2
  fi
  rm -rf "$target"
  mv "$work" "$target"
  chmod 0755 "$target"
done
