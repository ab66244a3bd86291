"""The real control plane (kube-apiserver, kube-controller-manager, kube-scheduler, etcd,
cert-manager) that the sandbox runs, what the chart's RBAC allows against it, and the chart's
certificates issued by the real cert-manager."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from etcd_chart import x509
from etcd_chart.helm import find_tool
from etcd_chart.sandbox.controlplane import ControlPlane
from realapi import api, kubectl

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NAMESPACE = "rbac"


def test_control_plane_serves_the_api_and_runs_its_controllers(control_plane: ControlPlane) -> None:
    assert kubectl(control_plane, "get", "--raw", "/readyz") == "ok"
    namespaces = kubectl(control_plane, "get", "namespaces", "-o", "name").split()
    assert {"namespace/default", "namespace/kube-system"} <= set(namespaces)
    # The controller manager's ServiceAccount controller gives every namespace its `default`
    # ServiceAccount and the root CA ConfigMap: proof that it runs and reaches the API server.
    kubectl(control_plane, "create", "namespace", "controllers")
    out = ""
    for _ in range(100):
        out = kubectl(
            control_plane, "get", "serviceaccount,configmap", "-n", "controllers", "-o", "name"
        )
        if "serviceaccount/default" in out and "configmap/kube-root-ca.crt" in out:
            break
        subprocess.run(["sleep", "0.2"], check=True)
    assert "serviceaccount/default" in out and "configmap/kube-root-ca.crt" in out


def _agent_rbac(chart_dir: Path) -> list[dict[str, Any]]:
    rendered = subprocess.run(
        [find_tool("helm4"), "template", "etcd", str(chart_dir), "--namespace", NAMESPACE],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    wanted = {("ServiceAccount", "etcd"), ("Role", "etcd"), ("RoleBinding", "etcd")}
    objects = [obj for obj in yaml.safe_load_all(rendered) if obj]
    picked = [obj for obj in objects if (obj["kind"], obj["metadata"]["name"]) in wanted]
    assert {(obj["kind"], obj["metadata"]["name"]) for obj in picked} == wanted
    return picked


def test_agent_service_account_reaches_its_record_and_nothing_else(
    control_plane: ControlPlane, chart_dir: Path
) -> None:
    kubectl(control_plane, "create", "namespace", NAMESPACE)
    rbac = _agent_rbac(chart_dir)
    kubectl(control_plane, "apply", "-f", "-", stdin=yaml.safe_dump_all(rbac))
    kubectl(control_plane, "create", "configmap", "etcd-config", "-n", NAMESPACE)
    # A projected token like the pod's, through the TokenRequest API.
    token = kubectl(control_plane, "create", "token", "etcd", "-n", NAMESPACE).strip()

    configmaps = f"/api/v1/namespaces/{NAMESPACE}/configmaps"
    record = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "etcd-cluster-record"}}
    assert api(control_plane, token, "POST", configmaps, record) == 201
    assert api(control_plane, token, "GET", f"{configmaps}/etcd-cluster-record") == 200
    record["data"] = {"clusterID": "abc"}
    assert api(control_plane, token, "PUT", f"{configmaps}/etcd-cluster-record", record) == 200

    assert api(control_plane, token, "GET", f"{configmaps}/etcd-config") == 403
    assert api(control_plane, token, "DELETE", f"{configmaps}/etcd-cluster-record") == 403
    assert api(control_plane, token, "GET", configmaps) == 403
    assert api(control_plane, token, "GET", f"/api/v1/namespaces/{NAMESPACE}/secrets") == 403
    assert api(control_plane, token, "GET", f"/api/v1/namespaces/{NAMESPACE}/pods") == 403
    assert (
        api(control_plane, token, "GET", f"/apis/apps/v1/namespaces/{NAMESPACE}/statefulsets")
        == 403
    )
    assert (
        api(
            control_plane, token, "GET", "/api/v1/namespaces/default/configmaps/etcd-cluster-record"
        )
        == 403
    )
    assert api(control_plane, token, "GET", "/api/v1/nodes") == 403


def _certificate_objects(chart_dir: Path, namespace: str) -> list[dict[str, Any]]:
    rendered = subprocess.run(
        [find_tool("helm4"), "template", "etcd", str(chart_dir), "--namespace", namespace]
        + ["--set", "tls.enabled=true"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    objects = [obj for obj in yaml.safe_load_all(rendered) if obj]
    return [obj for obj in objects if obj["kind"] in ("Issuer", "Certificate")]


def test_cert_manager_issues_the_charts_certificates(
    control_plane: ControlPlane, chart_dir: Path
) -> None:
    namespace = "certs"
    kubectl(control_plane, "create", "namespace", namespace)
    objects = _certificate_objects(chart_dir, namespace)
    certificates = sorted(o["metadata"]["name"] for o in objects if o["kind"] == "Certificate")
    assert certificates == ["etcd-agent", "etcd-ca", "etcd-client", "etcd-peer", "etcd-server"]
    kubectl(control_plane, "apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all(objects))
    kubectl(
        control_plane,
        *("wait", "--for=condition=Ready", "--timeout=60s", "-n", namespace),
        *(f"certificate/{name}" for name in certificates),
    )
    ca = json.loads(
        kubectl(control_plane, "get", "secret", "etcd-ca", "-n", namespace, "-o", "json")
    )
    ca_pem = base64.b64decode(ca["data"]["tls.crt"])
    for name, secret in (("etcd-server", "etcd-server-tls"), ("etcd-peer", "etcd-peer-tls")):
        data = json.loads(
            kubectl(control_plane, "get", "secret", secret, "-n", namespace, "-o", "json")
        )["data"]
        assert set(data) >= {"tls.crt", "tls.key", "ca.crt"}, name
        assert base64.b64decode(data["ca.crt"]) == ca_pem
        cert = x509.load_cert(base64.b64decode(data["tls.crt"]))
        assert x509.issued_by(cert, x509.load_cert(ca_pem))
        # Every member that can exist (tls.maxMembers, 9 by default) is named.
        names = x509.names_of(cert).dns_names
        for ordinal in range(9):
            assert f"etcd-{ordinal}.etcd-headless.{namespace}.svc.cluster.local" in names, name
    agent = json.loads(
        kubectl(control_plane, "get", "secret", "etcd-agent-tls", "-n", namespace, "-o", "json")
    )["data"]
    assert x509.common_name_of(x509.load_cert(base64.b64decode(agent["tls.crt"]))) == ""
