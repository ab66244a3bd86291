"""Reading live objects from a Kubernetes cluster, through the `kubernetes` client.

The client is imported only here and only when a cluster is contacted, so that offline runs
start fast. Which cluster (`resolve`): the kubeconfig named by `--kubeconfig`, else `KUBECONFIG`,
else `~/.kube/config`, else the in-cluster service account. A named kubeconfig that does not
exist is an error whichever way it was named; one that is empty (`/dev/null`) means no cluster.
Helm passes neither its `--kube-context` nor its `--kubeconfig` to a post-renderer, so a
kubeconfig with several contexts is read only when the context was named (`--kube-context`,
given through Helm's `--post-renderer-args`): never a guess at the cluster Helm installs into.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from typing import Any

SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
OFFLINE_FIX = "to render without the cluster, pass --offline or set ETCD_CHART_OFFLINE=1"
DEFAULT_FIX = "check the kubeconfig and that the cluster is up; " + OFFLINE_FIX.replace(
    "the cluster", "it"
)


class ClusterUnavailable(RuntimeError):
    """The cluster was configured but could not be read; the message says why, `fix` how."""

    def __init__(self, message: str, fix: str = DEFAULT_FIX):
        super().__init__(message)
        self.fix = fix


@dataclass(frozen=True)
class Target:
    """The cluster a live read goes to: kubeconfig files and context, or the in-cluster account."""

    files: tuple[str, ...]
    context: str | None
    origin: str  # how the kubeconfig was named: --kubeconfig, KUBECONFIG, ~/.kube/config

    @property
    def in_cluster(self) -> bool:
        return not self.files

    def describe(self) -> str:
        if self.in_cluster:
            return "the in-cluster service account"
        return f"context {self.context}, kubeconfig {os.pathsep.join(self.files)} ({self.origin})"


def _kubeconfig_files(explicit: str | None) -> tuple[list[str], str]:
    if explicit:
        return [os.path.expanduser(explicit)], "--kubeconfig"
    value = os.environ.get("KUBECONFIG")
    if value is not None:
        return [os.path.expanduser(part) for part in value.split(os.pathsep) if part], "KUBECONFIG"
    return [os.path.expanduser("~/.kube/config")], "~/.kube/config"


def _nonempty(path: str) -> bool:
    try:
        return os.path.isfile(path) and os.path.getsize(path) > 0
    except OSError:
        return False


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.isfile(SERVICE_ACCOUNT_TOKEN)


def _read_kubeconfig(path: str) -> dict[str, Any]:
    from etcd_chart import yamlio

    try:
        with open(path) as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as err:
        raise ClusterUnavailable(
            f"cannot read the kubeconfig {path}: {err}", "fix the file or its permissions"
        ) from err
    try:
        data = yamlio.load(text)
    except yamlio.YamlError as err:
        where = " ".join(str(err).split()).replace(' in "<unicode string>",', " at")
        raise ClusterUnavailable(
            f"the kubeconfig {path} is not valid YAML: {where}",
            "fix the file (`kubectl config view` shows what kubectl reads); " + OFFLINE_FIX,
        ) from err
    if data is None:
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("contexts") or [], list):
        raise ClusterUnavailable(
            f"the kubeconfig {path} is not a kubeconfig (a mapping with clusters, users and a "
            "list of contexts)",
            "point --kubeconfig or KUBECONFIG at a kubeconfig; " + OFFLINE_FIX,
        )
    return data


def _contexts(files: list[str]) -> tuple[list[str], str]:
    """Context names of the merged kubeconfig (first file wins) and its current-context."""
    names: list[str] = []
    current = ""
    for path in files:
        data = _read_kubeconfig(path)
        for entry in data.get("contexts") or []:
            name = entry.get("name") if isinstance(entry, dict) else None
            if isinstance(name, str) and name and name not in names:
                names.append(name)
        if not current and isinstance(data.get("current-context"), str):
            current = data["current-context"]
    return names, current


def resolve(kubeconfig: str | None, context: str | None = None) -> Target | None:
    """The cluster to read, or None when none is configured; raises ClusterUnavailable."""
    files, origin = _kubeconfig_files(kubeconfig)
    if origin != "~/.kube/config":
        missing = [path for path in files if not os.path.exists(path)]
        if missing:
            raise ClusterUnavailable(
                f"the kubeconfig {', '.join(missing)} (named by {origin}) does not exist",
                f"point {origin} at the kubeconfig Helm uses; " + OFFLINE_FIX,
            )
    present = [path for path in files if _nonempty(path)]
    if not present:
        if context:
            raise ClusterUnavailable(
                f"--kube-context {context} was given, but there is no kubeconfig to find it in "
                f"({', '.join(files) or 'KUBECONFIG is empty'})",
                "pass --kubeconfig with the kubeconfig Helm uses",
            )
        if in_cluster():
            return Target((), None, "in-cluster")
        return None
    names, current = _contexts(present)
    shown = os.pathsep.join(present)
    if context:
        if context not in names:
            raise ClusterUnavailable(
                f"the kubeconfig {shown} ({origin}) has no context {context!r} "
                f"(its contexts: {', '.join(names) or 'none'})",
                "name one of its contexts with --kube-context, the one Helm installs into",
            )
        return Target(tuple(present), context, origin)
    if len(names) > 1:
        raise ClusterUnavailable(
            f"the kubeconfig {shown} ({origin}) has {len(names)} contexts "
            f"({', '.join(names)}) and none was named; Helm does not tell a post-renderer which "
            "cluster it installs into, so the post-renderer will not guess",
            "add `--post-renderer-args --kube-context=CONTEXT` to the helm command, with the "
            f"context Helm uses (its --kube-context, else the current context"
            f"{': ' + current if current else ''}); or `--post-renderer-args --offline` to "
            "render without reading a cluster",
        )
    if not names:
        raise ClusterUnavailable(
            f"the kubeconfig {shown} ({origin}) has no contexts",
            "point --kubeconfig or KUBECONFIG at the kubeconfig Helm uses; " + OFFLINE_FIX,
        )
    return Target(tuple(present), names[0], origin)


# kind -> the API path of its collection. Paths rather than the client's generated API classes:
# importing CoreV1Api and AppsV1Api costs seconds, and only a few GETs are needed.
_COLLECTIONS = {
    "StatefulSet": "/apis/apps/v1/namespaces/{namespace}/statefulsets",
    "ConfigMap": "/api/v1/namespaces/{namespace}/configmaps",
    "Pod": "/api/v1/namespaces/{namespace}/pods",
    "Service": "/api/v1/namespaces/{namespace}/services",
    "Secret": "/api/v1/namespaces/{namespace}/secrets",
    "Issuer": "/apis/cert-manager.io/v1/namespaces/{namespace}/issuers",
    "ClusterIssuer": "/apis/cert-manager.io/v1/clusterissuers",
}


class Forbidden(ClusterUnavailable):
    """The credentials may not read this object (HTTP 403): a check that can do without it
    catches this; everywhere else it is a ClusterUnavailable like any failed read."""


class Cluster:
    """Live objects by kind, namespace and name, as plain dicts (the API's JSON)."""

    def __init__(self, target: Target | str | None = None, timeout: float = 10.0):
        if not isinstance(target, Target):
            resolved = resolve(target)
            if resolved is None:
                raise ClusterUnavailable(
                    "no kubeconfig names a cluster", "pass --kubeconfig or set KUBECONFIG"
                )
            target = resolved
        self.target = target
        self.timeout = timeout
        self.where = "the cluster"
        try:
            from kubernetes import client, config
        except ImportError as err:  # a dependency of the package: missing only in a broken install
            raise ClusterUnavailable(
                f"the `kubernetes` Python package, a dependency of etcd-chart, is missing ({err})",
                "reinstall the package (`pip install ./plugin`)",
            ) from err
        configuration = client.Configuration()
        try:
            if target.in_cluster:
                config.load_incluster_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration
                )
            else:
                config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=os.pathsep.join(target.files),
                    context=target.context,
                    client_configuration=configuration,
                )
        except Exception as err:  # the client raises many kinds for a bad kubeconfig
            text = " ".join(str(err).split()) or type(err).__name__
            raise ClusterUnavailable(
                f"cannot load the Kubernetes configuration ({target.describe()}): {text}",
                "fix the kubeconfig (`kubectl config view` shows what kubectl reads); "
                + OFFLINE_FIX,
            ) from err
        configuration.retries = 1
        self.where = str(configuration.host)
        self._host = str(configuration.host).rstrip("/")
        self._api = client.ApiClient(configuration)

    def describe(self) -> str:
        """`https://host:6443 (context prod, kubeconfig /path (KUBECONFIG))`."""
        return f"{self.where} ({self.target.describe()})"

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
            failure = Forbidden if response.status == 403 else ClusterUnavailable
            raise failure(
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
