"""Certificates whose issuer exists neither in the release nor in the cluster.

cert-manager never issues such a Certificate, so the Secret it names never appears and every
pod that mounts it stays Pending, with nothing in Helm's output to say why. With a live cluster
the post-renderer looks the issuer up (Issuers in the Certificate's namespace, ClusterIssuers
cluster-wide) and refuses the release when it is missing. External issuers (another group) are
not looked up; credentials that may not read issuers skip the check and say so.
"""

from __future__ import annotations

from typing import Any

from etcd_chart.postrender.checks import place
from etcd_chart.report import Report
from etcd_chart.yamlio import Document

GROUP = "cert-manager.io"
ISSUER_KINDS = ("Issuer", "ClusterIssuer")


def _is_cert_manager(document: Document) -> bool:
    return str(document.body.get("apiVersion", "")).startswith(f"{GROUP}/")


def check(
    documents: list[Document], namespace: str, cluster: Any, report: Report, notes: list[str]
) -> None:
    """Report each Certificate whose issuerRef names a cert-manager issuer found nowhere;
    `notes` gets a line for each issuer the credentials may not read."""
    from etcd_chart.postrender.cluster import Forbidden

    rendered = {
        (d.kind, "" if d.kind == "ClusterIssuer" else d.namespace or namespace, d.name)
        for d in documents
        if d.kind in ISSUER_KINDS and _is_cert_manager(d)
    }
    looked: dict[tuple[str, str, str], bool | None] = {}
    for document in documents:
        if document.kind != "Certificate" or not _is_cert_manager(document):
            continue
        spec = document.body.get("spec")
        ref = spec.get("issuerRef") if isinstance(spec, dict) else None
        if not isinstance(ref, dict) or not ref.get("name"):
            continue
        kind = str(ref.get("kind") or "Issuer")
        if str(ref.get("group") or GROUP) != GROUP or kind not in ISSUER_KINDS:
            continue
        scope = "" if kind == "ClusterIssuer" else document.namespace or namespace
        key = (kind, scope, str(ref["name"]))
        if key in rendered:
            continue
        if key not in looked:
            try:
                looked[key] = cluster.get(kind, scope, key[2]) is not None
            except Forbidden:
                looked[key] = None
                notes.append(
                    f"may not read {kind} {key[2]!r} (HTTP 403): not checked that it exists"
                )
        if looked[key] is False:
            where = f" in namespace {scope}" if scope else ""
            secret = spec.get("secretName") if isinstance(spec, dict) else None
            report.add(
                place(document, "spec.issuerRef.name"),
                f"{kind} {key[2]!r} does not exist{where}, in the release or the cluster, so "
                f"cert-manager would never issue Secret {secret} and the pods that mount it "
                "would stay Pending",
                f"add the {kind} to the release or point issuerRef at one that exists",
            )
