"""A peer URL change (peer port or cluster domain) on a live cluster is refused (issue 14, item 6).

A member's peer URL is part of etcd's membership: pods restarted with a new one are never found
under it again, and the agent cannot add them back while their old entries are down.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from etcd_chart.postrender.cluster import Cluster
from etcd_chart.sandbox.controlplane import ControlPlane
from test_postrender_live import SOURCE, chart_objects, find, render, seed

OLD = "http://etcd-0.etcd-headless.db.svc.example.org:2380"
SAFE_PATH = (
    "keep the live peer port and cluster domain (chart values ports.peer and clusterDomain);"
    " to move a running cluster, update each member's peer URL in place (`etcdctl member update"
    " <ID> --peer-urls=<new URL>`) while it listens on both, or restore an `etcdctl snapshot"
    " save` into a new release"
)


def change_peer_urls(bodies: list[dict[str, Any]], old: str, new: str) -> None:
    configmap = find(bodies, "ConfigMap", "etcd-config")
    config = json.loads(configmap["data"]["etcd.conf.json"])
    for key in ("initial-advertise-peer-urls", "listen-peer-urls", "initial-cluster"):
        config[key] = config[key].replace(old, new)
    configmap["data"]["etcd.conf.json"] = json.dumps(config, indent=2)
    if old.startswith(":"):  # the chart moves the declared ports with ports.peer
        port = int(new[1:])
        for body in bodies:
            spec = body.get("spec") or {}
            for item in spec.get("ports") or []:
                if item.get("name") == "peer":
                    item["port"] = port
            pod = (spec.get("template") or {}).get("spec") or {}
            for container in pod.get("containers") or []:
                for item in container.get("ports") or []:
                    if item.get("name") == "peer":
                        item["containerPort"] = port


@pytest.mark.parametrize(
    ("old", "new", "changed"),
    [
        (":2380", ":2381", "http://etcd-0.etcd-headless.db.svc.example.org:2381"),
        (".example.org", ".cluster.local", "http://etcd-0.etcd-headless.db.svc.cluster.local:2380"),
    ],
    ids=["peer-port", "cluster-domain"],
)
def test_a_peer_url_change_on_a_live_cluster_is_refused(
    control_plane: ControlPlane, ns: str, cluster: Cluster, old: str, new: str, changed: str
) -> None:
    seed(control_plane, ns, chart_objects(ns))
    bodies = chart_objects(ns)
    change_peer_urls(bodies, old, new)
    outcome = render(bodies, cluster)
    assert outcome.output == ""
    assert outcome.report.lines() == [
        f"{SOURCE}: ConfigMap/etcd-config: data[etcd.conf.json].initial-advertise-peer-urls:"
        f" changes the peer URL of etcd-0 from {OLD} to {changed} on a running cluster; a"
        " member's peer URL is part of the membership, so members restarted under the new one"
        f" are stranded ({SAFE_PATH})"
    ]


def test_the_same_change_on_a_new_cluster_is_fine(ns: str, cluster: Cluster) -> None:
    bodies = chart_objects(ns)
    change_peer_urls(bodies, ":2380", ":2381")
    outcome = render(bodies, cluster)
    assert outcome.report.lines() == []
    assert outcome.output != ""


def test_an_unchanged_peer_url_on_a_live_cluster_is_fine(
    control_plane: ControlPlane, ns: str, cluster: Cluster
) -> None:
    seed(control_plane, ns, chart_objects(ns))
    outcome = render(chart_objects(ns), cluster)
    assert outcome.report.lines() == []
