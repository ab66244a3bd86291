"""The built-in Web UI (`webui.kind: builtin`, the default kind): its Deployment, program,
login, etcd user and certificate; and the refusals of values that would leave it unprotected."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from chartrender import container, env, mounts, pod_spec, render, render_error, volumes

FILES = Path(__file__).resolve().parents[2] / "chart" / "files"
RBAC = [
    "--set",
    "auth.rbac.enabled=true,auth.rbac.rootPassword.existingSecret=root-pw,auth.token.type=simple",
]
UI = ["--set", "webui.enabled=true"]
UI_RBAC = [*UI, *RBAC, "--set", "webui.etcdUser.password.existingSecret=webui-etcd-pw"]


def ui_pod(objects: dict[tuple[str, str], Any]) -> dict[str, Any]:
    spec: dict[str, Any] = objects[("Deployment", "etcd-webui")]["spec"]["template"]["spec"]
    return spec


def auth_json(objects: dict[tuple[str, str], Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(objects[("ConfigMap", "etcd-config")]["data"]["auth.json"])
    return loaded


def test_builtin_is_the_default_kind_and_runs_on_the_agent_image(helm: str) -> None:
    objects = render(helm, *UI)
    pod = ui_pod(objects)
    (item,) = pod["containers"]
    assert item["name"] == "webui"
    assert item["image"] == "docker.io/library/python:3.13-alpine"
    assert item["command"] == ["python3", "/opt/etcd-webui"]
    assert env(item) == {
        "POD_IP": {"fieldRef": {"fieldPath": "status.podIP"}},
        "ETCD_WEBUI_PORT": "8080",
        "ETCD_WEBUI_ENDPOINTS": "http://etcd.etcd.svc.cluster.local:2379",
        "ETCD_WEBUI_AUTH": "true",
        "ETCD_WEBUI_LOGIN_DIR": "/etc/etcd-webui/login",
        "ETCD_WEBUI_LOGIN_SECRET": "etcd-webui-login",
        "ETCD_WEBUI_SESSION_TTL": "1h",
        "ETCD_WEBUI_READ_ONLY": "true",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    assert item["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert item["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert mounts(item) == {"program": "/opt/etcd-webui", "login": "/etc/etcd-webui/login"}
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert item["securityContext"]["readOnlyRootFilesystem"] is True
    assert item["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_the_program_is_the_ui_directory_plus_the_agents_etcd_client(helm: str) -> None:
    objects = render(helm, *UI)
    data = objects[("ConfigMap", "etcd-webui")]["data"]
    expected = sorted(p.name for p in (FILES / "webui").iterdir() if p.is_file())
    assert sorted(data) == expected
    for name in expected:
        assert data[name] == (FILES / "webui" / name).read_text(), name
    program = volumes(ui_pod(objects))["program"]["projected"]
    assert program["sources"] == [
        {"configMap": {"name": "etcd-webui"}},
        {
            "configMap": {
                "name": "etcd-agent",
                "items": [
                    {"key": "etcd_client.py", "path": "etcd_client.py"},
                    {"key": "errors.py", "path": "errors.py"},
                ],
            }
        },
    ]
    agent = objects[("ConfigMap", "etcd-agent")]["data"]
    assert {"etcd_client.py", "errors.py"} <= set(agent)


def test_the_login_secret_is_optional_and_never_rendered(helm: str) -> None:
    objects = render(helm, *UI, "--set", "webui.auth.existingSecret=my-login")
    assert not [key for key in objects if key[0] == "Secret"]
    login = volumes(ui_pod(objects))["login"]["secret"]
    assert login == {
        "secretName": "my-login",
        "optional": True,
        "defaultMode": 0o440,
        "items": [
            {"key": "username", "path": "username"},
            {"key": "password", "path": "password"},
        ],
    }


def test_login_off_and_writes_on(helm: str) -> None:
    objects = render(helm, *UI, "--set", "webui.auth.enabled=false,webui.readOnly=false")
    pod = ui_pod(objects)
    variables = env(pod["containers"][0])
    assert (variables["ETCD_WEBUI_AUTH"], variables["ETCD_WEBUI_READ_ONLY"]) == ("false", "false")
    assert "ETCD_WEBUI_LOGIN_DIR" not in variables
    assert "login" not in volumes(pod)


@pytest.mark.parametrize(("read_only", "permission"), [("true", "read"), ("false", "readwrite")])
def test_with_rbac_the_ui_gets_its_own_user_and_role(
    helm: str, read_only: str, permission: str
) -> None:
    objects = render(helm, *UI_RBAC, "--set", f"webui.readOnly={read_only}")
    assert auth_json(objects) == {
        "roles": [
            {"name": "webui", "permissions": [{"type": permission, "key": "", "prefix": True}]}
        ],
        "users": [
            {"name": "webui", "roles": ["webui"], "passwordFile": "/etc/etcd/auth/webui/password"}
        ],
    }
    members = pod_spec(objects)
    assert mounts(container(members, "member-agent"))["auth-webui"] == "/etc/etcd/auth/webui"
    assert volumes(members)["auth-webui"]["secret"]["secretName"] == "webui-etcd-pw"
    pod = ui_pod(objects)
    variables = env(pod["containers"][0])
    assert variables["ETCD_WEBUI_ETCD_USER"] == "webui"
    assert variables["ETCD_WEBUI_ETCD_PASSWORD_FILE"] == "/etc/etcd-webui/etcd-user/password"
    assert volumes(pod)["etcd-user"]["secret"]["secretName"] == "webui-etcd-pw"


def test_without_rbac_no_etcd_user(helm: str) -> None:
    objects = render(helm, *UI)
    assert "etcd-user" not in volumes(ui_pod(objects))
    assert "auth.json" not in objects[("ConfigMap", "etcd-config")]["data"]


def test_its_certificate_has_no_common_name(helm: str) -> None:
    objects = render(helm, *UI, "--set", "tls.enabled=true")
    certificate = objects[("Certificate", "etcd-webui")]["spec"]
    assert "commonName" not in certificate
    assert certificate["uris"] == ["spiffe://cluster.local/ns/etcd/webui/etcd"]
    variables = env(ui_pod(objects)["containers"][0])
    assert variables["ETCD_WEBUI_ENDPOINTS"] == "https://etcd.etcd.svc.cluster.local:2379"
    assert variables["ETCD_WEBUI_CERT"] == "/etc/etcd/tls/client/tls.crt"


def test_the_ui_may_connect_only_to_the_client_port_and_dns(helm: str) -> None:
    spec = render(helm, *UI)[("NetworkPolicy", "etcd-webui")]["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["egress"][0]["ports"] == [{"port": 2379, "protocol": "TCP"}]
    assert [rule["ports"] for rule in spec["egress"][1:]] == [
        [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
    ]


def test_a_new_program_restarts_the_ui(helm: str) -> None:
    first = render(helm, *UI)
    second = render(helm, *UI, "--set", "webui.readOnly=false")
    annotations = first[("Deployment", "etcd-webui")]["spec"]["template"]["metadata"]
    assert set(annotations["annotations"]) == {"checksum/program"}
    assert second[("Deployment", "etcd-webui")] != first[("Deployment", "etcd-webui")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--set", "webui.enabled=true,webui.kind=e3w"],
            "webui.auth.enabled: e3w has no login, so anyone who reaches its Service could read "
            "(and change) every key. Set webui.auth.enabled=false to run it anyway (keep its "
            "Service ClusterIP), or use webui.kind=builtin.",
        ),
        (
            [*UI, *RBAC],
            "webui.etcdUser.password.existingSecret: required with webui.enabled and "
            'auth.rbac.enabled: the web UI logs in to etcd as user "webui" with this password. '
            "Create a Secret with it (kubectl create secret generic etcd-webui-etcd "
            '--from-literal=password="$(openssl rand -base64 24)") and name it here.',
        ),
        (
            [*UI_RBAC, "--set", "webui.etcdUser.name=root"],
            "webui.etcdUser.name: root would give the web UI every right in etcd. Give it a user "
            "of its own (the default is webui).",
        ),
        (
            [
                *UI_RBAC,
                "--set-json",
                'auth.rbac.users=[{"name":"webui","password":{"existingSecret":"x"}}]',
            ],  # fmt: skip
            'auth.rbac.users[0].name: "webui" is the web UI\'s etcd user, which the chart creates '
            "(webui.etcdUser). Remove this entry, or set webui.etcdUser.name to another name.",
        ),
    ],
    ids=["third-party-without-login", "etcd-password", "root", "user-clash"],
)
def test_refusals_name_the_field_and_the_fix(helm: str, args: list[str], message: str) -> None:
    assert f"\n  - {message}\n" in render_error(helm, *args)
