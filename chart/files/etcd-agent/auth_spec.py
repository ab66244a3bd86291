"""auth.json (rendered from the chart's auth values): roles, users and their password files."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from errors import AgentError


@dataclasses.dataclass(frozen=True)
class Permission:
    type: str
    key: str
    prefix: bool


@dataclasses.dataclass(frozen=True)
class Role:
    name: str
    permissions: tuple[Permission, ...]


@dataclasses.dataclass(frozen=True)
class User:
    name: str
    password_file: str
    roles: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class AuthSpec:
    roles: tuple[Role, ...]
    users: tuple[User, ...]


PERMISSION_TYPES = {"read": "READ", "write": "WRITE", "readwrite": "READWRITE"}


def parse_auth_spec(data: Any, source: str) -> AuthSpec:
    """Validate auth.json; every problem is reported at once with its dotted key."""
    problems: list[str] = []

    def problem(where: str, message: str) -> None:
        problems.append(f"{source}: {where}: {message}")

    if not isinstance(data, dict):
        raise AgentError(f"{source}: must be a JSON object with roles and users")
    for key in sorted(set(data) - {"roles", "users"}):
        problem(key, "unknown key (expected roles, users)")
    roles: list[Role] = []
    for i, item in enumerate(data.get("roles") or []):
        where = f"roles[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            problem(f"{where}.name", "required, a non-empty string")
            continue
        if item["name"] == "root":
            problem(f"{where}.name", "the root role is built in and managed by the agent")
        permissions = []
        for j, perm in enumerate(item.get("permissions") or []):
            at = f"{where}.permissions[{j}]"
            if not isinstance(perm, dict):
                problem(at, "must be an object with type, key and prefix")
                continue
            kind = perm.get("type")
            if kind not in PERMISSION_TYPES:
                problem(f"{at}.type", f"{kind!r} is not one of read, write, readwrite")
            if not isinstance(perm.get("key"), str):
                problem(f"{at}.key", "required, a string")
            if not isinstance(perm.get("prefix", False), bool):
                problem(f"{at}.prefix", "must be true or false")
            if kind in PERMISSION_TYPES and isinstance(perm.get("key"), str):
                permissions.append(Permission(str(kind), perm["key"], bool(perm.get("prefix"))))
        roles.append(Role(item["name"], tuple(permissions)))
    known_roles = {role.name for role in roles} | {"root"}
    users: list[User] = []
    for i, item in enumerate(data.get("users") or []):
        where = f"users[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            problem(f"{where}.name", "required, a non-empty string")
            continue
        if item["name"] == "root":
            problem(f"{where}.name", "root is created by the agent from the root password file")
        if not isinstance(item.get("passwordFile"), str) or not item["passwordFile"]:
            problem(f"{where}.passwordFile", "required, the path of the mounted password file")
        user_roles = item.get("roles") or []
        if not isinstance(user_roles, list):
            problem(f"{where}.roles", "must be a list of role names")
            user_roles = []
        for j, role in enumerate(user_roles):
            if role not in known_roles:
                problem(f"{where}.roles[{j}]", f"{role!r} is not a role defined in roles")
        users.append(
            User(item["name"], str(item.get("passwordFile", "")), tuple(map(str, user_roles)))
        )
    if problems:
        raise AgentError("; ".join(problems))
    return AuthSpec(tuple(roles), tuple(users))


def load_auth_spec(path: str) -> AuthSpec | None:
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as err:
        raise AgentError(f"{path}: cannot read: {err.strerror}") from err
    except ValueError as err:
        raise AgentError(f"{path}: not valid JSON: {err}") from err
    return parse_auth_spec(data, path)
