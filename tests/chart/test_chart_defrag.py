"""The defragmentation CronJob and its NetworkPolicy, and the version-change override."""

from __future__ import annotations

from typing import Any

from chartrender import render, scenario_file

SECURE = ("-f", scenario_file("secure"))


def pod_of(objects: dict[tuple[str, str], Any], name: str = "etcd-defrag") -> dict[str, Any]:
    spec: dict[str, Any] = objects[("CronJob", name)]["spec"]["jobTemplate"]["spec"]
    return spec["template"]


def argument(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_off_by_default(helm: str) -> None:
    objects = render(helm)
    assert [key for key in objects if key[1] == "etcd-defrag"] == []


def test_one_run_at_a_time_with_the_values_as_arguments(helm: str) -> None:
    objects = render(
        helm,
        "--set",
        "defrag.enabled=true,defrag.schedule=0 4 * * 0,defrag.thresholdPercent=15",
        "--set",
        "defrag.minDbSizeBytes=1048576,defrag.timeoutSeconds=1200,config.quotaBackendBytes=4294967296,persistence.size=10Gi",
    )
    cronjob = objects[("CronJob", "etcd-defrag")]
    assert cronjob["spec"]["schedule"] == "0 4 * * 0"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    job = cronjob["spec"]["jobTemplate"]["spec"]
    assert (job["activeDeadlineSeconds"], job["backoffLimit"]) == (1200, 0)
    (container,) = pod_of(objects)["spec"]["containers"]
    command = container["command"]
    assert command[:3] == ["python3", "/opt/etcd-agent", "defrag"]
    assert argument(command, "--replicas") == "3"
    assert argument(command, "--threshold-percent") == "15"
    assert argument(command, "--min-db-size") == "1048576"
    assert argument(command, "--quota-bytes") == "4294967296"
    # No member is started in the last quarter of the deadline.
    assert argument(command, "--timeout") == "900"
    assert argument(command, "--member-timeout") == "1200"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ETCD_AGENT_STATEFULSET"] == "etcd"
    assert env["ETCD_AGENT_HEADLESS_SERVICE"] == "etcd-headless"


def test_hardened_like_the_members_and_without_an_api_token(helm: str) -> None:
    objects = render(helm, "--set", "defrag.enabled=true")
    pod = pod_of(objects)
    spec = pod["spec"]
    members = objects[("StatefulSet", "etcd")]["spec"]["template"]["spec"]
    assert spec["securityContext"] == members["securityContext"]
    (container,) = spec["containers"]
    assert container["securityContext"] == members["containers"][0]["securityContext"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in spec
    assert spec["restartPolicy"] == "Never"
    assert pod["metadata"]["labels"]["etcd-client"] == "true"
    assert container["volumeMounts"] == [
        {"name": "agent", "mountPath": "/opt/etcd-agent", "readOnly": True}
    ]
    assert spec["volumes"] == [{"name": "agent", "configMap": {"name": "etcd-agent"}}]


def test_with_tls_and_rbac_the_agent_certificate_and_the_root_password(helm: str) -> None:
    objects = render(helm, *SECURE, "--set", "defrag.enabled=true")
    spec = pod_of(objects)["spec"]
    (container,) = spec["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {
        "agent": "/opt/etcd-agent",
        "tls-agent": "/etc/etcd/tls/agent",
        "auth-root": "/etc/etcd/auth/root",
    }
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["tls-agent"]["secret"]["secretName"] == "etcd-agent-tls"
    assert volumes["auth-root"]["secret"] == {
        "secretName": "etcd-root-password",
        "defaultMode": 0o440,
        "items": [{"key": "password", "path": "password"}],
    }
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ETCD_AGENT_CLIENT_SCHEME"] == "https"
    assert env["ETCD_AGENT_CERT"] == "/etc/etcd/tls/agent/tls.crt"
    assert env["ETCD_AGENT_ROOT_PASSWORD_FILE"] == "/etc/etcd/auth/root/password"


def test_networkpolicy_allows_only_the_client_port_and_dns(helm: str) -> None:
    objects = render(helm, "--set", "defrag.enabled=true,ports.client=3379")
    policy = objects[("NetworkPolicy", "etcd-defrag")]["spec"]
    assert policy["podSelector"] == {
        "matchLabels": {
            "app.kubernetes.io/name": "etcd-defrag",
            "app.kubernetes.io/instance": "etcd",
        }
    }
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in policy
    client, dns = policy["egress"]
    assert client == {
        "ports": [{"port": 3379, "protocol": "TCP"}],
        "to": [
            {
                "podSelector": {
                    "matchLabels": {
                        "app.kubernetes.io/name": "etcd",
                        "app.kubernetes.io/instance": "etcd",
                    }
                }
            }
        ],
    }
    assert [p["port"] for p in dns["ports"]] == [53, 53]
    off = render(helm, "--set", "defrag.enabled=true,networkPolicy.enabled=false")
    assert ("NetworkPolicy", "etcd-defrag") not in off


def test_the_pod_runs_where_the_members_run_unless_told(helm: str) -> None:
    objects = render(
        helm,
        "--set",
        "defrag.enabled=true,nodeSelector.disk=ssd,priorityClassName=etcd-critical",
    )
    spec = pod_of(objects)["spec"]
    assert spec["nodeSelector"] == {"disk": "ssd"}
    assert spec["priorityClassName"] == "etcd-critical"
    own = render(
        helm,
        "--set",
        "defrag.enabled=true,nodeSelector.disk=ssd",
        "--set-json",
        "defrag.nodeSelector={}",
    )
    assert "nodeSelector" not in pod_of(own)["spec"]


def test_the_version_change_override_is_an_annotation_of_the_statefulset(helm: str) -> None:
    key = "etcd-chart/allow-unsupported-version-change"
    default = render(helm)[("StatefulSet", "etcd")]["metadata"]["annotations"]
    assert key not in default
    allowed = render(helm, "--set", "upgrade.allowUnsupportedVersionChange=true")
    assert allowed[("StatefulSet", "etcd")]["metadata"]["annotations"][key] == "true"
