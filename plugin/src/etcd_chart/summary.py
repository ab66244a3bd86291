"""A short human summary of a rendered etcd release: `python -m etcd_chart.summary < stream`.

Reads the stream the post-renderer wrote and says what a cluster would get: members and their
peer URLs, the initial cluster state, Services, the disruption budget and TLS.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from etcd_chart.yamlio import Document, YamlError, load_stream

CONFIG_ANNOTATION = "etcd-chart/config"


def _find(documents: list[Document], kind: str, name: str) -> dict[str, Any] | None:
    for document in documents:
        if document.kind == kind and document.name == name:
            body: dict[str, Any] = document.body
            return body
    return None


def summarize(documents: list[Document]) -> list[str]:
    lines: list[str] = []
    for document in documents:
        if document.kind != "StatefulSet":
            continue
        sts = document.body
        annotations = (sts.get("metadata") or {}).get("annotations") or {}
        reference = annotations.get(CONFIG_ANNOTATION)
        if not reference:
            continue
        configmap_name, _, key = reference.partition("/")
        configmap = _find(documents, "ConfigMap", configmap_name) or {}
        config = json.loads((configmap.get("data") or {}).get(key, "{}"))
        spec = sts.get("spec") or {}
        members = [
            entry.split("=", 1) for entry in config.get("initial-cluster", "").split(",") if entry
        ]
        tls = "client-transport-security" in config
        namespace = document.namespace or "default"
        lines.append(f"StatefulSet {namespace}/{document.name}: {spec.get('replicas')} members")
        lines.append(f"  initial-cluster-state: {config.get('initial-cluster-state')}")
        lines.append(f"  initial-cluster-token: {config.get('initial-cluster-token')}")
        for name, url in members:
            lines.append(f"  member {name}: {url}")
        lines.append(f"  client URL form: {config.get('advertise-client-urls')}")
        lines.append(f"  TLS: {'on (client and peer)' if tls else 'off'}")
    for document in documents:
        if document.kind == "Service":
            spec = document.body.get("spec") or {}
            kind = "headless" if spec.get("clusterIP") == "None" else spec.get("type", "ClusterIP")
            ports = ", ".join(f"{p.get('name')}={p.get('port')}" for p in spec.get("ports") or [])
            lines.append(f"Service {document.name} ({kind}): {ports}")
        elif document.kind == "PodDisruptionBudget":
            spec = document.body.get("spec") or {}
            budget = {k: v for k, v in spec.items() if k in ("maxUnavailable", "minAvailable")}
            lines.append(f"PodDisruptionBudget {document.name}: {budget}")
        elif document.kind == "Certificate":
            spec = document.body.get("spec") or {}
            lines.append(
                f"Certificate {document.name}: {len(spec.get('dnsNames') or [])} DNS names"
            )
    return lines


def main() -> int:
    try:
        documents = load_stream(sys.stdin.read())
    except YamlError as err:
        print(f"summary: {err}", file=sys.stderr)
        return 1
    lines = summarize(documents)
    if not lines:
        print("summary: no etcd member set in the stream", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
