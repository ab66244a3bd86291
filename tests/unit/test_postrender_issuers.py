"""A Certificate whose issuer exists nowhere is refused, against the real API server (cert-manager's
CRDs installed by the `control_plane` fixture): cert-manager would never issue it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from etcd_chart import yamlio
from etcd_chart.postrender.cluster import Cluster
from etcd_chart.postrender.core import Options, post_render
from etcd_chart.sandbox.controlplane import ControlPlane
from realapi import api, apply, kubectl, service_account_token, write_kubeconfig

DATA = Path(__file__).resolve().parents[1] / "data" / "postrender"
SOURCE = "etcd/templates/certificate-server.yaml"


def stream(namespace: str, kind: str, issuer: str, *extra: dict[str, Any]) -> str:
    """The chart-like release with a server Certificate signed by `kind` `issuer`."""
    bodies = [b for b in yaml.safe_load_all((DATA / "chart-like.yaml").read_text()) if b]
    for body in bodies:
        body["metadata"]["namespace"] = namespace
    certificate = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": "etcd-server", "namespace": namespace},
        "spec": {
            "secretName": "etcd-server-tls",
            "commonName": "etcd-server",
            "issuerRef": {"name": issuer, "kind": kind, "group": "cert-manager.io"},
        },
    }
    return "".join(
        f"---\n# Source: {SOURCE}\n{yamlio.dump(b)}" for b in [*bodies, certificate, *extra]
    )


def self_signed(kind: str, name: str, namespace: str = "") -> dict[str, Any]:
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": "cert-manager.io/v1", "kind": kind, "metadata": metadata,
            "spec": {"selfSigned": {}}}  # fmt: skip


def test_a_missing_cluster_issuer_is_refused_and_an_existing_one_passes(
    ns: str, cluster: Cluster, control_plane: ControlPlane
) -> None:
    issuer = f"{ns}-corp-ca"
    outcome = post_render(stream(ns, "ClusterIssuer", issuer), Options(namespace=ns), cluster)
    assert outcome.report.lines() == [
        f"{SOURCE}: Certificate/etcd-server: spec.issuerRef.name: ClusterIssuer '{issuer}' does"
        " not exist, in the release or the cluster, so cert-manager would never issue Secret"
        " etcd-server-tls and the pods that mount it would stay Pending (add the ClusterIssuer"
        " to the release or point issuerRef at one that exists)"
    ]
    assert outcome.output == ""
    kubectl(
        control_plane,
        "apply",
        "-f",
        "-",
        stdin=yaml.safe_dump(self_signed("ClusterIssuer", issuer)),
    )
    try:
        outcome = post_render(stream(ns, "ClusterIssuer", issuer), Options(namespace=ns), cluster)
        assert outcome.report.lines() == []
        assert outcome.notes == []
    finally:
        kubectl(control_plane, "delete", "clusterissuer", issuer, "--ignore-not-found")


def test_an_issuer_is_looked_up_in_the_certificates_namespace(
    ns: str, cluster: Cluster, control_plane: ControlPlane, namespace: Callable[[], str]
) -> None:
    elsewhere = namespace()
    apply(control_plane, elsewhere, [self_signed("Issuer", "team-ca", elsewhere)])
    outcome = post_render(stream(ns, "Issuer", "team-ca"), Options(namespace=ns), cluster)
    assert [line.split(": ", 3)[3] for line in outcome.report.lines()] == [
        f"Issuer 'team-ca' does not exist in namespace {ns}, in the release or the cluster, so"
        " cert-manager would never issue Secret etcd-server-tls and the pods that mount it would"
        " stay Pending (add the Issuer to the release or point issuerRef at one that exists)"
    ]
    apply(control_plane, ns, [self_signed("Issuer", "team-ca", ns)])
    outcome = post_render(stream(ns, "Issuer", "team-ca"), Options(namespace=ns), cluster)
    assert outcome.report.lines() == []


def test_an_issuer_rendered_with_the_release_needs_no_lookup(ns: str, cluster: Cluster) -> None:
    text = stream(ns, "Issuer", "etcd-selfsigned", self_signed("Issuer", "etcd-selfsigned", ns))
    outcome = post_render(text, Options(namespace=ns), cluster)
    assert (outcome.report.lines(), outcome.notes) == ([], [])


def test_credentials_that_may_not_read_cluster_issuers_skip_the_check(
    ns: str, control_plane: ControlPlane, tmp_path: Path
) -> None:
    """A namespace's deployer (the `edit` ClusterRole bound in its namespace, as CI accounts
    often are) may read the release's objects but no ClusterIssuer: the check is skipped, said."""
    token = service_account_token(control_plane, ns, "deployer")
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "deployer-edit", "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": ns}],
    }
    apply(control_plane, ns, [binding])
    deadline = time.monotonic() + 15  # RBAC takes effect once the API server's informers see it
    path = f"/apis/apps/v1/namespaces/{ns}/statefulsets"
    while api(control_plane, token, "GET", path) != 200:
        assert time.monotonic() < deadline, "the RoleBinding never took effect"
        time.sleep(0.2)
    live = Cluster(str(write_kubeconfig(control_plane, tmp_path / "kubeconfig", ns, token)))
    try:
        outcome = post_render(stream(ns, "ClusterIssuer", "corp-ca"), Options(namespace=ns), live)
    finally:
        live.close()
    assert outcome.report.lines() == []
    assert outcome.notes == [
        "may not read ClusterIssuer 'corp-ca' (HTTP 403): not checked that it exists"
    ]
