"""Type checks of every field the post-renderer reads, before any of it is used.

A value of the wrong type (`replicas: "three"`, a port given as a word, a number where a URL
belongs) would otherwise be read as a default or passed through, and only the API server would
refuse it later. Each rule names a field path (`*` for every item of a list or every value of a
map), the type the field must have, and the fix. Only fields that are present are checked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from etcd_chart.postrender.members import MemberSet
from etcd_chart.report import Report, manifest_place
from etcd_chart.yamlio import Document


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _count(value: Any) -> bool:
    return _integer(value) and value >= 0


def _port(value: Any) -> bool:
    return _integer(value) and 1 <= value <= 65535


def _port_or_name(value: Any) -> bool:
    if _port(value):
        return True
    return (
        isinstance(value, str)
        and re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?", value) is not None
    )


def _count_or_percent(value: Any) -> bool:
    return _count(value) or (isinstance(value, str) and re.fullmatch(r"\d+%", value) is not None)


def _string(value: Any) -> bool:
    return isinstance(value, str)


def _boolean(value: Any) -> bool:
    return isinstance(value, bool)


def _digits(value: Any) -> bool:
    return isinstance(value, str) and value.isdigit()


def _bool_text(value: Any) -> bool:
    return isinstance(value, str) and value.lower() in ("true", "false")


@dataclass(frozen=True)
class Rule:
    path: str
    valid: Callable[[Any], bool]
    expected: str
    fix: str


_CONTAINERS = "spec.template.spec.{kind}[*]"
_PROBES = ("readinessProbe", "livenessProbe", "startupProbe")


def _container_rules() -> list[Rule]:
    rules: list[Rule] = []
    for kind in ("initContainers", "containers"):
        base = _CONTAINERS.format(kind=kind)
        rules += [
            Rule(f"{base}.ports[*].containerPort", _port, "a port number", "use e.g. 2380"),
            Rule(f"{base}.ports[*].name", _string, "a string", "quote the port name"),
            Rule(f"{base}.command[*]", _string, "a string", "quote every item of command"),
            Rule(f"{base}.args[*]", _string, "a string", "quote every item of args"),
            Rule(f"{base}.env[*].name", _string, "a string", "quote the variable name"),
            Rule(f"{base}.env[*].value", _string, "a string", 'quote the value, e.g. "3"'),
            Rule(f"{base}.image", _string, "a string", "quote the image reference"),
            Rule(f"{base}.volumeMounts[*].name", _string, "a string", "quote the volume name"),
            Rule(f"{base}.volumeMounts[*].mountPath", _string, "a string", "quote the path"),
            Rule(f"{base}.volumeMounts[*].subPath", _string, "a string", "quote the path"),
        ]
        for probe in _PROBES:
            for handler in ("httpGet", "tcpSocket"):
                rules.append(
                    Rule(
                        f"{base}.{probe}.{handler}.port",
                        _port_or_name,
                        "a port number or a port name",
                        "use a declared container port, e.g. 2381 or metrics",
                    )
                )
    return rules


STATEFULSET_RULES = [
    Rule("spec.replicas", _count, "a whole number >= 0", "use a number, e.g. replicas: 3"),
    Rule("spec.serviceName", _string, "a string", "name the headless Service"),
    Rule("metadata.annotations.*", _string, "a string", 'quote the annotation value, e.g. "9"'),
    Rule("spec.template.metadata.labels.*", _string, "a string", "quote the label value"),
    Rule("spec.template.metadata.annotations.*", _string, "a string", "quote the value"),
    Rule("spec.selector.matchLabels.*", _string, "a string", "quote the label value"),
    Rule("spec.template.spec.volumes[*].name", _string, "a string", "quote the volume name"),
    Rule("spec.template.spec.volumes[*].configMap.name", _string, "a string", "quote the name"),
    Rule("spec.template.spec.volumes[*].secret.secretName", _string, "a string", "quote the name"),
    *_container_rules(),
]
SERVICE_RULES = [
    Rule("spec.ports[*].port", _port, "a port number", "use e.g. 2379"),
    Rule("spec.ports[*].targetPort", _port_or_name, "a port number or name", "use e.g. 2379"),
    Rule("spec.ports[*].name", _string, "a string", "quote the port name"),
    Rule("spec.selector.*", _string, "a string", "quote the label value"),
    Rule("spec.clusterIP", _string, "a string", 'use "None" for a headless Service'),
    Rule("spec.publishNotReadyAddresses", _boolean, "true or false", "use true, unquoted"),
]
PDB_RULES = [
    Rule("spec.maxUnavailable", _count_or_percent, "a number or a percentage", 'use 1 or "50%"'),
    Rule("spec.minAvailable", _count_or_percent, "a number or a percentage", 'use 2 or "50%"'),
    Rule("spec.selector.matchLabels.*", _string, "a string", "quote the label value"),
]
CERTIFICATE_RULES = [
    Rule("spec.dnsNames[*]", _string, "a string", "quote every DNS name"),
    Rule("spec.secretName", _string, "a string", "quote the Secret name"),
]
CONFIGMAP_RULES = [
    Rule("data.*", _string, "a string", "quote the value; ConfigMap data holds text"),
]
# Annotations that carry a number or a flag as text.
ANNOTATION_RULES = {
    "etcd-chart/max-members": (_digits, "a whole number as text", 'use e.g. "9"'),
    "etcd-chart/allow-even-replicas": (_bool_text, '"true" or "false"', 'use "true"'),
}
# etcd settings the post-renderer reads from a configuration file: URLs and names.
SETTING_KEYS = (
    "name",
    "initial-cluster",
    "initial-cluster-state",
    "initial-cluster-token",
    "listen-peer-urls",
    "listen-client-urls",
    "listen-metrics-urls",
    "initial-advertise-peer-urls",
    "advertise-client-urls",
)
RULES_BY_KIND = {
    "Service": SERVICE_RULES,
    "PodDisruptionBudget": PDB_RULES,
    "ConfigMap": CONFIGMAP_RULES,
    "Certificate": CERTIFICATE_RULES,
}


def _walk(node: Any, parts: list[str], path: str) -> Iterator[tuple[str, Any]]:
    if not parts:
        yield path, node
        return
    head, rest = parts[0], parts[1:]
    if head.endswith("[*]"):
        key = head[:-3]
        items = node.get(key) if isinstance(node, dict) else None
        if isinstance(items, list):
            for position, item in enumerate(items):
                yield from _walk(item, rest, f"{path}.{key}[{position}]".lstrip("."))
    elif head == "*":
        if isinstance(node, dict):
            for key, value in node.items():
                yield from _walk(value, rest, f"{path}[{key}]")
    elif isinstance(node, dict) and head in node:
        yield from _walk(node[head], rest, f"{path}.{head}".lstrip("."))


def _split(path: str) -> list[str]:
    return path.split(".")


def _shown(value: Any) -> str:
    """`is 'three', a string`: the value as YAML would show it, and its type."""
    if value is None:
        return "is null"
    if isinstance(value, bool):
        return f"is {str(value).lower()}, a boolean"
    if isinstance(value, int | float):
        return f"is {value}, a number"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"is {text!r}, a string"
    return "is a list" if isinstance(value, list) else "is a map"


def _apply(document: Document, rules: list[Rule], report: Report) -> None:
    for rule in rules:
        for path, value in _walk(document.body, _split(rule.path), ""):
            if not rule.valid(value):
                report.add(
                    manifest_place(document.source, document.kind, document.name, path),
                    f"{_shown(value)}; it must be {rule.expected}",
                    rule.fix,
                )


def check(documents: list[Document], members: list[MemberSet], report: Report) -> None:
    """Report every field of the wrong type in the member sets and the objects read with them."""
    member_documents = {id(member.statefulset): member for member in members}
    for document in documents:
        if id(document) in member_documents:
            _apply(document, STATEFULSET_RULES, report)
            _check_annotations(document, report)
        elif document.kind in RULES_BY_KIND:
            _apply(document, RULES_BY_KIND[document.kind], report)
    for member in members:
        settings = member.settings
        if settings is None:
            continue
        for key in SETTING_KEYS:
            value = settings.get(key)
            if value is not None and not isinstance(value, str):
                document = settings.documents()[0]
                report.add(
                    manifest_place(
                        document.source, document.kind, document.name, settings.path(key)
                    ),
                    f"{_shown(value)}; it must be a string",
                    f"write {key} as text, e.g. a comma-separated list of URLs",
                )


def _check_annotations(document: Document, report: Report) -> None:
    metadata = document.body.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    if not isinstance(annotations, dict):
        return
    for name, (valid, expected, fix) in ANNOTATION_RULES.items():
        value = annotations.get(name)
        if isinstance(value, str) and not valid(value):
            report.add(
                manifest_place(
                    document.source,
                    document.kind,
                    document.name,
                    f"metadata.annotations[{name}]",
                ),
                f"{_shown(value)}; it must be {expected}",
                fix,
            )
