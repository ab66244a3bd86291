"""The agent's settings from its environment (the pod spec's env), and the TLS context they
describe."""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Mapping

from errors import AgentError
from etcd_client import client_tls_context
from etcd_config import DEFAULT_OUTPUT, DEFAULT_TEMPLATE
from urls import client_url_of

DEFAULT_AUTH_FILE = "/etc/etcd-template/auth.json"
DEFAULT_ROOT_PASSWORD_FILE = "/etc/etcd/auth/root/password"
DEFAULT_SERVICEACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@dataclasses.dataclass(frozen=True)
class Settings:
    pod_name: str
    namespace: str
    template: str
    output: str
    record: str
    client_port: str
    client_scheme: str
    headless_service: str
    cluster_domain: str
    statefulset: str
    auth_file: str
    root_password_file: str
    cacert: str
    cert: str
    key: str
    restored_from: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        return cls(
            pod_name=env.get("POD_NAME", ""),
            namespace=env.get("POD_NAMESPACE", ""),
            template=env.get("ETCD_AGENT_TEMPLATE") or DEFAULT_TEMPLATE,
            output=env.get("ETCD_AGENT_OUTPUT") or DEFAULT_OUTPUT,
            record=env.get("ETCD_AGENT_RECORD", ""),
            client_port=env.get("ETCD_AGENT_CLIENT_PORT") or "2379",
            client_scheme=env.get("ETCD_AGENT_CLIENT_SCHEME") or "http",
            headless_service=env.get("ETCD_AGENT_HEADLESS_SERVICE", ""),
            cluster_domain=env.get("ETCD_AGENT_CLUSTER_DOMAIN") or "cluster.local",
            statefulset=env.get("ETCD_AGENT_STATEFULSET", ""),
            auth_file=env.get("ETCD_AGENT_AUTH_FILE") or DEFAULT_AUTH_FILE,
            root_password_file=(
                env.get("ETCD_AGENT_ROOT_PASSWORD_FILE") or DEFAULT_ROOT_PASSWORD_FILE
            ),
            cacert=env.get("ETCD_AGENT_CACERT", ""),
            cert=env.get("ETCD_AGENT_CERT", ""),
            key=env.get("ETCD_AGENT_KEY", ""),
            restored_from=env.get("ETCD_AGENT_RESTORED_FROM", ""),
        )

    def require(self, *names: str) -> None:
        env_names = {
            "pod_name": "POD_NAME",
            "namespace": "POD_NAMESPACE",
            "headless_service": "ETCD_AGENT_HEADLESS_SERVICE",
            "statefulset": "ETCD_AGENT_STATEFULSET",
        }
        unset = [env_names[name] for name in names if not getattr(self, name)]
        if unset:
            raise AgentError(f"environment variable {', '.join(unset)} not set")
        if not self.client_port.isdigit():
            raise AgentError(f"ETCD_AGENT_CLIENT_PORT: {self.client_port!r} is not a port number")
        if self.client_scheme not in ("http", "https"):
            raise AgentError(f"ETCD_AGENT_CLIENT_SCHEME: {self.client_scheme!r} is not http/https")

    def pod_client_url(self, pod: str) -> str:
        host = f"{pod}.{self.headless_service}.{self.namespace}.svc.{self.cluster_domain}"
        return f"{self.client_scheme}://{host}:{self.client_port}"

    def client_url(self, peer_url: str) -> str:
        return client_url_of(peer_url, self.client_scheme, self.client_port)


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    return client_tls_context(
        settings.cacert, settings.cert, settings.key, settings.client_scheme == "https"
    )
