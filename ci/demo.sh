#!/usr/bin/env bash
# The main job on defaults: render the chart through the post-renderer with Helm 4 (installed as a
# Helm plugin in a private plugin directory), print what the cluster would get, then boot that
# release in the sandbox (a real control plane, helm install, pods as real etcd processes), show
# the member list and a put/get done with etcdctl, and stop everything again. Extra arguments go
# to helm (e.g. --set replicas=5).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
eval "$(bash ci/install-tools.sh)"

work=$(mktemp -d)
state=$work/sandbox
cleanup() { etcd-chart sandbox down --state-dir "$state" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

# Helm 4 only: Helm 3 must never see this plugin directory (a Helm-4 plugin.yaml breaks Helm 3's plugins).
# helm 4.3 installs plugins into $HELM_DATA_HOME/plugins whatever HELM_PLUGINS says, so point both there.
export HELM_DATA_HOME=$work/helm-data HELM_CONFIG_HOME=$work/helm-config HELM_CACHE_HOME=$work/helm-cache
export HELM_PLUGINS=$HELM_DATA_HOME/plugins KUBECONFIG=/dev/null
helm4 plugin install "$repo/plugin" >/dev/null

echo "== helm template etcd ./chart --post-renderer etcd-chart $*"
helm4 template etcd "$repo/chart" --namespace default --post-renderer etcd-chart "$@" > "$work/rendered.yaml"
python -m etcd_chart.summary < "$work/rendered.yaml"

echo
echo "== etcd-chart sandbox up (a real control plane and helm install; the pods run as real etcd processes, one loopback address each)"
etcd-chart sandbox up "$repo/chart" --name etcd --namespace default --state-dir "$state" "$@"
pod=etcd-0
echo
echo "== etcdctl member list (inside $pod)"
etcd-chart sandbox etcdctl "$pod" --state-dir "$state" -- member list -w table
echo "== etcdctl put/get"
etcd-chart sandbox etcdctl "$pod" --state-dir "$state" -- put /demo/greeting "hello from the sandbox"
last=$(python -c 'import json,sys; s=json.load(open(sys.argv[1])); print(sorted(p["name"] for p in s["pods"])[-1])' "$state/status.json")
etcd-chart sandbox etcdctl "$last" --state-dir "$state" -- get /demo/greeting
echo
echo "demo finished: stopping the sandbox"
