"""Backups (the CronJob, its claim, certificate, NetworkPolicy and etcd user) and the restore
init containers, as rendered (issue 10)."""

from __future__ import annotations

import json

import pytest
from chartrender import container, env, mounts, pod_spec, render, render_error, scenario_file

PVC = ["--set", "backup.enabled=true,backup.pvc.enabled=true"]
S3 = [
    "--set",
    "backup.enabled=true,backup.s3.enabled=true,backup.s3.endpoint=https://s3.example.com,"
    "backup.s3.bucket=etcd-backups,backup.s3.existingSecret=s3-keys",
]


def job_pod(objects: dict, name: str = "etcd-backup") -> dict:
    cronjob = objects[("CronJob", name)]["spec"]
    return cronjob["jobTemplate"]["spec"]["template"]["spec"]


def test_no_backup_objects_by_default(helm: str) -> None:
    objects = render(helm)
    assert not [key for key in objects if "backup" in key[1]]


def test_the_cronjob_never_overlaps_and_keeps_its_history(helm: str) -> None:
    values = "backup.schedule=15 3 * * *,backup.suspend=true,backup.successfulJobsHistoryLimit=5"
    spec = render(helm, *PVC, "--set", values)[("CronJob", "etcd-backup")]["spec"]
    assert spec["schedule"] == "15 3 * * *"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["suspend"] is True
    assert spec["successfulJobsHistoryLimit"] == 5
    assert spec["failedJobsHistoryLimit"] == 3
    job = spec["jobTemplate"]["spec"]
    assert (job["backoffLimit"], job["activeDeadlineSeconds"]) == (1, 1800)


def test_save_check_store_in_the_images_that_have_the_tools(helm: str) -> None:
    pod = job_pod(render(helm, *PVC, "--set", "backup.keep=4"))
    assert [c["name"] for c in pod["initContainers"]] == ["save", "check"]
    save, check = pod["initContainers"]
    assert save["image"] == check["image"] == "gcr.io/etcd-development/etcd:v3.7.3"
    snapshot = "/var/run/etcd-backup/snapshot.db"
    assert save["command"] == ["/usr/local/bin/etcdctl", "snapshot", "save", snapshot]
    assert env(save)["ETCDCTL_ENDPOINTS"] == "http://etcd.etcd.svc.cluster.local:2379"
    assert check["command"] == [
        "/usr/local/bin/etcdutl",
        "snapshot",
        "status",
        snapshot,
        "--write-out=table",
    ]
    store = container(pod, "store")
    assert store["image"] == "docker.io/library/python:3.13-alpine"
    assert store["command"] == [
        "python3",
        "/opt/etcd-agent",
        "backup",
        "--snapshot",
        snapshot,
        "--name",
        "etcd",
        "--keep",
        "4",
        "--directory",
        "/backup",
    ]
    assert mounts(store)["backup"] == "/backup"
    assert pod["volumes"][-1] == {
        "name": "backup",
        "persistentVolumeClaim": {"claimName": "etcd-backup"},
    }


def test_the_backup_pod_is_hardened_like_the_members(helm: str) -> None:
    objects = render(helm, *PVC)
    pod = job_pod(objects)
    members = pod_spec(objects)
    assert pod["securityContext"] == members["securityContext"]
    assert pod["automountServiceAccountToken"] is False
    for item in [*pod["initContainers"], *pod["containers"]]:
        assert item["securityContext"]["readOnlyRootFilesystem"] is True
        assert item["securityContext"]["runAsNonRoot"] is True
        assert item["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    labels = objects[("CronJob", "etcd-backup")]["spec"]["jobTemplate"]["spec"]["template"][
        "metadata"
    ]["labels"]
    assert labels["etcd-client"] == "true"
    assert labels["app.kubernetes.io/name"] == "etcd-backup"


def test_the_claim_the_chart_makes_outlives_the_release(helm: str) -> None:
    values = "backup.pvc.size=30Gi,backup.pvc.storageClass=fast"
    claim = render(helm, *PVC, "--set", values)[("PersistentVolumeClaim", "etcd-backup")]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert claim["spec"]["resources"]["requests"]["storage"] == "30Gi"
    assert claim["spec"]["storageClassName"] == "fast"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_an_existing_claim_is_used_and_none_made(helm: str) -> None:
    objects = render(helm, *PVC, "--set", "backup.pvc.existingClaim=snapshots")
    assert ("PersistentVolumeClaim", "etcd-backup") not in objects
    claim = {v["name"]: v for v in job_pod(objects)["volumes"]}["backup"]
    assert claim["persistentVolumeClaim"]["claimName"] == "snapshots"


def test_s3_settings_and_credentials_reach_the_store_step(helm: str) -> None:
    extra = "backup.s3.prefix=prod/,backup.s3.forcePathStyle=true,backup.s3.caSecret=ca"
    store = container(job_pod(render(helm, *S3, "--set", extra)), "store")
    assert store["command"][-1] == "--s3"
    variables = env(store)
    assert variables["ETCD_AGENT_S3_ENDPOINT"] == "https://s3.example.com"
    assert variables["ETCD_AGENT_S3_BUCKET"] == "etcd-backups"
    assert variables["ETCD_AGENT_S3_PREFIX"] == "prod/"
    assert variables["ETCD_AGENT_S3_PATH_STYLE"] == "true"
    assert variables["ETCD_AGENT_S3_ACCESS_KEY_ID"] == {
        "secretKeyRef": {"name": "s3-keys", "key": "AWS_ACCESS_KEY_ID"}
    }
    assert variables["ETCD_AGENT_S3_CA_FILE"] == "/etc/etcd-backup/s3-ca/ca.crt"
    assert mounts(store)["s3-ca"] == "/etc/etcd-backup/s3-ca"


def test_tls_and_rbac_give_the_backup_its_own_certificate_and_root_role_user(helm: str) -> None:
    objects = render(helm, "-f", scenario_file("backup"))
    certificate = objects[("Certificate", "etcd-backup")]["spec"]
    assert certificate["commonName"] == "backup"
    assert certificate["secretName"] == "etcd-backup-tls"
    save = job_pod(objects)["initContainers"][0]
    variables = env(save)
    assert variables["ETCDCTL_ENDPOINTS"] == "https://etcd.etcd.svc.cluster.local:2379"
    assert variables["ETCDCTL_CERT"] == "/etc/etcd/tls/backup/tls.crt"
    assert variables["ETCDCTL_USER"] == "backup"
    assert variables["ETCDCTL_PASSWORD"] == {
        "secretKeyRef": {"name": "etcd-backup-etcd", "key": "password"}
    }
    auth = json.loads(objects[("ConfigMap", "etcd-config")]["data"]["auth.json"])
    assert {
        "name": "backup",
        "roles": ["root"],
        "passwordFile": "/etc/etcd/auth/backup/password",
    } in (auth["users"])
    agent = container(pod_spec(objects), "member-agent")
    assert mounts(agent)["auth-backup"] == "/etc/etcd/auth/backup"


def test_network_policy_lets_the_backup_reach_members_dns_and_the_s3_port(helm: str) -> None:
    policy = render(helm, "-f", scenario_file("backup"))[("NetworkPolicy", "etcd-backup")]["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in policy
    members, dns_udp_tcp, s3 = policy["egress"]
    assert members["ports"] == [{"port": 2379, "protocol": "TCP"}]
    assert dns_udp_tcp["ports"][0]["port"] == 53
    assert s3["ports"] == [{"port": 9000, "protocol": "TCP"}]
    assert s3["to"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "storage"}}}
    ]


@pytest.mark.parametrize(
    ("endpoint", "port"),
    [("https://s3.example.com", 443), ("http://minio.storage:9000/", 9000), ("http://s3", 80)],
)
def test_the_s3_egress_port_comes_from_the_endpoint(helm: str, endpoint: str, port: int) -> None:
    objects = render(
        helm, *S3, "--set", f"backup.s3.endpoint={endpoint},networkPolicy.egress.restrict=true"
    )
    egress = objects[("NetworkPolicy", "etcd-backup")]["spec"]["egress"]
    assert egress[-1] == {"ports": [{"port": port, "protocol": "TCP"}]}


PVC_RESTORE = [
    "--set",
    "restore.snapshot.source=pvc,restore.snapshot.pvc.claim=etcd-backup,"
    "restore.snapshot.pvc.path=etcd-20261207T120000Z-r42.db",
]


def test_restore_runs_fetch_then_etcdutl_before_prepare(helm: str) -> None:
    spec = pod_spec(render(helm, *PVC_RESTORE))
    assert [c["name"] for c in spec["initContainers"]] == ["restore-fetch", "restore", "prepare"]
    fetch = container(spec, "restore-fetch")
    assert fetch["command"] == [
        "python3",
        "/opt/etcd-agent",
        "restore-fetch",
        "--source",
        "pvc",
        "--pvc-file",
        "/var/lib/etcd-restore-source/etcd-20261207T120000Z-r42.db",
    ]
    assert mounts(fetch)["restore-source"] == "/var/lib/etcd-restore-source"
    restore = container(spec, "restore")
    peers = ",".join(
        f"etcd-{i}=http://etcd-{i}.etcd-headless.etcd.svc.cluster.local:2380" for i in range(3)
    )
    assert restore["command"] == [
        "/usr/local/bin/etcdutl",
        "snapshot",
        "restore",
        "/var/lib/etcd/restore/snapshot.db",
        "--data-dir=/var/lib/etcd/restore/data",
        "--name=$(POD_NAME)",
        f"--initial-cluster={peers}",
        "--initial-cluster-token=etcd-etcd",
        "--initial-advertise-peer-urls=http://$(POD_NAME).etcd-headless.etcd.svc.cluster.local:2380",
    ]
    claim = {v["name"]: v for v in spec["volumes"]}["restore-source"]
    assert claim["persistentVolumeClaim"] == {"claimName": "etcd-backup", "readOnly": True}
    agent = env(container(spec, "member-agent"))
    assert agent["ETCD_AGENT_RESTORED_FROM"] == "pvc:etcd-backup/etcd-20261207T120000Z-r42.db"


def test_restore_from_the_bucket_names_the_object(helm: str) -> None:
    values = "restore.snapshot.source=s3,restore.snapshot.s3.key=prod/etcd-20261207T120000Z-r42.db"
    spec = pod_spec(render(helm, *S3, "--set", f"{values},backup.enabled=false"))
    fetch = container(spec, "restore-fetch")
    assert fetch["command"][-2:] == ["--s3-key", "prod/etcd-20261207T120000Z-r42.db"]
    assert env(fetch)["ETCD_AGENT_S3_BUCKET"] == "etcd-backups"
    agent = env(container(spec, "member-agent"))
    assert (
        agent["ETCD_AGENT_RESTORED_FROM"] == "s3://etcd-backups/prod/etcd-20261207T120000Z-r42.db"
    )


def test_no_restore_containers_without_a_snapshot(helm: str) -> None:
    spec = pod_spec(render(helm))
    assert [c["name"] for c in spec["initContainers"]] == ["prepare"]


@pytest.mark.parametrize(
    ("values", "field", "fix"),
    [
        (["--set", "backup.enabled=true"], "backup.enabled", "Set backup.pvc.enabled=true"),
        (
            [
                "--set",
                "backup.enabled=true,backup.s3.enabled=true,backup.s3.bucket=b1,backup.s3.existingSecret=k",
            ],
            "backup.s3.endpoint",
            "Set it to https://HOST[:PORT]",
        ),
        (
            [
                "--set",
                "restore.snapshot.source=pvc,restore.snapshot.pvc.claim=c,restore.snapshot.pvc.path=../x.db",
            ],
            "restore.snapshot.pvc.path",
            "relative to the claim's root",
        ),
        (
            ["--set", "restore.snapshot.source=s3"],
            "restore.snapshot.s3.key",
            "Give the object's full key",
        ),
    ],
    ids=["nowhere", "s3-endpoint", "pvc-path", "s3-key"],
)
def test_bad_backup_and_restore_values_are_refused_naming_field_and_fix(
    helm: str, values: list[str], field: str, fix: str
) -> None:
    error = render_error(helm, *values)
    line = next(line for line in error.splitlines() if line.startswith(f"  - {field}:"))
    assert fix in line
