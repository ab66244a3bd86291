"""Applying auth.json to etcd (idempotent), and noticing when it or a password changed."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any

from auth_spec import PERMISSION_TYPES, AuthSpec
from etcd_client import EtcdClient, EtcdError, prefix_range_end, read_secret_file


def auth_fingerprint(auth_file: str, spec: AuthSpec, root_password_file: str) -> str:
    """What the applied auth depends on: auth.json and every password file. The pods are not
    restarted when users or roles change (the kubelet updates the mounted files), so a changed
    fingerprint is how the agent learns that there is something to apply."""
    digest = hashlib.sha256()
    for path in (auth_file, root_password_file, *(user.password_file for user in spec.users)):
        try:
            with open(path, "rb") as handle:
                digest.update(handle.read())
        except OSError as err:
            digest.update(f"unreadable: {err.strerror}".encode())
        digest.update(b"\0")
    return digest.hexdigest()


def apply_auth(client: EtcdClient, endpoint: str, spec: AuthSpec, root_password_file: str) -> str:
    """Create root, the roles and the users, grant, then enable auth. Idempotent."""

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    def call(path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return client.call(endpoint, path, body)

    def add_if_missing(path: str, body: Mapping[str, Any]) -> bool:
        """True when added; "already exists" means an earlier run or another member did it."""
        try:
            call(path, body)
        except EtcdError as err:
            if "already exist" in err.message:
                return False
            raise
        return True

    enabled = bool(call("/v3/auth/status", {}).get("enabled", False))
    root_password = read_secret_file(root_password_file)
    add_if_missing("/v3/auth/role/add", {"name": "root"})
    add_if_missing("/v3/auth/user/add", {"name": "root", "password": root_password})
    call("/v3/auth/user/grant", {"user": "root", "role": "root"})
    for role in spec.roles:
        add_if_missing("/v3/auth/role/add", {"name": role.name})
        for perm in role.permissions:
            key = perm.key.encode()
            permission = {"permType": PERMISSION_TYPES[perm.type], "key": b64(key)}
            if perm.prefix and not key:
                # The empty prefix is every key; etcd refuses an empty key and takes
                # ["\0", "\0") for the whole keyspace, as etcdctl grants it.
                permission = {**permission, "key": b64(b"\x00"), "range_end": b64(b"\x00")}
            elif perm.prefix:
                permission["range_end"] = b64(prefix_range_end(key))
            call("/v3/auth/role/grant", {"name": role.name, "perm": permission})
    for user in spec.users:
        password = read_secret_file(user.password_file)
        body = {"name": user.name, "password": password}
        if not add_if_missing("/v3/auth/user/add", body):
            call("/v3/auth/user/changepw", body)
        for role_name in user.roles:
            call("/v3/auth/user/grant", {"user": user.name, "role": role_name})
    if not enabled:
        call("/v3/auth/enable", {})
    summary = f"{len(spec.roles)} roles, {len(spec.users)} users"
    return f"auth {'was already' if enabled else 'now'} enabled; root, {summary} applied"
