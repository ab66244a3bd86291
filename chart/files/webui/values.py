"""What a stored value is, for the page: text, JSON, a Kubernetes object (JSON or protobuf), or
binary. Pure functions."""

from __future__ import annotations

import base64
import json
from typing import Any

from kube_keys import kubernetes_key

# Kubernetes stores protobuf objects behind this magic prefix (runtime.Unknown follows).
PROTOBUF_MAGIC = b"k8s\x00"


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def protobuf_fields(data: bytes) -> dict[int, bytes]:
    """The length-delimited fields of one protobuf message (the first of each number); other
    wire types are skipped. ValueError when the bytes are not a message."""
    fields: dict[int, bytes] = {}
    at = 0
    while at < len(data):
        tag, at = _varint(data, at)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            _, at = _varint(data, at)
        elif wire == 1:
            at += 8
        elif wire == 5:
            at += 4
        elif wire == 2:
            length, at = _varint(data, at)
            if at + length > len(data):
                raise ValueError("truncated field")
            fields.setdefault(number, data[at : at + length])
            at += length
        else:
            raise ValueError(f"unsupported wire type {wire}")
    if at != len(data):
        raise ValueError("truncated message")
    return fields


def protobuf_type(value: bytes) -> dict[str, str]:
    """apiVersion and kind of a Kubernetes protobuf value (its runtime.Unknown envelope: field 1
    TypeMeta {1: apiVersion, 2: kind}); empty when the envelope cannot be read."""
    try:
        envelope = protobuf_fields(value[len(PROTOBUF_MAGIC) :])
        type_meta = protobuf_fields(envelope.get(1, b""))
        return {
            "apiVersion": type_meta.get(1, b"").decode(),
            "kind": type_meta.get(2, b"").decode(),
        }
    except (ValueError, UnicodeDecodeError):
        return {}


def describe_value(key: bytes, value: bytes) -> dict[str, Any]:
    """The value as the page shows it. `format` is one of text, json, kubernetes-json,
    kubernetes-protobuf, binary; `text` is set for UTF-8 values, `json` for JSON ones (parsed,
    so the page can pretty-print it); `base64` always."""
    described: dict[str, Any] = {
        "base64": base64.b64encode(value).decode(),
        "size": len(value),
    }
    kube = kubernetes_key(key)
    if value.startswith(PROTOBUF_MAGIC):
        described["format"] = "kubernetes-protobuf" if kube else "binary"
        if kube:
            described["objectType"] = protobuf_type(value)
        return described
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        described["format"] = "binary"
        return described
    described["text"] = text
    try:
        parsed = json.loads(text) if text.strip()[:1] in ("{", "[") else None
    except ValueError:
        parsed = None
    if parsed is None:
        described["format"] = "text"
        return described
    described["json"] = parsed
    described["format"] = "kubernetes-json" if kube else "json"
    if kube and isinstance(parsed, dict):
        described["objectType"] = {
            "apiVersion": str(parsed.get("apiVersion", "")),
            "kind": str(parsed.get("kind", "")),
        }
    return described
