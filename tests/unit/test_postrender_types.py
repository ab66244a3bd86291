"""Every field the post-renderer reads is checked for its type before it is used.

One row per field: the object, the path to set, a value of the wrong type, and the exact line
the post-renderer must report. Each row must make the run fail with that problem alone and no
output; the unchanged stream must pass (so a row cannot pass by accident).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from etcd_chart import yamlio
from etcd_chart.postrender.core import Options, post_render

DATA = Path(__file__).resolve().parents[1] / "data" / "postrender"
CHART_LIKE = (DATA / "chart-like.yaml").read_text()

STS = ("StatefulSet", "etcd")
ETCD = ["spec", "template", "spec", "containers", 0]
PREPARE = ["spec", "template", "spec", "initContainers", 0]
PORT_FIX = "a port number (use e.g. 2380)"
PROBE = (
    "it must be a port number or a port name (use a declared container port, e.g. 2381 or metrics)"
)

# (object, path, bad value, expected problem line after `Kind/name: `)
CASES: list[tuple[tuple[str, str], list[Any], Any, str]] = [
    (
        STS,
        ["spec", "replicas"],
        "three",
        "spec.replicas: is 'three', a string; it must be a whole number >= 0 "
        "(use a number, e.g. replicas: 3)",
    ),
    (
        STS,
        ["spec", "replicas"],
        3.5,
        "spec.replicas: is 3.5, a number; it must be a whole number >= 0 "
        "(use a number, e.g. replicas: 3)",
    ),
    (
        STS,
        ["spec", "replicas"],
        True,
        "spec.replicas: is true, a boolean; it must be a whole number >= 0 "
        "(use a number, e.g. replicas: 3)",
    ),
    (
        STS,
        ["spec", "replicas"],
        -1,
        "spec.replicas: is -1, a number; it must be a whole number >= 0 "
        "(use a number, e.g. replicas: 3)",
    ),
    (
        STS,
        ["spec", "serviceName"],
        42,
        "spec.serviceName: is 42, a number; it must be a string (name the headless Service)",
    ),
    (
        STS,
        [*ETCD, "ports", 1, "containerPort"],
        "2380",
        "spec.template.spec.containers[0].ports[1].containerPort: is '2380', a string; it must be "
        + PORT_FIX,
    ),
    (
        STS,
        [*ETCD, "ports", 1, "containerPort"],
        70000,
        "spec.template.spec.containers[0].ports[1].containerPort: is 70000, a number; it must be "
        + PORT_FIX,
    ),
    (
        STS,
        [*ETCD, "ports", 0, "name"],
        7,
        "spec.template.spec.containers[0].ports[0].name: is 7, a number; it must be a string "
        "(quote the port name)",
    ),
    (
        STS,
        [*ETCD, "command", 1],
        5,
        "spec.template.spec.containers[0].command[1]: is 5, a number; it must be a string "
        "(quote every item of command)",
    ),
    (
        STS,
        [*ETCD, "args"],
        [True],
        "spec.template.spec.containers[0].args[0]: is true, a boolean; it must be a string "
        "(quote every item of args)",
    ),
    (
        STS,
        [*PREPARE, "env", 0, "value"],
        3,
        "spec.template.spec.initContainers[0].env[0].value: is 3, a number; it must be a string "
        '(quote the value, e.g. "3")',
    ),
    (
        STS,
        [*ETCD, "readinessProbe"],
        {"httpGet": {"path": "/readyz", "port": "Metrics!"}},
        "spec.template.spec.containers[0].readinessProbe.httpGet.port: is 'Metrics!', a string; "
        + PROBE,
    ),
    (
        STS,
        [*ETCD, "livenessProbe"],
        {"httpGet": {"path": "/livez", "port": 0}},
        "spec.template.spec.containers[0].livenessProbe.httpGet.port: is 0, a number; " + PROBE,
    ),
    (
        STS,
        [*ETCD, "startupProbe"],
        {"tcpSocket": {"port": [2379]}},
        "spec.template.spec.containers[0].startupProbe.tcpSocket.port: is a list; " + PROBE,
    ),
    (
        STS,
        ["metadata", "annotations", "etcd-chart/max-members"],
        9,
        "metadata.annotations[etcd-chart/max-members]: is 9, a number; it must be a string "
        '(quote the annotation value, e.g. "9")',
    ),
    (
        STS,
        ["metadata", "annotations", "etcd-chart/max-members"],
        "nine",
        "metadata.annotations[etcd-chart/max-members]: is 'nine', a string; it must be a whole "
        'number as text (use e.g. "9")',
    ),
    (
        STS,
        ["metadata", "annotations", "etcd-chart/allow-even-replicas"],
        "maybe",
        "metadata.annotations[etcd-chart/allow-even-replicas]: is 'maybe', a string; it must be "
        '"true" or "false" (use "true")',
    ),
    (
        STS,
        ["spec", "template", "metadata", "labels", "app.kubernetes.io/component"],
        1,
        "spec.template.metadata.labels[app.kubernetes.io/component]: is 1, a number; it must be a "
        "string (quote the label value)",
    ),
    (
        ("Service", "etcd-headless"),
        ["spec", "ports", 1, "port"],
        "peer",
        "spec.ports[1].port: is 'peer', a string; it must be a port number (use e.g. 2379)",
    ),
    (
        ("Service", "etcd"),
        ["spec", "ports", 0, "targetPort"],
        2379.0,
        "spec.ports[0].targetPort: is 2379.0, a number; it must be a port number or name "
        "(use e.g. 2379)",
    ),
    (
        ("Service", "etcd"),
        ["spec", "selector", "app.kubernetes.io/name"],
        None,
        "spec.selector[app.kubernetes.io/name]: is null; it must be a string "
        "(quote the label value)",
    ),
    (
        ("PodDisruptionBudget", "etcd"),
        ["spec", "maxUnavailable"],
        "one",
        "spec.maxUnavailable: is 'one', a string; it must be a number or a percentage "
        '(use 1 or "50%")',
    ),
    (
        ("PodDisruptionBudget", "etcd"),
        ["spec", "minAvailable"],
        1.5,
        'spec.minAvailable: is 1.5, a number; it must be a number or a percentage (use 2 or "50%")',
    ),
    (
        STS,
        [*ETCD, "volumeMounts", 0, "mountPath"],
        ["/var/lib/etcd"],
        "spec.template.spec.containers[0].volumeMounts[0].mountPath: is a list; it must be a "
        "string (quote the path)",
    ),
    (
        STS,
        ["spec", "template", "spec", "volumes", 1, "configMap", "name"],
        404,
        "spec.template.spec.volumes[1].configMap.name: is 404, a number; it must be a string "
        "(quote the name)",
    ),
    (
        ("Service", "etcd-headless"),
        ["spec", "publishNotReadyAddresses"],
        "true",
        "spec.publishNotReadyAddresses: is 'true', a string; it must be true or false "
        "(use true, unquoted)",
    ),
    (
        ("ConfigMap", "etcd-config"),
        ["data", "extra"],
        12,
        "data[extra]: is 12, a number; it must be a string "
        "(quote the value; ConfigMap data holds text)",
    ),
]

SETTING_CASES = [
    ("listen-peer-urls", 2380),
    ("initial-advertise-peer-urls", ["http://a:2380"]),
    ("initial-cluster", {"etcd-0": "http://a:2380"}),
    ("initial-cluster-state", True),
    ("initial-cluster-token", 7),
    ("name", 0),
]


def _bodies() -> list[dict[str, Any]]:
    return [body for body in yaml.safe_load_all(CHART_LIKE) if body]


def _find(bodies: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (body,) = [b for b in bodies if b["kind"] == kind and b["metadata"]["name"] == name]
    return body


def _set(node: Any, path: list[Any], value: Any) -> None:
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


def _stream(bodies: list[dict[str, Any]]) -> str:
    return "".join(f"---\n{yamlio.dump(body)}" for body in bodies)


def test_the_unchanged_stream_passes() -> None:
    outcome = post_render(_stream(_bodies()), Options(namespace="db"))
    assert outcome.report.lines() == []


@pytest.mark.parametrize(
    ("target", "path", "value", "expected"),
    CASES,
    ids=[f"{t[0]}:{'.'.join(map(str, p))}={v!r}" for t, p, v, _ in CASES],
)
def test_a_field_of_the_wrong_type_is_refused(
    target: tuple[str, str], path: list[Any], value: Any, expected: str
) -> None:
    bodies = _bodies()
    _set(_find(bodies, *target), path, value)
    outcome = post_render(_stream(bodies), Options(namespace="db"))
    assert outcome.report.lines() == [f"{target[0]}/{target[1]}: {expected}"]
    assert outcome.output == ""


@pytest.mark.parametrize(("key", "value"), SETTING_CASES)
def test_a_setting_of_the_wrong_type_is_refused(key: str, value: Any) -> None:
    bodies = _bodies()
    configmap = _find(bodies, "ConfigMap", "etcd-config")
    config = json.loads(configmap["data"]["etcd.conf.json"])
    config[key] = value
    configmap["data"]["etcd.conf.json"] = json.dumps(config, indent=2) + "\n"
    outcome = post_render(_stream(bodies), Options(namespace="db"))
    shown = json.dumps(value) if not isinstance(value, bool | int) else str(value).lower()
    kind = {bool: "a boolean", int: "a number", list: "a list", dict: "a map"}[type(value)]
    head = (
        "is a list"
        if kind == "a list"
        else "is a map"
        if kind == "a map"
        else f"is {shown}, {kind}"
    )
    assert outcome.report.lines() == [
        f"ConfigMap/etcd-config: data[etcd.conf.json].{key}: {head}; it must be a string "
        f"(write {key} as text, e.g. a comma-separated list of URLs)"
    ]
    assert outcome.output == ""


def test_the_command_refuses_replicas_three_with_nothing_on_stdout(tmp_path: Path) -> None:
    bodies = _bodies()
    _set(_find(bodies, *STS), ["spec", "replicas"], "three")
    result = subprocess.run(
        [sys.executable, "-m", "etcd_chart.cli", "post-render", "--offline"],
        input=_stream(bodies),
        capture_output=True,
        text=True,
        env={**os.environ, "HELM_NAMESPACE": "db", "ETCD_CHART_NO_TTY": "1"},
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines()[0] == (
        "StatefulSet/etcd: spec.replicas: is 'three', a string; it must be a whole number >= 0 "
        "(use a number, e.g. replicas: 3)"
    )


def test_a_certificate_dns_name_of_the_wrong_type_is_refused() -> None:
    bodies = _bodies()
    bodies.append(
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": {"name": "etcd-peer", "namespace": "db"},
            "spec": {"secretName": "etcd-peer-tls", "dnsNames": ["etcd-0.etcd-headless", 8]},
        }
    )
    outcome = post_render(_stream(bodies), Options(namespace="db"))
    assert outcome.report.lines() == [
        "Certificate/etcd-peer: spec.dnsNames[1]: is 8, a number; it must be a string "
        "(quote every DNS name)"
    ]
