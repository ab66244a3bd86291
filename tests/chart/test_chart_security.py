"""TLS, certificates, etcd RBAC and JWT, NetworkPolicy and the web UI."""

from __future__ import annotations

import json

import pytest
from chartrender import (
    container,
    env,
    etcd_config,
    mounts,
    pod_spec,
    render,
    scenario_file,
    volumes,
)

SELECTOR = {"app.kubernetes.io/name": "etcd", "app.kubernetes.io/instance": "etcd"}
CERT_MANAGER_OBJECTS = [
    ("Issuer", "etcd-selfsigned"),
    ("Certificate", "etcd-ca"),
    ("Issuer", "etcd-ca"),
    ("Certificate", "etcd-server"),
    ("Certificate", "etcd-peer"),
    ("Certificate", "etcd-client"),
    ("Certificate", "etcd-agent"),
]


def member_names(fullname: str, count: int, namespace: str, domain: str) -> list[str]:
    names = []
    for i in range(count):
        pod = f"{fullname}-{i}"
        headless = f"{fullname}-headless"
        names += [
            pod,
            f"{pod}.{headless}",
            f"{pod}.{headless}.{namespace}",
            f"{pod}.{headless}.{namespace}.svc",
            f"{pod}.{headless}.{namespace}.svc.{domain}",
        ]
    for service in (fullname, f"{fullname}-headless"):
        names += [
            service,
            f"{service}.{namespace}",
            f"{service}.{namespace}.svc",
            f"{service}.{namespace}.svc.{domain}",
        ]
    return names


# --- TLS -------------------------------------------------------------------------------------


def test_tls_off_by_default(helm: str) -> None:
    objects = render(helm)
    assert not {kind for kind, _ in objects} & {"Certificate", "Issuer"}
    config = etcd_config(objects)
    assert "client-transport-security" not in config and "peer-transport-security" not in config


def test_tls_transport_security_in_config(helm: str) -> None:
    config = etcd_config(render(helm, "--set", "tls.enabled=true"))
    assert config["client-transport-security"] == {
        "cert-file": "/etc/etcd/tls/server/tls.crt",
        "key-file": "/etc/etcd/tls/server/tls.key",
        "trusted-ca-file": "/etc/etcd/tls/server/ca.crt",
        "client-cert-auth": True,
    }
    assert config["peer-transport-security"] == {
        "cert-file": "/etc/etcd/tls/peer/tls.crt",
        "key-file": "/etc/etcd/tls/peer/tls.key",
        "trusted-ca-file": "/etc/etcd/tls/peer/ca.crt",
        "client-cert-auth": True,
    }


def test_tls_mutual_auth_can_be_relaxed(helm: str) -> None:
    config = etcd_config(
        render(
            helm, "--set", "tls.enabled=true,tls.clientCertAuth=false,tls.peerClientCertAuth=false"
        )
    )
    assert config["client-transport-security"]["client-cert-auth"] is False
    assert config["peer-transport-security"]["client-cert-auth"] is False


def test_tls_switches_schemes_but_not_metrics(helm: str) -> None:
    objects = render(helm, "--set", "tls.enabled=true")
    config = etcd_config(objects)
    assert config["listen-peer-urls"] == "https://$(POD_IP_URL_HOST):2380"
    assert config["listen-client-urls"] == "https://$(POD_IP_URL_HOST):2379"
    assert config["listen-metrics-urls"] == "http://$(POD_IP_URL_HOST):8080"
    assert config["initial-cluster"].startswith(
        "etcd-0=https://etcd-0.etcd-headless.etcd.svc.cluster.local:2380,"
    )
    etcd = container(pod_spec(objects), "etcd")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert etcd[probe]["httpGet"]["scheme"] == "HTTP"
        assert etcd[probe]["httpGet"]["port"] == "metrics"


def test_tls_etcdctl_and_agent_environment(helm: str) -> None:
    spec = pod_spec(render(helm, "--set", "tls.enabled=true"))
    etcd = env(container(spec, "etcd"))
    assert (
        etcd["ETCDCTL_ENDPOINTS"] == "https://$(POD_NAME).etcd-headless.etcd.svc.cluster.local:2379"
    )
    assert etcd["ETCDCTL_CACERT"] == "/etc/etcd/tls/client/ca.crt"
    assert etcd["ETCDCTL_CERT"] == "/etc/etcd/tls/client/tls.crt"
    assert etcd["ETCDCTL_KEY"] == "/etc/etcd/tls/client/tls.key"
    for name in ("prepare", "member-agent"):
        agent = env(container(spec, name))
        assert agent["ETCD_AGENT_CLIENT_SCHEME"] == "https"
        assert agent["ETCD_AGENT_CACERT"] == "/etc/etcd/tls/agent/ca.crt"
        assert agent["ETCD_AGENT_CERT"] == "/etc/etcd/tls/agent/tls.crt"
        assert agent["ETCD_AGENT_KEY"] == "/etc/etcd/tls/agent/tls.key"


def test_tls_secret_mounts(helm: str) -> None:
    spec = pod_spec(render(helm, "--set", "tls.enabled=true"))
    etcd = mounts(container(spec, "etcd"))
    assert etcd["tls-server"] == "/etc/etcd/tls/server"
    assert etcd["tls-peer"] == "/etc/etcd/tls/peer"
    assert etcd["tls-client"] == "/etc/etcd/tls/client"
    assert "tls-agent" not in etcd
    for name in ("prepare", "member-agent"):
        agent = mounts(container(spec, name))
        assert agent["tls-agent"] == "/etc/etcd/tls/agent"
        assert not {"tls-server", "tls-peer", "tls-client"} & set(agent)
    vols = volumes(spec)
    assert [name for name in vols if name.startswith("tls-")] == [
        "tls-server",
        "tls-peer",
        "tls-client",
        "tls-agent",
    ]
    for which in ("server", "peer", "client", "agent"):
        assert vols[f"tls-{which}"]["secret"] == {
            "secretName": f"etcd-{which}-tls",
            "defaultMode": 0o440,
        }


def test_cert_manager_ca_chain(helm: str) -> None:
    objects = render(helm, "--set", "tls.enabled=true")
    assert all(key in objects for key in CERT_MANAGER_OBJECTS)
    assert objects[("Issuer", "etcd-selfsigned")]["spec"] == {"selfSigned": {}}
    ca = objects[("Certificate", "etcd-ca")]["spec"]
    assert ca["isCA"] is True
    assert ca["secretName"] == "etcd-ca"
    assert ca["issuerRef"] == {
        "name": "etcd-selfsigned",
        "kind": "Issuer",
        "group": "cert-manager.io",
    }
    assert objects[("Issuer", "etcd-ca")]["spec"] == {"ca": {"secretName": "etcd-ca"}}
    for which in ("server", "peer", "client", "agent"):
        spec = objects[("Certificate", f"etcd-{which}")]["spec"]
        assert spec["issuerRef"] == {
            "name": "etcd-ca",
            "kind": "Issuer",
            "group": "cert-manager.io",
        }
        assert spec["secretName"] == f"etcd-{which}-tls"
        assert spec["duration"] == "2160h" and spec["renewBefore"] == "360h"
        assert spec["privateKey"] == {
            "algorithm": "ECDSA",
            "size": 256,
            "encoding": "PKCS8",
            "rotationPolicy": "Always",
        }


def test_server_and_peer_names_cover_every_member_up_to_max_members(helm: str) -> None:
    objects = render(
        helm,
        "--set",
        "tls.enabled=true,tls.maxMembers=11,clusterDomain=corp.internal",
        namespace="store",
    )
    expected = member_names("etcd", 11, "store", "corp.internal")
    assert objects[("Certificate", "etcd-server")]["spec"]["dnsNames"] == expected
    assert objects[("Certificate", "etcd-peer")]["spec"]["dnsNames"] == expected
    assert not any("*" in name for name in expected)
    assert "etcd-10.etcd-headless.store.svc.corp.internal" in expected
    assert "ipAddresses" not in objects[("Certificate", "etcd-server")]["spec"]


def test_server_names_localhost_only_with_loopback_listener(helm: str) -> None:
    objects = render(helm, "--set", "tls.enabled=true,listen.localhost=true")
    server = objects[("Certificate", "etcd-server")]["spec"]
    assert server["dnsNames"][-1] == "localhost"
    assert server["ipAddresses"] == ["127.0.0.1"]
    assert "localhost" not in objects[("Certificate", "etcd-peer")]["spec"]["dnsNames"]


def test_server_extra_names(helm: str) -> None:
    server = render(
        helm,
        "--set",
        "tls.enabled=true,tls.extraDnsNames={etcd.example.com},tls.extraIpAddresses={203.0.113.9}",
    )[("Certificate", "etcd-server")]["spec"]
    assert server["dnsNames"][-1] == "etcd.example.com"
    assert server["ipAddresses"] == ["203.0.113.9"]


def test_certificate_usages(helm: str) -> None:
    objects = render(helm, "--set", "tls.enabled=true")
    for which in ("server", "peer"):
        usages = objects[("Certificate", f"etcd-{which}")]["spec"]["usages"]
        assert {"server auth", "client auth"} <= set(usages)
    assert "server auth" not in objects[("Certificate", "etcd-client")]["spec"]["usages"]
    assert objects[("Certificate", "etcd-agent")]["spec"]["usages"] == [
        "client auth",
        "digital signature",
        "key encipherment",
    ]


def test_agent_certificate_has_no_common_name_and_names_the_agent_by_uri(helm: str) -> None:
    objects = render(
        helm, "--set", "tls.enabled=true,clusterDomain=corp.internal", namespace="store"
    )
    spec = objects[("Certificate", "etcd-agent")]["spec"]
    assert objects[("Certificate", "etcd-agent")]["metadata"]["namespace"] == "store"
    assert "commonName" not in spec and "subject" not in spec
    assert "dnsNames" not in spec and "ipAddresses" not in spec
    assert spec["uris"] == ["spiffe://corp.internal/ns/store/member-agent/etcd"]
    assert spec["secretName"] == "etcd-agent-tls"


def test_client_certificate_common_name(helm: str) -> None:
    objects = render(helm, "--set", "tls.enabled=true")
    assert objects[("Certificate", "etcd-client")]["spec"]["commonName"] == "root"
    objects = render(helm, "--set", "tls.enabled=true,tls.client.commonName=operator")
    assert objects[("Certificate", "etcd-client")]["spec"]["commonName"] == "operator"


@pytest.mark.parametrize(
    "algorithm,size,expected",
    [
        ("RSA", 4096, {"algorithm": "RSA", "size": 4096}),
        ("ECDSA", 384, {"algorithm": "ECDSA", "size": 384}),
        ("Ed25519", 256, {"algorithm": "Ed25519"}),
    ],
)
def test_key_algorithm_and_size(helm: str, algorithm: str, size: int, expected: dict) -> None:
    objects = render(
        helm,
        "--set",
        f"tls.enabled=true,tls.certManager.privateKey.algorithm={algorithm}",
        "--set",
        f"tls.certManager.privateKey.size={size}",
    )
    key = objects[("Certificate", "etcd-server")]["spec"]["privateKey"]
    assert {k: key[k] for k in key if k in ("algorithm", "size")} == expected


def test_duration_and_renew_before(helm: str) -> None:
    spec = render(
        helm,
        "--set",
        "tls.enabled=true,tls.certManager.duration=720h,tls.certManager.renewBefore=240h",
    )[("Certificate", "etcd-peer")]["spec"]
    assert (spec["duration"], spec["renewBefore"]) == ("720h", "240h")


def test_own_cluster_issuer_replaces_the_chart_ca(helm: str) -> None:
    objects = render(
        helm,
        "--set",
        "tls.enabled=true,tls.certManager.issuerRef.name=corp-ca",
        "--set",
        "tls.certManager.issuerRef.kind=ClusterIssuer",
    )
    assert ("Issuer", "etcd-selfsigned") not in objects
    assert ("Issuer", "etcd-ca") not in objects and ("Certificate", "etcd-ca") not in objects
    for which in ("server", "peer", "client", "agent"):
        assert objects[("Certificate", f"etcd-{which}")]["spec"]["issuerRef"] == {
            "name": "corp-ca",
            "kind": "ClusterIssuer",
            "group": "cert-manager.io",
        }


def test_existing_secrets_source(helm: str) -> None:
    objects = render(helm, "-f", scenario_file("existing-secrets"))
    assert not {kind for kind, _ in objects} & {"Certificate", "Issuer"}
    vols = volumes(pod_spec(objects))
    assert vols["tls-server"]["secret"]["secretName"] == "etcd-server-tls"
    assert vols["tls-peer"]["secret"]["secretName"] == "etcd-peer-tls"
    assert vols["tls-client"]["secret"]["secretName"] == "etcd-client-tls"
    assert vols["tls-agent"]["secret"]["secretName"] == "etcd-agent-tls"
    hook = objects[("Job", "etcd-scale-down")]["spec"]["template"]["spec"]
    assert volumes(hook)["tls-agent"]["secret"]["secretName"] == "etcd-agent-tls"


# --- RBAC and tokens -------------------------------------------------------------------------


def test_secure_scenario_auth_file(helm: str) -> None:
    objects = render(helm, "-f", scenario_file("secure"))
    auth = json.loads(objects[("ConfigMap", "etcd-config")]["data"]["auth.json"])
    assert auth == {
        "roles": [
            {"name": "read-only", "permissions": [{"type": "read", "key": "/", "prefix": True}]}
        ],
        "users": [
            {
                "name": "webui",
                "roles": ["read-only"],
                "passwordFile": "/etc/etcd/auth/users/webui/password",
            }
        ],
    }


def test_no_auth_file_without_rbac(helm: str) -> None:
    assert "auth.json" not in render(helm)[("ConfigMap", "etcd-config")]["data"]


def test_password_secrets_only_where_needed(helm: str) -> None:
    users = [
        {"name": "app", "roles": ["rw"], "password": {"existingSecret": "app-pw", "key": "pw"}},
        {"name": "ops", "roles": ["rw"], "password": {"existingSecret": "ops-pw"}},
    ]
    roles = [{"name": "rw", "permissions": [{"type": "readwrite", "key": "/app/", "prefix": True}]}]
    objects = render(
        helm,
        "--set",
        "auth.rbac.enabled=true,auth.rbac.rootPassword.existingSecret=root-pw,auth.token.type=simple",
        "--set-json",
        f"auth.rbac.users={json.dumps(users)}",
        "--set-json",
        f"auth.rbac.roles={json.dumps(roles)}",
    )
    spec = pod_spec(objects)
    agent = mounts(container(spec, "member-agent"))
    assert agent["auth-root"] == "/etc/etcd/auth/root"
    assert agent["auth-user-0"] == "/etc/etcd/auth/users/app"
    assert agent["auth-user-1"] == "/etc/etcd/auth/users/ops"
    assert not any(m.startswith("auth-") for m in mounts(container(spec, "etcd")))
    prepare = mounts(container(spec, "prepare"))
    assert [m for m in prepare if m.startswith("auth-")] == ["auth-root"]
    vols = volumes(spec)
    assert vols["auth-root"]["secret"]["secretName"] == "root-pw"
    assert vols["auth-root"]["secret"]["items"] == [{"key": "password", "path": "password"}]
    assert vols["auth-user-0"]["secret"]["items"] == [{"key": "pw", "path": "password"}]
    assert vols["auth-user-1"]["secret"]["secretName"] == "ops-pw"
    assert vols["auth-user-1"]["secret"]["items"] == [{"key": "password", "path": "password"}]
    auth = json.loads(objects[("ConfigMap", "etcd-config")]["data"]["auth.json"])
    assert [u["passwordFile"] for u in auth["users"]] == [
        "/etc/etcd/auth/users/app/password",
        "/etc/etcd/auth/users/ops/password",
    ]
    for name in ("prepare", "member-agent"):
        variables = env(container(spec, name))
        assert variables["ETCD_AGENT_AUTH_FILE"] == "/etc/etcd-template/auth.json"
        assert variables["ETCD_AGENT_ROOT_PASSWORD_FILE"] == "/etc/etcd/auth/root/password"
    assert etcd_config(objects)["auth-token"] == "simple"
    job = objects[("Job", "etcd-scale-down")]["spec"]["template"]["spec"]
    assert mounts(job["containers"][0])["auth-root"] == "/etc/etcd/auth/root"
    assert volumes(job)["auth-root"]["secret"]["optional"] is True


def test_jwt_tokens(helm: str) -> None:
    objects = render(helm, "-f", scenario_file("secure"))
    assert etcd_config(objects)["auth-token"] == (
        "jwt,pub-key=/etc/etcd/jwt/jwt.pub,priv-key=/etc/etcd/jwt/jwt.key,sign-method=RS256,ttl=10m"
    )
    spec = pod_spec(objects)
    assert mounts(container(spec, "etcd"))["jwt"] == "/etc/etcd/jwt"
    assert volumes(spec)["jwt"]["secret"] == {
        "secretName": "etcd-jwt",
        "defaultMode": 0o440,
        "items": [{"key": "jwt.key", "path": "jwt.key"}, {"key": "jwt.pub", "path": "jwt.pub"}],
    }


def test_jwt_without_public_key(helm: str) -> None:
    config = etcd_config(
        render(
            helm,
            "--set",
            "auth.token.type=jwt,auth.token.jwt.existingSecret=k,auth.token.jwt.publicKeyKey=",
            "--set",
            "auth.token.jwt.signMethod=ES256,auth.token.jwt.ttl=5m",
        )
    )
    assert config["auth-token"] == "jwt,priv-key=/etc/etcd/jwt/jwt.key,sign-method=ES256,ttl=5m"


def test_no_auth_token_key_by_default(helm: str) -> None:
    assert "auth-token" not in etcd_config(render(helm))


# --- NetworkPolicy ---------------------------------------------------------------------------


def test_network_policy_can_be_turned_off(helm: str) -> None:
    objects = render(helm, "--set", "networkPolicy.enabled=false")
    assert not [key for key in objects if key[0] == "NetworkPolicy"]


def test_network_policy_ingress(helm: str) -> None:
    spec = render(helm, "-f", scenario_file("secure"))[("NetworkPolicy", "etcd")]["spec"]
    assert spec["podSelector"] == {"matchLabels": SELECTOR}
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    peer, client, metrics = spec["ingress"]
    assert peer == {
        "ports": [{"port": 2380, "protocol": "TCP"}],
        "from": [{"podSelector": {"matchLabels": SELECTOR}}],
    }
    assert client == {
        "ports": [{"port": 2379, "protocol": "TCP"}],
        "from": [
            {"podSelector": {"matchLabels": SELECTOR}},
            {"podSelector": {"matchLabels": {"etcd-client": "true"}}},
        ],
    }
    assert metrics == {
        "ports": [{"port": 8080, "protocol": "TCP"}],
        "from": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        ],
    }


def test_network_policy_client_selectors(helm: str) -> None:
    spec = render(
        helm,
        "--set",
        "networkPolicy.enabled=true",
        "--set-json",
        'networkPolicy.client.podSelectors=[{"matchLabels":{"app":"api"}}]',
        "--set-json",
        'networkPolicy.client.namespaceSelectors=[{"matchLabels":{"team":"a"}}]',
        "--set-json",
        'networkPolicy.client.ipBlocks=[{"cidr":"10.1.0.0/16"}]',
    )[("NetworkPolicy", "etcd")]["spec"]
    assert len(spec["ingress"]) == 3  # peer, client, metrics (open: no scraper selector)
    assert spec["ingress"][1]["from"][2:] == [
        {"podSelector": {"matchLabels": {"app": "api"}}},
        {"namespaceSelector": {"matchLabels": {"team": "a"}}},
        {"ipBlock": {"cidr": "10.1.0.0/16"}},
    ]


def test_network_policy_egress(helm: str) -> None:
    spec = render(
        helm,
        "--set",
        "networkPolicy.egress.restrict=true,networkPolicy.egress.kubernetesApi.cidrs={172.20.0.10/32}",
    )[("NetworkPolicy", "etcd")]["spec"]
    members, dns, api = spec["egress"]
    assert members["to"] == [{"podSelector": {"matchLabels": SELECTOR}}]
    assert [p["port"] for p in members["ports"]] == [2380, 2379]
    assert dns["ports"] == [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    assert api == {
        "ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}],
        "to": [{"ipBlock": {"cidr": "172.20.0.10/32"}}],
    }


def test_network_policy_no_api_egress_without_cluster_record(helm: str) -> None:
    spec = render(
        helm,
        "--set",
        "networkPolicy.egress.restrict=true,clusterRecord.enabled=false,initialClusterState=new",
    )[("NetworkPolicy", "etcd")]["spec"]
    assert len(spec["egress"]) == 2


def test_network_policy_for_hook_and_webui(helm: str) -> None:
    objects = render(
        helm, "-f", scenario_file("webui"), "--set", "networkPolicy.egress.restrict=true"
    )
    hook = objects[("NetworkPolicy", "etcd-scale-down")]
    assert hook["metadata"]["annotations"]["helm.sh/hook"] == "pre-upgrade,pre-rollback"
    assert "ingress" not in hook["spec"]
    webui = objects[("NetworkPolicy", "etcd-webui")]["spec"]
    assert webui["egress"][0]["to"] == [{"podSelector": {"matchLabels": SELECTOR}}]


# --- web UI ----------------------------------------------------------------------------------


def test_webui_off_by_default(helm: str) -> None:
    objects = render(helm)
    assert ("Deployment", "etcd-webui") not in objects
    assert ("Service", "etcd-webui") not in objects


ETCDKEEPER = "webui.enabled=true,webui.kind=etcdkeeper,webui.auth.enabled=false"


def test_webui_etcdkeeper(helm: str) -> None:
    objects = render(helm, "--set", ETCDKEEPER)
    deployment = objects[("Deployment", "etcd-webui")]["spec"]["template"]["spec"]
    (item,) = deployment["containers"]
    assert item["image"] == "ghcr.io/evildecay/etcdkeeper:v0.7.8"
    assert item["command"] == ["./etcdkeeper.bin", "-h", "0.0.0.0", "-p", "8080"]
    assert objects[("Service", "etcd-webui")]["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ]
    assert ("ConfigMap", "etcd-webui") not in objects


def test_webui_etcdkeeper_with_tls(helm: str) -> None:
    objects = render(helm, "--set", f"{ETCDKEEPER},tls.enabled=true")
    (item,) = objects[("Deployment", "etcd-webui")]["spec"]["template"]["spec"]["containers"]
    assert item["command"][5:] == [
        "-usetls",
        "-cacert",
        "/etc/etcd/tls/client/ca.crt",
        "-cert",
        "/etc/etcd/tls/client/tls.crt",
        "-key",
        "/etc/etcd/tls/client/tls.key",
    ]


def test_webui_e3w_config_mounted_with_subpath(helm: str) -> None:
    objects = render(helm, "-f", scenario_file("webui"))
    config = objects[("ConfigMap", "etcd-webui")]["data"]["config.ini"]
    assert "addr=etcd.etcd.svc.cluster.local:2379\n" in config
    assert "cert_file=/etc/etcd/tls/client/tls.crt\n" in config
    assert "ca_file=/etc/etcd/tls/client/ca.crt" in config
    pod = objects[("Deployment", "etcd-webui")]["spec"]["template"]["spec"]
    (item,) = pod["containers"]
    assert item["volumeMounts"][0] == {
        "name": "config",
        "mountPath": "/app/conf/config.default.ini",
        "subPath": "config.ini",
        "readOnly": True,
    }
    assert volumes(pod)["tls-client"]["secret"]["secretName"] == "etcd-webui-tls"
    certificate = objects[("Certificate", "etcd-webui")]["spec"]
    assert certificate["commonName"] == "webui"
    assert certificate["secretName"] == "etcd-webui-tls"
    assert certificate["usages"][0] == "client auth"


def test_webui_pods_are_hardened(helm: str) -> None:
    pod = render(helm, "-f", scenario_file("webui"))[("Deployment", "etcd-webui")]["spec"][
        "template"
    ]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
