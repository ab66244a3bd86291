"""`etcd-chart migrate-values BITNAMI_VALUES`: a Bitnami etcd values file turned into ours.

The keys of the Bitnami etcd chart (its documented values of 12.x, and older names where they
differ) that have an equivalent here are carried over; every key that has none is listed on
stderr with the reason, one line each (`FILE: key: not carried over: why`). The result goes to
stdout (or `--output FILE`) only when it passes this chart's schema and cross-field rules, so
nothing half-converted is ever written; the schema stays strict, this command is the way in.
Exit 0 converted, 1 the result is not valid (the problems are listed), 2 the file cannot be read
or is not a mapping.

Names: this chart names objects like Bitnami's (`<release>` when it contains `etcd`, else
`<release>-etcd`), so Secrets the Bitnami release generated are found under `--release`'s names:
the root password in Secret `<fullname>` (key `etcd-root-password`) and the JWT signing key in
`<fullname>-jwt-token` (key `jwt-token.pem`). `helm uninstall` of the Bitnami release deletes
them: README, "Moving from Bitnami", says how to keep them.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etcd_chart import yamlio

MISSING = object()
ETCD_VERSION = re.compile(r"^v?(3\.[0-9]+\.[0-9]+)")
# Keys this chart's configuration file owns: an ETCD_* variable or configuration key for one of
# them is the chart's business, not a value to carry over.
OWNED_CONFIG = {
    "name", "data-dir", "wal-dir", "listen-peer-urls", "listen-client-urls", "listen-metrics-urls",
    "initial-advertise-peer-urls", "advertise-client-urls", "initial-cluster",
    "initial-cluster-state", "initial-cluster-token", "client-transport-security",
    "peer-transport-security", "auth-token", "cert-file", "key-file", "trusted-ca-file",
    "client-cert-auth", "peer-cert-file", "peer-key-file", "peer-trusted-ca-file",
    "peer-client-cert-auth", "auto-tls", "peer-auto-tls",
}  # fmt: skip
# Configuration keys with a value of their own here (config.*).
CONFIG_VALUES = {
    "auto-compaction-mode": "config.autoCompactionMode",
    "auto-compaction-retention": "config.autoCompactionRetention",
    "quota-backend-bytes": "config.quotaBackendBytes",
    "snapshot-count": "config.snapshotCount",
    "heartbeat-interval": "config.heartbeatInterval",
    "election-timeout": "config.electionTimeout",
    "log-level": "config.logLevel",
}
# Bitnami keys carried over as they are (same meaning, same shape), Bitnami key -> ours.
SAME = {
    "nameOverride": "nameOverride",
    "fullnameOverride": "fullnameOverride",
    "commonLabels": "commonLabels",
    "commonAnnotations": "commonAnnotations",
    "clusterDomain": "clusterDomain",
    "extraDeploy": "extraDeploy",
    "global.imageRegistry": "global.imageRegistry",
    "image.pullPolicy": "image.pullPolicy",
    "podLabels": "podLabels",
    "podAnnotations": "podAnnotations",
    "affinity": "affinity",
    "nodeSelector": "nodeSelector",
    "tolerations": "tolerations",
    "topologySpreadConstraints": "topologySpreadConstraints",
    "priorityClassName": "priorityClassName",
    "runtimeClassName": "runtimeClassName",
    "schedulerName": "schedulerName",
    "terminationGracePeriodSeconds": "terminationGracePeriodSeconds",
    "hostAliases": "hostAliases",
    "lifecycleHooks": "lifecycleHooks",
    "extraVolumes": "extraVolumes",
    "extraVolumeMounts": "extraVolumeMounts",
    "initContainers": "initContainers",
    "sidecars": "sidecars",
    "extraEnvVarsCM": "extraEnvVarsCM",
    "extraEnvVarsSecret": "extraEnvVarsSecret",
    "resources": "resources",
    "autoCompactionMode": "config.autoCompactionMode",
    "autoCompactionRetention": "config.autoCompactionRetention",
    "logLevel": "config.logLevel",
    "initialClusterToken": "config.initialClusterToken",
    "containerPorts.client": "ports.client",
    "containerPorts.peer": "ports.peer",
    "service.type": "service.type",
    "service.clusterIP": "service.clusterIP",
    "service.loadBalancerIP": "service.loadBalancerIP",
    "service.loadBalancerClass": "service.loadBalancerClass",
    "service.loadBalancerSourceRanges": "service.loadBalancerSourceRanges",
    "service.externalTrafficPolicy": "service.externalTrafficPolicy",
    "service.annotations": "service.annotations",
    "service.nodePorts.client": "service.nodePorts.client",
    "service.headless.annotations": "headlessService.annotations",
    "persistence.enabled": "persistence.enabled",
    "persistence.storageClass": "persistence.storageClass",
    "persistence.size": "persistence.size",
    "persistence.accessModes": "persistence.accessModes",
    "persistence.annotations": "persistence.annotations",
    "persistence.labels": "persistence.labels",
    "serviceAccount.create": "serviceAccount.create",
    "serviceAccount.name": "serviceAccount.name",
    "serviceAccount.annotations": "serviceAccount.annotations",
    "serviceAccount.labels": "serviceAccount.labels",
    "networkPolicy.enabled": "networkPolicy.enabled",
    "networkPolicy.extraIngress": "networkPolicy.extraIngress",
    "networkPolicy.extraEgress": "networkPolicy.extraEgress",
}
PROBES = {"livenessProbe": "liveness", "readinessProbe": "readiness", "startupProbe": "startup"}
PROBE_FIELDS = (
    "enabled",
    "initialDelaySeconds",
    "periodSeconds",
    "timeoutSeconds",
    "failureThreshold",
)
# Whole Bitnami sections with no equivalent: said once, when the section is turned on.
SECTIONS = {
    "volumePermissions": "no init container changes volume ownership here: the pods set fsGroup, "
    "and new volumes are created for this chart (README, Moving from Bitnami)",
    "metrics": "etcd's metrics are always served on ports.metrics (plain HTTP); monitors and "
    "alerts are not rendered by this chart yet",
    "disasterRecovery": "scheduled snapshots are not rendered by this chart yet; take snapshots "
    "with etcdctl snapshot save (README, Moving from Bitnami)",
    "startFromSnapshot": "a restore from a snapshot is not part of this chart yet; README, Moving "
    "from Bitnami, says how the data moves",
    "defrag": "scheduled defragmentation is not rendered by this chart yet",
    "preUpgradeJob": "this chart's own pre-upgrade hook (scaleDown) removes members above a lower "
    "replica count",
    "diagnosticMode": "no diagnostic mode: the member agent logs each decision",
}
# Single keys with no equivalent, and why. Said only when set to something other than
# Bitnami's default (the second element), so that a full copy of Bitnami's values.yaml is quiet.
DROPPED: dict[str, tuple[str, Any]] = {
    "image.registry": ("this chart runs the upstream image gcr.io/etcd-development/etcd; to "
                       "pull through a mirror, set global.imageRegistry", "docker.io"),
    "image.repository": ("this chart runs the upstream image gcr.io/etcd-development/etcd "
                         "(Bitnami's image runs its own scripts)", "bitnami/etcd"),
    "image.digest": ("a digest of Bitnami's image does not pin the upstream one; set image.digest "
                     "to the upstream image's", ""),
    "image.debug": ("no image debug mode", False),
    "global.security": ("no image verification switch here", MISSING),
    "global.compatibility": ("the pods set fixed non-root ids (65532) that OpenShift's restricted "
                             "SCC accepts with a matching range; no adaptation switch", MISSING),
    "kubeVersion": ("the chart renders the same for every supported Kubernetes", ""),
    "namespaceOverride": ("the release namespace is used (helm -n)", ""),
    "auth.rbac.allowNoneAuthentication": ("without auth.rbac.enabled etcd accepts every client; "
                                          "with it, only authenticated ones", True),
    "auth.client.useAutoTLS": ("no self-signed auto TLS: certificates come from cert-manager or "
                               "your Secrets (tls.source)", False),
    "auth.peer.useAutoTLS": ("no self-signed auto TLS: certificates come from cert-manager or your "
                             "Secrets (tls.source)", False),
    "auth.client.existingSecret": ("this chart wants four Secrets (server, peer, client, agent) "
                                   "with tls.crt, tls.key and ca.crt; `etcd-chart pki` makes "
                                   "them, or use cert-manager (the default here)", ""),
    "auth.peer.existingSecret": ("see auth.client.existingSecret", ""),
    "auth.client.enableAuthentication": ("with TLS on, client certificates are always required "
                                         "here (client-cert-auth)", False),
    "auth.peer.enableAuthentication": ("with TLS on, peer certificates are always verified",
                                       False),
    "auth.client.certFilename": ("Secrets hold tls.crt here", "cert.pem"),
    "auth.client.certKeyFilename": ("Secrets hold tls.key here", "key.pem"),
    "auth.client.caFilename": ("Secrets hold ca.crt here", ""),
    "auth.peer.certFilename": ("Secrets hold tls.crt here", "cert.pem"),
    "auth.peer.certKeyFilename": ("Secrets hold tls.key here", "key.pem"),
    "auth.peer.caFilename": ("Secrets hold ca.crt here", ""),
    "initialClusterState": ("the member agent decides new or existing from the cluster record; "
                            "set initialClusterState here only to override it", ""),
    "removeMemberOnContainerTermination": ("members are never removed when a pod stops (a "
                                           "restart must not shrink the cluster); the "
                                           "scale-down hook removes them on a lower replica "
                                           "count", MISSING),
    "configuration": ("", ""),  # handled: parsed into extraConfig
    "existingConfigmap": ("the chart writes etcd's configuration file itself; put its keys in "
                          "config, extraConfig or extraFlags", ""),
    "command": ("the chart runs etcd with its configuration file", []),
    "args": ("the chart runs etcd with its configuration file", []),
    "containerPorts.metrics": ("set ports.metrics if you need another metrics port", MISSING),
    "service.enabled": ("the client Service is always rendered", True),
    "service.ports.client": ("the client Service listens on ports.client", 2379),
    "service.ports.peer": ("peers talk through the headless Service only", 2380),
    "service.ports.metrics": ("the client Service carries metrics on ports.metrics", MISSING),
    "service.nodePorts.peer": ("peer traffic never leaves the cluster", ""),
    "service.clientPortNameOverride": ("port names are fixed (client, peer, metrics)", ""),
    "service.peerPortNameOverride": ("port names are fixed (client, peer, metrics)", ""),
    "service.externalIPs": ("not supported on the client Service", []),
    "service.extraPorts": ("sidecar ports are not put on the client Service", []),
    "service.sessionAffinity": ("etcd clients balance themselves", "None"),
    "service.sessionAffinityConfig": ("etcd clients balance themselves", {}),
    "persistence.selector": ("claims are provisioned dynamically", {}),
    "podManagementPolicy": ("members start in parallel (Parallel), which bootstrap needs",
                            "Parallel"),
    "updateStrategy.type": ("members roll one at a time (RollingUpdate); updateStrategy.partition "
                            "holds them back", "RollingUpdate"),
    "shareProcessNamespace": ("not supported", False),
    "podAffinityPreset": ("use affinity", ""),
    "nodeAffinityPreset": ("use affinity (nodeAffinity)", MISSING),
    "resourcesPreset": ("no presets: set resources (the defaults here request 250m CPU, 512Mi and "
                        "limit memory to 4Gi)", "none"),
    "customLivenessProbe": ("probes are HTTP on the metrics port; tune probes.liveness", {}),
    "customReadinessProbe": ("probes are HTTP on the metrics port; tune probes.readiness", {}),
    "customStartupProbe": ("probes are HTTP on the metrics port; tune probes.startup", {}),
    "podSecurityContext": ("the pods are hardened by default here (non-root 65532, seccomp); "
                           "podSecurityContext replaces that whole", MISSING),
    "containerSecurityContext": ("the containers are hardened by default here (read-only root, "
                                 "no privilege escalation, all capabilities dropped); "
                                 "containerSecurityContext replaces that whole", MISSING),
    "serviceAccount.automountServiceAccountToken": ("the token is never automounted; the agent "
                                                    "gets a projected one", MISSING),
    "networkPolicy.addExternalClientAccess": ("members, the hook, the web UI and labelled pods are "
                                              "clients here", MISSING),
}  # fmt: skip


@dataclass
class Migration:
    """What one Bitnami file became: our values, and what was left out and why."""

    source: dict[str, Any]
    release: str
    values: dict[str, Any] = field(default_factory=dict)
    notes: list[tuple[str, str]] = field(default_factory=list)
    used: set[str] = field(default_factory=set)

    def get(self, key: str) -> Any:
        node: Any = self.source
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return MISSING
            node = node[part]
        return node

    def take(self, key: str) -> Any:
        """The Bitnami value at `key` (MISSING when absent), marked as dealt with."""
        self.used.add(key)
        return self.get(key)

    def put(self, key: str, value: Any) -> None:
        node = self.values
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value

    def note(self, key: str, why: str) -> None:
        self.used.add(key)
        self.notes.append((key, why))

    def fullname(self) -> str:
        override = self.get("fullnameOverride")
        if isinstance(override, str) and override:
            return override[:63].rstrip("-")
        name = self.get("nameOverride")
        name = name if isinstance(name, str) and name else "etcd"
        full = self.release if name in self.release else f"{self.release}-{name}"
        return full[:63].rstrip("-")


def leaves(node: Any, prefix: str = "") -> Iterator[str]:
    """Dotted keys of every leaf (a map's empty value counts as a leaf)."""
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from leaves(value, f"{prefix}.{key}" if prefix else str(key))
    elif prefix:
        yield prefix


def _is_set(value: Any, default: Any) -> bool:
    """Set to something that matters: not absent, not Bitnami's default, not empty throughout."""
    if value is MISSING or value is None or value == default:
        return False
    if isinstance(value, dict):
        return any(_is_set(part, MISSING) for part in value.values())
    return value not in ("", [], False) or default is not MISSING


def _env_to_flag(name: str) -> str:
    return "--" + name.removeprefix("ETCD_").lower().replace("_", "-")


def migrate(source: dict[str, Any], release: str = "etcd") -> Migration:
    m = Migration(source, release)
    for step in STEPS:
        step(m)
    for key, target in SAME.items():
        value = m.take(key)
        if value is not MISSING and value is not None and value != "":
            m.put(target, value)
    for key, (why, default) in DROPPED.items():
        value = m.take(key)
        if why and _is_set(value, default):
            m.note(key, why)
    for section, why in SECTIONS.items():
        node = m.take(section)
        m.used.update(k for k in leaves(node, section))
        if isinstance(node, dict) and _section_on(node):
            m.note(section, why)
    unknown = [
        key
        for key in leaves(source)
        if not any(key == used or key.startswith(used + ".") for used in m.used)
    ]
    for key in unknown:
        m.notes.append((key, "not a value of the Bitnami etcd chart that this command knows"))
    return m


def _section_on(node: dict[str, Any]) -> bool:
    """A Bitnami section is in use when it or one of its parts is enabled."""
    if node.get("enabled") is True:
        return True
    return any(isinstance(v, dict) and v.get("enabled") is True for v in node.values())


def _replicas(m: Migration) -> None:
    count = m.take("replicaCount")
    if count is MISSING:
        count = m.take("statefulset.replicaCount")  # before chart 6
    if count is MISSING:
        m.put("replicas", 1)
        m.note("replicaCount", "unset: Bitnami's default is 1 member, kept as replicas: 1")
        return
    m.put("replicas", count)
    if isinstance(count, int) and count % 2 == 0:
        m.put("allowEvenReplicas", True)
        m.note(
            "replicaCount",
            f"{count} is even: carried with allowEvenReplicas (an odd count "
            "tolerates as many failures with fewer members)",
        )


def _image(m: Migration) -> None:
    tag = m.take("image.tag")
    if tag is MISSING:
        m.note("image.tag", "unset: this chart's default etcd release is used")
        return
    match = ETCD_VERSION.match(str(tag))
    if match is None:
        m.note("image.tag", f"{tag!r} names no etcd release (3.x.y): this chart's default is used")
        return
    m.put("image.tag", f"v{match.group(1)}")


def _pull_secrets(m: Migration) -> None:
    names: list[str] = []
    for key in ("global.imagePullSecrets", "image.pullSecrets"):
        for entry in m.take(key) if isinstance(m.get(key), list) else []:
            name = entry.get("name") if isinstance(entry, dict) else entry
            if isinstance(name, str) and name and name not in names:
                names.append(name)
    if names:
        m.put("imagePullSecrets", [{"name": name} for name in names])


def _storage_class(m: Migration) -> None:
    own = m.get("persistence.storageClass") not in (MISSING, None, "")
    for key in ("global.defaultStorageClass", "global.storageClass"):
        value = m.take(key)
        if not isinstance(value, str) or not value:
            continue
        if own:
            m.note(key, "persistence.storageClass is set and wins")
        else:
            m.put("persistence.storageClass", value)
            own = True


def _retention(m: Migration) -> None:
    policy = m.get("persistentVolumeClaimRetentionPolicy")
    if isinstance(policy, dict) and policy.get("enabled") is True:
        m.take("persistentVolumeClaimRetentionPolicy")
        m.used.update(leaves(policy, "persistentVolumeClaimRetentionPolicy"))
        kept = {k: policy[k] for k in ("whenScaled", "whenDeleted") if k in policy}
        m.put("persistence.retentionPolicy", kept)


def _probes(m: Migration) -> None:
    for bitnami, ours in PROBES.items():
        for name in PROBE_FIELDS:
            value = m.take(f"{bitnami}.{name}")
            if value is not MISSING:
                m.put(f"probes.{ours}.{name}", value)
        success = m.take(f"{bitnami}.successThreshold")
        if ours == "readiness" and success is not MISSING:
            m.put("probes.readiness.successThreshold", success)


def _anti_affinity(m: Migration) -> None:
    preset = m.take("podAntiAffinityPreset")
    if preset in ("soft", "hard"):
        m.put("podAntiAffinity.preset", preset)
    elif preset == "":
        m.put("podAntiAffinity.preset", "none")


def _environment(m: Migration) -> None:
    """extraEnvVars as they are, but ETCD_* ones (which etcd ignores when it reads a
    configuration file) as configuration values or extraFlags; maxProcs as GOMAXPROCS."""
    variables = m.take("extraEnvVars")
    kept, flags = [], []
    for index, variable in enumerate(variables if isinstance(variables, list) else []):
        name = variable.get("name") if isinstance(variable, dict) else None
        key = f"extraEnvVars[{index}]"
        flag = _env_to_flag(name)[2:] if isinstance(name, str) else ""
        if not isinstance(name, str) or not name.startswith("ETCD_"):
            kept.append(variable)
        elif "value" not in variable:
            m.note(
                key,
                f"{name} takes its value from elsewhere; etcd ignores ETCD_* variables "
                "here: set the option in extraConfig",
            )
        elif flag in OWNED_CONFIG:
            m.note(key, f"{name}: the chart sets --{flag} itself")
        elif flag in CONFIG_VALUES:
            m.put(CONFIG_VALUES[flag], _typed(str(variable["value"])))
        else:
            flags.append(f"--{flag}={variable['value']}")
    processes = m.take("maxProcs")
    if processes not in (MISSING, None, ""):
        if any(isinstance(v, dict) and v.get("name") == "GOMAXPROCS" for v in kept):
            m.note("maxProcs", "extraEnvVars sets GOMAXPROCS already, and wins")
        else:
            kept.append({"name": "GOMAXPROCS", "value": str(processes)})
    if kept:
        m.put("extraEnvVars", kept)
    if flags:
        m.put("extraFlags", flags)


def _typed(text: str) -> int | str:
    """An environment variable's value as the configuration value it stands for."""
    return int(text) if text.isdigit() else text


def _configuration(m: Migration) -> None:
    text = m.take("configuration")
    if not isinstance(text, str) or not text.strip():
        return
    try:
        config = yamlio.load(text)
    except yamlio.YamlError as err:
        m.note("configuration", f"not YAML ({str(err).splitlines()[0]}): carry its keys by hand")
        return
    if not isinstance(config, dict):
        m.note("configuration", "not a mapping of etcd configuration keys: left out")
        return
    extra = {}
    for key, value in config.items():
        if key in OWNED_CONFIG:
            m.note(f"configuration.{key}", "the chart sets this etcd key itself")
        elif key in CONFIG_VALUES:
            m.put(CONFIG_VALUES[key], value)
        elif str(key).startswith("experimental-") or key == "enable-v2":
            m.note(
                f"configuration.{key}",
                "not valid in etcd 3.7 (experimental keys and v2 were removed)",
            )
        else:
            extra[key] = value
    if extra:
        m.put("extraConfig", extra)


def _auth(m: Migration) -> None:
    full = m.fullname()
    create = m.take("auth.rbac.create")
    if create is MISSING:
        create = m.take("auth.rbac.enabled")  # before chart 6
    if create is not True:
        m.take("auth.rbac.rootPassword")
        m.take("auth.rbac.existingSecret")
        m.take("auth.rbac.existingSecretPasswordKey")
        _token(m, full, rbac=False)
        return
    m.put("auth.rbac.enabled", True)
    secret = m.take("auth.rbac.existingSecret")
    password = m.take("auth.rbac.rootPassword")
    key = m.take("auth.rbac.existingSecretPasswordKey")
    if isinstance(secret, str) and secret:
        name, key = secret, key if isinstance(key, str) and key else "etcd-root-password"
    else:
        name, key = full, "etcd-root-password"
        how = (
            "the password you gave in auth.rbac.rootPassword is in it"
            if isinstance(password, str) and password
            else "Bitnami generated the password"
        )
        m.note(
            "auth.rbac.rootPassword",
            f"passwords never go into values here: using the Secret "
            f"{name} (key {key}) that the Bitnami release created ({how}); `helm uninstall` "
            "of that release deletes it, so keep a copy (README, Moving from Bitnami)",
        )
    m.put("auth.rbac.rootPassword", {"existingSecret": name, "key": key})
    _token(m, full, rbac=True)


def _token(m: Migration, full: str, rbac: bool) -> None:
    enabled = m.take("auth.token.enabled")
    kind = m.take("auth.token.type")
    secret = m.take("auth.token.privateKey.existingSecret")
    filename = m.take("auth.token.privateKey.filename")
    method = m.take("auth.token.signMethod")
    ttl = m.take("auth.token.ttl")
    if not rbac:
        return
    if enabled is False or kind == "simple":
        m.put("auth.token.type", "simple")
        return
    name = secret if isinstance(secret, str) and secret else f"{full}-jwt-token"
    key = filename if isinstance(filename, str) and filename else "jwt-token.pem"
    jwt: dict[str, Any] = {"existingSecret": name, "privateKeyKey": key, "publicKeyKey": ""}
    if method is not MISSING:
        jwt["signMethod"] = method
    if ttl is not MISSING:
        jwt["ttl"] = ttl
    m.put("auth.token", {"type": "jwt", "jwt": jwt})
    if not (isinstance(secret, str) and secret):
        m.note(
            "auth.token.privateKey.existingSecret",
            f"unset: using the Secret {name} (key "
            f"{key}) that the Bitnami release generated; `helm uninstall` of that release "
            "deletes it, so keep a copy (README, Moving from Bitnami)",
        )


def _tls(m: Migration) -> None:
    client = m.take("auth.client.secureTransport")
    peer = m.take("auth.peer.secureTransport")
    if client is True or peer is True:
        m.put("tls.enabled", True)
        if client is not peer:
            side = "auth.peer.secureTransport" if client is True else "auth.client.secureTransport"
            m.note(side, "TLS is on for clients and peers together here (tls.enabled)")


def _network_policy(m: Migration) -> None:
    external = m.take("networkPolicy.allowExternal")
    if external is False:
        m.put("networkPolicy.client.restrict", True)
    egress = m.take("networkPolicy.allowExternalEgress")
    if egress is False:
        m.put("networkPolicy.egress.restrict", True)
    namespaces = m.take("networkPolicy.ingressNSMatchLabels")
    pods = m.take("networkPolicy.ingressNSPodMatchLabels")
    if isinstance(namespaces, dict) and namespaces:
        m.put("networkPolicy.client.namespaceSelectors", [{"matchLabels": namespaces}])
    if isinstance(pods, dict) and pods:
        m.put("networkPolicy.client.podSelectors", [{"matchLabels": pods}])


def _pdb(m: Migration) -> None:
    create = m.take("pdb.create")
    if create is MISSING:
        create = m.take("pdb.enabled")
    minimum, maximum = m.take("pdb.minAvailable"), m.take("pdb.maxUnavailable")
    if create is False:
        m.put("pdb.enabled", False)
        return
    replicas = m.values.get("replicas", 1)
    replicas = replicas if isinstance(replicas, int) else 1
    quorum = replicas // 2 + 1
    if maximum not in (MISSING, None, ""):
        count = _count(maximum, replicas, math.floor)
        if count is None:
            m.note("pdb.maxUnavailable", f"{maximum!r} is not a count or a percentage")
        elif count != 1:
            m.put("pdb.maxUnavailable", count)
        return
    if minimum in (MISSING, None, ""):
        return
    count = _count(minimum, replicas, math.ceil)
    if count is None:
        m.note("pdb.minAvailable", f"{minimum!r} is not a count or a percentage")
    elif count < quorum:
        m.note(
            "pdb.minAvailable",
            f"{minimum!r} of {replicas} members is below a quorum "
            f"({quorum}): this chart's default budget (maxUnavailable 1) keeps one",
        )
    elif replicas >= 3:
        m.put("pdb.maxUnavailable", None)
        m.put("pdb.minAvailable", count)


def _count(value: Any, replicas: int, rounding: Callable[[float], int]) -> int | None:
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.endswith("%") and text[:-1].isdigit():
        return int(rounding(replicas * int(text[:-1]) / 100))
    return int(text) if text.isdigit() else None


STEPS: list[Callable[[Migration], None]] = [
    _replicas, _image, _pull_secrets, _storage_class, _retention, _probes, _anti_affinity,
    _environment, _configuration, _auth, _tls, _network_policy, _pdb,
]  # fmt: skip


# --------------------------------------------------------------------------------------------
# command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "bitnami_values", metavar="BITNAMI_VALUES", help="a Bitnami etcd values file"
    )
    parser.add_argument(
        "--release",
        default="etcd",
        help="the Bitnami release's name, which names the Secrets it generated (default etcd)",
    )
    parser.add_argument("-o", "--output", help="write the values here instead of stdout")
    parser.add_argument(
        "--schema-only",
        action="store_true",
        help="check the result against the schema alone, without the chart's rules (needs no helm)",
    )


def run(args: argparse.Namespace) -> int:
    from etcd_chart import values_check

    source_path = Path(args.bitnami_values)
    try:
        source = values_check.load_values(source_path)
    except values_check.CannotRun as err:
        print(f"etcd-chart migrate-values: {err}", file=sys.stderr)
        return 2
    except ValueError as err:
        print(f"etcd-chart migrate-values: {source_path}: not valid YAML: {err}", file=sys.stderr)
        return 2
    if not isinstance(source, dict):
        kind = "empty" if source is None else f"a {type(source).__name__}"
        print(
            f"etcd-chart migrate-values: {source_path}: a values file is a mapping, this one is "
            f"{kind}",
            file=sys.stderr,
        )
        return 2
    migration = migrate(source, args.release)
    for key, why in migration.notes:
        print(f"{source_path}: {key}: not carried over: {why}", file=sys.stderr)
    text = header(source_path) + yamlio.dump(migration.values)
    problems = _check(text, args.schema_only)
    if isinstance(problems, str):
        print(f"etcd-chart migrate-values: {problems}", file=sys.stderr)
        return 2
    if problems:
        for problem in problems:
            print(f"converted values: {problem}", file=sys.stderr)
        print(
            "etcd-chart migrate-values: the converted values are not valid for this chart (above);"
            " nothing written. Fix them in the Bitnami file, or convert and edit by hand.",
            file=sys.stderr,
        )
        return 1
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    print(
        f"etcd-chart migrate-values: {len(list(leaves(migration.values)))} values written, "
        f"{len(migration.notes)} not carried over (listed above)",
        file=sys.stderr,
    )
    return 0


def header(source: Path) -> str:
    lines = [
        f"# Converted from the Bitnami etcd values {source.name} by `etcd-chart migrate-values`.",
        "# What had no equivalent was listed when it ran. Before installing, read README,",
        '# "Moving from Bitnami": the data moves separately, and the Secrets named below must',
        "# exist in the release namespace.",
    ]
    return "\n".join(lines) + "\n"


def _check(text: str, schema_only: bool) -> list[str] | str:
    """Problems of the converted values (schema, then the chart's rules); a string when the
    check cannot run."""
    from etcd_chart import values_check

    with tempfile.TemporaryDirectory(prefix="etcd-chart-migrate-") as work:
        path = Path(work) / "values.yaml"
        path.write_text(text)
        try:
            schema = values_check.find_schema(None)
            rules = None if schema_only else values_check.find_rules(None, "etcd")
            found = values_check.validate_files([str(path)], schema, None, rules)
        except values_check.CannotRun as err:
            return str(err)
        return [str(problem).replace(f"{path}: ", "", 1) for problem in found]
