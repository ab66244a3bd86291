"""Kubernetes object names from etcd keys, and how values are shown."""

from __future__ import annotations

import base64

import pytest
from kube_keys import kubernetes_key
from values import describe_value, protobuf_type

FIELDS = ["group", "resource", "namespace", "name"]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (b"/registry/pods/kube-system/coredns-1", ("", "pods", "kube-system", "coredns-1")),
        (b"/registry/namespaces/default", ("", "namespaces", "", "default")),
        (b"/registry/minions/node-a", ("", "nodes", "", "node-a")),
        (b"/registry/services/specs/default/kubernetes", ("", "services", "default", "kubernetes")),
        (b"/registry/services/endpoints/default/web", ("", "endpoints", "default", "web")),
        (
            b"/registry/cert-manager.io/certificates/etcd/etcd-server",
            ("cert-manager.io", "certificates", "etcd", "etcd-server"),
        ),
        (
            b"/registry/apiextensions.k8s.io/customresourcedefinitions/issuers.cert-manager.io",
            ("apiextensions.k8s.io", "customresourcedefinitions", "", "issuers.cert-manager.io"),
        ),
        (b"/registry/clusterroles/admin", ("", "clusterroles", "", "admin")),
        (b"/registry/pods", ("", "pods", "", "")),
    ],
)
def test_kubernetes_key(key: bytes, expected: tuple[str, str, str, str]) -> None:
    assert kubernetes_key(key) == dict(zip(FIELDS, expected, strict=True))


@pytest.mark.parametrize(
    "key", [b"/app/config", b"/registry/", b"/registry/\xff\xfe", b"registry/x"]
)
def test_other_keys_are_not_kubernetes_objects(key: bytes) -> None:
    assert kubernetes_key(key) is None


def length_delimited(number: int, payload: bytes) -> bytes:
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def protobuf_pod() -> bytes:
    type_meta = length_delimited(1, b"v1") + length_delimited(2, b"Pod")
    return b"k8s\x00" + length_delimited(1, type_meta) + length_delimited(2, b"\x0a\x00")


def test_protobuf_value_of_a_kubernetes_key() -> None:
    value = protobuf_pod()
    assert protobuf_type(value) == {"apiVersion": "v1", "kind": "Pod"}
    assert describe_value(b"/registry/pods/default/web", value) == {
        "base64": base64.b64encode(value).decode(),
        "size": len(value),
        "format": "kubernetes-protobuf",
        "objectType": {"apiVersion": "v1", "kind": "Pod"},
    }


def test_a_damaged_protobuf_envelope_gives_no_type() -> None:
    assert protobuf_type(b"k8s\x00\x0a\x7f") == {}


def test_json_text_and_binary_values() -> None:
    kube = describe_value(b"/registry/configmaps/a/b", b'{"kind":"ConfigMap","apiVersion":"v1"}')
    assert kube["format"] == "kubernetes-json"
    assert kube["objectType"] == {"apiVersion": "v1", "kind": "ConfigMap"}
    assert describe_value(b"/app/x", b"[1, 2]")["json"] == [1, 2]
    assert describe_value(b"/app/x", b"[1, 2]")["format"] == "json"
    assert describe_value(b"/app/x", b"{not json")["format"] == "text"
    assert describe_value(b"/app/x", b"hello")["text"] == "hello"
    binary = describe_value(b"/app/x", b"\xff\x00\x01")
    assert binary == {"base64": "/wAB", "size": 3, "format": "binary"}
