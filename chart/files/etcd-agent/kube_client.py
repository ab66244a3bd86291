"""The in-cluster Kubernetes API (service account token and CA): the cluster record ConfigMap
and the StatefulSet's replica count, nothing else."""

from __future__ import annotations

import http.client
import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from etcd_client import direct_opener, failure_reason, verifying_context
from scale_down_decision import STS_ABSENT, STS_PRESENT, STS_UNKNOWN
from settings import DEFAULT_SERVICEACCOUNT_DIR
from start_decision import RECORD_ABSENT, RECORD_DISABLED, RECORD_PRESENT, RECORD_UNKNOWN
from urls import url_host


class KubeError(Exception):
    """The Kubernetes API could not be asked, or refused."""


class KubeClient:
    """The in-cluster Kubernetes API: service account token and CA; the record and the
    StatefulSet only."""

    def __init__(self, env: Mapping[str, str], timeout: float = 5.0):
        self.host = env.get("KUBERNETES_SERVICE_HOST", "")
        self.port = env.get("KUBERNETES_SERVICE_PORT") or "443"
        self.directory = env.get("ETCD_AGENT_SERVICEACCOUNT_DIR") or DEFAULT_SERVICEACCOUNT_DIR
        self.timeout = timeout

    def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> tuple[int, dict[str, Any]]:
        if not self.host:
            raise KubeError("KUBERNETES_SERVICE_HOST is not set (not running in a cluster?)")
        try:
            with open(os.path.join(self.directory, "token"), encoding="utf-8") as handle:
                token = handle.read().strip()
            context = verifying_context(os.path.join(self.directory, "ca.crt"))
        except (OSError, ssl.SSLError) as err:
            raise KubeError(f"service account files in {self.directory}: {err}") from err
        url = f"https://{url_host(self.host)}:{self.port}{path}"
        request = urllib.request.Request(
            url,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )
        if body is not None:
            request.add_header("Content-Type", content_type)
        try:
            with direct_opener(context).open(request, timeout=self.timeout) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as err:
            try:
                answer = json.loads(err.read() or b"{}")
            except (ValueError, OSError):
                answer = {}
            return err.code, answer if isinstance(answer, dict) else {}
        except (OSError, ValueError, http.client.HTTPException) as err:
            raise KubeError(f"{url}: {failure_reason(err)}") from None


def _configmap_path(namespace: str, name: str = "") -> str:
    path = f"/api/v1/namespaces/{urllib.parse.quote(namespace)}/configmaps"
    return f"{path}/{urllib.parse.quote(name)}" if name else path


def read_record(kube: KubeClient, namespace: str, name: str) -> tuple[str, dict[str, str], str]:
    """(state, data, detail) of the cluster record ConfigMap."""
    if not name:
        return RECORD_DISABLED, {}, "ETCD_AGENT_RECORD is empty"
    try:
        status, answer = kube.request("GET", _configmap_path(namespace, name))
    except KubeError as err:
        return RECORD_UNKNOWN, {}, str(err)
    if status == 200:
        data = answer.get("data") or {}
        return RECORD_PRESENT, {str(k): str(v) for k, v in data.items()}, ""
    if status == 404:
        return RECORD_ABSENT, {}, ""
    return (
        RECORD_UNKNOWN,
        {},
        f"GET ConfigMap {namespace}/{name}: HTTP {status} {answer.get('message', '')}",
    )


def read_statefulset_replicas(kube: KubeClient, namespace: str, name: str) -> tuple[str, int, str]:
    """(state, spec.replicas, detail) of the live StatefulSet."""
    path = (
        f"/apis/apps/v1/namespaces/{urllib.parse.quote(namespace)}"
        f"/statefulsets/{urllib.parse.quote(name)}"
    )
    try:
        status, answer = kube.request("GET", path)
    except KubeError as err:
        return STS_UNKNOWN, 0, str(err)
    if status == 404:
        return STS_ABSENT, 0, ""
    if status != 200:
        message = answer.get("message", "")
        return STS_UNKNOWN, 0, f"GET StatefulSet {namespace}/{name}: HTTP {status} {message}"
    replicas = (answer.get("spec") or {}).get("replicas", 1)
    return STS_PRESENT, int(replicas), ""
