"""YAML reading and writing with a private loader: safe, no timestamp conversion, stable output.

Every document read from a Helm stream keeps where it came from (the `# Source:` comment Helm
writes before it, and its position), so that messages can name the template.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml


class _Loader(yaml.SafeLoader):
    """SafeLoader that leaves timestamps as strings (Kubernetes treats them as strings)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class _Dumper(yaml.SafeDumper):
    """SafeDumper with block style, no aliases and indented sequences."""

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)

_SOURCE_RE = re.compile(r"^# Source: (.+)$", re.MULTILINE)
_SEPARATOR_RE = re.compile(r"^---[ \t]*(?:#.*)?$", re.MULTILINE)


class YamlError(ValueError):
    """Raised for text that is not valid YAML; the message names the document and line."""


@dataclass
class Document:
    """One object of a manifest stream, with the template it came from."""

    body: Any
    source: str = ""
    index: int = 0
    raw: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", "")) if isinstance(self.body, dict) else ""

    @property
    def name(self) -> str:
        if not isinstance(self.body, dict):
            return ""
        return str((self.body.get("metadata") or {}).get("name", ""))

    @property
    def namespace(self) -> str:
        if not isinstance(self.body, dict):
            return ""
        return str((self.body.get("metadata") or {}).get("namespace", "") or "")

    def where(self) -> str:
        """`template: kind/name` for messages."""
        place = f"{self.kind or '?'}/{self.name or '?'}"
        return f"{self.source}: {place}" if self.source else place


def load(text: str) -> Any:
    """One YAML document, safely."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as err:
        raise YamlError(str(err)) from err


def split_stream(text: str) -> list[str]:
    """The raw text of each document in a multi-document stream (empty ones included)."""
    parts = _SEPARATOR_RE.split(text)
    return parts


def load_stream(text: str) -> list[Document]:
    """Every non-empty document of a stream, in order, with its `# Source:` if Helm wrote one."""
    documents: list[Document] = []
    for index, raw in enumerate(split_stream(text)):
        source_match = _SOURCE_RE.search(raw)
        source = source_match.group(1).strip() if source_match else ""
        try:
            body = yaml.load(raw, Loader=_Loader)  # noqa: S506
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark is not None else ""
            problem = getattr(err, "problem", None) or str(err)
            label = source or f"document {index + 1}"
            raise YamlError(f"{label}:{line}: not valid YAML: {problem}") from err
        if body is None:
            continue
        documents.append(Document(body=body, source=source, index=index, raw=raw))
    return documents


def dump(data: Any) -> str:
    """YAML text with a fixed style: same data, same bytes."""
    return yaml.dump(
        data,
        Dumper=_Dumper,
        default_flow_style=False,
        sort_keys=False,
        allow_unicode=True,
        width=100000,
    )
