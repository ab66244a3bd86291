#!/usr/bin/env bash
# Builds the tools pinned in the build modules under ci/gobuild/: each folder holds a go.mod and
# go.sum (every version pinned), a tools.go that imports the main packages (or, with
# `own_command`, a main.go of its own over a pinned library), and a build.conf that names them
# (and may set `ldflags`, build `tags` and an `after_build` function). A module's binaries go to
# <cache>/<name>/<version>/; a version already there is not built again. Needs only Go (no other
# toolchain is ever fetched: GOTOOLCHAIN=local).
# One go.mod cannot require two versions of one module, hence one folder per etcd minor.
# Usage: ci/build-go-tools.sh [CACHE_DIR]   (default: $ETCD_CHART_CACHE or <repo>/.cache)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${1:-${ETCD_CHART_CACHE:-$repo/.cache}}
log() { printf 'build-go-tools: [%ss] %s\n' "$SECONDS" "$*" >&2; }

command -v go >/dev/null || { log "error: Go is not installed (needed to build etcd 3.6/3.7, Helm 3, the Kubernetes control plane and promtool)"; exit 2; }
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly

for module in "$repo"/ci/gobuild/*/; do
  module=${module%/}
  name="" version_of="" packages=() renames=() ldflags="" tags="" own_command=""
  unset -f after_build
  version=$(awk -v want="$(sed -n 's/^version_of=\([^ ]*\).*/\1/p' "$module/build.conf")" \
    '($1 == want) {print $2; exit} ($1 == "require" && $2 == want) {print $3; exit}' "$module/go.mod")
  [ -n "$version" ] || { log "error: $module/go.mod does not require the module build.conf names"; exit 2; }
  # shellcheck source=/dev/null
  source "$module/build.conf"
  target=$cache/$name/$version
  done_already=1
  for package in "${packages[@]}"; do
    # go names a command after the last element of its path, or the one before a final /vN
    binary=${package##*/}
    if [[ $binary =~ ^v[0-9]+$ ]]; then binary=${package%/*}; binary=${binary##*/}; fi
    for rename in "${renames[@]}"; do [ "${rename%%:*}" = "$binary" ] && binary=${rename#*:}; done
    [ -x "$target/$binary" ] || done_already=0
  done
  [ "$done_already" = 0 ] || continue

  log "building $name $version from ${module#"$repo"/} (minutes on a cold Go cache)"
  mkdir -p "$cache/$name"
  work=$(mktemp -d "$cache/$name/.build-$version.XXXXXX")
  # One invocation for all of a module's commands: they share most packages, which compile once.
  if ! go build -C "$module" -trimpath ${tags:+-tags="$tags"} -ldflags="-s -w $ldflags" \
      -o "$work/" "${packages[@]}"; then
    rm -rf "$work"; log "error: building $name $version failed"; exit 2
  fi
  for rename in "${renames[@]}"; do mv "$work/${rename%%:*}" "$work/${rename#*:}"; done
  # The build info Go embeds names the package and every module a binary was built from: the
  # module that holds the command's package must be at the pinned version.
  for binary in "$work"/*; do
    [ -f "$binary" ] || continue
    if [ -n "$own_command" ]; then
      # The build module's own command over a pinned library: the library must be at its version.
      built=$(go version -m "$binary" | awk -v want="$version_of" '$1 == "dep" && $2 == want {print $2, $3}')
    else
      built=$(go version -m "$binary" | awk '
        $1 == "path" {package = $2}
        ($1 == "mod" || $1 == "dep") && index(package "/", $2 "/") == 1 && length($2) > length(best) {best = $2; version = $3}
        END {print best, version}')
    fi
    if [ "${built#* }" != "$version" ]; then
      rm -rf "$work"; log "error: $(basename "$binary") was built from $built, expected version $version"; exit 2
    fi
  done
  if declare -F after_build >/dev/null; then after_build; fi
  rm -rf "$target"
  mv "$work" "$target"
  chmod 0755 "$target"
done
