"""Bad values fail `helm template` by themselves: the schema names the key, the templates name
the rule and the fix (every cross-field error reported together, once)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chartrender import render, render_error

SCHEMA_FAILURE = "values don't meet the specifications of the schema(s)"


def major(helm: str) -> int:
    return 3 if Path(helm).name.endswith("3") else 4


# (--set arguments, Helm 3's wording, Helm 4's wording): each names the offending key.
SCHEMA_CASES = {
    "top-level-typo": (
        ["--set", "replicaz=3"],
        "- (root): Additional property replicaz is not allowed",
        "- at '': additional properties 'replicaz' not allowed",
    ),
    "nested-typo": (
        ["--set", "service.typo=1"],
        "- service: Additional property typo is not allowed",
        "- at '/service': additional properties 'typo' not allowed",
    ),
    "deep-typo": (
        ["--set", "tls.certManager.privateKey.algoritm=RSA"],
        "- tls.certManager.privateKey: Additional property algoritm is not allowed",
        "- at '/tls/certManager/privateKey': additional properties 'algoritm' not allowed",
    ),
    "misspelt-section": (
        ["--set", "persistance.enabled=false"],
        "- (root): Additional property persistance is not allowed",
        "- at '': additional properties 'persistance' not allowed",
    ),
    "enum": (
        ["--set", "podAntiAffinity.preset=medium"],
        "- podAntiAffinity.preset: podAntiAffinity.preset must be one of the following: "
        '"soft", "hard", "none"',
        "- at '/podAntiAffinity/preset': value must be one of 'soft', 'hard', 'none'",
    ),
    "type": (
        ["--set", "replicas=three"],
        "- replicas: Invalid type. Expected: integer, given: string",
        "- at '/replicas': got string, want integer",
    ),
    "list-item-typo": (
        ["--set-json", 'auth.rbac.users=[{"name":"a","role":["x"]}]'],
        "- auth.rbac.users.0: Additional property role is not allowed",
        "- at '/auth/rbac/users/0': additional properties 'role' not allowed",
    ),
    "user-without-password": (
        ["--set-json", 'auth.rbac.users=[{"name":"app"}]'],
        "- auth.rbac.users.0: password is required",
        "- at '/auth/rbac/users/0': missing property 'password'",
    ),
    "extra-flag-format": (
        ["--set", "extraFlags={max-txn-ops=5}"],
        "- extraFlags.0: Does not match pattern",
        "- at '/extraFlags/0': 'max-txn-ops=5' does not match pattern",
    ),
    "tls-source": (
        ["--set", "tls.source=vault"],
        '- tls.source: tls.source must be one of the following: "cert-manager", "existingSecrets"',
        "- at '/tls/source': value must be one of 'cert-manager', 'existingSecrets'",
    ),
    "webui-kind": (
        ["--set", "webui.kind=phpetcdadmin"],
        '- webui.kind: webui.kind must be one of the following: "builtin", "etcdkeeper", "e3w"',
        "- at '/webui/kind': value must be one of 'builtin', 'etcdkeeper', 'e3w'",
    ),
    "dns-peer-typo": (
        ["--set-json", 'networkPolicy.egress.dns.to=[{"podSelecter":{}}]'],
        "- networkPolicy.egress.dns.to.0: Additional property podSelecter is not allowed",
        "- at '/networkPolicy/egress/dns/to/0': additional properties 'podSelecter' not allowed",
    ),
    "dns-peer-ipblock-with-selector": (
        [
            "--set-json",
            'networkPolicy.egress.dns.to=[{"ipBlock":{"cidr":"10.0.0.0/8"},"podSelector":{}}]',
        ],
        "- networkPolicy.egress.dns.to.0: Must not validate the schema (not)",
        "- at '/networkPolicy/egress/dns/to/0': 'not' failed",
    ),
    "dns-port-protocol": (
        ["--set-json", 'networkPolicy.egress.dns.ports=[{"port":53,"protocol":"udp"}]'],
        "- networkPolicy.egress.dns.ports.0.protocol: networkPolicy.egress.dns.ports.0.protocol "
        'must be one of the following: "TCP", "UDP", "SCTP"',
        "- at '/networkPolicy/egress/dns/ports/0/protocol': value must be one of 'TCP', 'UDP', "
        "'SCTP'",
    ),
    "extra-ingress-typo": (
        ["--set-json", 'networkPolicy.extraIngress=[{"form":[{"podSelector":{}}]}]'],
        "- networkPolicy.extraIngress.0: Additional property form is not allowed",
        "- at '/networkPolicy/extraIngress/0': additional properties 'form' not allowed",
    ),
    "extra-egress-port": (
        ["--set-json", 'networkPolicy.extraEgress=[{"ports":[{"port":70000}]}]'],
        "- networkPolicy.extraEgress.0.ports.0.port: Must be less than or equal to 65535",
        "- at '/networkPolicy/extraEgress/0/ports/0/port': maximum: got 70,000, want 65,535",
    ),
    "hook-tolerations-type": (
        ["--set", "scaleDown.tolerations=dedicated"],
        "- scaleDown.tolerations: Invalid type. Expected: [array,null], given: string",
        "- at '/scaleDown/tolerations': got string, want null or array",
    ),
}


@pytest.mark.parametrize("case", SCHEMA_CASES)
def test_schema_rejects_bad_value(helm: str, case: str) -> None:
    args, helm3_message, helm4_message = SCHEMA_CASES[case]
    err = render_error(helm, *args)
    assert SCHEMA_FAILURE in err
    assert (helm3_message if major(helm) == 3 else helm4_message) in err


def test_schema_rejects_typo_in_values_file(helm: str, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("persistence:\n  storageClas: fast\n")
    err = render_error(helm, "-f", str(values))
    expected = (
        "- persistence: Additional property storageClas is not allowed"
        if major(helm) == 3
        else "- at '/persistence': additional properties 'storageClas' not allowed"
    )
    assert expected in err


# (--set arguments, the exact message): the cross-field rules of etcd.validateValues.
RULE_CASES = {
    "even-replicas": (
        ["--set", "replicas=4"],
        "replicas: 4 is even; it tolerates no more failures than 3 and needs a larger quorum. "
        "Use 3 or 5, or set allowEvenReplicas=true.",
    ),
    "max-members-below-replicas": (
        ["--set", "replicas=5,tls.enabled=true,tls.maxMembers=3"],
        "tls.maxMembers: 3 is below replicas 5; the certificates would not name every member. "
        "Set tls.maxMembers to at least 5.",
    ),
    "pdb-breaks-quorum": (
        ["--set", "pdb.maxUnavailable=2"],
        "pdb.maxUnavailable: 2 members down would break the quorum of 3 members; "
        "at most (replicas-1)/2 = 1. Lower pdb.maxUnavailable to 1.",
    ),
    "existing-secrets-missing": (
        ["--set", "tls.enabled=true,tls.source=existingSecrets,tls.existingSecrets.server=s"],
        "tls.existingSecrets.peer: required with tls.source=existingSecrets. Name the Secret "
        "holding tls.crt, tls.key and ca.crt (`etcd-chart pki` makes them), or use "
        "tls.source=cert-manager.",
    ),
    "existing-secrets-agent-missing": (
        [
            "--set",
            "tls.enabled=true,tls.source=existingSecrets,tls.existingSecrets.server=s,"
            "tls.existingSecrets.peer=p,tls.existingSecrets.client=c",
        ],
        "tls.existingSecrets.agent: required with tls.source=existingSecrets. Name the Secret "
        "holding tls.crt, tls.key and ca.crt (`etcd-chart pki` makes them), or use "
        "tls.source=cert-manager.",
    ),
    "jwt-without-secret": (
        ["--set", "auth.token.type=jwt"],
        "auth.token.jwt.existingSecret: required with auth.token.type=jwt. Create a Secret with "
        "the signing key (e.g. jwt.key, jwt.pub) and name it here.",
    ),
    "rbac-without-root-password": (
        ["--set", "auth.rbac.enabled=true,auth.token.type=jwt,auth.token.jwt.existingSecret=j"],
        "auth.rbac.rootPassword.existingSecret: required with auth.rbac.enabled. Create a Secret "
        "with the root password (the chart never generates one) and name it here.",
    ),
    "rbac-with-implicit-simple-tokens": (
        ["--set", "auth.rbac.enabled=true,auth.rbac.rootPassword.existingSecret=root"],
        "auth.token.type: choose a token type with auth.rbac.enabled. Set auth.token.type=jwt "
        "with auth.token.jwt.existingSecret (recommended), or auth.token.type=simple explicitly.",
    ),
    "undeclared-role": (
        [
            "--set",
            "auth.rbac.enabled=true,auth.rbac.rootPassword.existingSecret=r,auth.token.type=simple",
            "--set-json",
            'auth.rbac.users=[{"name":"app","roles":["writer"],"password":{"existingSecret":"p"}}]',
        ],
        'auth.rbac.users[0].roles: role "writer" is not declared. Add it to auth.rbac.roles or '
        "remove it from the user.",
    ),
    "users-without-rbac": (
        ["--set-json", 'auth.rbac.users=[{"name":"app","password":{"existingSecret":"p"}}]'],
        "auth.rbac.users/auth.rbac.roles: declared but auth.rbac.enabled is false, so they would "
        "never be created. Set auth.rbac.enabled=true or remove them.",
    ),
    "election-timeout-too-short": (
        ["--set", "config.heartbeatInterval=300"],
        "config.electionTimeout: 1000 ms is below 5 x config.heartbeatInterval (300 ms), which "
        "etcd refuses. Raise config.electionTimeout to at least 1500.",
    ),
    "wal-without-persistence": (
        ["--set", "persistence.enabled=false,persistence.wal.enabled=true"],
        "persistence.wal.enabled: a separate WAL volume needs persistence.enabled=true. Turn "
        "persistence on, or turn the WAL volume off.",
    ),
    "node-port-on-cluster-ip": (
        ["--set", "service.nodePorts.client=30000"],
        "service.nodePorts: set but service.type is ClusterIP. Use service.type=NodePort or "
        "LoadBalancer, or remove the node ports.",
    ),
    "same-port-twice": (
        ["--set", "ports.metrics=2379"],
        "ports: client 2379, peer 2380 and metrics 2379 must differ. Give each its own port.",
    ),
    "extra-config-owned-key": (
        ["--set", "extraConfig.initial-cluster-state=existing"],
        "extraConfig.initial-cluster-state: the chart manages this key. Use its own value (ports, "
        "listen, tls, config.initialClusterToken, initialClusterState, persistence) instead.",
    ),
    "extra-config-experimental": (
        ["--set", "extraConfig.experimental-initial-corrupt-check=true"],
        "extraConfig.experimental-initial-corrupt-check: not valid in etcd 3.7 (experimental "
        "flags and v2 were removed). Remove it or use its non-experimental name.",
    ),
    "extra-flag-owned": (
        ["--set", "extraFlags={--data-dir=/tmp}"],
        "extraFlags[0]: --data-dir is managed by the chart. Use its own value (ports, listen, "
        "tls, config.initialClusterToken, initialClusterState, persistence) instead.",
    ),
    "rsa-key-size": (
        ["--set", "tls.enabled=true,tls.certManager.privateKey.algorithm=RSA"],
        "tls.certManager.privateKey.size: 256 is not an RSA key size. Use 2048, 4096 or 8192.",
    ),
    "name-too-long": (
        ["--set", "fullnameOverride=" + "e" * 48],
        f'fullnameOverride/release name: the full name "{"e" * 48}" is 48 characters; at most '
        "47 fit `<name>-cluster-record`. Set fullnameOverride to a shorter name.",
    ),
    "selector-label-in-pod-labels": (
        ["--set", "podLabels.app\\.kubernetes\\.io/name=foo"],
        "podLabels.app.kubernetes.io/name: the chart sets this selector label itself, and a "
        "second value renders a duplicate key that can detach the pods from the StatefulSet, "
        "Services, PodDisruptionBudget and NetworkPolicy. Remove it from podLabels; label your "
        "pods with keys of your own.",
    ),
    "selector-label-in-common-labels": (
        ["--set", "commonLabels.app\\.kubernetes\\.io/instance=foo"],
        "commonLabels.app.kubernetes.io/instance: the chart sets this selector label itself, and "
        "a second value renders a duplicate key that can detach the pods from the StatefulSet, "
        "Services, PodDisruptionBudget and NetworkPolicy. Remove it from commonLabels; label "
        "your pods with keys of your own.",
    ),
    "chart-label-in-common-labels": (
        ["--set", "commonLabels.app\\.kubernetes\\.io/version=v9"],
        "commonLabels.app.kubernetes.io/version: the chart sets this label itself, so the "
        "objects would carry the key twice. Remove it from commonLabels.",
    ),
    "component-label-in-pod-labels": (
        ["--set", "podLabels.app\\.kubernetes\\.io/component=db"],
        "podLabels.app.kubernetes.io/component: the chart sets this label itself, so the "
        "objects would carry the key twice. Remove it from podLabels.",
    ),
    "pod-label-also-common": (
        ["--set", "commonLabels.tier=a,podLabels.tier=b"],
        "podLabels.tier: also set in commonLabels, so the member pod template would carry the "
        "key twice. Keep it in one of them.",
    ),
    "pdb-zero": (
        ["--set", "pdb.maxUnavailable=0"],
        "pdb.maxUnavailable: 0 lets no member be evicted, so every node drain (kubectl drain, "
        "node upgrades, the cluster autoscaler) on a node running a member waits until someone "
        "moves the member by hand. Set pdb.maxUnavailable to 1, or set "
        "pdb.allowBlockingDrains=true if drains should wait for you.",
    ),
    "pdb-zero-two-members": (
        ["--set", "replicas=2,allowEvenReplicas=true,pdb.maxUnavailable=0"],
        "pdb.maxUnavailable: 0 lets no member be evicted, so every node drain (kubectl drain, "
        "node upgrades, the cluster autoscaler) on a node running a member waits until someone "
        "moves the member by hand. With 2 members no budget keeps a quorum through a drain: "
        "leave pdb.maxUnavailable at 1 (no budget is rendered; a drain stops writes until the "
        "member is back), run 3 members, or set pdb.allowBlockingDrains=true if drains should "
        "wait for you.",
    ),
    "metrics-node-port-not-published": (
        ["--set", "service.type=NodePort,service.nodePorts.metrics=30080"],
        "service.nodePorts.metrics: set, but the metrics port is not on the client Service, "
        "since service.exposeMetrics unset publishes it only with type ClusterIP. Set "
        "service.exposeMetrics=true to publish the plain-HTTP metrics outside the cluster, or "
        "remove the node port.",
    ),
    "extra-egress-without-restrict": (
        ["--set-json", 'networkPolicy.extraEgress=[{"ports":[{"port":443}]}]'],
        "networkPolicy.extraEgress: set but networkPolicy.egress.restrict is false, so egress is "
        "open and the rules would change nothing. Set networkPolicy.egress.restrict=true, or "
        "remove them.",
    ),
    "claim-below-quota": (
        ["--set", "config.quotaBackendBytes=8589934592"],
        "persistence.size: 8Gi is too small for config.quotaBackendBytes 8589934592 (8 GiB): the "
        "database grows up to the quota, a defragmentation or a snapshot sent by the leader "
        "writes a second copy beside it, and the WAL and snapshot files need room too, so a data "
        "claim needs twice the quota plus 1 GiB (17 GiB). Raise persistence.size to at least "
        "17Gi, or lower config.quotaBackendBytes.",
    ),
}


@pytest.mark.parametrize("case", RULE_CASES)
def test_value_rule_fails_with_its_message(helm: str, case: str) -> None:
    args, message = RULE_CASES[case]
    err = render_error(helm, *args)
    assert "value errors:" in err
    assert f"\n  - {message}\n" in err


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["--set", "webui.kind=phpetcdadmin"],
            'webui.kind: "phpetcdadmin" is unknown. Use builtin, etcdkeeper or e3w.',
        ),
        (
            ["--set", "tls.source=vault"],
            'tls.source: "vault" is unknown. Use cert-manager or existingSecrets.',
        ),
        (
            ["--set", "auth.token.type=oauth"],
            'auth.token.type: "oauth" is unknown. Use simple or jwt.',
        ),
        (
            [
                "--set",
                "auth.rbac.enabled=true,auth.rbac.rootPassword.existingSecret=r",
                "--set",
                "auth.token.type=simple",
                "--set-json",
                'auth.rbac.users=[{"name":"app"}]',
            ],
            'auth.rbac.users[0].password.existingSecret: user "app" needs a password Secret. '
            "Create one and name it here (with client certificates the CN still selects the user).",
        ),
    ],
    ids=["webui-kind", "tls-source", "token-type", "user-password"],
)
def test_value_rules_hold_without_the_schema(helm: str, args: list[str], message: str) -> None:
    """`--skip-schema-validation` does not let an unknown choice through."""
    err = render_error(helm, "--skip-schema-validation", *args)
    assert f"\n  - {message}\n" in err


def test_every_rule_error_reported_in_one_run(helm: str) -> None:
    err = render_error(
        helm,
        "--set",
        "replicas=4,pdb.maxUnavailable=3,persistence.enabled=false,persistence.wal.enabled=true",
        "--set",
        "auth.token.type=jwt",
    )
    assert err.count("value errors:") == 1
    lines = [line for line in err.splitlines() if line.startswith("  - ")]
    assert [line.split(":")[0] for line in lines] == [
        "  - replicas",
        "  - pdb.maxUnavailable",
        "  - auth.token.jwt.existingSecret",
        "  - persistence.wal.enabled",
    ]


def test_allow_even_replicas(helm: str) -> None:
    objects = render(helm, "--set", "replicas=4,allowEvenReplicas=true")
    assert objects[("StatefulSet", "etcd")]["spec"]["replicas"] == 4
    assert objects[("PodDisruptionBudget", "etcd")]["spec"]["maxUnavailable"] == 1


def test_simple_tokens_with_rbac_when_chosen(helm: str) -> None:
    objects = render(
        helm,
        "--set",
        "auth.rbac.enabled=true,auth.rbac.rootPassword.existingSecret=root,auth.token.type=simple",
    )
    config = json.loads(objects[("ConfigMap", "etcd-config")]["data"]["etcd.conf.json"])
    assert config["auth-token"] == "simple"
