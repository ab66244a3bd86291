"""etcd's configuration file: the template with `$(VAR)` placeholders, extra flags, the
atomic write. No network."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

from errors import AgentError
from urls import parse_initial_cluster, url_host

DEFAULT_TEMPLATE = "/etc/etcd-template/etcd.conf.json"
DEFAULT_OUTPUT = "/var/run/etcd/etcd.conf.json"
EXTRA_FLAGS_KEY = "x-extra-flags"
_PLACEHOLDER = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand(text: str, env: Mapping[str, str], missing: list[str] | None = None) -> str:
    """Kubernetes-style `$(VAR)`: unknown variables stay as written (and are noted), `$$` is `$`."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "$"
        if name in env:
            return env[name]
        if missing is not None:
            missing.append(name)
        return match.group(0)

    return _PLACEHOLDER.sub(replace, text)


def expand_tree(value: Any, env: Mapping[str, str], missing: list[str], path: str = "") -> Any:
    """`expand` on every string inside dicts and lists; `missing` gets `path: VAR` entries."""
    if isinstance(value, dict):
        return {
            k: expand_tree(v, env, missing, f"{path}.{k}" if path else k) for k, v in value.items()
        }
    if isinstance(value, list):
        return [expand_tree(v, env, missing, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str):
        names: list[str] = []
        result = expand(value, env, names)
        missing.extend(f"{path}: $({name})" for name in names)
        return result
    return value


def typed_value(text: str) -> bool | int | str:
    """A flag value as etcd's config file wants it: true/false a bool, an integer an int."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if re.fullmatch(r"[+-]?[0-9]+", text):
        return int(text)
    return text


def apply_extra_flags(config: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Turn `"x-extra-flags": ["--key=value", ...]` into typed config keys and drop the x- key."""
    result = {key: value for key, value in config.items() if key != EXTRA_FLAGS_KEY}
    flags = config.get(EXTRA_FLAGS_KEY)
    if flags is None:
        return result
    if not isinstance(flags, list):
        raise AgentError(f'{source}: {EXTRA_FLAGS_KEY}: must be a list of "--key=value" strings')
    problems = []
    for index, flag in enumerate(flags):
        key, sep, value = flag[2:].partition("=") if isinstance(flag, str) else ("", "", "")
        if not isinstance(flag, str) or not flag.startswith("--") or not key.strip("-"):
            problems.append(
                f"{source}: {EXTRA_FLAGS_KEY}[{index}]: {flag!r} is not of the form --key=value"
            )
            continue
        result[key] = typed_value(value) if sep else True
    if problems:
        raise AgentError("; ".join(problems))
    return result


def load_template(path: str, env: Mapping[str, str]) -> dict[str, Any]:
    """The etcd config template with `$(VAR)` expanded and x-extra-flags turned into keys."""
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except OSError as err:
        raise AgentError(f"{path}: cannot read the etcd config template: {err.strerror}") from err
    except ValueError as err:
        raise AgentError(f"{path}: not valid JSON: {err}") from err
    if not isinstance(raw, dict):
        raise AgentError(f"{path}: must be a JSON object of etcd configuration keys")
    variables = dict(env)
    if env.get("POD_IP"):
        variables["POD_IP_URL_HOST"] = url_host(env["POD_IP"])
    missing: list[str] = []
    config = expand_tree(raw, variables, missing)
    if missing:
        raise AgentError(
            "; ".join(f"{path}: {item} is not set in the environment" for item in missing)
        )
    config = apply_extra_flags(config, path)
    for key in ("name", "data-dir", "initial-advertise-peer-urls"):
        if not isinstance(config.get(key), str) or not config[key]:
            raise AgentError(f"{path}: {key}: required, a non-empty string")
    try:
        parse_initial_cluster(str(config.get("initial-cluster", "")))
    except ValueError as err:
        raise AgentError(f"{path}: initial-cluster: {err}") from None
    return config


def write_config(path: str, config: Mapping[str, Any]) -> None:
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    temporary = os.path.join(directory, f".{os.path.basename(path)}.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=2)
        handle.write("\n")
    os.replace(temporary, path)
