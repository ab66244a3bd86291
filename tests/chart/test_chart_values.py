"""One test per value or branch of the chart, objects looked up by kind and name."""

from __future__ import annotations

import json

import pytest
from chartrender import (
    container,
    env,
    etcd_config,
    mounts,
    notes,
    peer_list,
    pod_spec,
    render,
    scenario_file,
    volumes,
)

SELECTOR = {"app.kubernetes.io/name": "etcd", "app.kubernetes.io/instance": "etcd"}


def statefulset(objects: dict, name: str = "etcd") -> dict:
    return objects[("StatefulSet", name)]


# --- the peer list, names and URLs -----------------------------------------------------------


@pytest.mark.parametrize("replicas", [1, 3, 5, 7])
def test_initial_cluster_lists_every_bootstrap_member(helm: str, replicas: int) -> None:
    objects = render(helm, "--set", f"replicas={replicas}")
    config = etcd_config(objects)
    expected = peer_list("etcd", replicas, "etcd", "cluster.local", "http", 2380)
    assert config["initial-cluster"] == expected
    assert statefulset(objects)["spec"]["replicas"] == replicas


def test_initial_cluster_for_three_members_spelled_out(helm: str) -> None:
    assert etcd_config(render(helm))["initial-cluster"] == (
        "etcd-0=http://etcd-0.etcd-headless.etcd.svc.cluster.local:2380,"
        "etcd-1=http://etcd-1.etcd-headless.etcd.svc.cluster.local:2380,"
        "etcd-2=http://etcd-2.etcd-headless.etcd.svc.cluster.local:2380"
    )


def test_release_name_and_namespace_shape_every_name(helm: str) -> None:
    objects = render(helm, release="orders", namespace="team-a")
    config = etcd_config(objects, "orders-etcd")
    assert statefulset(objects, "orders-etcd")["spec"]["serviceName"] == "orders-etcd-headless"
    assert config["initial-cluster"] == peer_list(
        "orders-etcd", 3, "team-a", "cluster.local", "http", 2380
    )
    assert config["initial-cluster-token"] == "orders-etcd-team-a"
    assert {("Service", "orders-etcd"), ("Service", "orders-etcd-headless")} <= set(objects)


def test_custom_cluster_domain_in_every_url(helm: str) -> None:
    config = etcd_config(render(helm, "-f", scenario_file("cluster-domain")))
    suffix = "etcd-headless.etcd.svc.k8s.example.internal"
    assert config["initial-advertise-peer-urls"] == f"http://$(POD_NAME).{suffix}:2380"
    assert config["advertise-client-urls"] == f"http://$(POD_NAME).{suffix}:2379"
    assert config["initial-cluster"].startswith(f"etcd-0=http://etcd-0.{suffix}:2380,")


def test_custom_names_and_ports(helm: str) -> None:
    objects = render(helm, "-f", scenario_file("custom-names"))
    config = etcd_config(objects, "kv-store")
    assert config["listen-peer-urls"] == "http://$(POD_IP_URL_HOST):12380"
    assert config["listen-client-urls"] == "http://$(POD_IP_URL_HOST):12379"
    assert config["listen-metrics-urls"] == "http://$(POD_IP_URL_HOST):18080"
    assert config["initial-cluster-token"] == "kv-store-token"
    headless = objects[("Service", "kv-store-headless")]["spec"]
    assert {p["name"]: p["port"] for p in headless["ports"]} == {
        "client": 12379,
        "peer": 12380,
        "metrics": 18080,
    }
    probe = container(pod_spec(objects, "kv-store"), "etcd")["livenessProbe"]["httpGet"]
    assert probe == {"path": "/livez", "port": "metrics", "scheme": "HTTP"}
    ports = container(pod_spec(objects, "kv-store"), "etcd")["ports"]
    assert {p["name"]: p["containerPort"] for p in ports}["metrics"] == 18080


def test_listeners_on_pod_ip_and_member_dns_names(helm: str) -> None:
    config = etcd_config(render(helm))
    assert config["name"] == "$(POD_NAME)"
    assert config["data-dir"] == "/var/lib/etcd/data"
    assert config["listen-peer-urls"] == "http://$(POD_IP_URL_HOST):2380"
    assert config["listen-client-urls"] == "http://$(POD_IP_URL_HOST):2379"
    assert config["listen-metrics-urls"] == "http://$(POD_IP_URL_HOST):8080"
    assert "wal-dir" not in config


def test_listen_localhost_adds_loopback_client_listener(helm: str) -> None:
    config = etcd_config(render(helm, "--set", "listen.localhost=true"))
    assert config["listen-client-urls"] == "http://$(POD_IP_URL_HOST):2379,http://127.0.0.1:2379"


# --- etcd settings ---------------------------------------------------------------------------


def test_token_defaults_to_fullname_and_namespace(helm: str) -> None:
    assert etcd_config(render(helm, namespace="prod"))["initial-cluster-token"] == "etcd-prod"


def test_token_override(helm: str) -> None:
    config = etcd_config(render(helm, "--set", "config.initialClusterToken=blue-42"))
    assert config["initial-cluster-token"] == "blue-42"


def test_token_is_stable_across_renders(helm: str) -> None:
    first = etcd_config(render(helm, "--set", "replicas=5"))["initial-cluster-token"]
    assert first == etcd_config(render(helm))["initial-cluster-token"]


def test_etcd_tuning_defaults(helm: str) -> None:
    config = etcd_config(render(helm))
    assert {key: config[key] for key in config if key not in _URL_KEYS} == {
        "auto-compaction-mode": "periodic",
        "auto-compaction-retention": "1h",
        "data-dir": "/var/lib/etcd/data",
        "election-timeout": 1000,
        "heartbeat-interval": 100,
        "initial-cluster-state": "new",
        "initial-cluster-token": "etcd-etcd",
        "log-level": "info",
        "name": "$(POD_NAME)",
        "quota-backend-bytes": 2147483648,
        "snapshot-count": 10000,
    }


_URL_KEYS = {
    "listen-peer-urls",
    "listen-client-urls",
    "listen-metrics-urls",
    "initial-advertise-peer-urls",
    "advertise-client-urls",
    "initial-cluster",
}


def test_etcd_tuning_values(helm: str) -> None:
    config = etcd_config(
        render(
            helm,
            "--set",
            "config.autoCompactionMode=revision,config.autoCompactionRetention=1000",
            "--set",
            "config.quotaBackendBytes=8589934592,config.snapshotCount=5000,persistence.size=17Gi",
            "--set",
            "config.heartbeatInterval=250,config.electionTimeout=2500,config.logLevel=warn",
        )
    )
    assert config["auto-compaction-mode"] == "revision"
    assert config["auto-compaction-retention"] == "1000"
    assert config["quota-backend-bytes"] == 8589934592
    assert config["snapshot-count"] == 5000
    assert (config["heartbeat-interval"], config["election-timeout"]) == (250, 2500)
    assert config["log-level"] == "warn"


def test_extra_config_is_merged_into_the_file(helm: str) -> None:
    config = etcd_config(
        render(helm, "--set", "extraConfig.max-request-bytes=3145728,extraConfig.cors=*")
    )
    assert config["max-request-bytes"] == 3145728
    assert config["cors"] == "*"


def test_extra_flags_go_into_the_file_for_the_agent(helm: str) -> None:
    config = etcd_config(
        render(helm, "--set", "extraFlags={--max-txn-ops=256,--grpc-keepalive-time=1h}")
    )
    assert config["x-extra-flags"] == ["--max-txn-ops=256", "--grpc-keepalive-time=1h"]
    etcd = container(pod_spec(render(helm)), "etcd")
    assert etcd["command"] == ["/usr/local/bin/etcd", "--config-file=/var/run/etcd/etcd.conf.json"]
    assert "args" not in etcd
    assert "x-extra-flags" not in etcd_config(render(helm))


def test_initial_cluster_state_automatic(helm: str) -> None:
    objects = render(helm)
    assert etcd_config(objects)["initial-cluster-state"] == "new"
    assert "etcd-chart/initial-cluster-state" not in statefulset(objects)["metadata"]["annotations"]


@pytest.mark.parametrize("state", ["new", "existing"])
def test_initial_cluster_state_explicit(helm: str, state: str) -> None:
    objects = render(helm, "--set", f"initialClusterState={state}")
    assert etcd_config(objects)["initial-cluster-state"] == state
    annotations = statefulset(objects)["metadata"]["annotations"]
    assert annotations["etcd-chart/initial-cluster-state"] == state
    assert annotations["etcd-chart/config"] == "etcd-config/etcd.conf.json"


# --- the StatefulSet ---------------------------------------------------------------------------


def test_statefulset_shape(helm: str) -> None:
    spec = statefulset(render(helm))["spec"]
    assert spec["serviceName"] == "etcd-headless"
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert spec["selector"] == {"matchLabels": SELECTOR}
    assert "persistentVolumeClaimRetentionPolicy" not in spec


def test_update_partition(helm: str) -> None:
    spec = statefulset(render(helm, "--set", "updateStrategy.partition=2"))["spec"]
    assert spec["updateStrategy"]["rollingUpdate"] == {"partition": 2}


def test_containers_and_commands(helm: str) -> None:
    spec = pod_spec(render(helm))
    assert [c["name"] for c in spec["initContainers"]] == ["prepare"]
    assert [c["name"] for c in spec["containers"]] == ["etcd", "member-agent"]
    assert container(spec, "prepare")["command"] == [
        "python3",
        "/opt/etcd-agent",
        "prepare",
    ]
    assert container(spec, "member-agent")["command"] == [
        "python3",
        "/opt/etcd-agent",
        "watch",
        "--rejoin-after",
        "300",
    ]


def test_default_images(helm: str) -> None:
    spec = pod_spec(render(helm))
    assert container(spec, "etcd")["image"] == "gcr.io/etcd-development/etcd:v3.7.3"
    for name in ("prepare", "member-agent"):
        assert container(spec, name)["image"] == "docker.io/library/python:3.13-alpine"


def test_image_digest_pins_the_image(helm: str) -> None:
    digest = "sha256:" + "ab" * 32
    spec = pod_spec(
        render(helm, "--set", f"image.digest={digest}", "--set", "agent.image.tag=3.12-slim")
    )
    assert container(spec, "etcd")["image"] == f"gcr.io/etcd-development/etcd@{digest}"
    assert container(spec, "prepare")["image"] == "docker.io/library/python:3.12-slim"


def test_probes_are_http_on_the_metrics_port(helm: str) -> None:
    etcd = container(pod_spec(render(helm)), "etcd")
    # Only readiness may need quorum: startup and liveness must pass for a member that is back
    # before its peers (issue 13, trap 1; end to end in tests/e2e/test_lifecycle.py).
    paths = {"startupProbe": "/livez", "readinessProbe": "/readyz", "livenessProbe": "/livez"}
    for probe, path in paths.items():
        assert etcd[probe]["httpGet"] == {"path": path, "port": "metrics", "scheme": "HTTP"}
    assert {p["name"]: p["containerPort"] for p in etcd["ports"]} == {
        "client": 2379,
        "peer": 2380,
        "metrics": 8080,
    }


def test_probe_tuning(helm: str) -> None:
    etcd = container(
        pod_spec(
            render(
                helm,
                "--set",
                "probes.liveness.periodSeconds=7,probes.liveness.failureThreshold=9",
                "--set",
                "probes.startup.failureThreshold=120,probes.readiness.timeoutSeconds=2",
            )
        ),
        "etcd",
    )
    assert (etcd["livenessProbe"]["periodSeconds"], etcd["livenessProbe"]["failureThreshold"]) == (
        7,
        9,
    )
    assert etcd["startupProbe"]["failureThreshold"] == 120
    assert etcd["readinessProbe"]["timeoutSeconds"] == 2


def test_probes_can_be_turned_off(helm: str) -> None:
    etcd = container(pod_spec(render(helm, "--set", "probes.startup.enabled=false")), "etcd")
    assert "startupProbe" not in etcd
    assert "livenessProbe" in etcd


def test_etcdctl_endpoint_is_the_pods_own_client_url(helm: str) -> None:
    variables = env(container(pod_spec(render(helm)), "etcd"))
    assert variables["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert variables["ETCDCTL_ENDPOINTS"] == (
        "http://$(POD_NAME).etcd-headless.etcd.svc.cluster.local:2379"
    )
    assert not {"ETCDCTL_CACERT", "ETCDCTL_CERT", "ETCDCTL_KEY"} & set(variables)


def test_gomaxprocs_only_with_a_cpu_limit(helm: str) -> None:
    assert "GOMAXPROCS" not in env(container(pod_spec(render(helm)), "etcd"))
    limited = env(container(pod_spec(render(helm, "--set", "resources.limits.cpu=2")), "etcd"))
    assert limited["GOMAXPROCS"] == {
        "resourceFieldRef": {"containerName": "etcd", "resource": "limits.cpu", "divisor": "1"}
    }


def test_resources(helm: str) -> None:
    spec = pod_spec(
        render(helm, "--set", "resources.requests.cpu=1", "--set", "agent.resources.limits.cpu=50m")
    )
    assert container(spec, "etcd")["resources"]["requests"]["cpu"] == 1
    for name in ("prepare", "member-agent"):
        assert container(spec, name)["resources"]["limits"] == {"cpu": "50m", "memory": "128Mi"}


def test_agent_environment(helm: str) -> None:
    spec = pod_spec(render(helm))
    for name in ("prepare", "member-agent"):
        variables = env(container(spec, name))
        assert variables["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        assert variables["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
        assert variables["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
        assert variables["ETCD_AGENT_TEMPLATE"] == "/etc/etcd-template/etcd.conf.json"
        assert variables["ETCD_AGENT_OUTPUT"] == "/var/run/etcd/etcd.conf.json"
        assert variables["ETCD_AGENT_RECORD"] == "etcd-cluster-record"
        assert variables["ETCD_AGENT_CLIENT_PORT"] == "2379"
        assert variables["ETCD_AGENT_CLIENT_SCHEME"] == "http"
        assert variables["ETCD_AGENT_HEADLESS_SERVICE"] == "etcd-headless"
        assert variables["ETCD_AGENT_CLUSTER_DOMAIN"] == "cluster.local"
        assert not {"ETCD_AGENT_CACERT", "ETCD_AGENT_CERT", "ETCD_AGENT_KEY"} & set(variables)


def test_volume_mounts_follow_the_contract(helm: str) -> None:
    spec = pod_spec(render(helm))
    assert mounts(container(spec, "prepare")) == {
        "data": "/var/lib/etcd",
        "runtime": "/var/run/etcd",
        "config": "/etc/etcd-template",
        "agent": "/opt/etcd-agent",
        "kube-api-access": "/var/run/secrets/kubernetes.io/serviceaccount",
    }
    assert mounts(container(spec, "etcd")) == {"data": "/var/lib/etcd", "runtime": "/var/run/etcd"}
    assert mounts(container(spec, "member-agent")) == {
        "config": "/etc/etcd-template",
        "agent": "/opt/etcd-agent",
        "kube-api-access": "/var/run/secrets/kubernetes.io/serviceaccount",
    }
    vols = volumes(spec)
    assert vols["config"]["configMap"] == {"name": "etcd-config"}
    assert vols["agent"]["configMap"] == {"name": "etcd-agent"}
    assert "emptyDir" in vols["runtime"]
    assert "data" not in vols


def test_agent_configmap_carries_the_agent(helm: str) -> None:
    data = render(helm)[("ConfigMap", "etcd-agent")]["data"]
    from chartrender import CHART

    modules = sorted((CHART / "files" / "etcd-agent").glob("*.py"))
    assert list(data) == [path.name for path in modules]
    assert "__main__.py" in data and "etcd_client.py" in data
    assert all(data[path.name] == path.read_text() for path in modules)


def test_service_account_token_only_in_agent_containers(helm: str) -> None:
    objects = render(helm)
    spec = pod_spec(objects)
    assert spec["automountServiceAccountToken"] is False
    assert spec["serviceAccountName"] == "etcd"
    assert objects[("ServiceAccount", "etcd")]["automountServiceAccountToken"] is False
    projected = volumes(spec)["kube-api-access"]["projected"]["sources"]
    assert projected[0]["serviceAccountToken"]["path"] == "token"
    assert projected[1]["configMap"]["name"] == "kube-root-ca.crt"
    assert "kube-api-access" not in mounts(container(spec, "etcd"))


def test_role_is_limited_to_the_cluster_record(helm: str) -> None:
    objects = render(helm)
    assert objects[("Role", "etcd")]["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["etcd-cluster-record"],
            "verbs": ["get", "update", "patch"],
        },
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
        {
            "apiGroups": ["apps"],
            "resources": ["statefulsets"],
            "resourceNames": ["etcd"],
            "verbs": ["get"],
        },
        {
            "apiGroups": [""],
            "resources": ["pods"],
            "resourceNames": ["etcd-0", "etcd-1", "etcd-2"],
            "verbs": ["delete"],
        },
    ]
    binding = objects[("RoleBinding", "etcd")]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "etcd",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "etcd", "namespace": "etcd"}]


def test_cluster_record_off_removes_api_access(helm: str) -> None:
    objects = render(helm, "--set", "clusterRecord.enabled=false,initialClusterState=new")
    assert ("Role", "etcd") not in objects and ("RoleBinding", "etcd") not in objects
    spec = pod_spec(objects)
    assert "kube-api-access" not in volumes(spec)
    assert env(container(spec, "prepare"))["ETCD_AGENT_RECORD"] == ""


def test_existing_service_account(helm: str) -> None:
    objects = render(
        helm, "--set", "serviceAccount.create=false", "--set", "serviceAccount.name=shared"
    )
    assert ("ServiceAccount", "etcd") not in objects
    assert ("Role", "etcd") not in objects
    assert pod_spec(objects)["serviceAccountName"] == "shared"


def test_security_context_hardened_by_default(helm: str) -> None:
    spec = pod_spec(render(helm))
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    for name in ("prepare", "etcd", "member-agent"):
        context = container(spec, name)["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == 65532
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["privileged"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}


def test_labels(helm: str) -> None:
    objects = render(helm, "--set", "commonLabels.team=storage", "--set", "podLabels.tier=data")
    labels = statefulset(objects)["metadata"]["labels"]
    assert labels == {
        **SELECTOR,
        "helm.sh/chart": "etcd-0.1.0",
        "app.kubernetes.io/version": "3.7.3",
        "app.kubernetes.io/managed-by": "Helm",
        "team": "storage",
    }
    pod_labels = statefulset(objects)["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["app.kubernetes.io/component"] == "member"
    assert pod_labels["tier"] == "data"
    assert statefulset(objects)["spec"]["selector"]["matchLabels"] == SELECTOR
    for body in objects.values():
        assert body["metadata"]["labels"]["team"] == "storage", body["kind"]


def test_pod_annotations(helm: str) -> None:
    template = statefulset(render(helm, "--set", "podAnnotations.backup=nightly"))["spec"][
        "template"
    ]
    annotations = template["metadata"]["annotations"]
    assert annotations["backup"] == "nightly"
    assert len(annotations["checksum/config"]) == 64


# --- scheduling ------------------------------------------------------------------------------


def test_anti_affinity_soft_by_default(helm: str) -> None:
    affinity = pod_spec(render(helm))["affinity"]
    assert affinity == {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": SELECTOR},
                    },
                }
            ]
        }
    }


def test_anti_affinity_hard_with_topology_key(helm: str) -> None:
    affinity = pod_spec(
        render(
            helm,
            "--set",
            "podAntiAffinity.preset=hard,podAntiAffinity.topologyKey=topology.kubernetes.io/zone",
        )
    )["affinity"]
    assert affinity == {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "topologyKey": "topology.kubernetes.io/zone",
                    "labelSelector": {"matchLabels": SELECTOR},
                }
            ]
        }
    }


def test_anti_affinity_soft_weight(helm: str) -> None:
    affinity = pod_spec(render(helm, "--set", "podAntiAffinity.weight=30"))["affinity"]
    assert (
        affinity["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"]
        == 30
    )


def test_anti_affinity_none(helm: str) -> None:
    assert "affinity" not in pod_spec(render(helm, "--set", "podAntiAffinity.preset=none"))


def test_affinity_override_replaces_the_preset(helm: str) -> None:
    custom = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}
                ]
            }
        }
    }
    affinity = pod_spec(render(helm, "--set-json", f"affinity={json.dumps(custom)}"))["affinity"]
    assert affinity == custom


def test_topology_spread_gets_the_member_selector(helm: str) -> None:
    constraints = [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule",
        },
        {
            "maxSkew": 2,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"custom": "yes"}},
        },
    ]
    spec = pod_spec(
        render(helm, "--set-json", f"topologySpreadConstraints={json.dumps(constraints)}")
    )
    assert spec["topologySpreadConstraints"] == [
        {**constraints[0], "labelSelector": {"matchLabels": SELECTOR}},
        constraints[1],
    ]


def test_node_placement_values(helm: str) -> None:
    spec = pod_spec(
        render(
            helm,
            "--set",
            "nodeSelector.disktype=ssd,priorityClassName=system-cluster-critical",
            "--set",
            "schedulerName=custom,terminationGracePeriodSeconds=120",
            "--set-json",
            'tolerations=[{"key":"dedicated","operator":"Equal","value":"etcd","effect":"NoSchedule"}]',
        )
    )
    assert spec["nodeSelector"] == {"disktype": "ssd"}
    assert spec["priorityClassName"] == "system-cluster-critical"
    assert spec["schedulerName"] == "custom"
    assert spec["terminationGracePeriodSeconds"] == 120
    assert spec["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "etcd", "effect": "NoSchedule"}
    ]


def test_no_placement_keys_by_default(helm: str) -> None:
    spec = pod_spec(render(helm))
    assert not {"nodeSelector", "tolerations", "priorityClassName", "schedulerName"} & set(spec)
    assert "topologySpreadConstraints" not in spec


TAINT = {"key": "dedicated", "operator": "Equal", "value": "etcd", "effect": "NoSchedule"}
NODE_AFFINITY = {
    "requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [
            {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["etcd"]}]}
        ]
    }
}
HARD_SPREAD = {
    "requiredDuringSchedulingIgnoredDuringExecution": [
        {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": SELECTOR}}
    ]
}
PLACEMENT_KEYS = {"nodeSelector", "tolerations", "affinity", "priorityClassName"}
# The web UI next to members placed on tainted nodes of their own.
MEMBERS_PLACED = (
    "-f",
    scenario_file("webui"),
    "--set",
    "nodeSelector.pool=etcd,priorityClassName=etcd-critical",
    "--set-json",
    f"tolerations={json.dumps([TAINT])}",
)


def hook_and_webui_pods(objects: dict) -> dict[str, dict]:
    return {
        "scaleDown": objects[("Job", "etcd-scale-down")]["spec"]["template"]["spec"],
        "webui": objects[("Deployment", "etcd-webui")]["spec"]["template"]["spec"],
    }


def test_hook_and_webui_take_no_placement_by_default(helm: str) -> None:
    for name, spec in hook_and_webui_pods(render(helm, "-f", scenario_file("webui"))).items():
        assert not PLACEMENT_KEYS & set(spec), name


def test_hook_and_webui_run_where_the_members_run(helm: str) -> None:
    """Nodes that all carry a taint: the hook and the web UI tolerate what the members tolerate,
    and follow their node selector, node affinity and priority, so an upgrade's hook is never
    left Pending. The members' anti-affinity spreads members and is not copied."""
    objects = render(
        helm,
        *MEMBERS_PLACED,
        "--set-json",
        f"affinity={json.dumps({'nodeAffinity': NODE_AFFINITY, 'podAntiAffinity': HARD_SPREAD})}",
    )
    for name, spec in hook_and_webui_pods(objects).items():
        assert spec["tolerations"] == [TAINT], name
        assert spec["nodeSelector"] == {"pool": "etcd"}, name
        assert spec["priorityClassName"] == "etcd-critical", name
        assert spec["affinity"] == {"nodeAffinity": NODE_AFFINITY}, name


def test_tolerations_alone_reach_the_hook_and_webui(helm: str) -> None:
    objects = render(
        helm, "-f", scenario_file("webui"), "--set-json", f"tolerations={json.dumps([TAINT])}"
    )
    for name, spec in hook_and_webui_pods(objects).items():
        assert spec["tolerations"] == [TAINT], name
        assert not {"nodeSelector", "affinity", "priorityClassName"} & set(spec), name


@pytest.mark.parametrize("section", ["scaleDown", "webui"])
def test_hook_and_webui_placement_of_their_own_wins(helm: str, section: str) -> None:
    own_taint = {"key": "tools", "operator": "Exists", "effect": "NoSchedule"}
    own_affinity = {"nodeAffinity": NODE_AFFINITY}
    objects = render(
        helm,
        *MEMBERS_PLACED,
        "--set",
        f"{section}.nodeSelector.pool=tools,{section}.priorityClassName=tools",
        "--set-json",
        f"{section}.tolerations={json.dumps([own_taint])}",
        "--set-json",
        f"{section}.affinity={json.dumps(own_affinity)}",
    )
    pods = hook_and_webui_pods(objects)
    own = pods.pop(section)
    assert own["tolerations"] == [own_taint]
    assert own["nodeSelector"] == {"pool": "tools"}
    assert own["priorityClassName"] == "tools"
    assert own["affinity"] == own_affinity
    (other,) = pods.values()
    assert other["tolerations"] == [TAINT]
    assert other["nodeSelector"] == {"pool": "etcd"}


@pytest.mark.parametrize("section", ["scaleDown", "webui"])
def test_empty_placement_of_their_own_turns_the_members_off(helm: str, section: str) -> None:
    objects = render(
        helm,
        *MEMBERS_PLACED,
        "--set-json",
        f"{section}.tolerations=[]",
        "--set-json",
        f"{section}.nodeSelector={{}}",
        "--set",
        f"{section}.priorityClassName=",
    )
    own = hook_and_webui_pods(objects)[section]
    assert not PLACEMENT_KEYS & set(own)


# --- PodDisruptionBudget ---------------------------------------------------------------------


def test_pdb_keeps_quorum(helm: str) -> None:
    pdb = render(helm)[("PodDisruptionBudget", "etcd")]["spec"]
    assert pdb == {"maxUnavailable": 1, "selector": {"matchLabels": SELECTOR}}


def test_pdb_for_five_members_may_allow_two(helm: str) -> None:
    objects = render(helm, "--set", "replicas=5,pdb.maxUnavailable=2")
    assert objects[("PodDisruptionBudget", "etcd")]["spec"]["maxUnavailable"] == 2


def test_no_pdb_for_one_member(helm: str) -> None:
    assert ("PodDisruptionBudget", "etcd") not in render(helm, "-f", scenario_file("one-member"))


def test_pdb_can_be_turned_off(helm: str) -> None:
    assert ("PodDisruptionBudget", "etcd") not in render(helm, "--set", "pdb.enabled=false")


def test_pdb_zero_only_when_blocking_drains_is_allowed(helm: str) -> None:
    objects = render(helm, "--set", "pdb.maxUnavailable=0,pdb.allowBlockingDrains=true")
    assert objects[("PodDisruptionBudget", "etcd")]["spec"]["maxUnavailable"] == 0


def test_two_members_render_with_the_default_budget_and_no_zero(helm: str) -> None:
    """No budget keeps a quorum of 2 through a drain; 0 would block every drain, so the default
    renders none (as with 1 member) and says so."""
    objects = render(helm, "--set", "replicas=2,allowEvenReplicas=true")
    assert objects[("StatefulSet", "etcd")]["spec"]["replicas"] == 2
    assert ("PodDisruptionBudget", "etcd") not in objects


def test_two_members_may_block_drains_when_asked(helm: str) -> None:
    objects = render(
        helm,
        "--set",
        "replicas=2,allowEvenReplicas=true,pdb.maxUnavailable=0,pdb.allowBlockingDrains=true",
    )
    assert objects[("PodDisruptionBudget", "etcd")]["spec"]["maxUnavailable"] == 0


# --- persistence -----------------------------------------------------------------------------


def test_data_claim_by_default(helm: str) -> None:
    spec = statefulset(render(helm))["spec"]
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "8Gi"}},
    }


@pytest.mark.parametrize(
    "values",
    [
        "config.quotaBackendBytes=8589934592,persistence.size=17Gi",
        "config.quotaBackendBytes=8589934592,persistence.size=18.5G",
        "config.quotaBackendBytes=4294967296,persistence.size=9Gi",
        "config.quotaBackendBytes=8589934592,persistence.enabled=false",
        "config.quotaBackendBytes=0,persistence.size=5Gi",
    ],
    ids=["17Gi-for-8GiB", "decimal-units", "9Gi-for-4GiB", "no-claim", "etcd-default-quota"],
)
def test_data_claim_of_twice_the_quota_plus_room_renders(helm: str, values: str) -> None:
    assert ("StatefulSet", "etcd") in render(helm, "--set", values)


def test_separate_wal_volume(helm: str) -> None:
    objects = render(helm, "-f", scenario_file("separate-wal"))
    spec = statefulset(objects)["spec"]
    claims = {c["metadata"]["name"]: c["spec"] for c in spec["volumeClaimTemplates"]}
    assert claims["data"]["storageClassName"] == "standard"
    assert claims["data"]["resources"] == {"requests": {"storage": "10Gi"}}
    assert claims["wal"]["storageClassName"] == "fast-ssd"
    assert claims["wal"]["resources"] == {"requests": {"storage": "4Gi"}}
    assert spec["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain",
        "whenScaled": "Delete",
    }
    template = spec["template"]["spec"]
    for name in ("prepare", "etcd"):
        assert mounts(container(template, name))["wal"] == "/var/lib/etcd-wal"
    assert etcd_config(objects)["wal-dir"] == "/var/lib/etcd-wal/wal"


def test_emptydir_only_when_persistence_is_off(helm: str) -> None:
    objects = render(helm, "-f", scenario_file("no-persistence"))
    spec = statefulset(objects)["spec"]
    assert "volumeClaimTemplates" not in spec
    assert volumes(spec["template"]["spec"])["data"] == {"name": "data", "emptyDir": {}}
    assert "data" not in volumes(pod_spec(render(helm)))


@pytest.mark.parametrize(
    "value,expected", [("-", ""), ("fast", "fast")], ids=["dash-means-none", "named"]
)
def test_storage_class(helm: str, value: str, expected: str) -> None:
    spec = statefulset(render(helm, "--set", f"persistence.storageClass={value}"))["spec"]
    assert spec["volumeClaimTemplates"][0]["spec"]["storageClassName"] == expected


def test_claim_annotations_and_labels(helm: str) -> None:
    spec = statefulset(
        render(
            helm,
            "--set",
            "persistence.annotations.backup=yes,persistence.labels.tier=gold",
            "--set",
            "persistence.accessModes={ReadWriteOncePod}",
        )
    )["spec"]
    claim = spec["volumeClaimTemplates"][0]
    assert claim["metadata"]["annotations"] == {"backup": "yes"}
    assert claim["metadata"]["labels"] == {**SELECTOR, "tier": "gold"}
    assert claim["spec"]["accessModes"] == ["ReadWriteOncePod"]


# --- Services --------------------------------------------------------------------------------


def test_headless_service(helm: str) -> None:
    spec = render(helm)[("Service", "etcd-headless")]["spec"]
    assert spec["clusterIP"] == "None"
    assert spec["publishNotReadyAddresses"] is True
    assert spec["selector"] == SELECTOR
    assert [(p["name"], p["port"]) for p in spec["ports"]] == [
        ("client", 2379),
        ("peer", 2380),
        ("metrics", 8080),
    ]


def test_client_service_defaults(helm: str) -> None:
    spec = render(helm)[("Service", "etcd")]["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["selector"] == SELECTOR
    assert [(p["name"], p["port"]) for p in spec["ports"]] == [("client", 2379), ("metrics", 8080)]


def test_client_service_without_metrics(helm: str) -> None:
    spec = render(helm, "--set", "service.exposeMetrics=false")[("Service", "etcd")]["spec"]
    assert [p["name"] for p in spec["ports"]] == ["client"]


def test_nodeport_service(helm: str) -> None:
    spec = render(helm, "-f", scenario_file("nodeport"))[("Service", "etcd")]["spec"]
    assert spec["type"] == "NodePort"
    assert [(p["name"], p["nodePort"]) for p in spec["ports"]] == [("client", 30453)]
    assert spec["externalTrafficPolicy"] == "Local"


@pytest.mark.parametrize("kind", ["NodePort", "LoadBalancer"])
def test_metrics_stay_inside_the_cluster_unless_asked(helm: str, kind: str) -> None:
    """The metrics listener is plain HTTP: a Service reachable from outside leaves it out."""
    spec = render(helm, "--set", f"service.type={kind}")[("Service", "etcd")]["spec"]
    assert [p["name"] for p in spec["ports"]] == ["client"]


def test_metrics_published_outside_when_asked(helm: str) -> None:
    spec = render(
        helm,
        "--set",
        "service.type=NodePort,service.exposeMetrics=true,service.nodePorts.metrics=30080",
    )[("Service", "etcd")]["spec"]
    assert [(p["name"], p.get("nodePort")) for p in spec["ports"]] == [
        ("client", None),
        ("metrics", 30080),
    ]


def test_loadbalancer_service(helm: str) -> None:
    service = render(
        helm,
        "--set",
        "service.type=LoadBalancer,service.loadBalancerIP=203.0.113.7",
        "--set",
        "service.loadBalancerSourceRanges={10.0.0.0/8}",
        "--set-string",
        "service.annotations.lb\\.example/internal=true",
    )[("Service", "etcd")]
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["loadBalancerIP"] == "203.0.113.7"
    assert service["spec"]["loadBalancerSourceRanges"] == ["10.0.0.0/8"]
    assert service["metadata"]["annotations"] == {"lb.example/internal": "true"}


# --- scale-down hook ---------------------------------------------------------------------------

HOOK_OBJECTS = [
    ("ServiceAccount", "etcd-scale-down"),
    ("Role", "etcd-scale-down"),
    ("RoleBinding", "etcd-scale-down"),
    ("ConfigMap", "etcd-scale-down"),
    ("Job", "etcd-scale-down"),
]


def test_scale_down_hook_objects_are_hooks(helm: str) -> None:
    objects = render(helm)
    for key in HOOK_OBJECTS:
        annotations = objects[key]["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-upgrade,pre-rollback", key
        assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    weights = {
        key: int(objects[key]["metadata"]["annotations"]["helm.sh/hook-weight"])
        for key in HOOK_OBJECTS
    }
    job_weight = weights.pop(("Job", "etcd-scale-down"))
    assert all(weight < job_weight for weight in weights.values())


def test_scale_down_job(helm: str) -> None:
    objects = render(helm, "--set", "replicas=5,scaleDown.backoffLimit=1")
    job = objects[("Job", "etcd-scale-down")]["spec"]
    assert job["backoffLimit"] == 1
    assert job["activeDeadlineSeconds"] == 240
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == "etcd-scale-down"
    assert pod["automountServiceAccountToken"] is False
    (item,) = pod["containers"]
    assert item["command"] == [
        "python3",
        "/opt/etcd-agent",
        "scale-down",
        "--replicas",
        "5",
        "--timeout",
        "105",
    ]
    variables = env(item)
    assert variables["ETCD_AGENT_STATEFULSET"] == "etcd"
    assert variables["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    member = env(container(pod_spec(objects), "member-agent"))
    assert {
        k: v
        for k, v in variables.items()
        if k.startswith("ETCD_AGENT_") and k != "ETCD_AGENT_STATEFULSET"
    } == {k: v for k, v in member.items() if k.startswith("ETCD_AGENT_")}
    assert volumes(pod)["agent"]["configMap"] == {"name": "etcd-scale-down"}
    assert volumes(pod)["config"]["configMap"] == {"name": "etcd-config", "optional": True}
    assert mounts(item)["kube-api-access"] == "/var/run/secrets/kubernetes.io/serviceaccount"
    assert (
        objects[("ConfigMap", "etcd-scale-down")]["data"]
        == objects[("ConfigMap", "etcd-agent")]["data"]
    )


def test_scale_down_role(helm: str) -> None:
    rules = render(helm)[("Role", "etcd-scale-down")]["rules"]
    assert rules == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["etcd-cluster-record"],
            "verbs": ["get"],
        },
        {
            "apiGroups": ["apps"],
            "resources": ["statefulsets"],
            "resourceNames": ["etcd"],
            "verbs": ["get"],
        },
    ]


def test_scale_down_hook_with_tls_mounts_the_agent_cert_optionally(helm: str) -> None:
    objects = render(helm, "--set", "tls.enabled=true")
    pod = objects[("Job", "etcd-scale-down")]["spec"]["template"]["spec"]
    assert volumes(pod)["tls-agent"]["secret"] == {
        "secretName": "etcd-agent-tls",
        "defaultMode": 0o440,
        "optional": True,
    }
    assert "tls-client" not in volumes(pod)
    (item,) = pod["containers"]
    assert mounts(item)["tls-agent"] == "/etc/etcd/tls/agent"
    assert "tls-client" not in mounts(item)
    variables = env(item)
    assert variables["ETCD_AGENT_CACERT"] == "/etc/etcd/tls/agent/ca.crt"
    assert variables["ETCD_AGENT_CERT"] == "/etc/etcd/tls/agent/tls.crt"
    assert variables["ETCD_AGENT_KEY"] == "/etc/etcd/tls/agent/tls.key"


def test_scale_down_hook_without_cluster_record_needs_no_api(helm: str) -> None:
    objects = render(helm, "--set", "clusterRecord.enabled=false,initialClusterState=new")
    assert ("Role", "etcd-scale-down") not in objects
    assert ("RoleBinding", "etcd-scale-down") not in objects
    pod = objects[("Job", "etcd-scale-down")]["spec"]["template"]["spec"]
    assert "kube-api-access" not in volumes(pod)
    assert env(pod["containers"][0])["ETCD_AGENT_RECORD"] == ""


def test_scale_down_hook_can_be_turned_off(helm: str) -> None:
    objects = render(helm, "--set", "scaleDown.enabled=false")
    assert not set(HOOK_OBJECTS) & set(objects)


def test_hook_and_webui_pods_never_match_the_member_selector(helm: str) -> None:
    objects = render(helm, "-f", scenario_file("webui"))
    for key in (("Job", "etcd-scale-down"), ("Deployment", "etcd-webui")):
        labels = objects[key]["spec"]["template"]["metadata"]["labels"]
        assert not SELECTOR.items() <= labels.items(), key
        assert labels["etcd-client"] == "true"


# --- NOTES.txt -------------------------------------------------------------------------------
# `helm template` never renders NOTES.txt, and Helm 3.17's `install --dry-run=client` still asks
# the cluster for its version; Helm 4 renders them offline, so these two use Helm 4 only.


def test_notes_explain_how_to_connect(helm4: str) -> None:
    text = notes(helm4)
    assert "  http://etcd.etcd.svc.cluster.local:2379\n" in text
    assert "  kubectl exec -n etcd etcd-0 -c etcd -- etcdctl member list -w table\n" in text
    assert "(ETCDCTL_ENDPOINTS is set)" in text
    assert "set listen.localhost=true to use it." in text
    assert "  http://etcd-2.etcd-headless.etcd.svc.cluster.local:2379\n" in text


def test_notes_warn_when_the_memory_limit_is_below_the_quota(helm4: str) -> None:
    assert "WARNING" not in notes(helm4)
    text = notes(helm4, "--set", "config.quotaBackendBytes=8589934592,persistence.size=20Gi")
    assert (
        "\nWARNING: resources.limits.memory 4Gi is below config.quotaBackendBytes (8 GiB).\n"
        "etcd maps its whole database into memory, so as the database grows toward the quota "
        "every member\ncan be OOM-killed at about the same time."
    ) in text
    assert "or lower config.quotaBackendBytes.\n" in text
    raised = notes(
        helm4,
        "--set",
        "config.quotaBackendBytes=8589934592,persistence.size=20Gi",
        "--set",
        "resources.limits.memory=10Gi",
    )
    assert "WARNING" not in raised


def test_notes_say_two_members_have_no_budget(helm4: str) -> None:
    text = notes(helm4, "--set", "replicas=2,allowEvenReplicas=true")
    assert "No PodDisruptionBudget: with 2 members" in text


def test_notes_with_tls_and_port_forward(helm4: str) -> None:
    text = notes(helm4, "--set", "tls.enabled=true,listen.localhost=true", namespace="kv")
    assert "  https://etcd.kv.svc.cluster.local:2379\n" in text
    assert "Client certificate: Secret etcd-client-tls (tls.crt, tls.key, ca.crt)." in text
    assert "with RBAC the certificate's CN is the etcd user" in text
    assert "  kubectl port-forward -n kv pod/etcd-0 2379:2379\n" in text
