"""Reading live objects from a Kubernetes cluster, through the `kubernetes` client.

The client is imported only here and only when a cluster is contacted, so that offline runs
start fast. A cluster is "configured" when `--kubeconfig`, `KUBECONFIG` or `~/.kube/config`
names a non-empty file, or when the in-cluster service account environment is present.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


class ClusterUnavailable(RuntimeError):
    """The cluster was configured but could not be read; the message says why."""


def _kubeconfig_files(explicit: str | None) -> list[str]:
    if explicit:
        return [os.path.expanduser(explicit)]
    value = os.environ.get("KUBECONFIG")
    if value is not None:
        return [os.path.expanduser(part) for part in value.split(os.pathsep) if part]
    return [os.path.expanduser("~/.kube/config")]


def _nonempty(path: str) -> bool:
    try:
        return os.path.isfile(path) and os.path.getsize(path) > 0
    except OSError:
        return False


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.isfile(SERVICE_ACCOUNT_TOKEN)


def configured(kubeconfig: str | None) -> bool:
    if kubeconfig:
        return True  # asked for explicitly: an unreadable file is an error, not "offline"
    return any(_nonempty(path) for path in _kubeconfig_files(None)) or in_cluster()


# kind -> the API path of its collection. Paths rather than the client's generated API classes:
# importing CoreV1Api and AppsV1Api costs seconds, and only four GETs are needed.
_COLLECTIONS = {
    "StatefulSet": "/apis/apps/v1/namespaces/{namespace}/statefulsets",
    "ConfigMap": "/api/v1/namespaces/{namespace}/configmaps",
    "Service": "/api/v1/namespaces/{namespace}/services",
    "Secret": "/api/v1/namespaces/{namespace}/secrets",
}


class Cluster:
    """Live objects by kind, namespace and name, as plain dicts (the API's JSON)."""

    def __init__(self, kubeconfig: str | None = None, timeout: float = 10.0):
        self.timeout = timeout
        self.where = "the cluster"
        try:
            from kubernetes import client, config
            from kubernetes.config.config_exception import ConfigException
        except ImportError as err:  # a dependency of the package: missing only in a broken install
            raise ClusterUnavailable(
                f"the `kubernetes` Python package, a dependency of etcd-chart, is missing ({err}); "
                "reinstall the package (`pip install ./plugin`)"
            ) from err
        try:
            if kubeconfig or not in_cluster():
                files = _kubeconfig_files(kubeconfig)
                configuration = client.Configuration()
                config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=os.pathsep.join(files),
                    client_configuration=configuration,
                )
            else:
                configuration = client.Configuration()
                config.load_incluster_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration
                )
        except (ConfigException, OSError, TypeError, ValueError) as err:
            raise ClusterUnavailable(f"cannot load the Kubernetes configuration: {err}") from err
        configuration.retries = 1
        self.where = str(configuration.host)
        self._host = str(configuration.host).rstrip("/")
        self._api = client.ApiClient(configuration)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The live object, or None when it does not exist."""
        from urllib.parse import quote

        import urllib3

        path = _COLLECTIONS[kind].format(namespace=quote(namespace, safe="")) + "/"
        path += quote(name, safe="")
        headers = {"Accept": "application/json"}
        try:
            # Adds the bearer token (refreshed by exec credential plugins) when there is one.
            self._api.update_params_for_auth(headers, [], ["BearerToken"], path, "GET", None)
            response = self._api.call_api(
                "GET", self._host + path, header_params=headers, _request_timeout=self.timeout
            )
            raw = response.read()  # type: ignore[no-untyped-call]
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise ClusterUnavailable(f"cannot reach {self.where}: {_short(err)}") from err
        if response.status == 404:
            return None
        if response.status != 200:
            reason = response.reason or ""
            with contextlib.suppress(ValueError, AttributeError):
                reason = json.loads(raw or b"{}").get("message") or reason
            raise ClusterUnavailable(
                f"reading {kind} {namespace}/{name} from {self.where} failed: "
                f"HTTP {response.status} {reason}"
            )
        data: dict[str, Any] = json.loads(raw)
        return data

    def close(self) -> None:
        self._api.close()  # type: ignore[no-untyped-call]


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
