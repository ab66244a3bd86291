"""State decisions and preflight against a live cluster: the real kube-apiserver of the
`control_plane` fixture, each test in a namespace of its own."""

from __future__ import annotations

import copy
import json
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from etcd_chart import yamlio
from etcd_chart.postrender.cluster import Cluster, ClusterUnavailable
from etcd_chart.postrender.core import Options, Outcome, post_render
from etcd_chart.sandbox.controlplane import ControlPlane
from realapi import apply, put_cluster_record, write_kubeconfig

DATA = Path(__file__).resolve().parents[1] / "data" / "postrender"
SOURCE = "etcd/templates/all.yaml"


def chart_objects(namespace: str) -> list[dict[str, Any]]:
    """The chart-like release, its objects in `namespace`."""
    bodies = [b for b in yaml.safe_load_all((DATA / "chart-like.yaml").read_text()) if b]
    for body in bodies:
        body["metadata"]["namespace"] = namespace
    return bodies


def find(bodies: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(b for b in bodies if b["kind"] == kind and b["metadata"]["name"] == name)


def stream_of(bodies: list[dict[str, Any]]) -> str:
    return "".join(f"---\n# Source: {SOURCE}\n{yamlio.dump(b)}" for b in bodies)


def edit_config(bodies: list[dict[str, Any]], **changes: Any) -> None:
    configmap = find(bodies, "ConfigMap", "etcd-config")
    config = json.loads(configmap["data"]["etcd.conf.json"])
    config.update(changes)
    configmap["data"]["etcd.conf.json"] = json.dumps(config, indent=2)


def seed(plane: ControlPlane, namespace: str, bodies: list[dict[str, Any]]) -> None:
    """What a previous `helm install` left running: the StatefulSet and its ConfigMap."""
    apply(
        plane,
        namespace,
        [find(bodies, "StatefulSet", "etcd"), find(bodies, "ConfigMap", "etcd-config")],
    )


def record(plane: ControlPlane, namespace: str) -> None:
    put_cluster_record(plane, namespace, created="true")


def render(bodies: list[dict[str, Any]], cluster: Cluster, **options: Any) -> Outcome:
    return post_render(stream_of(bodies), Options(**options), cluster)


def state_of(outcome: Outcome) -> str:
    output = [b for b in yaml.safe_load_all(outcome.output) if b]
    config = json.loads(find(output, "ConfigMap", "etcd-config")["data"]["etcd.conf.json"])
    value: str = config["initial-cluster-state"]
    return value


def test_no_cluster_yet_means_new(ns: str, cluster: Cluster) -> None:
    bodies = chart_objects(ns)
    edit_config(bodies, **{"initial-cluster-state": "existing"})
    outcome = render(bodies, cluster)
    assert outcome.report.lines() == []
    assert state_of(outcome) == "new"
    assert outcome.decisions == {"etcd": ("new", "cluster")}


def test_live_statefulset_means_existing(
    control_plane: ControlPlane, ns: str, cluster: Cluster
) -> None:
    seed(control_plane, ns, chart_objects(ns))
    outcome = render(chart_objects(ns), cluster)
    assert outcome.report.lines() == []
    assert state_of(outcome) == "existing"


def test_cluster_record_alone_means_existing(
    control_plane: ControlPlane, ns: str, cluster: Cluster
) -> None:
    record(control_plane, ns)
    outcome = render(chart_objects(ns), cluster)
    assert state_of(outcome) == "existing"


def test_explicit_new_over_a_recorded_cluster_is_refused(
    control_plane: ControlPlane, ns: str, cluster: Cluster
) -> None:
    record(control_plane, ns)
    outcome = render(chart_objects(ns), cluster, initial_cluster_state="new")
    assert outcome.output == ""
    assert outcome.report.lines() == [
        f"{SOURCE}: StatefulSet/etcd: initial-cluster-state new was asked for (option), but the "
        "cluster exists (ConfigMap etcd-cluster-record) (remove the explicit state to let the "
        "post-renderer choose existing, or delete the old cluster's StatefulSet and ConfigMap "
        "etcd-cluster-record first if a new, empty cluster is really meant)"
    ]


def test_volume_claim_service_name_and_selector_changes_are_refused(
    control_plane: ControlPlane, ns: str, cluster: Cluster
) -> None:
    """The live selector's labels come back sorted: the API server writes maps in key order."""
    seed(control_plane, ns, chart_objects(ns))
    bodies = chart_objects(ns)
    sts = find(bodies, "StatefulSet", "etcd")
    sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] = "16Gi"
    sts["spec"]["serviceName"] = "etcd-peers"
    peers = copy.deepcopy(find(bodies, "Service", "etcd-headless"))
    peers["metadata"]["name"] = "etcd-peers"
    bodies.append(peers)
    sts["spec"]["selector"]["matchLabels"]["tier"] = "db"
    sts["spec"]["template"]["metadata"]["labels"]["tier"] = "db"
    outcome = render(bodies, cluster)
    fix = (
        "keep the live value; to change it, delete the StatefulSet with `kubectl delete "
        "statefulset etcd --cascade=orphan` (pods and volumes stay) and upgrade again"
    )
    assert outcome.report.lines() == [
        f"{SOURCE}: StatefulSet/etcd: spec.volumeClaimTemplates: changes the volume claims from "
        "(data 8Gi ReadWriteOnce) to (data 16Gi ReadWriteOnce); Kubernetes forbids changing "
        f"volumeClaimTemplates ({fix}; to grow a volume, resize each PersistentVolumeClaim)",
        f"{SOURCE}: StatefulSet/etcd: spec.serviceName: changes from 'etcd-headless' to "
        "'etcd-peers'; "
        f"Kubernetes forbids changing it ({fix})",
        f"{SOURCE}: StatefulSet/etcd: spec.selector: changes from {{'app.kubernetes.io/instance': "
        "'etcd', 'app.kubernetes.io/name': 'etcd'} to {'app.kubernetes.io/name': 'etcd', "
        "'app.kubernetes.io/instance': 'etcd', 'tier': 'db'}; Kubernetes forbids changing the "
        f"selector ({fix})",
    ]


def test_peer_scheme_flip_and_token_change_on_a_live_cluster(
    control_plane: ControlPlane, ns: str, cluster: Cluster
) -> None:
    seed(control_plane, ns, chart_objects(ns))
    bodies = chart_objects(ns)
    configmap = find(bodies, "ConfigMap", "etcd-config")
    config = json.loads(configmap["data"]["etcd.conf.json"])
    for key in ("initial-advertise-peer-urls", "listen-peer-urls", "initial-cluster"):
        config[key] = config[key].replace("http://", "https://")
    config["initial-cluster-token"] = "etcd-db-2"
    configmap["data"]["etcd.conf.json"] = json.dumps(config, indent=2)
    outcome = render(bodies, cluster)
    assert outcome.report.lines() == [
        f"{SOURCE}: ConfigMap/etcd-config: data[etcd.conf.json].initial-advertise-peer-urls: peer "
        "traffic changes from http to https on a running cluster; members cannot switch their "
        "peer URLs' scheme in place (keep the live scheme; to change it, update each member's "
        "peer URL one at a time with `etcdctl member update` while it serves both, then upgrade)",
        f"{SOURCE}: ConfigMap/etcd-config: data[etcd.conf.json].initial-cluster-token: changes "
        "the cluster token from 'etcd-db' to 'etcd-db-2' on a running cluster; members that join "
        "with the new token cannot join the old cluster (keep 'etcd-db')",
    ]


@pytest.mark.parametrize("hook", [False, True])
@pytest.mark.parametrize(
    ("before", "after", "below_quorum"),
    [(5, 2, True), (3, 1, True), (7, 3, True), (5, 3, False), (3, 2, False), (3, 5, False)],
)
def test_scale_down_below_quorum_at_once(
    control_plane: ControlPlane,
    ns: str,
    cluster: Cluster,
    before: int,
    after: int,
    below_quorum: bool,
    hook: bool,
) -> None:
    """Refused unless the scale-down hook removes the members one at a time first."""
    live = chart_objects(ns)
    find(live, "StatefulSet", "etcd")["spec"]["replicas"] = before
    seed(control_plane, ns, live)
    bodies = chart_objects(ns)
    find(bodies, "StatefulSet", "etcd")["spec"]["replicas"] = after
    find(bodies, "StatefulSet", "etcd")["metadata"]["annotations"][
        "etcd-chart/allow-even-replicas"
    ] = "true"
    if hook:
        find(bodies, "StatefulSet", "etcd")["metadata"]["annotations"]["etcd-chart/scale-down"] = (
            "hook"
        )
    bodies = [b for b in bodies if b["kind"] != "PodDisruptionBudget"]
    lines = render(bodies, cluster).report.lines()
    quorum = before // 2 + 1
    expected = [
        f"{SOURCE}: StatefulSet/etcd: spec.replicas: scales from {before} to {after} members at "
        f"once, below the quorum of the running cluster ({quorum}), and nothing removes the "
        f"members first (scale down in steps that keep a quorum: first to {quorum}, then "
        "further; or let a hook remove them one at a time and annotate the StatefulSet "
        'etcd-chart/scale-down: "hook" (the chart does with scaleDown.enabled))'
    ]
    assert lines == (expected if below_quorum and not hook else [])


def test_unreachable_cluster_and_wrong_token(
    control_plane: ControlPlane, ns: str, tmp_path: Path
) -> None:
    """A token the real API server does not know (401), then an address nothing listens on."""
    wrong = Cluster(str(write_kubeconfig(control_plane, tmp_path / "wrong", ns, token="wrong")))
    with pytest.raises(ClusterUnavailable) as refused:
        post_render(stream_of(chart_objects(ns)), Options(), wrong)
    wrong.close()
    assert str(refused.value) == (
        f"reading StatefulSet {ns}/etcd from {control_plane.server} failed: HTTP 401 Unauthorized"
    )
    config = yaml.safe_load(
        write_kubeconfig(control_plane, tmp_path / "kubeconfig", ns).read_text()
    )
    with socket.socket() as unheard:
        unheard.bind(("127.0.0.1", 0))  # bound but never listening: connections are refused
        nowhere = f"https://127.0.0.1:{unheard.getsockname()[1]}"
        config["clusters"][0]["cluster"]["server"] = nowhere
        kubeconfig = tmp_path / "unreachable"
        kubeconfig.write_text(yaml.safe_dump(config))
        live = Cluster(str(kubeconfig), timeout=2)
        with pytest.raises(ClusterUnavailable) as unreachable:
            post_render(stream_of(chart_objects(ns)), Options(), live)
        live.close()
    assert str(unreachable.value).startswith(f"cannot reach {nowhere}: ")
