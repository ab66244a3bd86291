"""The UI's settings from its environment (the Deployment's env)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from errors import AgentError

DURATION = re.compile(r"^([0-9]+)(s|m|h)?$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str, name: str) -> int:
    """Seconds of `90s`, `30m`, `8h` or a plain number of seconds."""
    match = DURATION.match(text.strip())
    if not match or int(match.group(1)) <= 0:
        raise AgentError(f"{name}: {text!r} is not a duration like 30m, 8h or 3600s")
    return int(match.group(1)) * UNIT_SECONDS[match.group(2) or "s"]


def flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name, "").strip().lower()
    if not value:
        return default
    if value not in ("true", "false"):
        raise AgentError(f"{name}: {value!r} is neither true nor false")
    return value == "true"


@dataclasses.dataclass(frozen=True)
class Settings:
    listen_host: str
    port: int
    endpoints: list[str]
    cacert: str
    cert: str
    key: str
    etcd_user: str
    etcd_password_file: str
    auth_enabled: bool
    login_dir: str
    login_secret: str
    read_only: bool
    session_ttl: int

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        endpoints = [e.strip() for e in env.get("ETCD_WEBUI_ENDPOINTS", "").split(",") if e.strip()]
        if not endpoints:
            raise AgentError(
                "ETCD_WEBUI_ENDPOINTS: required, the etcd client URLs (comma-separated)"
            )
        port_text = env.get("ETCD_WEBUI_PORT") or "8080"
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise AgentError(f"ETCD_WEBUI_PORT: {port_text!r} is not a port number")
        return cls(
            listen_host=env.get("POD_IP") or "0.0.0.0",  # noqa: S104 (a pod listens on its IP)
            port=int(port_text),
            endpoints=endpoints,
            cacert=env.get("ETCD_WEBUI_CACERT", ""),
            cert=env.get("ETCD_WEBUI_CERT", ""),
            key=env.get("ETCD_WEBUI_KEY", ""),
            etcd_user=env.get("ETCD_WEBUI_ETCD_USER", ""),
            etcd_password_file=env.get("ETCD_WEBUI_ETCD_PASSWORD_FILE", ""),
            auth_enabled=flag(env, "ETCD_WEBUI_AUTH", True),
            login_dir=env.get("ETCD_WEBUI_LOGIN_DIR") or "/etc/etcd-webui/login",
            login_secret=env.get("ETCD_WEBUI_LOGIN_SECRET", ""),
            read_only=flag(env, "ETCD_WEBUI_READ_ONLY", True),
            session_ttl=parse_duration(
                env.get("ETCD_WEBUI_SESSION_TTL") or "1h", "ETCD_WEBUI_SESSION_TTL"
            ),
        )
