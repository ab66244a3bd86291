"""Finding etcd member sets in a stream, and where each one keeps its etcd settings.

A member set is a StatefulSet whose pods are etcd members:

- the chart's own, marked with the annotation `etcd-chart/config: <configmap>/<key>`; its settings
  are the etcd configuration file (JSON) in that ConfigMap;
- any other StatefulSet with a container that runs etcd (an image whose name contains `etcd`, and
  `etcd` or `--initial-cluster` in its command or arguments, or `ETCD_INITIAL_CLUSTER` in its
  environment). Its settings are read where etcd reads them: the file named by `--config-file`
  (or `ETCD_CONFIG_FILE`) when that file comes from a ConfigMap, else the flags (`--key=value`,
  `--key value`, `-key=value`), else the `ETCD_*` environment variables.

A `Settings` object reads and writes one setting by its etcd configuration name
(`initial-cluster`) wherever it lives and knows the field path of each place, for messages.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from etcd_chart import yamlio
from etcd_chart.postrender.stream import full_body
from etcd_chart.yamlio import Document

CONFIG_ANNOTATION = "etcd-chart/config"
STATE_ANNOTATION = "etcd-chart/initial-cluster-state"
ALLOW_EVEN_ANNOTATION = "etcd-chart/allow-even-replicas"
MAX_MEMBERS_ANNOTATION = "etcd-chart/max-members"
SCALE_DOWN_ANNOTATION = "etcd-chart/scale-down"

# Lookup of an object by (kind, namespace, name): from the stream, or from a live cluster.
Lookup = Callable[[str, str, str], Document | None]

_VAR_RE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")

# Settings that the configuration file keeps inside `*-transport-security` objects.
_NESTED = {
    "cert-file": ("client-transport-security", "cert-file"),
    "key-file": ("client-transport-security", "key-file"),
    "trusted-ca-file": ("client-transport-security", "trusted-ca-file"),
    "client-cert-auth": ("client-transport-security", "client-cert-auth"),
    "auto-tls": ("client-transport-security", "auto-tls"),
    "peer-cert-file": ("peer-transport-security", "cert-file"),
    "peer-key-file": ("peer-transport-security", "key-file"),
    "peer-trusted-ca-file": ("peer-transport-security", "trusted-ca-file"),
    "peer-client-cert-auth": ("peer-transport-security", "client-cert-auth"),
    "peer-auto-tls": ("peer-transport-security", "auto-tls"),
}


def variables_in(text: str) -> list[str]:
    return _VAR_RE.findall(text)


def env_var_name(key: str) -> str:
    return "ETCD_" + key.upper().replace("-", "_")


class Settings:
    """Where a member set's etcd settings live. Subclasses implement one carrier each."""

    description = ""

    def get(self, key: str) -> Any:
        raise NotImplementedError

    def set(self, key: str, value: str) -> bool:
        """Set `key` (adding it when absent); True when the manifest changed."""
        raise NotImplementedError

    def path(self, key: str) -> str:
        raise NotImplementedError

    def documents(self) -> list[Document]:
        """The documents a `set` changes."""
        raise NotImplementedError

    def finish(self) -> None:
        """Write pending changes into the documents' bodies."""


class ConfigFileSettings(Settings):
    """An etcd configuration file (JSON or YAML) stored under one key of a ConfigMap."""

    def __init__(self, configmap: Document, key: str, config: dict[str, Any], as_json: bool):
        self.configmap = configmap
        self.key = key
        self.config = config
        self.as_json = as_json
        self.changed = False
        self.description = f"ConfigMap/{configmap.name} key {key}"

    def get(self, key: str) -> Any:
        if key in self.config:
            return self.config[key]
        if key in _NESTED:
            section, inner = _NESTED[key]
            nested = self.config.get(section)
            if isinstance(nested, dict):
                return nested.get(inner)
        return None

    def set(self, key: str, value: str) -> bool:
        if self.config.get(key) == value:
            return False
        self.config[key] = value
        self.changed = True
        return True

    def path(self, key: str) -> str:
        if key not in self.config and key in _NESTED:
            section, inner = _NESTED[key]
            return f"data[{self.key}].{section}.{inner}"
        return f"data[{self.key}].{key}"

    def documents(self) -> list[Document]:
        return [self.configmap]

    def finish(self) -> None:
        if not self.changed:
            return
        data = self.configmap.body["data"]
        original = str(data[self.key])
        if self.as_json:
            indent = 2 if "\n" in original.strip() else None
            text = json.dumps(self.config, indent=indent, ensure_ascii=False)
            data[self.key] = text + ("\n" if original.endswith("\n") else "")
        else:
            data[self.key] = yamlio.dump(self.config)
        self.changed = False


@dataclass
class _FlagPlace:
    field_name: str  # "command" or "args"
    position: int
    joined: bool  # `--key=value` (True) or `--key value` (False)


class ContainerSettings(Settings):
    """Flags in a container's command and args, then `ETCD_*` environment variables."""

    def __init__(self, statefulset: Document, container: dict[str, Any], container_path: str):
        self.statefulset = statefulset
        self.container = container
        self.container_path = container_path
        self.description = f"container {container.get('name', '?')} flags and environment"

    def _lists(self) -> list[tuple[str, list[Any]]]:
        found = []
        for field_name in ("command", "args"):
            value = self.container.get(field_name)
            if isinstance(value, list):
                found.append((field_name, value))
        return found

    def flag_places(self, key: str) -> list[_FlagPlace]:
        places = []
        for field_name, items in self._lists():
            for position, item in enumerate(items):
                if not isinstance(item, str):
                    continue
                for prefix in ("--", "-"):
                    flag = prefix + key
                    if item.startswith(flag + "="):
                        places.append(_FlagPlace(field_name, position, True))
                    elif item == flag and position + 1 < len(items):
                        places.append(_FlagPlace(field_name, position, False))
        return places

    def _flag_value(self, place: _FlagPlace) -> str:
        items = self.container[place.field_name]
        if place.joined:
            return str(items[place.position].partition("=")[2])
        return str(items[place.position + 1])

    def env_entries(self, key: str) -> list[dict[str, Any]]:
        env = self.container.get("env")
        name = env_var_name(key)
        if not isinstance(env, list):
            return []
        return [entry for entry in env if isinstance(entry, dict) and entry.get("name") == name]

    def get(self, key: str) -> Any:
        places = self.flag_places(key)
        if places:
            return self._flag_value(places[-1])  # the last flag wins, as in Go's flag package
        entries = self.env_entries(key)
        if entries:
            entry = entries[-1]
            if "value" in entry:
                return str(entry["value"])
            return None
        return None

    def env_is_indirect(self, key: str) -> bool:
        entries = self.env_entries(key)
        return bool(entries) and "value" not in entries[-1]

    def set(self, key: str, value: str) -> bool:
        changed = False
        places = self.flag_places(key)
        entries = self.env_entries(key)
        for place in places:
            items = self.container[place.field_name]
            if place.joined:
                flag = items[place.position].partition("=")[0]
                new = f"{flag}={value}"
                if items[place.position] != new:
                    items[place.position] = new
                    changed = True
            elif items[place.position + 1] != value:
                items[place.position + 1] = value
                changed = True
        for entry in entries:
            if entry.get("value") != value:
                entry.pop("valueFrom", None)
                entry["value"] = value
                changed = True
        if places or entries:
            return changed
        # Absent: add it next to the peer list, in the same form.
        anchor = self.flag_places("initial-cluster")
        if anchor:
            place = anchor[-1]
            items = self.container[place.field_name]
            after = place.position + (1 if place.joined else 2)
            items.insert(after, f"--{key}={value}")
            return True
        if self.env_entries("initial-cluster"):
            self.container["env"].append({"name": env_var_name(key), "value": value})
            return True
        target = "args" if isinstance(self.container.get("args"), list) else "command"
        self.container.setdefault(target, []).append(f"--{key}={value}")
        return True

    def path(self, key: str) -> str:
        places = self.flag_places(key)
        if places:
            place = places[-1]
            return f"{self.container_path}.{place.field_name}[{place.position}]"
        env = self.container.get("env")
        if isinstance(env, list):
            for position, entry in enumerate(env):
                if isinstance(entry, dict) and entry.get("name") == env_var_name(key):
                    return f"{self.container_path}.env[{position}]"
        return f"{self.container_path}.args"

    def documents(self) -> list[Document]:
        return [self.statefulset]


@dataclass
class MemberSet:
    """One StatefulSet of etcd members and what the post-renderer knows about it."""

    statefulset: Document
    chart_owned: bool
    namespace: str
    settings: Settings | None
    container: dict[str, Any] | None = None
    container_path: str = ""
    pod_name_vars: list[str] = field(default_factory=list)
    # Why the settings could not be found (no carrier), for the message.
    settings_problem: str = ""
    # Where the config came from (chart ConfigMap reference, or a --config-file), for messages.
    config_reference: str = ""

    @property
    def name(self) -> str:
        return self.statefulset.name

    @property
    def spec(self) -> dict[str, Any]:
        spec = self.statefulset.body.get("spec")
        return spec if isinstance(spec, dict) else {}

    @property
    def annotations(self) -> dict[str, Any]:
        metadata = self.statefulset.body.get("metadata") or {}
        annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
        return annotations if isinstance(annotations, dict) else {}

    @property
    def replicas(self) -> int:
        value = self.spec.get("replicas", 1)
        return value if isinstance(value, int) and not isinstance(value, bool) else 1

    @property
    def service_name(self) -> str:
        return str(self.spec.get("serviceName") or "")

    @property
    def pod_spec(self) -> dict[str, Any]:
        template = self.spec.get("template")
        spec = template.get("spec") if isinstance(template, dict) else None
        return spec if isinstance(spec, dict) else {}

    @property
    def pod_labels(self) -> dict[str, str]:
        template = self.spec.get("template")
        metadata = template.get("metadata") if isinstance(template, dict) else None
        labels = metadata.get("labels") if isinstance(metadata, dict) else None
        return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}

    def all_containers(self) -> list[tuple[str, dict[str, Any]]]:
        """(field path, container) for init containers and containers."""
        found = []
        for field_name in ("initContainers", "containers"):
            items = self.pod_spec.get(field_name)
            if isinstance(items, list):
                for position, container in enumerate(items):
                    if isinstance(container, dict):
                        found.append((f"spec.template.spec.{field_name}[{position}]", container))
        return found

    def pod_names(self, count: int | None = None) -> list[str]:
        return [f"{self.name}-{i}" for i in range(self.replicas if count is None else count)]


def _image_runs_etcd(image: str) -> bool:
    repository = image.split("@", 1)[0]
    if ":" in repository.rsplit("/", 1)[-1]:
        repository = repository.rsplit(":", 1)[0]
    return "etcd" in repository.lower()


def container_runs_etcd(container: dict[str, Any]) -> bool:
    """An etcd image that is told to run etcd (command, arguments or etcd's own env vars)."""
    if not _image_runs_etcd(str(container.get("image") or "")):
        return False
    for field_name in ("command", "args"):
        items = container.get(field_name)
        if not isinstance(items, list):
            continue
        for item in items:
            for token in str(item).split():
                if token.rsplit("/", 1)[-1] == "etcd" or token.lstrip("-").startswith(
                    "initial-cluster"
                ):
                    return True
    env = container.get("env")
    if isinstance(env, list):
        names = {entry.get("name") for entry in env if isinstance(entry, dict)}
        if "ETCD_INITIAL_CLUSTER" in names:
            return True
    return False


def pod_name_variables(statefulset_body: dict[str, Any]) -> list[str]:
    """Environment variables bound to `metadata.name` (the pod name) in any container."""
    names: list[str] = []
    spec = ((statefulset_body.get("spec") or {}).get("template") or {}).get("spec") or {}
    for field_name in ("initContainers", "containers"):
        for container in spec.get(field_name) or []:
            if not isinstance(container, dict):
                continue
            for entry in container.get("env") or []:
                if not isinstance(entry, dict):
                    continue
                field_ref = (entry.get("valueFrom") or {}).get("fieldRef") or {}
                if field_ref.get("fieldPath") == "metadata.name" and entry.get("name") not in names:
                    names.append(str(entry["name"]))
    return names


def _parse_config(text: str) -> dict[str, Any] | None:
    try:
        loaded = yamlio.load(text)
    except yamlio.YamlError:
        return None
    return loaded if isinstance(loaded, dict) else None


def _configmap_for_path(
    member: MemberSet, container: dict[str, Any], path: str, lookup: Lookup
) -> tuple[Document | None, str, str]:
    """(ConfigMap, key, explanation) of the file `path` as the container sees it."""
    mounts = [m for m in container.get("volumeMounts") or [] if isinstance(m, dict)]
    best: dict[str, Any] | None = None
    for mount in mounts:
        mount_path = str(mount.get("mountPath") or "").rstrip("/")
        if mount.get("subPath"):
            matches = path == mount_path
        else:
            matches = path == mount_path or path.startswith(mount_path + "/")
        if matches and (best is None or len(mount_path) > len(str(best.get("mountPath")))):
            best = mount
    if best is None:
        return None, "", f"no volume is mounted at {path}"
    mount_path = str(best.get("mountPath") or "").rstrip("/")
    relative = str(best.get("subPath") or path[len(mount_path) + 1 :])
    volumes = {
        v.get("name"): v for v in member.pod_spec.get("volumes") or [] if isinstance(v, dict)
    }
    volume = volumes.get(best.get("name"))
    if volume is None:
        return None, "", f"volume {best.get('name')} is not defined"
    sources: list[dict[str, Any]] = []
    if isinstance(volume.get("configMap"), dict):
        sources.append(volume["configMap"])
    elif isinstance(volume.get("projected"), dict):
        for source in volume["projected"].get("sources") or []:
            if isinstance(source, dict) and isinstance(source.get("configMap"), dict):
                sources.append(source["configMap"])
    if not sources:
        return None, "", f"{path} is on volume {best.get('name')}, which is not a ConfigMap"
    for source in sources:
        configmap = lookup("ConfigMap", member.namespace, str(source.get("name") or ""))
        items = source.get("items")
        key = ""
        if isinstance(items, list):
            for item in items:
                if isinstance(item, dict) and item.get("path") == relative:
                    key = str(item.get("key"))
        else:
            key = relative
        if not key:
            continue
        if configmap is None:
            return None, key, f"ConfigMap {source.get('name')} is not in the stream"
        data = configmap.body.get("data")
        if isinstance(data, dict) and key in data:
            return configmap, key, ""
    return None, "", f"no ConfigMap key is mounted at {path}"


def _config_settings(configmap: Document, key: str) -> tuple[ConfigFileSettings | None, str]:
    data = configmap.body.get("data")
    text = data.get(key) if isinstance(data, dict) else None
    if not isinstance(text, str):
        return None, f"ConfigMap {configmap.name} has no key {key}"
    config = _parse_config(text)
    if config is None:
        return None, f"ConfigMap {configmap.name} key {key} is not a JSON or YAML object"
    return ConfigFileSettings(configmap, key, config, text.lstrip().startswith("{")), ""


def member_set(document: Document, default_namespace: str, lookup: Lookup) -> MemberSet | None:
    """The member set `document` is, or None when it is not one."""
    if document.kind != "StatefulSet" or not isinstance(document.body, dict):
        return None
    namespace = document.namespace or default_namespace
    metadata = document.body.get("metadata") or {}
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    reference = annotations.get(CONFIG_ANNOTATION) if isinstance(annotations, dict) else None
    pod_vars = pod_name_variables(document.body)
    if reference is not None:
        member = MemberSet(document, True, namespace, None, pod_name_vars=pod_vars)
        member.config_reference = str(reference)
        # The container named etcd first: a sidecar or init container the user added may run an
        # etcd image too (a backup, a restore), and must not be taken for the member.
        containers = member.all_containers()
        named = [(path, c) for path, c in containers if c.get("name") == "etcd"]
        for path, container in named + [(p, c) for p, c in containers if container_runs_etcd(c)]:
            member.container, member.container_path = container, path
            break
        configmap_name, slash, key = str(reference).partition("/")
        if not slash or not configmap_name or not key:
            member.settings_problem = (
                f"annotation {CONFIG_ANNOTATION} is {reference!r}, not <configmap>/<key>"
            )
            return member
        configmap = lookup("ConfigMap", namespace, configmap_name)
        if configmap is None:
            member.settings_problem = f"ConfigMap {configmap_name} is not in the stream"
            return member
        member.settings, member.settings_problem = _config_settings(configmap, key)
        return member
    for path, container in MemberSet(document, False, namespace, None).all_containers():
        if path.startswith("spec.template.spec.initContainers"):
            continue
        if not container_runs_etcd(container):
            continue
        member = MemberSet(document, False, namespace, None, container, path, pod_vars)
        flags = ContainerSettings(document, container, path)
        config_file = flags.get("config-file")
        if config_file:
            member.config_reference = str(config_file)
            configmap, key, why = _configmap_for_path(member, container, str(config_file), lookup)
            if configmap is None:
                member.settings_problem = f"--config-file {config_file}: {why}"
                return member
            member.settings, member.settings_problem = _config_settings(configmap, key)
            return member
        member.settings = flags
        return member
    return None


def stream_lookup(documents: list[Document], default_namespace: str) -> Lookup:
    index: dict[tuple[str, str, str], Document] = {}
    for document in documents:
        key = (document.kind, document.namespace or default_namespace, document.name)
        index.setdefault(key, document)

    def lookup(kind: str, namespace: str, name: str) -> Document | None:
        document = index.get((kind, namespace, name))
        if document is not None:
            full_body(document)
        return document

    return lookup
