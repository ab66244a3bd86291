"""Secrets and ConfigMaps that a release's pods need but nobody will create.

On a cluster a pod waits for a missing Secret until someone creates it; in the sandbox nothing
else can, so `up` and `upgrade` name every missing object at once, with the keys the pods read
and the `kubectl create ... --dry-run=client -o yaml` lines that make a file for `--objects`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TEMPLATE_KINDS = ("StatefulSet", "Deployment", "Job", "DaemonSet", "ReplicaSet", "CronJob")
Lookup = Callable[[str, str, str], dict[str, Any] | None]


@dataclass
class Needed:
    kind: str
    namespace: str
    name: str
    keys: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)


def pod_template(obj: dict[str, Any]) -> dict[str, Any]:
    """The pod template of a workload; a CronJob's is in its Job template."""
    spec = obj.get("spec") or {}
    if obj.get("kind") == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    template: dict[str, Any] = spec.get("template") or {}
    return template


def _note(
    found: dict[tuple[str, str, str], Needed],
    kind: str,
    namespace: str,
    name: str,
    keys: list[str],
    user: str,
) -> None:
    entry = found.setdefault((kind, namespace, name), Needed(kind, namespace, name))
    entry.keys.update(keys)
    entry.users.add(user)


def _item_keys(source: dict[str, Any]) -> list[str]:
    return [str(item.get("key")) for item in source.get("items") or [] if item.get("key")]


def _from_pod_spec(
    spec: dict[str, Any], namespace: str, user: str, found: dict[tuple[str, str, str], Needed]
) -> None:
    for volume in spec.get("volumes") or []:
        sources: list[tuple[str, dict[str, Any]]] = []
        if isinstance(volume.get("secret"), dict):
            sources.append(("Secret", volume["secret"]))
        if isinstance(volume.get("configMap"), dict):
            sources.append(("ConfigMap", volume["configMap"]))
        for entry in (volume.get("projected") or {}).get("sources") or []:
            if isinstance(entry.get("secret"), dict):
                sources.append(("Secret", entry["secret"]))
            if isinstance(entry.get("configMap"), dict):
                sources.append(("ConfigMap", entry["configMap"]))
        for kind, source in sources:
            name = source.get("secretName") if "secretName" in source else source.get("name")
            if name and not source.get("optional"):
                _note(found, kind, namespace, str(name), _item_keys(source), user)
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for source in container.get("envFrom") or []:
            for kind, key in (("Secret", "secretRef"), ("ConfigMap", "configMapRef")):
                ref = source.get(key)
                if isinstance(ref, dict) and ref.get("name") and not ref.get("optional"):
                    _note(found, kind, namespace, str(ref["name"]), [], user)
        for item in container.get("env") or []:
            value_from = item.get("valueFrom") or {}
            for kind, key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
                ref = value_from.get(key)
                if isinstance(ref, dict) and ref.get("name") and not ref.get("optional"):
                    keys = [str(ref["key"])] if ref.get("key") else []
                    _note(found, kind, namespace, str(ref["name"]), keys, user)


def missing(objects: list[dict[str, Any]], lookup: Lookup) -> list[Needed]:
    """Every non-optional Secret or ConfigMap the pod templates of `objects` use that is neither
    among `objects` nor found by `lookup` (kind, namespace, name)."""
    provided = {
        (str(o.get("kind")), str(o["metadata"].get("namespace", "")), str(o["metadata"]["name"]))
        for o in objects
        if o.get("kind") in ("Secret", "ConfigMap")
    }
    found: dict[tuple[str, str, str], Needed] = {}
    for obj in objects:
        if obj.get("kind") not in TEMPLATE_KINDS:
            continue
        metadata = obj.get("metadata") or {}
        namespace = str(metadata.get("namespace", ""))
        template = pod_template(obj)
        user = f"{obj['kind']}/{metadata.get('name')}"
        _from_pod_spec(template.get("spec") or {}, namespace, user, found)
    return [
        needed
        for key, needed in sorted(found.items())
        if key not in provided and lookup(needed.kind, needed.namespace, needed.name) is None
    ]


def _kubectl(needed: Needed) -> str:
    keys = sorted(needed.keys) or ["KEY"]
    if needed.kind == "Secret":
        head = f"kubectl create secret generic {needed.name}"
    else:
        head = f"kubectl create configmap {needed.name}"
    parts = [
        f"--from-file={key}=PATH" if "." in key else f"--from-literal={key}=VALUE" for key in keys
    ]
    return f"{head} -n {needed.namespace} {' '.join(parts)} --dry-run=client -o yaml"


def report(needed: list[Needed]) -> str:
    """The message: each missing object with its keys and users, then how to pass them."""
    kinds = sorted({n.kind for n in needed})
    one = len(needed) == 1
    lines = [
        f"{len(needed)} {' and '.join(k if one else f'{k}s' for k in kinds)} the pods need "
        f"{'does' if one else 'do'} not exist, and nothing in the sandbox would create "
        f"{'it' if one else 'them'}:"
    ]
    for item in needed:
        keys = f" (keys: {', '.join(sorted(item.keys))})" if item.keys else ""
        lines.append(
            f"  {item.kind} {item.namespace}/{item.name}{keys}, used by "
            f"{', '.join(sorted(item.users))}"
        )
    lines.append(
        "Write them into one file as `kubectl create` makes them (no cluster needed), and pass it "
        "with --objects FILE:"
    )
    for index, item in enumerate(needed):
        redirect = ">" if index == 0 else ">>"
        if index:
            lines.append("  echo --- >> objects.yaml")
        lines.append(f"  {_kubectl(item)} {redirect} objects.yaml")
    return "\n".join(lines)
