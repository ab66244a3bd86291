"""The sandbox on the real control plane, driven the way a user drives a cluster: `helm upgrade`
typed against the sandbox's kubeconfig, `kubectl get` on the real objects, and a pod deleted
through the API coming back from the real StatefulSet controller, all under a running writer."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from etcd_chart.helm import find_tool
from etcd_chart.sandbox.client import Sandbox
from etcd_chart.sandbox.helmrun import helm_env
from etcd_chart.sandbox.state import StateDir
from kube import sandbox_json
from membership import (
    Writer,
    assert_nothing_lost,
    endpoints,
    pod_names,
    settle,
    wait_converged,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_helm_upgrade_by_hand_to_five_members(
    sandbox: Callable[..., Sandbox], chart_dir: Path, writer: Writer
) -> None:
    sb = sandbox(str(chart_dir), "--namespace", "etcd")
    first = wait_converged(sb, 3)
    ledger = writer(sb)
    state = StateDir(sb.state_dir)
    kubeconfig = str(state.kubeconfig)
    # What README tells a user to type (the sandbox's Helm home has the plugin installed).
    typed = subprocess.run(
        [
            find_tool("helm4"),
            "upgrade",
            "etcd",
            str(chart_dir),
            "-n",
            "etcd",
            "--kubeconfig",
            kubeconfig,
            "--reuse-values",
            "--set",
            "replicas=5",
            "--post-renderer",
            "etcd-chart",
        ],
        capture_output=True,
        text=True,
        env=helm_env(state, 4),
        check=False,
        timeout=300,
    )
    assert typed.returncode == 0, typed.stderr
    sb.wait_ready(timeout=240)
    now = settle(sb, ledger, 5, "real: helm upgrade --set replicas=5 by hand")
    assert {n: now[n] for n in pod_names(3)} == first

    sts = sandbox_json(sb, "get", "statefulset", "etcd")
    assert (sts["spec"]["replicas"], sts["status"]["readyReplicas"]) == (5, 5)
    pods = sandbox_json(sb, "get", "pods", "-l", "app.kubernetes.io/name=etcd")
    running = {
        p["metadata"]["name"]: p
        for p in pods["items"]
        if p["status"]["phase"] == "Running"
        and all(c["ready"] for c in p["status"]["containerStatuses"])
    }
    assert sorted(running) == pod_names(5)
    nodes = {p["spec"]["nodeName"] for p in running.values()}
    assert len(nodes) == 3, f"five members on {nodes}: the scheduler should spread them"
    claims = sandbox_json(sb, "get", "pvc")
    bound = sorted(
        c["metadata"]["name"] for c in claims["items"] if c["status"]["phase"] == "Bound"
    )
    assert bound == [f"data-{name}" for name in pod_names(5)]
    namespace = sandbox_json(sb, "get", "namespace", "etcd")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"

    # A pod deleted through the API is recreated by the StatefulSet controller, a new pod (uid)
    # on the same claim, and rejoins as the same member.
    before = running["etcd-1"]["metadata"]["uid"]
    sb.restart("etcd-1")
    again = settle(sb, ledger, 5, "real: etcd-1 deleted through the API")
    assert again == now
    fresh = sandbox_json(sb, "get", "pod", "etcd-1")
    assert fresh["metadata"]["uid"] != before
    ledger.set_endpoints(endpoints(sb.status(), pod_names(5)))
    assert_nothing_lost(sb, ledger, 5)
