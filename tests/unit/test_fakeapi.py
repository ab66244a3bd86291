"""The fake Kubernetes API server, driven by a urllib client and by the `kubernetes` client."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from etcd_chart.fakeapi import FakeApiServer, json_patch, merge_patch, plural_of


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FakeApiServer]:
    api = FakeApiServer(state_file=tmp_path / "state.json", token="secret-token")
    api.start()
    try:
        yield api
    finally:
        api.stop()


def call(
    server: FakeApiServer,
    method: str,
    path: str,
    body: Any = None,
    content_type: str = "application/json",
    token: str | None = None,
) -> tuple[int, dict[str, Any]]:
    context = ssl.create_default_context(cafile=server.ca_file)
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server.url + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token or server.token}")
    if data is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


CM_PATH = "/api/v1/namespaces/ns1/configmaps"


def configmap(name: str, data: dict[str, str], **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, **metadata},
        "data": data,
    }


def test_plural_names() -> None:
    assert plural_of("ConfigMap") == "configmaps"
    assert plural_of("StatefulSet") == "statefulsets"
    assert plural_of("NetworkPolicy") == "networkpolicies"
    assert plural_of("Ingress") == "ingresses"
    assert plural_of("Endpoints") == "endpoints"
    assert plural_of("ClusterIssuer") == "clusterissuers"


def test_merge_and_json_patch() -> None:
    assert merge_patch({"a": {"b": 1, "c": 2}, "d": 3}, {"a": {"b": None, "e": 4}, "d": [1]}) == {
        "a": {"c": 2, "e": 4},
        "d": [1],
    }
    ops = [
        {"op": "add", "path": "/data/x", "value": "1"},
        {"op": "replace", "path": "/data/y", "value": "2"},
        {"op": "remove", "path": "/data/z"},
        {"op": "add", "path": "/list/-", "value": 9},
    ]
    assert json_patch({"data": {"y": "0", "z": "0"}, "list": [1]}, ops) == {
        "data": {"y": "2", "x": "1"},
        "list": [1, 9],
    }


def test_create_get_list_and_metadata(server: FakeApiServer) -> None:
    code, created = call(server, "POST", CM_PATH, configmap("one", {"k": "v"}, labels={"app": "a"}))
    assert code == 201
    metadata = created["metadata"]
    assert metadata["namespace"] == "ns1"
    assert metadata["resourceVersion"] == "1"
    assert len(metadata["uid"]) == 36
    assert metadata["creationTimestamp"].endswith("Z")
    call(server, "POST", CM_PATH, configmap("two", {"k": "w"}, labels={"app": "b"}))
    code, got = call(server, "GET", CM_PATH + "/one")
    assert (code, got["data"]) == (200, {"k": "v"})
    code, listed = call(server, "GET", CM_PATH)
    assert code == 200
    assert listed["kind"] == "ConfigMapList"
    assert [item["metadata"]["name"] for item in listed["items"]] == ["one", "two"]
    code, selected = call(server, "GET", CM_PATH + "?labelSelector=app%3Db")
    assert [item["metadata"]["name"] for item in selected["items"]] == ["two"]
    code, by_field = call(server, "GET", CM_PATH + "?fieldSelector=metadata.name%3Done")
    assert [item["metadata"]["name"] for item in by_field["items"]] == ["one"]
    code, everywhere = call(server, "GET", "/api/v1/configmaps")
    assert len(everywhere["items"]) == 2
    code, other_ns = call(server, "GET", "/api/v1/namespaces/ns2/configmaps")
    assert other_ns["items"] == []


def test_errors_are_kubernetes_status_objects(server: FakeApiServer) -> None:
    code, status = call(server, "GET", CM_PATH + "/missing")
    assert code == 404
    assert status == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'configmaps "missing" not found',
        "reason": "NotFound",
        "details": {"name": "missing", "group": "", "kind": "configmaps"},
        "code": 404,
    }
    call(server, "POST", CM_PATH, configmap("one", {}))
    code, status = call(server, "POST", CM_PATH, configmap("one", {}))
    assert (code, status["reason"], status["message"]) == (
        409,
        "AlreadyExists",
        'configmaps "one" already exists',
    )
    code, status = call(server, "GET", CM_PATH, token="wrong")
    assert (code, status["reason"]) == (401, "Unauthorized")
    code, status = call(server, "POST", CM_PATH, configmap("x", {}, namespace="other"))
    assert (code, status["reason"]) == (400, "BadRequest")


def test_replace_checks_resource_version(server: FakeApiServer) -> None:
    _, created = call(server, "POST", CM_PATH, configmap("one", {"k": "1"}))
    stale = dict(created, data={"k": "2"})
    code, replaced = call(server, "PUT", CM_PATH + "/one", stale)
    assert code == 200
    assert replaced["data"] == {"k": "2"}
    assert replaced["metadata"]["uid"] == created["metadata"]["uid"]
    assert int(replaced["metadata"]["resourceVersion"]) > int(
        created["metadata"]["resourceVersion"]
    )
    code, status = call(server, "PUT", CM_PATH + "/one", dict(created, data={"k": "3"}))
    assert (code, status["reason"]) == (409, "Conflict")
    code, status = call(server, "PUT", CM_PATH + "/absent", configmap("absent", {}))
    assert code == 404


def test_patch_kinds(server: FakeApiServer) -> None:
    call(server, "POST", CM_PATH, configmap("one", {"a": "1", "b": "2"}))
    code, patched = call(
        server,
        "PATCH",
        CM_PATH + "/one",
        {"data": {"a": None, "c": "3"}},
        "application/merge-patch+json",
    )
    assert (code, patched["data"]) == (200, {"b": "2", "c": "3"})
    code, patched = call(
        server,
        "PATCH",
        CM_PATH + "/one",
        {"data": {"d": "4"}},
        "application/strategic-merge-patch+json",
    )
    assert patched["data"] == {"b": "2", "c": "3", "d": "4"}
    code, patched = call(
        server,
        "PATCH",
        CM_PATH + "/one",
        [{"op": "replace", "path": "/data/b", "value": "x"}],
        "application/json-patch+json",
    )
    assert patched["data"]["b"] == "x"
    code, status = call(server, "PATCH", CM_PATH + "/one", {}, "application/apply-patch+yaml")
    assert code == 415


def test_delete_and_persistence(tmp_path: Path, server: FakeApiServer) -> None:
    call(server, "POST", CM_PATH, configmap("kept", {"k": "v"}))
    call(server, "POST", CM_PATH, configmap("gone", {}))
    code, status = call(server, "DELETE", CM_PATH + "/gone")
    assert (code, status["status"]) == (200, "Success")
    assert call(server, "DELETE", CM_PATH + "/gone")[0] == 404
    server.stop()
    again = FakeApiServer(state_file=tmp_path / "state.json", token="t2").start()
    try:
        kept = again.get_object("v1", "configmaps", "ns1", "kept")
        assert kept is not None
        assert kept["data"] == {"k": "v"}
        assert again.get_object("v1", "configmaps", "ns1", "gone") is None
        code, created = call(again, "POST", CM_PATH, configmap("new", {}))
        assert int(created["metadata"]["resourceVersion"]) > int(
            kept["metadata"]["resourceVersion"]
        )
    finally:
        again.stop()


def test_apps_group_and_put_object(server: FakeApiServer) -> None:
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "etcd", "namespace": "db"},
        "spec": {"replicas": 3},
    }
    stored = server.put_object(sts)
    assert stored["metadata"]["generation"] == 1
    code, got = call(server, "GET", "/apis/apps/v1/namespaces/db/statefulsets/etcd")
    assert (code, got["spec"]) == (200, {"replicas": 3})
    assert server.get_object("apps/v1", "statefulsets", "db", "etcd") == got


def test_kubernetes_client(tmp_path: Path, server: FakeApiServer) -> None:
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig", namespace="ns1")
    api_client = config.new_client_from_config(config_file=str(kubeconfig))
    core = client.CoreV1Api(api_client)
    apps = client.AppsV1Api(api_client)
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="rec"), data={"state": "created"})
    created = core.create_namespaced_config_map("ns1", body)
    assert created.metadata.uid
    read = core.read_namespaced_config_map("rec", "ns1")
    assert read.data == {"state": "created"}
    patched = core.patch_namespaced_config_map("rec", "ns1", {"data": {"more": "1"}})
    assert patched.data == {"state": "created", "more": "1"}
    read.data = {"state": "replaced"}
    with pytest.raises(ApiException) as conflict:
        core.replace_namespaced_config_map("rec", "ns1", read)
    assert conflict.value.status == 409
    listed = core.list_namespaced_config_map("ns1")
    assert [item.metadata.name for item in listed.items] == ["rec"]
    with pytest.raises(ApiException) as missing:
        apps.read_namespaced_stateful_set("etcd", "ns1")
    assert missing.value.status == 404
    assert json.loads(missing.value.body)["reason"] == "NotFound"
    server.put_object(
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "etcd", "namespace": "ns1"},
            "spec": {
                "replicas": 5,
                "serviceName": "etcd",
                "selector": {"matchLabels": {"app": "etcd"}},
                "template": {"metadata": {"labels": {"app": "etcd"}}, "spec": {"containers": []}},
            },
        }
    )
    assert apps.read_namespaced_stateful_set("etcd", "ns1").spec.replicas == 5
    deleted = core.delete_namespaced_config_map("rec", "ns1")
    assert deleted["status"] == "Success"  # this client version returns the raw Status
    api_client.close()


def test_standalone_process(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    command = [
        sys.executable,
        "-m",
        "etcd_chart.fakeapi",
        "--state-file",
        str(state),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--ca-dir",
        str(tmp_path / "ca"),
        "--token-file",
        str(tmp_path / "token"),
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, start_new_session=True, env=dict(os.environ)
    )
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        token = (tmp_path / "token").read_text().strip()
        context = ssl.create_default_context(cafile=info["ca_file"])
        request = urllib.request.Request(
            info["url"] + CM_PATH,
            data=json.dumps(configmap("rec", {"a": "b"})).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            assert response.status == 201
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    saved = json.loads(state.read_text())
    assert [entry["key"] for entry in saved["objects"]] == [["", "configmaps", "ns1", "rec"]]


def test_discovery_maps_kinds_to_paths(server: FakeApiServer) -> None:
    code, versions = call(server, "GET", "/api")
    assert (code, versions["versions"]) == (200, ["v1"])
    code, groups = call(server, "GET", "/apis")
    assert "apps" in [group["name"] for group in groups["groups"]]
    code, resources = call(server, "GET", "/apis/apps/v1")
    statefulsets = [r for r in resources["resources"] if r["name"] == "statefulsets"]
    assert statefulsets[0]["kind"] == "StatefulSet"
    assert statefulsets[0]["namespaced"] is True
    code, version = call(server, "GET", "/version")
    assert (code, version["gitVersion"]) == (200, "v1.31.0-fakeapi")
