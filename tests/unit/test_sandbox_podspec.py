"""The sandbox's translation of pod templates: expansion, env, images, listeners, volumes."""

from __future__ import annotations

import base64
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from etcd_chart.sandbox import podspec
from etcd_chart.sandbox.podspec import (
    ApiInfo,
    PodContext,
    Tools,
    Unsupported,
    check_template,
    container_env,
    expand,
    image_kind,
    image_repository,
    parse_quantity,
    program_argv,
    rewrite_listeners,
    volume_files,
)

API = ApiInfo(host="127.9.9.1", port=6443, token="tok", ca_pem="-----CA-----\n")
OBJECTS: dict[tuple[str, str, str], dict[str, Any]] = {
    ("ConfigMap", "ns1", "settings"): {
        "kind": "ConfigMap",
        "data": {"level": "debug", "mode": "fast"},
        "binaryData": {"blob": base64.b64encode(b"\x00\x01").decode()},
    },
    ("Secret", "ns1", "creds"): {
        "kind": "Secret",
        "data": {"password": base64.b64encode(b"s3cret").decode()},
    },
    ("ConfigMap", "ns1", "kube-root-ca.crt"): {"kind": "ConfigMap", "data": {"ca.crt": API.ca_pem}},
}


def ctx(spec: dict[str, Any] | None = None) -> PodContext:
    return PodContext(
        name="etcd-1",
        namespace="ns1",
        uid="uid-1",
        address="127.9.9.11",
        labels={"app": "etcd"},
        annotations={"serviceName": "etcd-headless"},
        spec=spec or {"serviceAccountName": "etcd"},
        lookup=lambda kind, ns, name: OBJECTS.get((kind, ns, name)),
        api=API,
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(A)-$(B)", "one-two"),
        ("$$(A)", "$(A)"),
        ("$(MISSING)", "$(MISSING)"),
        ("a$$b", "a$b"),
        ("$(A", "$(A"),
        ("cost: $5", "cost: $5"),
        ("$(A)$(A)", "oneone"),
    ],
)
def test_expand_follows_kubernetes_rules(text: str, expected: str) -> None:
    assert expand(text, {"A": "one", "B": "two"}) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("500m", Decimal("0.5")),
        ("2", Decimal(2)),
        ("1Gi", Decimal(2**30)),
        ("1e3", Decimal(1000)),
        ("64M", Decimal(64 * 10**6)),
    ],
)
def test_parse_quantity(value: str, expected: Decimal) -> None:
    assert parse_quantity(value) == expected


def test_parse_quantity_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not a Kubernetes quantity: '12xb'"):
        parse_quantity("12xb")


@pytest.mark.parametrize(
    ("image", "repository", "kind"),
    [
        ("gcr.io/etcd-development/etcd:v3.6.0", "gcr.io/etcd-development/etcd", "etcd"),
        ("quay.io/coreos/etcd:v3.5.15", "quay.io/coreos/etcd", "etcd"),
        ("registry.k8s.io/etcd:3.5.12-0@sha256:abc", "registry.k8s.io/etcd", "etcd"),
        ("etcd", "etcd", "etcd"),
        ("python:3.12-slim", "python", "python"),
        ("docker.io/library/python:3.13-alpine", "docker.io/library/python", "python"),
        ("localhost:5000/etcd:v1", "localhost:5000/etcd", "etcd"),
        ("nginx:1.27", "nginx", None),
        ("ghcr.io/someone/etcd-operator:v1", "ghcr.io/someone/etcd-operator", None),
    ],
)
def test_image_kinds(image: str, repository: str, kind: str | None) -> None:
    assert image_repository(image) == repository
    assert image_kind(image) == kind


def test_etcd_image_programs_map_to_the_binaries() -> None:
    tools = Tools(
        {
            ("3.5.15", "etcd"): "/bin/etcd-3.5",
            ("3.6.0", "etcd"): "/bin/etcd-3.6",
            ("3.6.0", "etcdctl"): "/bin/etcdctl-3.6",
        }
    )
    where = "Pod ns1/etcd-0: container etcd"
    assert program_argv(
        where, "quay.io/coreos/etcd:v3.5.15", ["/usr/local/bin/etcd"], ["--name=a"], tools
    ) == [
        "/bin/etcd-3.5",
        "--name=a",
    ]
    assert program_argv(where, "gcr.io/etcd-development/etcd:v3.6.0", [], ["--name=a"], tools) == [
        "/bin/etcd-3.6",
        "--name=a",
    ]
    assert program_argv(where, "etcd:3.6.0-0", ["etcdctl", "get", "k"], [], tools) == [
        "/bin/etcdctl-3.6",
        "get",
        "k",
    ]


def test_etcd_image_has_no_shell() -> None:
    with pytest.raises(
        Unsupported,
        match=r"^Pod ns1/etcd-0: container etcd: the etcd image has no shell .* not '/bin/sh'$",
    ):
        program_argv(
            "Pod ns1/etcd-0: container etcd",
            "gcr.io/etcd-development/etcd:v3.6.0",
            ["/bin/sh", "-c", "etcd"],
            [],
            Tools(),
        )


def test_unknown_image_is_named() -> None:
    with pytest.raises(
        Unsupported,
        match=r"^StatefulSet default/web: container web: image 'nginx:1.27' has no local program",
    ):
        program_argv("StatefulSet default/web: container web", "nginx:1.27", [], [], Tools())


def test_python_image_runs_a_local_interpreter_reachable_by_the_user() -> None:
    argv = program_argv(
        "w", "python:3.12", ["python3", "/opt/agent.py", "prepare"], [], Tools(), 0, set()
    )
    assert argv[1:] == ["/opt/agent.py", "prepare"]
    assert os.access(argv[0], os.X_OK)
    nonroot = program_argv("w", "python:3.12", ["python3", "x.py"], [], Tools(), 65532, {65532})
    assert podspec._traversable(nonroot[0], 65532, {65532}, os.X_OK)


def test_wildcard_listeners_become_the_pod_address() -> None:
    argv = [
        "--listen-peer-urls=http://0.0.0.0:2380",
        "--listen-client-urls",
        "https://[::]:2379,https://0.0.0.0:2381",
        "--advertise-client-urls=http://etcd-0.etcd:2379",
    ]
    assert rewrite_listeners("w", argv, "127.9.9.10") == [
        "--listen-peer-urls=http://127.9.9.10:2380",
        "--listen-client-urls",
        "https://127.9.9.10:2379,https://127.9.9.10:2381",
        "--advertise-client-urls=http://etcd-0.etcd:2379",
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["--listen-client-urls=http://127.0.0.1:2379"],
        ["--listen-client-urls", "http://10.0.0.1:2379,http://localhost:2379"],
        ["--listen-metrics-urls=http://[::1]:8080"],
    ],
)
def test_loopback_listeners_cannot_be_emulated(argv: list[str]) -> None:
    with pytest.raises(
        Unsupported,
        match=r"^Pod ns1/etcd-0: container etcd: --listen-[a-z]+-urls listens on .*: "
        r"a loopback listener cannot be emulated",
    ):
        rewrite_listeners("Pod ns1/etcd-0: container etcd", argv, "127.9.9.10")


def test_config_file_listeners_are_checked() -> None:
    podspec.check_config_listeners("cm", {"listen-client-urls": "http://$(POD_IP_URL_HOST):2379"})
    with pytest.raises(
        Unsupported, match=r"^cm: listen-client-urls listens on http://127.0.0.1:2379"
    ):
        podspec.check_config_listeners(
            "cm", {"listen-client-urls": "http://$(POD_IP_URL_HOST):2379,http://127.0.0.1:2379"}
        )


def test_env_sources_and_expansion_order() -> None:
    container = {
        "name": "etcd",
        "resources": {"limits": {"cpu": "1500m", "memory": "1Gi"}},
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {
                "name": "SVC",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['serviceName']"}},
            },
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
            {"name": "URL", "value": "http://$(POD_NAME).$(SVC):2379 $(LATER) $$(POD_NAME)"},
            {"name": "LATER", "value": "x"},
            {
                "name": "GOMAXPROCS",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1"}},
            },
            {
                "name": "MEM_MI",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
            },
            {
                "name": "LEVEL",
                "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "level"}},
            },
            {
                "name": "PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}},
            },
            {
                "name": "OPTIONAL",
                "valueFrom": {"secretKeyRef": {"name": "absent", "key": "x", "optional": True}},
            },
            {"name": "K8S", "value": "$(KUBERNETES_SERVICE_HOST)"},
        ],
    }
    env = container_env(ctx(), container, "Pod ns1/etcd-1: container etcd")
    assert env == {
        "CFG_level": "debug",
        "CFG_mode": "fast",
        "CFG_blob": "\x00\x01",
        "POD_NAME": "etcd-1",
        "POD_IP": "127.9.9.11",
        "SVC": "etcd-headless",
        "APP": "etcd",
        "SA": "etcd",
        "URL": "http://etcd-1.etcd-headless:2379 $(LATER) $(POD_NAME)",
        "LATER": "x",
        "GOMAXPROCS": "2",
        "MEM_MI": "1024",
        "LEVEL": "debug",
        "PASSWORD": "s3cret",
        "K8S": "127.9.9.1",
    }


def test_missing_secret_is_named() -> None:
    container = {
        "env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "x"}}}]
    }
    with pytest.raises(
        podspec.MissingObject,
        match=r"^Pod ns1/etcd-1: container c: env\[P\]: Secret ns1/absent not found$",
    ):
        container_env(ctx(), container, "Pod ns1/etcd-1: container c")


def test_unset_cpu_limit_is_the_machine() -> None:
    container = {
        "env": [{"name": "N", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}]
    }
    assert container_env(ctx(), container, "w") == {"N": str(os.cpu_count())}


def test_configmap_volume_items_and_modes() -> None:
    volume = {
        "name": "cfg",
        "configMap": {
            "name": "settings",
            "defaultMode": 0o600,
            "items": [
                {"key": "level", "path": "sub/level.txt", "mode": 0o640},
                {"key": "mode", "path": "m"},
            ],
        },
    }
    assert volume_files(ctx(), volume, "w") == [
        ("sub/level.txt", b"debug", 0o640),
        ("m", b"fast", 0o600),
    ]


def test_optional_missing_configmap_volume_is_empty() -> None:
    volume = {"name": "cfg", "configMap": {"name": "absent", "optional": True}}
    assert volume_files(ctx(), volume, "w") == []


def test_projected_service_account_volume() -> None:
    volume = {
        "name": "kube-api-access",
        "projected": {
            "defaultMode": 0o444,
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                {
                    "configMap": {
                        "name": "kube-root-ca.crt",
                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    }
                },
                {
                    "downwardAPI": {
                        "items": [
                            {"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}
                        ]
                    }
                },
                {"secret": {"name": "creds"}},
            ],
        },
    }
    assert volume_files(ctx(), volume, "w") == [
        ("token", b"tok", 0o444),
        ("ca.crt", API.ca_pem.encode(), 0o444),
        ("namespace", b"ns1", 0o444),
        ("password", b"s3cret", 0o444),
    ]


def test_materialized_volumes_belong_to_the_fs_group(tmp_path: Path) -> None:
    spec = {
        "volumes": [
            {"name": "cfg", "configMap": {"name": "settings"}},
            {"name": "scratch", "emptyDir": {}},
            {"name": "data", "persistentVolumeClaim": {"claimName": "data-etcd-1"}},
        ]
    }
    paths = podspec.materialize_volumes(
        ctx(spec), tmp_path / "pod", lambda claim: tmp_path / "claims" / claim, 4242
    )
    assert paths == {
        "cfg": tmp_path / "pod/volumes/cfg",
        "scratch": tmp_path / "pod/volumes/scratch",
        "data": tmp_path / "claims/data-etcd-1",
    }
    assert (paths["cfg"] / "level").read_text() == "debug"
    assert (paths["cfg"] / "level").stat().st_gid == 4242
    assert paths["data"].stat().st_gid == 4242
    assert paths["data"].stat().st_mode & 0o2070 == 0o2070


def test_check_template_names_every_problem() -> None:
    template = {
        "spec": {
            "hostNetwork": True,
            "volumes": [{"name": "host", "hostPath": {"path": "/var"}}],
            "containers": [
                {"name": "web", "image": "nginx:1.27"},
                {
                    "name": "etcd",
                    "image": "quay.io/coreos/etcd:v3.5.15",
                    "command": ["/usr/local/bin/etcd"],
                    "args": ["--listen-client-urls=http://127.0.0.1:2379"],
                    "livenessProbe": {"exec": {"command": ["etcdctl", "endpoint", "health"]}},
                    "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},
                    "volumeMounts": [{"name": "nope", "mountPath": "/x"}],
                },
            ],
        }
    }
    where = "s.yaml: StatefulSet default/db"
    assert check_template(
        where, template, Tools({("3.5.15", "etcd"): "/bin/etcd"}), lambda *_: None, "default"
    ) == [
        f"{where}: spec.template.spec.hostNetwork: cannot be emulated "
        "(pods always share this machine's network namespace in the sandbox)",
        f"{where}: spec.template.spec.volumes[host]: hostPath volumes cannot be emulated "
        "(the sandbox supports emptyDir, configMap, secret, projected, downwardAPI, "
        "persistentVolumeClaim and volumeClaimTemplates)",
        f"{where}: container web: image 'nginx:1.27' has no local program in the sandbox "
        "(it runs etcd images such as gcr.io/etcd-development/etcd and Python images such as "
        "python:3.12)",
        f"{where}: container etcd: --listen-client-urls listens on http://127.0.0.1:2379: "
        "a loopback listener cannot be emulated in the sandbox, where all pods share this "
        "machine's loopback interface (listen on the pod IP or 0.0.0.0 instead)",
        f"{where}: container etcd: lifecycle preStop hooks cannot be run by the sandbox",
        f"{where}: container etcd: volumeMounts[nope]: no such volume",
    ]


def test_exec_probe_is_refused() -> None:
    template = {
        "spec": {
            "containers": [
                {
                    "name": "etcd",
                    "image": "etcd:v3.6.0",
                    "livenessProbe": {"exec": {"command": ["true"]}},
                },
            ]
        }
    }
    assert check_template(
        "w", template, Tools({("3.6.0", "etcd"): "/bin/etcd"}), lambda *_: None, "default"
    ) == [
        "w: container etcd: livenessProbe: exec probes cannot be run by the sandbox "
        "(httpGet and tcpSocket only)"
    ]


def test_named_probe_port() -> None:
    container = {"ports": [{"name": "metrics", "containerPort": 8080}]}
    probe = podspec.parse_probe(
        "w", {"httpGet": {"path": "/readyz", "port": "metrics"}, "periodSeconds": 5}, container
    )
    assert (probe.kind, probe.port, probe.path, probe.period, probe.failure_threshold) == (
        "http",
        8080,
        "/readyz",
        5.0,
        3,
    )
    with pytest.raises(
        Unsupported, match=r"^w.httpGet.port: port 'client' is not a number or a named port"
    ):
        podspec.parse_probe("w", {"httpGet": {"port": "client"}}, container)


def test_run_as_non_root_without_a_user_is_refused() -> None:
    with pytest.raises(Unsupported, match="runAsNonRoot is set but no non-zero runAsUser"):
        podspec.security_for("w", {"securityContext": {"runAsNonRoot": True}}, {})
