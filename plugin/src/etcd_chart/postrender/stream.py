"""Reading a manifest stream into documents, and writing it back deterministically.

Documents the post-renderer does not change are written back exactly as they came in (their raw
text), so comments, Helm 4's hook annotations and formatting survive; changed documents are
dumped with `yamlio.dump` under their `# Source:` comment.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from etcd_chart import yamlio
from etcd_chart.report import Report
from etcd_chart.yamlio import Document

HELM4_FILENAME = "postrenderer.helm.sh/postrender-filename"
HOOK_ANNOTATION = "helm.sh/hook"

_SOURCE_RE = re.compile(r"^# Source: (.+)$", re.MULTILINE)
_SEPARATOR_RE = re.compile(r"^---[ \t]*(?:#.*)?$", re.MULTILINE)

_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc]
    """yamlio's loading rules (safe, timestamps kept as strings) on libyaml when it is there."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

READ_FIX = "fix the template that renders it; `helm template` shows the text"

# Kinds the checks read in full; every other document is only skimmed for its identity
# (apiVersion, kind, metadata name/namespace/annotations) until something asks for its body,
# which keeps large streams fast. Skimming still parses the whole document, so bad YAML is found.
FULL_KINDS = frozenset({"StatefulSet", "Service", "PodDisruptionBudget", "Certificate"})
_KIND_RE = re.compile(r"^kind:[ \t]*[\"']?([A-Za-z0-9]+)", re.MULTILINE)
# Tags the safe loader constructs; any other tag makes the full load report it.
_SAFE_TAGS = frozenset(tag for tag in yaml.SafeLoader.yaml_constructors if tag) | {"!"}


class _NeedFullLoad(Exception):
    """The document uses YAML the skimmer does not follow; load it in full instead."""


def _scalar(event: Any) -> Any:
    if event.implicit[0] and event.value in ("", "~", "null", "Null", "NULL"):
        return None
    return event.value


def skim(raw: str) -> Any:
    """apiVersion, kind and metadata.{name,namespace,generateName,annotations} of a document.

    Raises yaml.YAMLError for invalid YAML, _NeedFullLoad for constructs it does not follow.
    """
    loader = _Loader(raw)
    body: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    annotations: dict[str, Any] = {}
    # One entry per open collection: [is_mapping, expecting_key, current_key].
    stack: list[list[Any]] = []
    root_seen = False
    try:
        while True:
            event = loader.get_event()
            kind = type(event)
            if kind is yaml.ScalarEvent:
                if event.tag and event.tag not in _SAFE_TAGS:
                    raise _NeedFullLoad
                if not stack:
                    raise _NeedFullLoad  # a bare scalar document
                top = stack[-1]
                if top[0] and top[1]:
                    top[2] = event.value
                    top[1] = False
                    continue
                depth = len(stack)
                if depth == 1 and top[2] in ("apiVersion", "kind"):
                    body[top[2]] = _scalar(event)
                elif (
                    depth == 2
                    and stack[0][2] == "metadata"
                    and top[2]
                    in (
                        "name",
                        "namespace",
                        "generateName",
                    )
                ):
                    metadata[top[2]] = _scalar(event)
                elif (
                    depth == 3
                    and stack[0][2] == "metadata"
                    and stack[1][2] == "annotations"
                    and top[0]
                ):
                    annotations[top[2]] = event.value
                if top[0]:
                    top[1] = True
            elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                if event.tag and event.tag not in _SAFE_TAGS:
                    raise _NeedFullLoad
                if stack and stack[-1][0] and stack[-1][1]:
                    raise _NeedFullLoad  # a complex key
                if not stack:
                    if root_seen or kind is yaml.SequenceStartEvent:
                        raise _NeedFullLoad
                    root_seen = True
                stack.append([kind is yaml.MappingStartEvent, True, None])
            elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                stack.pop()
                if stack and stack[-1][0]:
                    stack[-1][1] = True
            elif kind is yaml.AliasEvent:
                raise _NeedFullLoad
            elif kind is yaml.StreamEndEvent:
                break
            elif kind is yaml.DocumentStartEvent and root_seen:
                raise _NeedFullLoad  # a second document inside one part
    finally:
        loader.dispose()
    if not root_seen:
        return None
    if annotations:
        metadata["annotations"] = annotations
    if metadata:
        body["metadata"] = metadata
    return body


def full_body(document: Document) -> Any:
    """The complete body of a document that may only have been skimmed."""
    if document.extra.get("skimmed"):
        document.body = yaml.load(document.raw, Loader=_Loader)  # noqa: S506 - a SafeLoader
        document.extra["skimmed"] = False
    return document.body


def annotations_of(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        return {}
    metadata = body.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    return annotations if isinstance(annotations, dict) else {}


def is_hook(document: Document) -> bool:
    return HOOK_ANNOTATION in annotations_of(document.body)


def parse(text: str, report: Report) -> list[Document]:
    """Every non-empty document, with its template; problems go to `report`."""
    documents: list[Document] = []
    starts = [0] + [match.end() for match in _SEPARATOR_RE.finditer(text)]
    ends = [match.start() for match in _SEPARATOR_RE.finditer(text)] + [len(text)]
    for index, (start, end) in enumerate(zip(starts, ends, strict=True)):
        raw = text[start:end]
        source_match = _SOURCE_RE.search(raw)
        source = source_match.group(1).strip() if source_match else ""
        number = len(documents) + 1
        kind_match = _KIND_RE.search(raw)
        skimmed = kind_match is not None and kind_match.group(1) not in FULL_KINDS
        try:
            if skimmed:
                try:
                    body = skim(raw)
                except _NeedFullLoad:
                    skimmed = False
            if not skimmed:
                body = yaml.load(raw, Loader=_Loader)  # noqa: S506 - a SafeLoader
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            first_line = text.count("\n", 0, start) + 1
            where = f" at line {first_line + mark.line}" if mark is not None else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            report.add(
                source or f"document {number}",
                f"not valid YAML{where} of the stream: {problem}",
                READ_FIX,
            )
            continue
        if body is None:
            continue
        document = Document(body=body, source=source, index=index, raw=raw)
        document.extra["has_source_comment"] = bool(source)
        document.extra["skimmed"] = skimmed
        document.extra["number"] = number
        if not source:
            filename = annotations_of(body).get(HELM4_FILENAME)
            if isinstance(filename, str):
                document.source = filename.strip()
        if _well_formed(document, report):
            documents.append(document)
    return documents


def _well_formed(document: Document, report: Report) -> bool:
    body = document.body
    place = document.source or f"document {document.extra['number']}"
    if not isinstance(body, dict):
        report.add(
            place,
            f"a manifest must be a mapping, this document is a {type(body).__name__}",
            READ_FIX,
        )
        return False
    missing = [key for key in ("apiVersion", "kind") if not isinstance(body.get(key), str)]
    metadata = body.get("metadata")
    if not isinstance(metadata, dict) or not (metadata.get("name") or metadata.get("generateName")):
        missing.append("metadata.name")
    if missing:
        report.add(
            f"{place}: {document.kind or '?'}/{document.name or '?'}",
            f"missing {', '.join(missing)}",
            "every Kubernetes object needs apiVersion, kind and metadata.name",
        )
        return False
    return True


def render(documents: list[Document], changed: set[int]) -> str:
    """The stream: unchanged documents verbatim, changed ones (by `Document.index`) re-dumped."""
    chunks: list[str] = []
    for document in documents:
        if document.index in changed:
            header = (
                f"# Source: {document.source}\n" if document.extra.get("has_source_comment") else ""
            )
            chunks.append(f"---\n{header}{yamlio.dump(document.body)}")
            continue
        raw = document.raw
        if not raw.startswith("\n"):
            raw = "\n" + raw
        if not raw.endswith("\n"):
            raw += "\n"
        chunks.append("---" + raw)
    return "".join(chunks)
