"""The escape hatches a production chart is expected to have (issue 13): each renders where it
belongs, is schema-checked, and cannot take over what the chart and its member agent own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from chartrender import container, env, mounts, pod_spec, render, render_error, volumes

BACKUP = {"name": "backup", "emptyDir": {}}
SIDECAR = {
    "name": "backup",
    "image": "gcr.io/etcd-development/etcd:v3.7.3",
    "command": ["/bin/sh", "-c", "sleep infinity"],
    "ports": [{"containerPort": 9000, "name": "backup"}],
}
INIT = {"name": "wait-for-disk", "image": "busybox:1.36", "command": ["true"]}


def values_file(tmp_path: Path, values: dict[str, Any]) -> str:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def test_the_member_pod_hatches_render_in_place(helm: str, tmp_path: Path) -> None:
    values = {
        "extraEnvVars": [
            {"name": "GODEBUG", "value": "madvdontneed=1"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        ],
        "extraEnvVarsCM": "etcd-env",
        "extraEnvVarsSecret": "etcd-secret-env",
        "extraVolumes": [BACKUP],
        "extraVolumeMounts": [{"name": "backup", "mountPath": "/backup"}],
        "sidecars": [SIDECAR],
        "initContainers": [INIT],
        "lifecycleHooks": {"postStart": {"exec": {"command": ["/bin/true"]}}},
        "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["backup.example"]}],
        "runtimeClassName": "gvisor",
    }
    spec = pod_spec(render(helm, "-f", values_file(tmp_path, values)))
    assert [c["name"] for c in spec["initContainers"]] == ["prepare", "wait-for-disk"]
    assert [c["name"] for c in spec["containers"]] == ["etcd", "member-agent", "backup"]
    assert spec["initContainers"][1] == INIT
    assert spec["containers"][2] == SIDECAR
    etcd = container(spec, "etcd")
    variables = env(etcd)
    assert list(variables)[-2:] == ["GODEBUG", "TOKEN"]
    assert variables["TOKEN"] == {"secretKeyRef": {"name": "s", "key": "k"}}
    assert variables["ETCDCTL_ENDPOINTS"].startswith("http://$(POD_NAME).etcd-headless.")
    assert etcd["envFrom"] == [
        {"configMapRef": {"name": "etcd-env"}},
        {"secretRef": {"name": "etcd-secret-env"}},
    ]
    assert etcd["lifecycle"] == {"postStart": {"exec": {"command": ["/bin/true"]}}}
    assert mounts(etcd) == {
        "data": "/var/lib/etcd",
        "runtime": "/var/run/etcd",
        "backup": "/backup",
    }
    assert "backup" not in mounts(container(spec, "member-agent"))
    assert volumes(spec)["backup"] == BACKUP
    assert spec["hostAliases"] == [{"ip": "10.0.0.1", "hostnames": ["backup.example"]}]
    assert spec["runtimeClassName"] == "gvisor"


def test_defaults_add_nothing(helm: str) -> None:
    spec = pod_spec(render(helm))
    etcd = container(spec, "etcd")
    assert "envFrom" not in etcd and "lifecycle" not in etcd
    assert "hostAliases" not in spec and "runtimeClassName" not in spec
    assert set(volumes(spec)) == {"runtime", "config", "agent", "kube-api-access"}


@pytest.mark.parametrize(
    ("resources", "extra", "expected"),
    [
        (
            {"limits": {"cpu": "2"}},
            [],
            {
                "resourceFieldRef": {
                    "containerName": "etcd",
                    "resource": "limits.cpu",
                    "divisor": "1",
                }
            },
        ),  # fmt: skip
        ({"limits": {"cpu": "2"}}, [{"name": "GOMAXPROCS", "value": "1"}], "1"),
        ({}, [{"name": "GOMAXPROCS", "value": "4"}], "4"),
        ({}, [], None),
    ],
    ids=["from-the-cpu-limit", "set-over-a-limit", "set-without-a-limit", "go-default"],
)
def test_gomaxprocs(
    helm: str, tmp_path: Path, resources: dict[str, Any], extra: list[Any], expected: Any
) -> None:
    values = {"resources": resources, "extraEnvVars": extra}
    etcd = container(pod_spec(render(helm, "-f", values_file(tmp_path, values))), "etcd")
    names = [e["name"] for e in etcd["env"]]
    assert names.count("GOMAXPROCS") == (0 if expected is None else 1)
    assert env(etcd).get("GOMAXPROCS") == expected


@pytest.mark.parametrize(
    ("registry", "expected"),
    [
        ("", ["gcr.io/etcd-development/etcd:v3.7.3", "docker.io/library/python:3.13-alpine"]),
        (
            "mirror.example:5000",
            [
                "mirror.example:5000/etcd-development/etcd:v3.7.3",
                "mirror.example:5000/library/python:3.13-alpine",
            ],
        ),
        (
            "registry.example/proxy",
            [
                "registry.example/proxy/etcd-development/etcd:v3.7.3",
                "registry.example/proxy/library/python:3.13-alpine",
            ],
        ),
    ],
    ids=["none", "host-and-port", "host-and-path"],
)
def test_global_image_registry(helm: str, registry: str, expected: list[str]) -> None:
    args = ["--set", f"global.imageRegistry={registry}", "--set", "webui.enabled=true"]
    objects = render(helm, *args)
    spec = pod_spec(objects)
    assert [container(spec, "etcd")["image"], container(spec, "prepare")["image"]] == expected
    assert container(spec, "member-agent")["image"] == expected[1]
    hook = objects[("Job", "etcd-scale-down")]["spec"]["template"]["spec"]["containers"][0]
    assert hook["image"] == expected[1]
    webui = objects[("Deployment", "etcd-webui")]["spec"]["template"]["spec"]["containers"][0]
    assert webui["image"] == expected[1]  # the built-in UI runs on the agent's image
    args += ["--set", "webui.kind=etcdkeeper,webui.auth.enabled=false"]
    keeper = render(helm, *args)[("Deployment", "etcd-webui")]["spec"]["template"]["spec"]
    assert keeper["containers"][0]["image"].endswith("/evildecay/etcdkeeper:v0.7.8")
    assert keeper["containers"][0]["image"].startswith(registry or "ghcr.io")


def test_global_image_registry_keeps_a_digest_and_prefixes_a_docker_hub_name(helm: str) -> None:
    digest = "sha256:" + "cd" * 32
    args = ["--set", "global.imageRegistry=mirror.example", "--set", f"image.digest={digest}"]
    args += ["--set", "agent.image.repository=python"]
    spec = pod_spec(render(helm, *args))
    assert container(spec, "etcd")["image"] == f"mirror.example/etcd-development/etcd@{digest}"
    assert container(spec, "prepare")["image"] == "mirror.example/python:3.13-alpine"


def test_common_annotations_on_every_object_with_their_own_kept(helm: str) -> None:
    args = ["--set", "commonAnnotations.team\\.example/owner=storage", "--set", "tls.enabled=true"]
    args += [
        "--set",
        "service.annotations.team\\.example/owner=edge",
        "--set",
        "webui.enabled=true",
    ]
    objects = render(helm, *args)
    assert len(objects) > 20
    for (kind, name), body in objects.items():
        annotations = body["metadata"]["annotations"]
        expected = "edge" if (kind, name) == ("Service", "etcd") else "storage"
        assert annotations["team.example/owner"] == expected, (kind, name)
    statefulset = objects[("StatefulSet", "etcd")]
    assert (
        statefulset["metadata"]["annotations"]["etcd-chart/config"] == "etcd-config/etcd.conf.json"
    )
    assert "team.example/owner" not in statefulset["spec"]["template"]["metadata"]["annotations"]
    job = objects[("Job", "etcd-scale-down")]["metadata"]["annotations"]
    assert job["helm.sh/hook"] == "pre-upgrade,pre-rollback"


def test_service_account_labels_cluster_ip_and_load_balancer_class(helm: str) -> None:
    objects = render(
        helm,
        "--set",
        "serviceAccount.labels.team=storage,service.clusterIP=10.96.0.50",
        "--set",
        "service.type=LoadBalancer,service.loadBalancerClass=example.com/lb",
    )
    assert objects[("ServiceAccount", "etcd")]["metadata"]["labels"]["team"] == "storage"
    service = objects[("Service", "etcd")]["spec"]
    assert (service["clusterIP"], service["loadBalancerClass"]) == ("10.96.0.50", "example.com/lb")
    assert "clusterIP" not in render(helm)[("Service", "etcd")]["spec"]


@pytest.mark.parametrize(
    ("replicas", "min_available"), [(3, 2), (5, 3), (5, 4)], ids=["3-2", "5-3", "5-4"]
)
def test_pdb_min_available_instead_of_max_unavailable(
    helm: str, replicas: int, min_available: int
) -> None:
    objects = render(
        helm,
        "--set",
        f"replicas={replicas},pdb.maxUnavailable=null,pdb.minAvailable={min_available}",
    )
    spec = objects[("PodDisruptionBudget", "etcd")]["spec"]
    assert spec["minAvailable"] == min_available and "maxUnavailable" not in spec


def test_extra_deploy_objects_and_templates(helm: str, tmp_path: Path) -> None:
    values = {
        "extraDeploy": [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "{{ .Release.Name }}-notes"},
                "data": {"replicas": "{{ .Values.replicas }}"},
            },
            'apiVersion: v1\nkind: Secret\nmetadata:\n  name: {{ include "etcd.fullname" . }}-x\n'
            "stringData:\n  a: b\n",
        ]
    }
    objects = render(helm, "-f", values_file(tmp_path, values))
    assert objects[("ConfigMap", "etcd-notes")]["data"] == {"replicas": "3"}
    assert objects[("Secret", "etcd-x")]["stringData"] == {"a": "b"}


# (values, the one error line the chart prints): the hatches cannot take over the chart's part.
REFUSED = {
    "etcd-env": (
        {"extraEnvVars": [{"name": "ETCD_QUOTA_BACKEND_BYTES", "value": "1"}]},
        "extraEnvVars[0].name: ETCD_QUOTA_BACKEND_BYTES; etcd runs with --config-file and ignores"
        " ETCD_* variables. Set the option in config, extraConfig or extraFlags instead.",
    ),
    "chart-env": (
        {"extraEnvVars": [{"name": "POD_NAME", "value": "x"}]},
        "extraEnvVars[0].name: POD_NAME is set by the chart (the pod's name, etcdctl's endpoint"
        " and certificates), so the container would carry it twice. Remove it.",
    ),
    "chart-volume": (
        {"extraVolumes": [{"name": "tls-server", "emptyDir": {}}]},
        "extraVolumes[0].name: tls-server is a volume name the chart uses (data, wal, runtime,"
        " config, agent, kube-api-access, jwt, restore-source, s3-ca, tls-*, auth-*). Give yours"
        " another name.",
    ),
    "mount-over-data": (
        {
            "extraVolumes": [BACKUP],
            "extraVolumeMounts": [{"name": "backup", "mountPath": "/var/lib/etcd/"}],
        },
        "extraVolumeMounts[0].mountPath: /var/lib/etcd/ is at or under /var/lib/etcd, which the"
        " chart mounts for etcd. Mount it elsewhere.",
    ),  # fmt: skip
    "mount-without-volume": (
        {"extraVolumeMounts": [{"name": "backup", "mountPath": "/backup"}]},
        "extraVolumeMounts[0].name: backup is not one of extraVolumes. Add the volume to"
        " extraVolumes, or mount one that is there.",
    ),
    "sidecar-name": (
        {"sidecars": [{**SIDECAR, "name": "member-agent"}]},
        "sidecars[0].name: member-agent is a container of the chart. Give yours another name.",
    ),
    "sidecar-port": (
        {"sidecars": [{**SIDECAR, "ports": [{"containerPort": 8080}]}]},
        "sidecars[0].ports: 8080 is one of etcd's ports (client 2379, peer 2380, metrics 8080)"
        " and the pod's containers share one network. Use another port.",
    ),
    "init-name": (
        {"initContainers": [{**INIT, "name": "prepare"}]},
        "initContainers[0].name: prepare is a container of the chart. Give yours another name.",
    ),
    "hook-annotation": (
        {"commonAnnotations": {"helm.sh/hook-weight": "5"}},
        "commonAnnotations.helm.sh/hook-weight: keys under helm.sh/ are the chart's (its hooks and"
        " StatefulSet set them) and would apply to every object. Remove it; annotate single"
        " objects through their own values (service.annotations, podAnnotations, ...).",
    ),
    "headless-client-service": (
        {"service": {"clusterIP": "None"}},
        "service.clusterIP: None would make the client Service headless; the headless Service"
        " (F-headless) already names each member. Leave it empty, or give a fixed address.",
    ),
    "pdb-both": (
        {"pdb": {"minAvailable": 2}},
        "pdb.minAvailable: set together with pdb.maxUnavailable, and a PodDisruptionBudget takes"
        " one of them. Set pdb.maxUnavailable=null to use pdb.minAvailable, or remove"
        " pdb.minAvailable.",
    ),
    "pdb-min-below-quorum": (
        {"replicas": 5, "pdb": {"maxUnavailable": None, "minAvailable": 2}},
        "pdb.minAvailable: 2 lets 3 members down at once, which would break the quorum of 5"
        " members; a quorum is (replicas/2)+1 = 3. Raise pdb.minAvailable to 3.",
    ),
    "pdb-min-every-member": (
        {"pdb": {"maxUnavailable": None, "minAvailable": 3}},
        "pdb.minAvailable: 3 (every member) lets no member be evicted, so every node drain"
        " (kubectl drain, node upgrades, the cluster autoscaler) on a node running a member"
        " waits until someone moves the member by hand. Set pdb.minAvailable to 2, or set"
        " pdb.allowBlockingDrains=true if drains should wait for you.",
    ),
    "extra-deploy-incomplete": (
        {"extraDeploy": [{"apiVersion": "v1", "kind": "ConfigMap", "data": {}}]},
        "extraDeploy[0]: every object needs apiVersion, kind and metadata.name. Add the missing"
        " ones.",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_hatch_that_would_take_over_the_charts_part_is_refused(
    helm: str, tmp_path: Path, case: str
) -> None:
    values, line = REFUSED[case]
    err = render_error(helm, "-f", values_file(tmp_path, values))
    listed = [x[4:] for x in err.splitlines() if x.startswith("  - ")]
    assert listed == [line], err


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"sidecars": [{"name": "no-image"}]}, "sidecars/0"),
        ({"extraEnvVars": [{"name": "A", "valu": "typo"}]}, "extraEnvVars/0"),
        ({"hostAliases": [{"ip": "10.0.0.1"}]}, "hostAliases/0"),
        ({"global": {"imageRegistry": "https://mirror.example"}}, "global/imageRegistry"),
        ({"lifecycleHooks": {"preStart": {}}}, "lifecycleHooks"),
    ],
    ids=["sidecar-without-image", "env-typo", "alias-without-names", "registry-url", "hook-name"],
)
def test_the_schema_checks_each_hatch(
    helm: str, tmp_path: Path, values: dict[str, Any], field: str
) -> None:
    err = render_error(helm, "-f", values_file(tmp_path, values))
    helm4 = f"at '/{field}'"
    helm3 = "- " + field.replace("/", ".")
    assert helm4 in err or helm3 in err, err
