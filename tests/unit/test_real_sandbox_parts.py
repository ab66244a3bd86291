"""The pure parts of the sandbox's real-control-plane components: the PersistentVolume the local
provisioner makes, the pod status the kubelet reports, volume refresh, and the helm command."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from etcd_chart.helm import find_tool
from etcd_chart.sandbox import kubelet, podstatus
from etcd_chart.sandbox.helmrun import (
    POST_RENDER_EXECUTABLE,
    check_references,
    check_storage_classes,
    helm_command,
    parse,
)
from etcd_chart.sandbox.kubeapi import ApiError, informer
from etcd_chart.sandbox.podspec import (
    ApiInfo,
    MissingObject,
    PodContext,
    materialize_volumes,
    refresh_volumes,
)
from etcd_chart.sandbox.provisioner import (
    PROVISIONER,
    SELECTED_NODE,
    STORAGE_CLASS,
    storage_class,
    volume_for,
)
from etcd_chart.sandbox.render import RenderArgs, RenderError, helm_template
from etcd_chart.sandbox.state import StateDir

CLAIM = {
    "metadata": {
        "name": "data-etcd-0",
        "namespace": "etcd",
        "uid": "1234",
        "annotations": {SELECTED_NODE: "sandbox-node-b"},
    },
    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "8Gi"}}},
}


def test_the_volume_is_pinned_to_the_selected_node_and_bound_to_the_claim() -> None:
    volume = volume_for(CLAIM, Path("/state/volumes/pvc-1234"))
    assert volume["metadata"] == {
        "name": "pvc-1234",
        "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
    }
    spec = volume["spec"]
    assert spec["capacity"] == {"storage": "8Gi"}
    assert spec["local"] == {"path": "/state/volumes/pvc-1234"}
    assert spec["claimRef"]["uid"] == "1234"
    assert spec["persistentVolumeReclaimPolicy"] == "Delete"
    term = spec["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
    assert term == {"key": "kubernetes.io/hostname", "operator": "In", "values": ["sandbox-node-b"]}


def test_the_storage_class_is_the_default_and_waits_for_the_first_consumer() -> None:
    sc = storage_class()
    assert sc["metadata"]["annotations"] == {"storageclass.kubernetes.io/is-default-class": "true"}
    assert (sc["volumeBindingMode"], sc["provisioner"]) == ("WaitForFirstConsumer", PROVISIONER)


def status(ready: str) -> dict[str, Any]:
    return {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": ready}],
        "containerStatuses": [
            {
                "name": "etcd",
                "state": {"terminated": {"exitCode": 0, "finishedAt": "2026-01-01T00:00:01Z"}},
            }
        ],
        "initContainerStatuses": [],
    }


def test_a_condition_keeps_its_transition_time_until_it_changes() -> None:
    first = podstatus.with_transition_times(status("False"), {}, "T0")
    stamp = first["conditions"][0]["lastTransitionTime"]
    same = podstatus.with_transition_times(status("False"), first, "T0")
    assert same["conditions"][0]["lastTransitionTime"] == stamp
    assert same["startTime"] == "T0"
    changed = podstatus.with_transition_times(status("True"), first, "T0")
    assert changed["conditions"][0]["status"] == "True"


def test_finish_times_alone_are_no_change() -> None:
    later = status("True")
    later["containerStatuses"][0]["state"]["terminated"]["finishedAt"] = "2026-01-01T00:00:09Z"
    assert podstatus.comparable(status("True")) == podstatus.comparable(later)
    assert podstatus.comparable(status("True")) != podstatus.comparable(status("False"))


def test_refresh_rewrites_changed_files_by_rename(tmp_path: Path) -> None:
    objects = {("ConfigMap", "ns", "conf"): {"kind": "ConfigMap", "data": {"a": "one", "b": "x"}}}
    ctx = PodContext(
        name="p",
        namespace="ns",
        uid="u",
        address="127.0.0.9",
        labels={},
        annotations={},
        spec={"volumes": [{"name": "c", "configMap": {"name": "conf"}}]},
        lookup=lambda kind, ns, name: objects.get((kind, ns, name)),
        api=ApiInfo(host="127.0.0.1", port=6443, token="t", ca_pem=""),
    )
    materialize_volumes(ctx, tmp_path, lambda claim: tmp_path / claim, None)
    mounted = tmp_path / "subpath-mount"
    os.link(tmp_path / "volumes" / "c" / "a", mounted)  # a subPath bind keeps the old inode
    assert refresh_volumes(ctx, tmp_path, None) == []
    objects[("ConfigMap", "ns", "conf")]["data"]["a"] = "two"
    assert refresh_volumes(ctx, tmp_path, None) == [str(tmp_path / "volumes" / "c" / "a")]
    assert (tmp_path / "volumes" / "c" / "a").read_text() == "two"
    assert mounted.read_text() == "one"


def test_helm_3_gets_the_executable_post_renderer(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    args = RenderArgs(chart="chart", release="etcd", namespace="ns", helm=find_tool("helm3"))
    command = helm_command(state, "upgrade", args, 120)
    assert command[1:4] == ["upgrade", "etcd", "chart"]
    at = command.index("--post-renderer")
    assert command[at + 1 : at + 4] == [
        str(POST_RENDER_EXECUTABLE),
        "--post-renderer-args",
        f"--kubeconfig={state.kubeconfig}",
    ]
    plain = helm_command(state, "upgrade", args, 120, post_render=False)
    assert "--post-renderer" not in plain


def test_the_real_control_plane_needs_a_chart(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="give a chart directory"):
        helm_command(StateDir(tmp_path), "install", RenderArgs(manifest="x.yaml"), 60)


POD_WITH_SECRETS = """\
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: etcd}
spec:
  template:
    spec:
      volumes:
        - {name: server, secret: {secretName: etcd-server-tls}}
        - {name: ca, configMap: {name: kube-root-ca.crt}}
        - {name: extra, secret: {secretName: maybe, optional: true}}
      containers:
        - name: etcd
          env:
            - name: ROOT_PASSWORD
              valueFrom: {secretKeyRef: {name: etcd-root-password, key: password}}
"""
CERTIFICATE = """\
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: etcd-server}
spec: {secretName: etcd-server-tls}
"""


def test_a_secret_nobody_makes_is_named_with_its_key_and_user() -> None:
    with pytest.raises(RenderError) as raised:
        check_references(parse(POD_WITH_SECRETS + CERTIFICATE), "etcd", [])
    assert raised.value.code == 1
    message = str(raised.value)
    assert message.startswith(
        "1 Secret the pods need does not exist, and nothing in the sandbox would create it:\n"
        "  Secret etcd/etcd-root-password (keys: password), used by StatefulSet/etcd\n"
    ), message


def test_secrets_made_by_cert_manager_given_or_already_there_are_not_missing() -> None:
    given = [{"kind": "Secret", "metadata": {"name": "etcd-root-password"}}]
    check_references(parse(POD_WITH_SECRETS + CERTIFICATE), "etcd", given)
    asked: list[tuple[str, str, str]] = []

    def exists(kind: str, namespace: str, name: str) -> bool:
        asked.append((kind, namespace, name))
        return True

    check_references(parse(POD_WITH_SECRETS), "etcd", [], exists)
    assert asked == [
        ("Secret", "etcd", "etcd-root-password"),
        ("Secret", "etcd", "etcd-server-tls"),
    ]


def test_a_storage_class_the_sandbox_does_not_serve_is_refused_with_the_flag_that_adds_it(
    chart_dir: Path, helm4: str
) -> None:
    args = RenderArgs(
        chart=str(chart_dir),
        namespace="etcd",
        values=[str(chart_dir / "ci" / "separate-wal-values.yaml")],
        helm=helm4,
    )
    documents = parse(helm_template(args))
    with pytest.raises(RenderError) as raised:
        check_storage_classes(documents, "etcd", [STORAGE_CLASS, "standard"])
    assert str(raised.value) == (
        "StatefulSet etcd/etcd: claim template wal asks for StorageClass 'fast-ssd'\n"
        "the sandbox has no such StorageClass (it has: sandbox-local, standard; sandbox-local is "
        "the default). Leave the class empty for the default, or let the sandbox serve the names "
        "too: `sandbox up --storage-class fast-ssd`"
    )
    check_storage_classes(documents, "etcd", [STORAGE_CLASS, "standard", "fast-ssd"])


class _ForbiddingApi:
    """What the API answers a node whose pod the Node authorizer's graph does not know yet."""

    def __init__(self, _credentials: object) -> None:
        self.asked: list[str] = []

    def get(self, path: str) -> dict[str, Any] | None:
        self.asked.append(path)
        raise ApiError(403, f"GET {path}: no relationship found between node and this object")


def test_a_claim_the_node_may_not_read_yet_is_retried_like_a_missing_object(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A just-bound pod's claim can be refused for a moment; the pod waits, as a kubelet's volume
    mount does, instead of failing (a failed pod the controller must replace)."""
    monkeypatch.setattr(kubelet, "KubeApi", _ForbiddingApi)
    machine = SimpleNamespace(state=None, tools=None)
    node = kubelet.Node(machine, kubelet.NodeSpec("sandbox-node-a", "zone-a"), None)  # type: ignore[arg-type]
    with pytest.raises(
        MissingObject, match=r"^PersistentVolumeClaim default/data-etcd-1: HTTP 403: "
    ):
        node.claim_path("default", "data-etcd-1")


def test_a_watch_goes_on_past_a_handler_that_fails() -> None:
    stop = threading.Event()
    pods = [
        {"metadata": {"uid": str(n), "name": f"etcd-{n}", "resourceVersion": str(n)}}
        for n in range(3)
    ]

    class Api:
        def call(self, method: str, path: str, query: dict[str, Any]) -> dict[str, Any]:
            return {"metadata": {"resourceVersion": "0"}, "items": [pods[0]]}

        def watch(self, *_: object) -> Any:
            yield "ADDED", pods[1]
            yield "ADDED", pods[2]
            stop.set()

    seen: list[str] = []
    errors: list[str] = []

    def handle(kind: str, obj: dict[str, Any]) -> None:
        seen.append(f"{kind} {obj['metadata']['name']}")
        if obj["metadata"]["name"] == "etcd-1":
            raise RuntimeError("a bug")

    informer(Api(), "/api/v1/pods", {}, handle, stop, errors.append)  # type: ignore[arg-type]
    assert seen == ["ADDED etcd-0", "ADDED etcd-1", "ADDED etcd-2"]
    assert errors == ["/api/v1/pods: handling ADDED etcd-1: RuntimeError: a bug"]
