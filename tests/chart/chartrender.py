"""Rendering the chart with a real helm and looking objects up by kind and name.

Renders are cached for the session (same helm, same arguments, same text), so every scenario is
rendered once per Helm version however many tests look at it.
"""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "chart"
PROMETHEUS_OPERATOR_SCHEMAS = REPO / "tests" / "data" / "prometheus-operator"
MONITORING_KINDS = ("ServiceMonitor", "PodMonitor", "PrometheusRule")
SCENARIO_DIR = CHART / "ci"
SCENARIOS = sorted(p.name.removesuffix("-values.yaml") for p in SCENARIO_DIR.glob("*-values.yaml"))

Objects = dict[tuple[str, str], dict[str, Any]]

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class RenderError(AssertionError):
    """helm failed where the test expected success; carries Helm's stderr."""


def scenario_file(name: str) -> str:
    return str(SCENARIO_DIR / f"{name}-values.yaml")


@functools.cache
def _run(command: tuple[str, ...], files: tuple[bytes | None, ...]) -> tuple[int, str, str]:
    """`files` is only part of the cache key: a test's values file may reuse the path of one an
    earlier test wrote (pytest deletes a passed test's tmp_path and numbers the next from there)."""
    result = subprocess.run(list(command), capture_output=True, text=True, check=False)
    return result.returncode, result.stdout, result.stderr


def _contents(argument: str) -> bytes | None:
    try:
        return Path(argument).read_bytes()
    except OSError:  # not a file: a flag, a --set value (some longer than a file name may be)
        return None


def helm_template(
    helm: str,
    *args: str,
    release: str = "etcd",
    namespace: str = "etcd",
    chart: Path = CHART,
) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `helm template RELEASE CHART -n NAMESPACE ARGS...`."""
    command = (helm, "template", release, str(chart), "--namespace", namespace, *args)
    return _run(command, tuple(map(_contents, args)))


def render_text(helm: str, *args: str, release: str = "etcd", namespace: str = "etcd") -> str:
    code, out, err = helm_template(helm, *args, release=release, namespace=namespace)
    if code != 0:
        raise RenderError(f"helm template {' '.join(args)} failed ({code}):\n{err}")
    return out


def parse(text: str) -> Objects:
    objects: Objects = {}
    for body in yaml.load_all(text, Loader=_Loader):  # noqa: S506 - a SafeLoader
        if not body:
            continue
        key = (body["kind"], body["metadata"]["name"])
        assert key not in objects, f"{key[0]}/{key[1]} rendered twice"
        objects[key] = body
    return objects


def render(helm: str, *args: str, release: str = "etcd", namespace: str = "etcd") -> Objects:
    """Every rendered object, by (kind, name)."""
    return parse(render_text(helm, *args, release=release, namespace=namespace))


def render_error(helm: str, *args: str, release: str = "etcd", namespace: str = "etcd") -> str:
    """Helm's stderr for a render that must fail (and print nothing on stdout)."""
    code, out, err = helm_template(helm, *args, release=release, namespace=namespace)
    assert code != 0, f"helm template {' '.join(args)} succeeded but should have failed"
    assert out == "", out
    return err


def notes(helm: str, *args: str, release: str = "etcd", namespace: str = "etcd") -> str:
    """NOTES.txt as `helm install --dry-run=client` prints it (no cluster is contacted)."""
    command = (helm, "install", release, str(CHART), "--namespace", namespace, "--dry-run=client")
    code, out, err = _run((*command, *args), tuple(map(_contents, args)))
    if code != 0:
        raise RenderError(f"helm install --dry-run=client failed ({code}):\n{err}")
    return out.rsplit("\nNOTES:\n", 1)[1]


def etcd_config(objects: Objects, fullname: str = "etcd") -> dict[str, Any]:
    data = objects[("ConfigMap", f"{fullname}-config")]["data"]
    config: dict[str, Any] = json.loads(data["etcd.conf.json"])
    return config


def pod_spec(objects: Objects, fullname: str = "etcd") -> dict[str, Any]:
    spec: dict[str, Any] = objects[("StatefulSet", fullname)]["spec"]["template"]["spec"]
    return spec


def container(spec: dict[str, Any], name: str) -> dict[str, Any]:
    for item in [*spec.get("initContainers", []), *spec["containers"]]:
        if item["name"] == name:
            return dict(item)
    raise KeyError(f"no container {name}")


def env(item: dict[str, Any]) -> dict[str, Any]:
    """A container's environment: name -> value, or the valueFrom mapping."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in item.get("env", [])}


def mounts(item: dict[str, Any]) -> dict[str, str]:
    return {m["name"]: m["mountPath"] for m in item.get("volumeMounts", [])}


def volumes(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in spec.get("volumes", [])}


def peer_list(
    fullname: str, replicas: int, namespace: str, domain: str, scheme: str, port: int
) -> str:
    """The initial-cluster the chart must render, computed independently of the templates."""
    return ",".join(
        f"{fullname}-{i}={scheme}://{fullname}-{i}.{fullname}-headless.{namespace}.svc.{domain}:{port}"
        for i in range(replicas)
    )


def _closed(schema: Any) -> Any:
    """A CRD schema that refuses unknown fields, as the API server's strict field validation
    (kubectl's default) does: every object with properties gets `additionalProperties: false`
    unless it keeps unknown fields (`x-kubernetes-preserve-unknown-fields`)."""
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: _closed(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        closed["additionalProperties"] = False
    return closed


@functools.cache
def _monitoring_validator(kind: str) -> jsonschema.Draft7Validator:
    path = PROMETHEUS_OPERATOR_SCHEMAS / f"monitoring.coreos.com_v1_{kind}.json"
    return jsonschema.Draft7Validator(_closed(json.loads(path.read_text())))


def monitoring_problems(body: dict[str, Any]) -> list[str]:
    """Where a ServiceMonitor, PodMonitor or PrometheusRule breaks its v1 CRD schema."""
    kind = body["kind"]
    assert kind in MONITORING_KINDS, f"{kind}: no Prometheus Operator schema for this kind"
    assert body["apiVersion"] == "monitoring.coreos.com/v1", body["apiVersion"]
    return [
        f"{kind}/{body['metadata']['name']}: "
        f"{'.'.join(str(part) for part in error.absolute_path)}: {error.message}"
        for error in _monitoring_validator(kind).iter_errors(body)
    ]
