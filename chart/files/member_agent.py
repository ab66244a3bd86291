#!/usr/bin/env python3
"""The etcd member agent: how a member starts, learner promotion, scale-down.

Commands (docs/architecture.md, "The member pod" and "Scale-down hook"):

  prepare                   init container: decide how this member starts (DESIGN.md part 3,
                            cases 1-4) and write the etcd configuration file
  watch [--once]            sidecar: promote this member while it is a learner, write the cluster
                            record once the cluster has formed (again whenever it is deleted),
                            apply auth.json, then check the record every --interval; with
                            --rejoin-after, delete this pod when its member was removed while the
                            StatefulSet still wants it (prepare then joins again)
  scale-down --replicas N   pre-upgrade/pre-rollback hook: remove the members whose ordinal is
                            >= N, highest first, one at a time, only while the cluster is healthy;
                            with no member answering, refuse only a real scale-down (the live
                            StatefulSet above N)

Python standard library only (it runs in a stock Python image): urllib and ssl to etcd's JSON
gateway and to the Kubernetes API (one ConfigMap, the cluster record). Every decision is one line
on stderr saying what the agent saw and what it did; passwords are never logged.
Exit codes: 0 done; 1 invalid input, or scale-down refused or gave up; 2 prepare or
watch --once gave up at --timeout; SIGTERM ends watch with 0, the others with 143.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import dataclasses
import datetime
import hashlib
import http.client
import ipaddress
import json
import os
import random
import re
import signal
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

DEFAULT_TEMPLATE = "/etc/etcd-template/etcd.conf.json"
DEFAULT_OUTPUT = "/var/run/etcd/etcd.conf.json"
DEFAULT_AUTH_FILE = "/etc/etcd-template/auth.json"
DEFAULT_ROOT_PASSWORD_FILE = "/etc/etcd/auth/root/password"
DEFAULT_SERVICEACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
EXTRA_FLAGS_KEY = "x-extra-flags"
HTTP_TIMEOUT = 2.0
# Scale-down asks pods 0..N-1 first; these higher ordinals only when none of those answers.
FALLBACK_ORDINALS = 8
# prepare gives up (the init container restarts and asks again) when one learner has blocked
# its join this long: long enough for a learner to catch up on a large snapshot.
DEFAULT_LEARNER_WAIT = 300.0

START, JOIN, BOOTSTRAP, WAIT = "start", "join", "bootstrap", "wait"
DATA_PRESENT, DATA_ABSENT, DATA_DAMAGED = "present", "absent", "damaged"
RECORD_PRESENT, RECORD_ABSENT = "present", "absent"
RECORD_UNKNOWN, RECORD_DISABLED, RECORD_UNCHECKED = "unknown", "disabled", "unchecked"


class AgentError(Exception):
    """Input the agent cannot work with (template, auth.json, environment): exit 1."""


class Retry(Exception):
    """A condition that may clear by itself: wait and try again."""


class Terminated(BaseException):
    """SIGTERM arrived (a BaseException so that no retry loop swallows it)."""


# --------------------------------------------------------------------------------------------
# Pure helpers: placeholders, flags, URLs, peer lists


_PLACEHOLDER = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def url_host(ip: str) -> str:
    """The pod IP as a URL host: IPv6 in brackets, anything else unchanged."""
    bare = ip.strip().strip("[]")
    try:
        version = ipaddress.ip_address(bare).version
    except ValueError:
        return ip.strip()
    return f"[{bare}]" if version == 6 else bare


def expand(text: str, env: Mapping[str, str], missing: list[str] | None = None) -> str:
    """Kubernetes-style `$(VAR)`: unknown variables stay as written (and are noted), `$$` is `$`."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "$"
        if name in env:
            return env[name]
        if missing is not None:
            missing.append(name)
        return match.group(0)

    return _PLACEHOLDER.sub(replace, text)


def expand_tree(value: Any, env: Mapping[str, str], missing: list[str], path: str = "") -> Any:
    """`expand` on every string inside dicts and lists; `missing` gets `path: VAR` entries."""
    if isinstance(value, dict):
        return {
            k: expand_tree(v, env, missing, f"{path}.{k}" if path else k) for k, v in value.items()
        }
    if isinstance(value, list):
        return [expand_tree(v, env, missing, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str):
        names: list[str] = []
        result = expand(value, env, names)
        missing.extend(f"{path}: $({name})" for name in names)
        return result
    return value


def typed_value(text: str) -> bool | int | str:
    """A flag value as etcd's config file wants it: true/false a bool, an integer an int."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if re.fullmatch(r"[+-]?[0-9]+", text):
        return int(text)
    return text


def apply_extra_flags(config: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Turn `"x-extra-flags": ["--key=value", ...]` into typed config keys and drop the x- key."""
    result = {key: value for key, value in config.items() if key != EXTRA_FLAGS_KEY}
    flags = config.get(EXTRA_FLAGS_KEY)
    if flags is None:
        return result
    if not isinstance(flags, list):
        raise AgentError(f'{source}: {EXTRA_FLAGS_KEY}: must be a list of "--key=value" strings')
    problems = []
    for index, flag in enumerate(flags):
        key, sep, value = flag[2:].partition("=") if isinstance(flag, str) else ("", "", "")
        if not isinstance(flag, str) or not flag.startswith("--") or not key.strip("-"):
            problems.append(
                f"{source}: {EXTRA_FLAGS_KEY}[{index}]: {flag!r} is not of the form --key=value"
            )
            continue
        result[key] = typed_value(value) if sep else True
    if problems:
        raise AgentError("; ".join(problems))
    return result


def split_urls(text: str) -> list[str]:
    return [part.strip() for part in str(text).split(",") if part.strip()]


def parse_initial_cluster(text: str) -> list[tuple[str, str]]:
    """`a=http://x:2380,b=...` as (name, peer URL) pairs; ValueError names a bad entry."""
    pairs = []
    for item in split_urls(text):
        name, sep, url = item.partition("=")
        if not sep or not name.strip() or not url.strip():
            raise ValueError(f"entry {item!r} is not name=peerURL")
        pairs.append((name.strip(), url.strip()))
    return pairs


def format_initial_cluster(pairs: Sequence[tuple[str, str]]) -> str:
    return ",".join(f"{name}={url}" for name, url in pairs)


def normalize_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url.strip())
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/')}"


def url_hostname(url: str) -> str:
    return urllib.parse.urlsplit(url.strip()).hostname or ""


def pod_name_of(url: str) -> str:
    """The pod a member URL points at: the first DNS label of its host (an IP stays whole)."""
    host = url_hostname(url)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host.split(".")[0]
    return host


def client_url_of(peer_url: str, scheme: str, port: int | str) -> str:
    """The client URL on the same host as a peer URL."""
    return f"{scheme}://{url_host(url_hostname(peer_url))}:{port}"


def ordinal_of(name: str, statefulset: str) -> int | None:
    """3 for `<statefulset>-3`, None for any other name."""
    match = re.fullmatch(re.escape(statefulset) + r"-([0-9]+)", name)
    return int(match.group(1)) if match else None


def hex_id(member_id: str) -> str:
    """etcd IDs travel as decimal strings in JSON; etcdctl and etcd's logs show them in hex."""
    try:
        return format(int(member_id), "x")
    except ValueError:
        return member_id


def prefix_range_end(key: bytes) -> bytes:
    """The end of the range holding every key that starts with `key` (etcd's prefix rule)."""
    end = bytearray(key)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\x00"


def utc_stamp(now: datetime.datetime | None = None) -> str:
    return (now or datetime.datetime.now(datetime.UTC)).strftime("%Y%m%dT%H%M%SZ")


# --------------------------------------------------------------------------------------------
# The member list and the join decision


@dataclasses.dataclass(frozen=True)
class Member:
    id: str
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Member:
        return cls(
            id=str(data.get("ID", "")),
            name=str(data.get("name", "")),
            peer_urls=tuple(str(url) for url in data.get("peerURLs") or ()),
            client_urls=tuple(str(url) for url in data.get("clientURLs") or ()),
            is_learner=bool(data.get("isLearner", False)),
        )

    @property
    def started(self) -> bool:
        # A member publishes its client URLs when it first starts. Bootstrap members carry
        # their name from initial-cluster before that, so the name alone proves nothing.
        return bool(self.client_urls)

    @property
    def label(self) -> str:
        """Its name, or for a member that never started the pod its peer URL points at."""
        if self.name:
            return self.name
        return pod_name_of(self.peer_urls[0]) if self.peer_urls else hex_id(self.id)

    def has_peer_url(self, urls: Sequence[str]) -> bool:
        wanted = {normalize_url(url) for url in urls}
        return any(normalize_url(url) in wanted for url in self.peer_urls)


@dataclasses.dataclass(frozen=True)
class ClusterView:
    """A member list answered by a member that has quorum (a linearizable request)."""

    members: tuple[Member, ...]
    leader: str = ""
    cluster_id: str = ""
    endpoint: str = ""

    def describe(self) -> str:
        leader = f"leader {hex_id(self.leader)}" if self.leader else "leader unknown"
        return f"reachable({len(self.members)} members, {leader})"

    def find(self, peer_urls: Sequence[str], name: str = "") -> Member | None:
        for member in self.members:
            if member.has_peer_url(peer_urls):
                return member
        if name:
            for member in self.members:
                if member.name == name:
                    return member
        return None


@dataclasses.dataclass(frozen=True)
class StartFacts:
    """Everything the join decision looks at."""

    name: str
    peer_urls: tuple[str, ...]
    has_data: bool
    cluster: ClusterView | None
    bootstrap_names: tuple[str, ...]
    template_state: str
    record: str = RECORD_UNCHECKED
    record_name: str = ""
    # A snapshot or db without a WAL (member_data_state): never started on, never counted as data.
    damaged_data: bool = False
    # The cluster ID (hex) the cluster record names, when it was read and names one.
    record_cluster_id: str = ""


@dataclasses.dataclass(frozen=True)
class Decision:
    action: str
    seen: str
    why: str = ""
    move_data_aside: bool = False
    remove_id: str = ""
    add_learner: bool = False
    reuse_id: str = ""


def in_flight(cluster: ClusterView, own: Member | None) -> list[Member]:
    """Member changes not finished yet: unstarted members and learners other than this one."""
    return [
        member
        for member in cluster.members
        if (own is None or member.id != own.id) and (member.is_learner or not member.started)
    ]


def decide_start(facts: StartFacts) -> Decision:
    """DESIGN.md part 3: how this member starts. Pure; the caller carries the decision out."""
    data = DATA_DAMAGED if facts.damaged_data else DATA_PRESENT if facts.has_data else DATA_ABSENT
    cluster = facts.cluster
    if cluster is None:
        seen = f"data={data} cluster=unreachable"
        if facts.has_data:
            return Decision(START, seen)
        if facts.damaged_data:
            return Decision(
                WAIT,
                seen,
                "the data directory holds a snapshot or db but no WAL (*.wal), so etcd would"
                " start a fresh raft log on it and forget what this member acknowledged; waiting"
                " for the cluster to answer, then the data is moved aside and this member"
                " removed and added again",
            )
        seen += f" record={facts.record}"
        if facts.name not in facts.bootstrap_names:
            return Decision(
                WAIT,
                seen,
                f"{facts.name} is not a bootstrap member (not in the template's initial-cluster);"
                " it can only join a running cluster",
            )
        if facts.template_state == "existing":
            return Decision(
                WAIT,
                seen,
                "the template's initial-cluster-state is existing: this cluster was created"
                " before, so no new one is bootstrapped; waiting for its members",
            )
        if facts.record == RECORD_PRESENT:
            return Decision(
                WAIT,
                seen,
                f"the cluster record {facts.record_name} exists: this cluster was created before"
                " and a second, empty one is never bootstrapped under its name; waiting for its"
                f" members (delete ConfigMap {facts.record_name} only to start over on purpose)",
            )
        if facts.record not in (RECORD_ABSENT, RECORD_DISABLED):
            return Decision(
                WAIT,
                seen,
                f"cannot tell whether the cluster was created (cluster record {facts.record_name}"
                " unreadable); not bootstrapping",
            )
        return Decision(BOOTSTRAP, seen)

    own = cluster.find(facts.peer_urls)
    seen = f"data={data} cluster={cluster.describe()} listed={'yes' if own else 'no'}"
    live_id = hex_id(cluster.cluster_id)
    if facts.record_cluster_id and cluster.cluster_id and live_id != facts.record_cluster_id:
        return Decision(
            WAIT,
            seen,
            f"the reachable cluster {live_id} is not cluster {facts.record_cluster_id} of the"
            f" cluster record {facts.record_name}: two clusters under one name; not starting."
            " Find out which cluster holds the data; if the cluster was restored from a snapshot"
            f" on purpose, delete ConfigMap {facts.record_name} and the agents record the new one",
        )
    if facts.has_data and own is not None:
        return Decision(START, seen)
    if own is not None and not own.started:
        return Decision(JOIN, seen, move_data_aside=facts.damaged_data, reuse_id=own.id)
    busy = in_flight(cluster, own)
    if busy:
        names = ", ".join(
            f"{member.label} ({'learner' if member.is_learner else 'not started'})"
            for member in busy
        )
        return Decision(WAIT, seen, f"another member change is in flight: {names}")
    return Decision(
        JOIN,
        seen,
        move_data_aside=facts.has_data or facts.damaged_data,
        remove_id=own.id if own is not None else "",
        add_learner=True,
    )


def join_initial_cluster(members: Sequence[Member], name: str, peer_urls: Sequence[str]) -> str:
    """initial-cluster for joining: every other member (by pod name when unstarted) + this one."""
    pairs: list[tuple[str, str]] = []
    for member in members:
        if member.has_peer_url(peer_urls):
            continue
        pairs.extend((member.label, url) for url in member.peer_urls)
    pairs.extend((name, url) for url in peer_urls)
    return format_initial_cluster(pairs)


def scale_down_targets(
    members: Sequence[Member], statefulset: str, replicas: int
) -> list[tuple[int, Member]]:
    """Members whose pod ordinal is >= replicas, highest ordinal first."""
    targets = []
    for member in members:
        ordinal = ordinal_of(member.label, statefulset)
        if ordinal is not None and ordinal >= replicas:
            targets.append((ordinal, member))
    return sorted(targets, key=lambda item: -item[0])


def remaining_voters(
    members: Sequence[Member], statefulset: str, replicas: int, target: Member
) -> list[Member]:
    """The voters that stay: every voter but `target` whose ordinal is below `replicas`."""
    keep = []
    for member in members:
        ordinal = ordinal_of(member.label, statefulset)
        if member.id == target.id or member.is_learner:
            continue
        if ordinal is None or ordinal < replicas:
            keep.append(member)
    return keep


# --------------------------------------------------------------------------------------------
# Data directory


def _holds_files(path: str) -> bool:
    return any(files for _, _, files in os.walk(path))


def member_data_state(data_dir: str, wal_dir: str = "") -> str:
    """present: a WAL (`*.wal` in the WAL directory, etcd's own test) beside its db.
    damaged: files without that pair. A snapshot or db without a WAL is what a lost WAL claim or a
    first start that failed early leaves; etcd would start a fresh raft log on it under the old
    member ID, and a WAL without the db (a lost data claim) has nothing to replay onto.
    absent: no file at all (empty directories and lost+found do not count)."""
    member = os.path.join(data_dir, "member")
    wal = wal_dir or os.path.join(member, "wal")
    try:
        has_wal = any(name.endswith(".wal") for name in os.listdir(wal))
    except OSError:
        has_wal = False
    if has_wal and os.path.isfile(os.path.join(member, "snap", "db")):
        return DATA_PRESENT
    if has_wal or _holds_files(member) or (wal_dir and _holds_files(wal_dir)):
        return DATA_DAMAGED
    return DATA_ABSENT


def _aside_name(path: str, stamp: str) -> str:
    target = f"{path.rstrip('/')}.removed-{stamp}"
    candidate, n = target, 1
    while os.path.exists(candidate):
        candidate, n = f"{target}-{n}", n + 1
    return candidate


def move_data_aside(data_dir: str, wal_dir: str, stamp: str) -> list[str]:
    """Rename the data (and a separate WAL) directory beside itself; never deletes anything."""
    moved = []
    for path in (data_dir, wal_dir):
        if not path or not os.path.exists(path):
            continue
        target = _aside_name(path, stamp)
        try:
            os.rename(path, target)
        except OSError as err:
            raise AgentError(f"cannot move {path} aside to {target}: {err.strerror}") from err
        moved.append(target)
    return moved


# --------------------------------------------------------------------------------------------
# Template and settings


def load_template(path: str, env: Mapping[str, str]) -> dict[str, Any]:
    """The etcd config template with `$(VAR)` expanded and x-extra-flags turned into keys."""
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except OSError as err:
        raise AgentError(f"{path}: cannot read the etcd config template: {err.strerror}") from err
    except ValueError as err:
        raise AgentError(f"{path}: not valid JSON: {err}") from err
    if not isinstance(raw, dict):
        raise AgentError(f"{path}: must be a JSON object of etcd configuration keys")
    variables = dict(env)
    if env.get("POD_IP"):
        variables["POD_IP_URL_HOST"] = url_host(env["POD_IP"])
    missing: list[str] = []
    config = expand_tree(raw, variables, missing)
    if missing:
        raise AgentError(
            "; ".join(f"{path}: {item} is not set in the environment" for item in missing)
        )
    config = apply_extra_flags(config, path)
    for key in ("name", "data-dir", "initial-advertise-peer-urls"):
        if not isinstance(config.get(key), str) or not config[key]:
            raise AgentError(f"{path}: {key}: required, a non-empty string")
    try:
        parse_initial_cluster(str(config.get("initial-cluster", "")))
    except ValueError as err:
        raise AgentError(f"{path}: initial-cluster: {err}") from None
    return config


@dataclasses.dataclass(frozen=True)
class Settings:
    pod_name: str
    namespace: str
    template: str
    output: str
    record: str
    client_port: str
    client_scheme: str
    headless_service: str
    cluster_domain: str
    statefulset: str
    auth_file: str
    root_password_file: str
    cacert: str
    cert: str
    key: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        return cls(
            pod_name=env.get("POD_NAME", ""),
            namespace=env.get("POD_NAMESPACE", ""),
            template=env.get("ETCD_AGENT_TEMPLATE") or DEFAULT_TEMPLATE,
            output=env.get("ETCD_AGENT_OUTPUT") or DEFAULT_OUTPUT,
            record=env.get("ETCD_AGENT_RECORD", ""),
            client_port=env.get("ETCD_AGENT_CLIENT_PORT") or "2379",
            client_scheme=env.get("ETCD_AGENT_CLIENT_SCHEME") or "http",
            headless_service=env.get("ETCD_AGENT_HEADLESS_SERVICE", ""),
            cluster_domain=env.get("ETCD_AGENT_CLUSTER_DOMAIN") or "cluster.local",
            statefulset=env.get("ETCD_AGENT_STATEFULSET", ""),
            auth_file=env.get("ETCD_AGENT_AUTH_FILE") or DEFAULT_AUTH_FILE,
            root_password_file=(
                env.get("ETCD_AGENT_ROOT_PASSWORD_FILE") or DEFAULT_ROOT_PASSWORD_FILE
            ),
            cacert=env.get("ETCD_AGENT_CACERT", ""),
            cert=env.get("ETCD_AGENT_CERT", ""),
            key=env.get("ETCD_AGENT_KEY", ""),
        )

    def require(self, *names: str) -> None:
        env_names = {
            "pod_name": "POD_NAME",
            "namespace": "POD_NAMESPACE",
            "headless_service": "ETCD_AGENT_HEADLESS_SERVICE",
            "statefulset": "ETCD_AGENT_STATEFULSET",
        }
        unset = [env_names[name] for name in names if not getattr(self, name)]
        if unset:
            raise AgentError(f"environment variable {', '.join(unset)} not set")
        if not self.client_port.isdigit():
            raise AgentError(f"ETCD_AGENT_CLIENT_PORT: {self.client_port!r} is not a port number")
        if self.client_scheme not in ("http", "https"):
            raise AgentError(f"ETCD_AGENT_CLIENT_SCHEME: {self.client_scheme!r} is not http/https")

    def pod_client_url(self, pod: str) -> str:
        host = f"{pod}.{self.headless_service}.{self.namespace}.svc.{self.cluster_domain}"
        return f"{self.client_scheme}://{host}:{self.client_port}"

    def client_url(self, peer_url: str) -> str:
        return client_url_of(peer_url, self.client_scheme, self.client_port)


def verifying_context(cafile: str | None) -> ssl.SSLContext:
    """Chain and host name checked; OpenSSL's extra X509_STRICT checks (on by default since
    Python 3.13) are off, so the agent accepts the certificates etcd and etcdctl (Go) accept."""
    context = ssl.create_default_context(cafile=cafile)
    context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    return context


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    if not (settings.cacert or settings.cert or settings.client_scheme == "https"):
        return None
    try:
        context = verifying_context(settings.cacert or None)
        if settings.cert and settings.key:
            context.load_cert_chain(settings.cert, settings.key)
    except (OSError, ssl.SSLError) as err:
        files = ", ".join(f for f in (settings.cacert, settings.cert, settings.key) if f)
        raise AgentError(f"cannot load the TLS files ({files}): {err}") from err
    return context


def read_secret_file(path: str) -> str:
    """A password from a mounted Secret, without the trailing newline `echo` leaves."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().rstrip("\r\n")
    except OSError as err:
        raise AgentError(f"{path}: cannot read the password file: {err.strerror}") from err


# --------------------------------------------------------------------------------------------
# HTTP: etcd's JSON gateway and the Kubernetes API


GATEWAY_IGNORES_CN = "CommonName of client sending a request against gateway will be ignored"


class EtcdError(Exception):
    """etcd answered with an error."""

    def __init__(self, endpoint: str, path: str, status: int, code: int, message: str):
        super().__init__(f"{endpoint}{path}: {message} (HTTP {status}, code {code})")
        self.status = status
        self.code = code
        self.message = message

    @property
    def needs_auth(self) -> bool:
        if self.code == 3 and "user name is empty" in self.message:
            return True
        # Without a token the gateway's own connection speaks for the request, and etcd looks
        # up the CN of the member's server certificate as a user.
        if "user name not found" in self.message:
            return True
        # With auth on, the JSON gateway refuses to act on a client certificate's CN (etcd
        # answers 400 in plain text): a password login is the only way in through it.
        return self.code == 16 or GATEWAY_IGNORES_CN in self.message


class Unreachable(Exception):
    """No answer from an endpoint (refused, timed out, TLS failure, not JSON)."""

    def __init__(self, endpoint: str, reason: str):
        super().__init__(f"{endpoint}: {reason}")
        self.endpoint = endpoint
        self.reason = reason


def _opener(context: ssl.SSLContext | None) -> urllib.request.OpenerDirector:
    # No proxies from the environment: members and the API server are reached directly.
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    return urllib.request.build_opener(*handlers)


def _reason(err: BaseException) -> str:
    if isinstance(err, urllib.error.URLError) and not isinstance(err, urllib.error.HTTPError):
        reason = err.reason
        if isinstance(reason, OSError) and reason.strerror:
            return reason.strerror
        return str(reason)
    if isinstance(err, TimeoutError):
        return "timed out"
    return str(err) or type(err).__name__


class EtcdClient:
    """POST JSON to etcd's gateway; authenticates as root once etcd asks for a user."""

    def __init__(
        self,
        context: ssl.SSLContext | None,
        root_password_file: str = "",
        timeout: float = HTTP_TIMEOUT,
    ):
        self._opener = _opener(context)
        self._password_file = root_password_file
        self._token = ""
        self._lock = threading.Lock()
        self.timeout = timeout

    def call(
        self, endpoint: str, path: str, body: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        try:
            return self._post(endpoint, path, body)
        except EtcdError as err:
            if not err.needs_auth or not self._password_file:
                raise
            self.authenticate(endpoint)
            return self._post(endpoint, path, body)

    def authenticate(self, endpoint: str) -> None:
        password = read_secret_file(self._password_file)
        answer = self._post(
            endpoint, "/v3/auth/authenticate", {"name": "root", "password": password}, False
        )
        with self._lock:
            self._token = str(answer.get("token", ""))

    def health(self, endpoint: str) -> tuple[bool, str]:
        """GET /health: (healthy, reason)."""
        request = urllib.request.Request(endpoint.rstrip("/") + "/health", method="GET")
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                body = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as err:
            try:
                body = json.loads(err.read() or b"{}")
            except ValueError:
                return False, f"HTTP {err.code}"
        except (OSError, ValueError, http.client.HTTPException) as err:
            return False, _reason(err)
        healthy = str(body.get("health", "")).lower() == "true"
        return healthy, str(body.get("reason", "")) or ("healthy" if healthy else "unhealthy")

    def _post(
        self,
        endpoint: str,
        path: str,
        body: Mapping[str, Any] | None,
        with_token: bool = True,
    ) -> dict[str, Any]:
        request = urllib.request.Request(
            endpoint.rstrip("/") + path,
            data=json.dumps(body or {}).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with self._lock:
            token = self._token
        if with_token and token:
            request.add_header("Authorization", token)
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                answer = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as err:
            try:
                text = err.read()
            except OSError:
                text = b""
            try:
                error = json.loads(text or b"{}")
            except ValueError:
                error = {"message": text.decode(errors="replace").strip()[:300]}
            if not isinstance(error, dict):
                error = {}
            message = str(error.get("message") or error.get("error") or err.reason)
            raise EtcdError(endpoint, path, err.code, int(error.get("code", 0)), message) from None
        except (OSError, ValueError, http.client.HTTPException) as err:
            raise Unreachable(endpoint, _reason(err)) from None
        if not isinstance(answer, dict):
            raise Unreachable(endpoint, "answer is not a JSON object")
        return answer


class KubeError(Exception):
    """The Kubernetes API could not be asked, or refused."""


class KubeClient:
    """The in-cluster Kubernetes API: service account token and CA; the record and the
    StatefulSet only."""

    def __init__(self, env: Mapping[str, str], timeout: float = 5.0):
        self.host = env.get("KUBERNETES_SERVICE_HOST", "")
        self.port = env.get("KUBERNETES_SERVICE_PORT") or "443"
        self.directory = env.get("ETCD_AGENT_SERVICEACCOUNT_DIR") or DEFAULT_SERVICEACCOUNT_DIR
        self.timeout = timeout

    def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> tuple[int, dict[str, Any]]:
        if not self.host:
            raise KubeError("KUBERNETES_SERVICE_HOST is not set (not running in a cluster?)")
        try:
            with open(os.path.join(self.directory, "token"), encoding="utf-8") as handle:
                token = handle.read().strip()
            context = verifying_context(os.path.join(self.directory, "ca.crt"))
        except (OSError, ssl.SSLError) as err:
            raise KubeError(f"service account files in {self.directory}: {err}") from err
        url = f"https://{url_host(self.host)}:{self.port}{path}"
        request = urllib.request.Request(
            url,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )
        if body is not None:
            request.add_header("Content-Type", content_type)
        try:
            with _opener(context).open(request, timeout=self.timeout) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as err:
            try:
                answer = json.loads(err.read() or b"{}")
            except (ValueError, OSError):
                answer = {}
            return err.code, answer if isinstance(answer, dict) else {}
        except (OSError, ValueError, http.client.HTTPException) as err:
            raise KubeError(f"{url}: {_reason(err)}") from None


def _configmap_path(namespace: str, name: str = "") -> str:
    path = f"/api/v1/namespaces/{urllib.parse.quote(namespace)}/configmaps"
    return f"{path}/{urllib.parse.quote(name)}" if name else path


def read_record(kube: KubeClient, namespace: str, name: str) -> tuple[str, dict[str, str], str]:
    """(state, data, detail) of the cluster record ConfigMap."""
    if not name:
        return RECORD_DISABLED, {}, "ETCD_AGENT_RECORD is empty"
    try:
        status, answer = kube.request("GET", _configmap_path(namespace, name))
    except KubeError as err:
        return RECORD_UNKNOWN, {}, str(err)
    if status == 200:
        data = answer.get("data") or {}
        return RECORD_PRESENT, {str(k): str(v) for k, v in data.items()}, ""
    if status == 404:
        return RECORD_ABSENT, {}, ""
    return (
        RECORD_UNKNOWN,
        {},
        f"GET ConfigMap {namespace}/{name}: HTTP {status} {answer.get('message', '')}",
    )


# --------------------------------------------------------------------------------------------
# etcd operations


def list_members(
    client: EtcdClient, endpoint: str, linearizable: bool = True
) -> tuple[list[Member], dict[str, Any]]:
    answer = client.call(endpoint, "/v3/cluster/member/list", {"linearizable": linearizable})
    members = [Member.from_json(item) for item in answer.get("members") or ()]
    return members, dict(answer.get("header") or {})


def first_answer(
    endpoints: Sequence[str], ask: Callable[[str], T]
) -> tuple[str, T] | tuple[None, list[str]]:
    """Ask every endpoint at once; the first answer wins. Else (None, one error per endpoint)."""
    if not endpoints:
        return None, ["no endpoint to ask"]
    errors: list[str] = []
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(endpoints))
    try:
        futures = {pool.submit(ask, endpoint): endpoint for endpoint in endpoints}
        for future in concurrent.futures.as_completed(futures):
            endpoint = futures[future]
            try:
                return endpoint, future.result()
            except (EtcdError, Unreachable, AgentError) as err:
                message = err.message if isinstance(err, EtcdError) else str(err)
                if isinstance(err, Unreachable):
                    message = err.reason
                errors.append(f"{pod_name_of(endpoint)}: {message}")
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return None, sorted(errors)


def cluster_view(client: EtcdClient, endpoints: Sequence[str]) -> tuple[ClusterView | None, str]:
    """The member list from the first member that answers with quorum; else (None, errors)."""

    def ask(endpoint: str) -> ClusterView:
        members, header = list_members(client, endpoint)
        try:
            leader = str(client.call(endpoint, "/v3/maintenance/status").get("leader", ""))
        except (EtcdError, Unreachable):
            leader = ""
        return ClusterView(tuple(members), leader, str(header.get("cluster_id", "")), endpoint)

    endpoint, result = first_answer(endpoints, ask)
    if endpoint is None:
        assert isinstance(result, list)
        return None, "; ".join(result)
    assert isinstance(result, ClusterView)
    return result, ""


def voter_endpoints(cluster: ClusterView, exclude: str = "") -> list[str]:
    """Client URLs of started voters (the answering one first), never member `exclude`."""
    urls = [cluster.endpoint] if cluster.endpoint else []
    for member in cluster.members:
        if member.id == exclude or member.is_learner or not member.started:
            continue
        for url in member.client_urls:
            if url not in urls:
                urls.append(url)
    return urls


def call_first(
    client: EtcdClient, endpoints: Sequence[str], path: str, body: Mapping[str, Any]
) -> dict[str, Any]:
    """POST to the endpoints in order until one answers; an etcd error is final."""
    problems = []
    for endpoint in endpoints:
        try:
            return client.call(endpoint, path, body)
        except Unreachable as err:
            problems.append(str(err))
    raise Retry("no member answered: " + "; ".join(problems or ["no endpoint"]))


# --------------------------------------------------------------------------------------------
# Logging, back-off, signals


class Log:
    def __init__(self, command: str, stream: Any = None):
        self.prefix = f"member-agent {command}:"
        self.stream = stream
        self.last = ""

    def __call__(self, message: str) -> None:
        stream = self.stream or sys.stderr
        stream.write(f"{self.prefix} {message}\n")
        stream.flush()
        self.last = message


# Refusals that clear within seconds without anyone acting: etcd wants every voter connected for
# 5 s before a membership change, a learner in sync before its promotion, and one change at a time.
SOON_OVER = (
    "unhealthy cluster",
    "too many learner",
    "in sync with leader",
    "not enough started members",
    "another member change is in flight",
)


class Backoff:
    def __init__(self, first: float = 1.0, cap: float = 10.0):
        self.first = first
        self.cap = cap
        self.attempt = 0

    def next(self, why: str = "") -> float:
        """The next delay; a refusal etcd lifts by itself within seconds is polled every second."""
        if any(phrase in why for phrase in SOON_OVER):
            return round(self.first * random.uniform(0.8, 1.2), 1)
        delay = min(self.cap, self.first * 2.0**self.attempt) * random.uniform(0.8, 1.2)
        self.attempt += 1
        return round(delay, 1)

    def reset(self) -> None:
        self.attempt = 0


class Deadline:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds if seconds > 0 else None

    def expired(self, after: float = 0.0) -> bool:
        return self.end is not None and time.monotonic() + after > self.end


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated()


# --------------------------------------------------------------------------------------------
# prepare


def write_config(path: str, config: Mapping[str, Any]) -> None:
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    temporary = os.path.join(directory, f".{os.path.basename(path)}.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=2)
        handle.write("\n")
    os.replace(temporary, path)


def carry_out(
    decision: Decision,
    facts: StartFacts,
    config: dict[str, Any],
    client: EtcdClient,
) -> tuple[dict[str, Any], str]:
    """Do what the decision says; return the config to write and what was done."""
    if decision.action == START:
        # etcd ignores the state on a WAL, but `new` is never written over existing data.
        return {**config, "initial-cluster-state": "existing"}, "starting on the existing data"
    if decision.action == BOOTSTRAP:
        config = {**config, "initial-cluster-state": "new"}
        return config, (
            f"bootstrapping a new cluster: initial-cluster {config.get('initial-cluster', '')}"
            " state new"
        )
    cluster = facts.cluster
    assert cluster is not None and decision.action == JOIN
    done = []
    if decision.move_data_aside:
        moved = move_data_aside(
            str(config["data-dir"]), str(config.get("wal-dir") or ""), utc_stamp()
        )
        done.append("moved data to " + " and ".join(moved))
    endpoints = voter_endpoints(cluster, exclude=decision.remove_id)
    members = list(cluster.members)
    try:
        if decision.remove_id:
            call_first(client, endpoints, "/v3/cluster/member/remove", {"ID": decision.remove_id})
            done.append(f"removed the stale member {hex_id(decision.remove_id)} (its data is gone)")
            members = [member for member in members if member.id != decision.remove_id]
        if decision.add_learner:
            answer = call_first(
                client,
                endpoints,
                "/v3/cluster/member/add",
                {"peerURLs": list(facts.peer_urls), "isLearner": True},
            )
            added = Member.from_json(answer.get("member") or {})
            done.append(f"added as learner {hex_id(added.id)}")
            members = [Member.from_json(item) for item in answer.get("members") or ()] or [
                *members,
                added,
            ]
    except (EtcdError, Unreachable) as err:
        raise Retry("; ".join([*done, str(err)])) from None
    if decision.reuse_id:
        done.append(f"reusing the unstarted member {hex_id(decision.reuse_id)}")
    initial = join_initial_cluster(members, facts.name, facts.peer_urls)
    config = {**config, "initial-cluster": initial, "initial-cluster-state": "existing"}
    done.append(f"joining with initial-cluster {initial} state existing")
    return config, ", ".join(done)


def peer_url_moved(
    cluster: ClusterView | None, name: str, peer_urls: Sequence[str]
) -> Member | None:
    """This member under a new address (ports.peer or clusterDomain changed): not listed by its
    peer URLs, but a started member carries its name. Only asked when the data is present."""
    if cluster is None or not name or cluster.find(peer_urls) is not None:
        return None
    return next((m for m in cluster.members if m.name == name and m.started), None)


def update_peer_url(
    client: EtcdClient, cluster: ClusterView, member: Member, peer_urls: Sequence[str]
) -> str:
    """Move `member` to `peer_urls` in place: same ID, same data, no removal."""
    endpoints = voter_endpoints(cluster, exclude=member.id)
    body = {"ID": member.id, "peerURLs": list(peer_urls)}
    try:
        call_first(client, endpoints, "/v3/cluster/member/update", body)
    except EtcdError as err:
        raise Retry(str(err)) from None
    return (
        f"updated the peer URL of member {member.name} ({hex_id(member.id)}) from"
        f" {','.join(member.peer_urls)} to {','.join(peer_urls)} (same name, data present: the"
        " same member under a new address)"
    )


class LearnerWait:
    """How long each learner has been seen blocking this member's join (prepare only)."""

    def __init__(self, limit: float):
        self.limit = limit
        self.since: dict[str, float] = {}

    def overdue(self, cluster: ClusterView | None, peer_urls: Sequence[str]) -> str:
        """Why to give up when a learner has blocked longer than the limit; else ""."""
        if cluster is None or self.limit <= 0:
            return ""
        now = time.monotonic()
        busy = [m for m in in_flight(cluster, cluster.find(peer_urls)) if m.is_learner]
        self.since = {m.id: self.since.get(m.id, now) for m in busy}
        for member in busy:
            waited = now - self.since[member.id]
            if waited >= self.limit:
                return stuck_learner_message(member, waited, self.limit)
        return ""


def stuck_learner_message(member: Member, waited: float, limit: float) -> str:
    state = "never started" if not member.started else "started, not in sync with the leader"
    match = re.fullmatch(r".+-([0-9]+)", member.label)
    by_helm = (
        f"`helm upgrade` with replicas={match.group(1)} (the scale-down hook removes members above"
        " the new count, learners included), or "
        if match
        else ""
    )
    return (
        f"giving up after {waited:.0f}s (--learner-wait {limit:g}): learner {member.label}"
        f" ({hex_id(member.id)}) has not become a voter ({state}); every later member change"
        f" waits for it. If its pod cannot run or catch up, remove it: {by_helm}etcdctl member"
        f" remove {hex_id(member.id)}"
    )


def run_prepare(
    settings: Settings, env: Mapping[str, str], log: Log, timeout: float, learner_wait: float = 0
) -> int:
    config = load_template(settings.template, env)
    name = str(config["name"])
    peer_urls = tuple(split_urls(str(config["initial-advertise-peer-urls"])))
    bootstrap = parse_initial_cluster(str(config.get("initial-cluster", "")))
    own = {normalize_url(url) for url in peer_urls}
    endpoints = [
        settings.client_url(url)
        for member_name, url in bootstrap
        if member_name != name and normalize_url(url) not in own
    ]
    client = EtcdClient(tls_context(settings), settings.root_password_file)
    kube = KubeClient(env)
    backoff, deadline = Backoff(), Deadline(timeout)
    learners = LearnerWait(learner_wait)
    updated: list[str] = []
    while True:
        data = member_data_state(str(config["data-dir"]), str(config.get("wal-dir") or ""))
        cluster, errors = cluster_view(client, endpoints)
        moved = peer_url_moved(cluster, name, peer_urls) if data == DATA_PRESENT else None
        if cluster is not None and moved is not None:
            try:
                updated.append(update_peer_url(client, cluster, moved, peer_urls))
            except Retry as err:
                delay = backoff.next(str(err))
                if deadline.expired(delay):
                    log(f"data=present -> giving up (--timeout): cannot update the peer URL: {err}")
                    return 2
                log(f"data=present -> waiting {delay}s: cannot update the peer URL yet: {err}")
                time.sleep(delay)
                continue
            cluster, errors = cluster_view(client, endpoints)
        record, detail = RECORD_UNCHECKED, ""
        record_data: dict[str, str] = {}
        if cluster is not None or data != DATA_PRESENT:
            record, record_data, detail = read_record(kube, settings.namespace, settings.record)
        facts = StartFacts(
            name=name,
            peer_urls=peer_urls,
            has_data=data == DATA_PRESENT,
            cluster=cluster,
            bootstrap_names=tuple(member_name for member_name, _ in bootstrap),
            template_state=str(config.get("initial-cluster-state", "new")),
            record=record,
            record_name=f"{settings.namespace}/{settings.record}",
            damaged_data=data == DATA_DAMAGED,
            record_cluster_id=record_data.get("clusterID", ""),
        )
        decision = decide_start(facts)
        if decision.action == WAIT:
            why = decision.why
            if cluster is None:
                why += f" (asked: {errors})"
            if detail and record == RECORD_UNKNOWN:
                why += f" (record: {detail})"
            stuck = learners.overdue(cluster, peer_urls)
            if stuck:
                log(f"{decision.seen} -> {stuck}")
                return 2
        else:
            try:
                final, done = carry_out(decision, facts, config, client)
            except Retry as err:
                why = f"could not finish: {err}"
            else:
                write_config(settings.output, final)
                log(f"{decision.seen} -> {', '.join([*updated, done])}; wrote {settings.output}")
                return 0
        delay = backoff.next(why)
        if deadline.expired(delay):
            log(f"{decision.seen} -> giving up (--timeout): {why}")
            return 2
        log(f"{decision.seen} -> waiting {delay}s: {why}")
        time.sleep(delay)


# --------------------------------------------------------------------------------------------
# auth.json


@dataclasses.dataclass(frozen=True)
class Permission:
    type: str
    key: str
    prefix: bool


@dataclasses.dataclass(frozen=True)
class Role:
    name: str
    permissions: tuple[Permission, ...]


@dataclasses.dataclass(frozen=True)
class User:
    name: str
    password_file: str
    roles: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class AuthSpec:
    roles: tuple[Role, ...]
    users: tuple[User, ...]


PERMISSION_TYPES = {"read": "READ", "write": "WRITE", "readwrite": "READWRITE"}


def parse_auth_spec(data: Any, source: str) -> AuthSpec:
    """Validate auth.json; every problem is reported at once with its dotted key."""
    problems: list[str] = []

    def problem(where: str, message: str) -> None:
        problems.append(f"{source}: {where}: {message}")

    if not isinstance(data, dict):
        raise AgentError(f"{source}: must be a JSON object with roles and users")
    for key in sorted(set(data) - {"roles", "users"}):
        problem(key, "unknown key (expected roles, users)")
    roles: list[Role] = []
    for i, item in enumerate(data.get("roles") or []):
        where = f"roles[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            problem(f"{where}.name", "required, a non-empty string")
            continue
        if item["name"] == "root":
            problem(f"{where}.name", "the root role is built in and managed by the agent")
        permissions = []
        for j, perm in enumerate(item.get("permissions") or []):
            at = f"{where}.permissions[{j}]"
            if not isinstance(perm, dict):
                problem(at, "must be an object with type, key and prefix")
                continue
            kind = perm.get("type")
            if kind not in PERMISSION_TYPES:
                problem(f"{at}.type", f"{kind!r} is not one of read, write, readwrite")
            if not isinstance(perm.get("key"), str):
                problem(f"{at}.key", "required, a string")
            if not isinstance(perm.get("prefix", False), bool):
                problem(f"{at}.prefix", "must be true or false")
            if kind in PERMISSION_TYPES and isinstance(perm.get("key"), str):
                permissions.append(Permission(str(kind), perm["key"], bool(perm.get("prefix"))))
        roles.append(Role(item["name"], tuple(permissions)))
    known_roles = {role.name for role in roles} | {"root"}
    users: list[User] = []
    for i, item in enumerate(data.get("users") or []):
        where = f"users[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            problem(f"{where}.name", "required, a non-empty string")
            continue
        if item["name"] == "root":
            problem(f"{where}.name", "root is created by the agent from the root password file")
        if not isinstance(item.get("passwordFile"), str) or not item["passwordFile"]:
            problem(f"{where}.passwordFile", "required, the path of the mounted password file")
        user_roles = item.get("roles") or []
        if not isinstance(user_roles, list):
            problem(f"{where}.roles", "must be a list of role names")
            user_roles = []
        for j, role in enumerate(user_roles):
            if role not in known_roles:
                problem(f"{where}.roles[{j}]", f"{role!r} is not a role defined in roles")
        users.append(
            User(item["name"], str(item.get("passwordFile", "")), tuple(map(str, user_roles)))
        )
    if problems:
        raise AgentError("; ".join(problems))
    return AuthSpec(tuple(roles), tuple(users))


def load_auth_spec(path: str) -> AuthSpec | None:
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as err:
        raise AgentError(f"{path}: cannot read: {err.strerror}") from err
    except ValueError as err:
        raise AgentError(f"{path}: not valid JSON: {err}") from err
    return parse_auth_spec(data, path)


def auth_fingerprint(auth_file: str, spec: AuthSpec, root_password_file: str) -> str:
    """What the applied auth depends on: auth.json and every password file. The pods are not
    restarted when users or roles change (the kubelet updates the mounted files), so a changed
    fingerprint is how the agent learns that there is something to apply."""
    digest = hashlib.sha256()
    for path in (auth_file, root_password_file, *(user.password_file for user in spec.users)):
        try:
            with open(path, "rb") as handle:
                digest.update(handle.read())
        except OSError as err:
            digest.update(f"unreadable: {err.strerror}".encode())
        digest.update(b"\0")
    return digest.hexdigest()


def own_code() -> bytes:
    """This program's source as it is now on disk (the agent ConfigMap's mounted file)."""
    try:
        with open(os.path.abspath(__file__), "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def apply_auth(client: EtcdClient, endpoint: str, spec: AuthSpec, root_password_file: str) -> str:
    """Create root, the roles and the users, grant, then enable auth. Idempotent."""

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    def call(path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return client.call(endpoint, path, body)

    def add_if_missing(path: str, body: Mapping[str, Any]) -> bool:
        """True when added; "already exists" means an earlier run or another member did it."""
        try:
            call(path, body)
        except EtcdError as err:
            if "already exist" in err.message:
                return False
            raise
        return True

    enabled = bool(call("/v3/auth/status", {}).get("enabled", False))
    root_password = read_secret_file(root_password_file)
    add_if_missing("/v3/auth/role/add", {"name": "root"})
    add_if_missing("/v3/auth/user/add", {"name": "root", "password": root_password})
    call("/v3/auth/user/grant", {"user": "root", "role": "root"})
    for role in spec.roles:
        add_if_missing("/v3/auth/role/add", {"name": role.name})
        for perm in role.permissions:
            key = perm.key.encode()
            permission = {"permType": PERMISSION_TYPES[perm.type], "key": b64(key)}
            if perm.prefix:
                permission["range_end"] = b64(prefix_range_end(key))
            call("/v3/auth/role/grant", {"name": role.name, "perm": permission})
    for user in spec.users:
        password = read_secret_file(user.password_file)
        body = {"name": user.name, "password": password}
        if not add_if_missing("/v3/auth/user/add", body):
            call("/v3/auth/user/changepw", body)
        for role_name in user.roles:
            call("/v3/auth/user/grant", {"user": user.name, "role": role_name})
    if not enabled:
        call("/v3/auth/enable", {})
    summary = f"{len(spec.roles)} roles, {len(spec.users)} users"
    return f"auth {'was already' if enabled else 'now'} enabled; root, {summary} applied"


# --------------------------------------------------------------------------------------------
# watch


@dataclasses.dataclass
class WatchState:
    voter: bool = False
    record: bool = False
    record_said: str = ""
    auth_applied: str = ""  # auth_fingerprint() of what was last applied
    absent_since: float | None = None
    pod_deleted: bool = False
    rejoin_after: float = 0.0


def removed_member_step(settings: Settings, kube: KubeClient, state: WatchState, seen: str) -> str:
    """This member is not in the cluster's (quorum) member list, so its etcd exits at once on
    every restart, and `prepare` (an init container) runs again only in a new pod. When the
    StatefulSet still wants this pod and that has lasted --rejoin-after (longer than any
    scale-down hook runs), delete the pod. Returns what to log."""
    seen += " member=absent"
    pod = settings.pod_name
    deleted = (
        f"{seen} -> deleted pod {pod} so that it is recreated: its prepare moves the removed"
        " member's data aside and joins again"
    )
    if state.pod_deleted:
        return deleted
    removed = f"{seen} -> this member was removed from the cluster"
    by_hand = f"recreate the pod (kubectl delete pod {pod}) so that its prepare joins again"
    match = re.fullmatch(r"(.+)-([0-9]+)", pod)
    if not match or not settings.record or state.rejoin_after <= 0:
        return f"{removed}, and etcd exits at once on every restart: {by_hand}"
    sts, ordinal = match.group(1), int(match.group(2))
    sts_state, live, detail = read_statefulset_replicas(kube, settings.namespace, sts)
    if sts_state == STS_PRESENT and live <= ordinal:
        state.absent_since = None
        return (
            f"{removed}; the StatefulSet has {live} replicas, so {pod} is on its way out: waiting"
        )
    if sts_state != STS_PRESENT:
        why = detail or f"StatefulSet {settings.namespace}/{sts} not found"
        return f"{removed}, and etcd exits at once on every restart ({why}): {by_hand}"
    now = time.monotonic()
    if state.absent_since is None:
        state.absent_since = now
    if now - state.absent_since < state.rejoin_after:
        return (
            f"{removed}, and etcd exits at once on every restart; the StatefulSet still has"
            f" {live} replicas: deleting pod {pod} once this has lasted {state.rejoin_after:g}s,"
            " so that it is recreated and its prepare joins again"
        )
    path = f"/api/v1/namespaces/{urllib.parse.quote(settings.namespace)}/pods/"
    path += urllib.parse.quote(pod)
    try:
        status, answer = kube.request("DELETE", path)
    except KubeError as err:
        return f"{removed}; cannot delete pod {pod}: {err}: {by_hand}"
    if status not in (200, 202):
        return (
            f"{removed}; cannot delete pod {pod}: HTTP {status} {answer.get('message', '')}:"
            f" {by_hand}"
        )
    state.pod_deleted = True
    return deleted


def ensure_record(kube: KubeClient, settings: Settings, cluster: ClusterView, token: str) -> str:
    """Create the cluster record if missing; keep its member list current. Returns what it did."""
    name = f"{settings.namespace}/{settings.record}"
    state, data, detail = read_record(kube, settings.namespace, settings.record)
    cluster_id = hex_id(cluster.cluster_id)
    members = format_initial_cluster(
        [
            (m.label, url)
            for m in sorted(cluster.members, key=lambda m: m.label)
            for url in m.peer_urls
        ]
    )
    if state == RECORD_UNKNOWN:
        raise Retry(f"cannot read the cluster record {name}: {detail}")
    if state == RECORD_PRESENT:
        if data.get("clusterID") != cluster_id:
            return (
                f"WARNING: the cluster record {name} names cluster {data.get('clusterID')}, but"
                f" this cluster is {cluster_id}: two clusters under one name? record left as is"
            )
        if data.get("members") == members:
            return f"cluster record {name} is current"
        try:
            status, answer = kube.request(
                "PATCH",
                _configmap_path(settings.namespace, settings.record),
                {"data": {"members": members}},
                "application/merge-patch+json",
            )
        except KubeError as err:
            raise Retry(str(err)) from None
        if status != 200:
            raise Retry(f"PATCH ConfigMap {name}: HTTP {status} {answer.get('message', '')}")
        return f"updated the members of cluster record {name}: {members}"
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": settings.record,
            "namespace": settings.namespace,
            "labels": {"app.kubernetes.io/managed-by": "etcd-member-agent"},
        },
        "data": {
            "clusterID": cluster_id,
            "token": token,
            "createdAt": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "members": members,
        },
    }
    try:
        status, answer = kube.request("POST", _configmap_path(settings.namespace), body)
    except KubeError as err:
        raise Retry(str(err)) from None
    if status == 409:
        return f"cluster record {name} was just created by another member"
    if status not in (200, 201):
        raise Retry(f"POST ConfigMap {name}: HTTP {status} {answer.get('message', '')}")
    return f"created the cluster record {name} (cluster {cluster_id})"


def watch_step(
    settings: Settings,
    client: EtcdClient,
    kube: KubeClient,
    own: tuple[str, tuple[str, ...], str],
    endpoints: list[str],
    state: WatchState,
    log: Log,
) -> bool:
    """One pass; True once everything this member has to do is done."""
    name, peer_urls, token = own
    cluster, errors = cluster_view(client, endpoints)
    if cluster is None:
        raise Retry(f"cluster=unreachable (asked: {errors}) -> waiting")
    for member in cluster.members:
        for url in member.client_urls:
            if url not in endpoints:
                endpoints.append(url)
    me = cluster.find(peer_urls, name)
    seen = f"cluster={cluster.describe()}"
    if me is None and peer_urls:
        raise Retry(removed_member_step(settings, kube, state, seen))
    if me is None:
        raise Retry(f"{seen} member=absent -> waiting (this agent never adds members)")
    state.absent_since = None
    if me.is_learner:
        targets = voter_endpoints(cluster, exclude=me.id)
        try:
            call_first(client, targets, "/v3/cluster/member/promote", {"ID": me.id})
        except EtcdError as err:
            raise Retry(
                f"{seen} member=learner {hex_id(me.id)} -> not promoted yet: {err.message}"
            ) from None
        log(f"{seen} member=learner {hex_id(me.id)} -> promoted to voter")
        state.voter = True
        return False
    if not me.started or not cluster.leader:
        raise Retry(f"{seen} member=voter started={'yes' if me.started else 'no'} -> waiting")
    if not state.voter:
        state.voter = True
        log(f"{seen} member=voter {hex_id(me.id)} -> nothing to promote")
    if settings.record:
        # Every pass, not once: a deleted record is written again, the member list kept current.
        did = ensure_record(kube, settings, cluster, token)
        quiet = did.endswith(" is current") or did.startswith("WARNING")
        if not state.record or not quiet or did != state.record_said:
            log(f"{seen} member=voter -> {did}")
        state.record_said = did
    state.record = True
    # Every pass: users, roles and passwords change at run time, without a restart.
    spec = load_auth_spec(settings.auth_file)
    if spec is not None:
        fingerprint = auth_fingerprint(settings.auth_file, spec, settings.root_password_file)
        if fingerprint != state.auth_applied:
            try:
                done = apply_auth(client, cluster.endpoint, spec, settings.root_password_file)
            except EtcdError as err:
                raise Retry(f"{seen} -> auth.json not applied yet: {err}") from None
            changed = " (auth.json or a password changed)" if state.auth_applied else ""
            log(f"{seen} member=voter -> {done}{changed}")
            state.auth_applied = fingerprint
    return True


def sibling_endpoints(settings: Settings) -> list[str]:
    """Client URLs of this pod and its StatefulSet siblings by DNS name: a learner refuses the
    member list, so without the template these are the only way to find the voters."""
    match = re.fullmatch(r"(.+)-([0-9]+)", settings.pod_name)
    if not match or not settings.headless_service or not settings.namespace:
        return []
    statefulset, own = match.group(1), int(match.group(2))
    ordinals = range(own + FALLBACK_ORDINALS // 2 + 1)
    return [settings.pod_client_url(f"{statefulset}-{i}") for i in ordinals]


def run_watch(
    settings: Settings,
    env: Mapping[str, str],
    log: Log,
    once: bool,
    interval: float,
    timeout: float,
    rejoin_after: float = 0,
) -> int:
    settings.require("pod_name")
    name, token = settings.pod_name, ""
    peer_urls: tuple[str, ...] = ()
    endpoints: list[str] = []
    if os.path.exists(settings.template):
        config = load_template(settings.template, env)
        name = str(config["name"])
        token = str(config.get("initial-cluster-token", ""))
        peer_urls = tuple(split_urls(str(config["initial-advertise-peer-urls"])))
        endpoints = [settings.client_url(url) for url in peer_urls]
        bootstrap = parse_initial_cluster(str(config.get("initial-cluster", "")))
        endpoints += [settings.client_url(url) for _, url in bootstrap]
    endpoints += sibling_endpoints(settings)
    endpoints = list(dict.fromkeys(endpoints))
    load_auth_spec(settings.auth_file)  # a broken file is an error now, not after the first pass
    code = own_code()
    client = EtcdClient(tls_context(settings), settings.root_password_file)
    kube = KubeClient(env)
    state = WatchState(rejoin_after=rejoin_after)
    backoff, deadline = Backoff(), Deadline(timeout if once else 0)
    while True:
        try:
            done = watch_step(
                settings, client, kube, (name, peer_urls, token), endpoints, state, log
            )
        except Retry as err:
            done = False
            delay = backoff.next(str(err))
            if deadline.expired(delay):
                log(f"{err}; giving up (--timeout)")
                return 2
            if str(err) != log.last:
                log(str(err))
            time.sleep(delay)
            continue
        except (EtcdError, Unreachable, AgentError) as err:
            log(f"error: {err}")
            if once:
                return 1
            time.sleep(backoff.next())
            continue
        backoff.reset()
        if done and once:
            return 0
        if not once and own_code() not in (code, b""):
            # An upgrade changed the agent: run the new one in this container, leaving etcd (the
            # other container) running. The pods are not restarted for agent changes.
            log("the agent's code changed (agent ConfigMap updated) -> restarting the agent")
            os.execv(sys.executable, [sys.executable, *sys.argv])
        time.sleep(interval if done else 0.2)


# --------------------------------------------------------------------------------------------
# scale-down


# How out of a blocked scale-down, and what each way risks.
SCALE_DOWN_WAY_OUT = (
    "to go on without the hook: `helm upgrade --no-hooks` (this upgrade only) or"
    " scaleDown.enabled=false (every later upgrade): either way the pods above the new count go"
    " while still members, and stay in the member list as down voters that count against quorum"
    " until removed by hand (etcdctl member remove)"
)
STS_PRESENT, STS_ABSENT, STS_UNKNOWN = "present", "absent", "unknown"


def read_statefulset_replicas(kube: KubeClient, namespace: str, name: str) -> tuple[str, int, str]:
    """(state, spec.replicas, detail) of the live StatefulSet."""
    path = (
        f"/apis/apps/v1/namespaces/{urllib.parse.quote(namespace)}"
        f"/statefulsets/{urllib.parse.quote(name)}"
    )
    try:
        status, answer = kube.request("GET", path)
    except KubeError as err:
        return STS_UNKNOWN, 0, str(err)
    if status == 404:
        return STS_ABSENT, 0, ""
    if status != 200:
        message = answer.get("message", "")
        return STS_UNKNOWN, 0, f"GET StatefulSet {namespace}/{name}: HTTP {status} {message}"
    replicas = (answer.get("spec") or {}).get("replicas", 1)
    return STS_PRESENT, int(replicas), ""


def unreachable_verdict(replicas: int, sts_state: str, live: int, detail: str) -> tuple[bool, str]:
    """With the cluster created and no member answering: (go on, what to log after `->`).

    Only a real scale-down needs a member to answer; an upgrade that keeps or raises the count
    may be the one that repairs a full outage, and with no StatefulSet no member pod runs."""
    if sts_state == STS_ABSENT:
        return True, (
            "nothing to remove: no StatefulSet, so no member pod runs; the members come back on"
            " their data when it is created"
        )
    if sts_state == STS_PRESENT and live <= replicas:
        return True, (
            f"nothing to remove: not a scale-down (the StatefulSet has {live} replicas, the"
            f" upgrade asks for {replicas}); the upgrade goes on and may bring the members back"
        )
    if sts_state == STS_PRESENT:
        why = (
            f"a scale-down from {live} to {replicas} needs a healthy cluster to remove members"
            " from, and no member answers"
        )
    else:
        why = f"cannot tell whether this is a scale-down ({detail}), and no member answers"
    return False, f"refusing: {why}"


def run_scale_down(
    settings: Settings, env: Mapping[str, str], log: Log, replicas: int, timeout: float
) -> int:
    settings.require("statefulset", "namespace", "headless_service")
    sts = settings.statefulset
    if replicas == 0:
        log(
            "replicas=0 -> nothing to do: every member is kept, so the cluster resumes on its"
            " data when the pods come back"
        )
        return 0
    # The record first: on Argo CD's first sync the optional agent certificate is not issued yet,
    # and with no cluster there is nothing to do, TLS or not.
    kube = KubeClient(env)
    state, _, detail = read_record(kube, settings.namespace, settings.record)
    if state == RECORD_ABSENT:
        log(f"replicas={replicas} record=absent -> nothing to do (no cluster has been created yet)")
        return 0
    unissued = [
        f for f in (settings.cacert, settings.cert, settings.key) if f and not os.path.exists(f)
    ]
    if state == RECORD_DISABLED and unissued:
        log(
            f"replicas={replicas} record=disabled tls=not-issued -> nothing to do: the agent"
            f" certificate ({', '.join(unissued)}) is not issued yet, and no member pod starts"
            " without it"
        )
        return 0
    client = EtcdClient(tls_context(settings), settings.root_password_file)
    primary = [settings.pod_client_url(f"{sts}-{i}") for i in range(replicas)]
    fallback = [
        settings.pod_client_url(f"{sts}-{i}") for i in range(replicas, replicas + FALLBACK_ORDINALS)
    ]
    deadline = Deadline(timeout)
    backoff = Backoff()
    cluster, errors = cluster_view(client, primary)
    if cluster is None:
        cluster, more = cluster_view(client, fallback)
        errors = "; ".join(part for part in (errors, more) if part)
    if cluster is None:
        seen = f"replicas={replicas} cluster=unreachable record={state}"
        if state == RECORD_DISABLED:
            log(f"{seen} -> nothing to do (no cluster has been created yet)")
            return 0
        sts_state, live, sts_detail = read_statefulset_replicas(kube, settings.namespace, sts)
        seen += f" statefulset={live if sts_state == STS_PRESENT else sts_state}"
        go_on, verdict = unreachable_verdict(replicas, sts_state, live, sts_detail)
        if go_on:
            log(f"{seen} -> {verdict}")
            return 0
        record_note = f" (record: {detail})" if state == RECORD_UNKNOWN else ""
        log(f"{seen} -> {verdict}{record_note} (asked: {errors}); {SCALE_DOWN_WAY_OUT}")
        return 1
    while True:
        targets = scale_down_targets(cluster.members, sts, replicas)
        seen = f"replicas={replicas} cluster={cluster.describe()}"
        if not targets:
            names = ", ".join(sorted(member.label for member in cluster.members))
            log(f"{seen} -> nothing to remove (members: {names})")
            return 0
        ordinal, target = targets[0]
        keep = remaining_voters(cluster.members, sts, replicas, target)
        sick = []
        for member in keep:
            url = member.client_urls[0] if member.client_urls else ""
            healthy, reason = client.health(url) if url else (False, "never started")
            if not healthy:
                sick.append(f"{member.label}: {reason}")
        why = ""
        if not keep:
            why = "no voting member would remain"
        elif sick:
            why = "not every remaining voter is healthy: " + "; ".join(sick)
        else:
            why = remove_member(client, cluster, target, keep, settings, log, seen)
        if why:
            delay = backoff.next(why)
            if deadline.expired(delay):
                log(
                    f"{seen} -> giving up on removing {target.label} (--timeout): {why};"
                    f" {SCALE_DOWN_WAY_OUT}"
                )
                return 1
            log(f"{seen} -> waiting {delay}s before removing {target.label}: {why}")
            time.sleep(delay)
        else:
            backoff.reset()
        endpoints = [url for member in keep for url in member.client_urls] or primary
        view, errors = cluster_view(client, endpoints)
        if view is None:
            if deadline.expired():
                log(
                    f"{seen} -> giving up: no member answers any more ({errors});"
                    f" {SCALE_DOWN_WAY_OUT}"
                )
                return 1
            time.sleep(backoff.next())
            continue
        cluster = view


def remove_member(
    client: EtcdClient,
    cluster: ClusterView,
    target: Member,
    keep: Sequence[Member],
    settings: Settings,
    log: Log,
    seen: str,
) -> str:
    """Remove `target` (moving leadership off it first); "" when done, else why not."""
    endpoints = [url for member in keep for url in member.client_urls]
    if cluster.leader == target.id and target.client_urls:
        # Removing the leader costs an election; handing leadership over first does not.
        successor = keep[0]
        try:
            client.call(
                target.client_urls[0],
                "/v3/maintenance/transfer-leadership",
                {"targetID": successor.id},
            )
        except (EtcdError, Unreachable) as err:
            log(f"{seen} -> could not move leadership off {target.label} first: {err}")
        else:
            log(f"{seen} -> moved leadership from {target.label} to {successor.label}")
    try:
        call_first(client, endpoints, "/v3/cluster/member/remove", {"ID": target.id})
    except (EtcdError, Unreachable, Retry) as err:
        return f"etcd did not remove it: {err}"
    for _ in range(20):
        view, _errors = cluster_view(client, endpoints)
        if view is not None and all(member.id != target.id for member in view.members):
            log(f"{seen} -> removed member {target.label} ({hex_id(target.id)})")
            return ""
        time.sleep(0.5)
    return "the removal does not show in the member list yet"


# --------------------------------------------------------------------------------------------
# command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="member_agent.py", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    prepare = commands.add_parser("prepare", help="decide how this member starts, write config")
    prepare.add_argument(
        "--timeout", type=float, default=0, help="give up (exit 2) after this many seconds"
    )
    prepare.add_argument(
        "--learner-wait",
        type=float,
        default=DEFAULT_LEARNER_WAIT,
        help="give up (exit 2) when one learner has blocked the join this long (0: no limit)",
    )
    watch = commands.add_parser("watch", help="promote this learner, record, auth; then idle")
    watch.add_argument("--once", action="store_true", help="exit 0 once everything is done")
    watch.add_argument("--interval", type=float, default=30, help="seconds between checks")
    watch.add_argument("--timeout", type=float, default=120, help="with --once: give up after")
    watch.add_argument(
        "--rejoin-after",
        type=float,
        default=0,
        help="delete this pod when its member has been removed this long while the StatefulSet"
        " still wants it (0: never; longer than the scale-down hook's budget)",
    )
    scale = commands.add_parser("scale-down", help="remove members with ordinal >= N")
    scale.add_argument("--replicas", type=int, required=True, help="the new replica count N")
    scale.add_argument("--timeout", type=float, default=240, help="give up (exit 1) after")
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = _parser().parse_args(argv)
    env = os.environ if env is None else env
    log = Log(args.command)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        settings = Settings.from_env(env)
        settings.require()
        if args.command == "prepare":
            settings.require("pod_name")
            return run_prepare(settings, env, log, args.timeout, args.learner_wait)
        if args.command == "watch":
            return run_watch(
                settings, env, log, args.once, args.interval, args.timeout, args.rejoin_after
            )
        if args.replicas < 0:
            raise AgentError(f"--replicas {args.replicas}: must be 0 or more")
        return run_scale_down(settings, env, log, args.replicas, args.timeout)
    except AgentError as err:
        log(f"error: {err}")
        return 1
    except Terminated:
        log("terminated by SIGTERM")
        return 0 if args.command == "watch" else 143


if __name__ == "__main__":
    sys.exit(main())
