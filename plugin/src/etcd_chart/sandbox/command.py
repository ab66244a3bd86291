"""`etcd-chart sandbox`: run a rendered release on this machine with real etcd processes.

Subcommands: up, upgrade, wait, status, logs, kill, restart, lose-volume, stop, start, stop-all,
start-all, etcdctl, down. Every one takes `--state-dir DIR`. Exit codes: 0 success, 1 invalid
input (the manifest or the arguments ask for something the sandbox cannot do), 2 could not run (a
missing tool, an address in use, a pod that did not become Ready in time, a failed hook).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from etcd_chart.sandbox import client
from etcd_chart.sandbox.binaries import BIN_DIR_ENV
from etcd_chart.sandbox.client import ControlError
from etcd_chart.sandbox.helmrun import (
    check_references,
    check_runnable,
    check_storage_classes,
    kubectl,
    live_objects,
    live_storage_classes,
    parse,
    run_helm,
)
from etcd_chart.sandbox.kubelet import DEFAULT_NODES, POD_SECURITY_LEVELS
from etcd_chart.sandbox.launch import launcher_argv
from etcd_chart.sandbox.provisioner import STORAGE_CLASS
from etcd_chart.sandbox.render import (
    RenderArgs,
    RenderError,
    cluster_domain,
    post_render,
    source,
)
from etcd_chart.sandbox.runtime import tail
from etcd_chart.sandbox.state import StateDir
from etcd_chart.sandbox.webui import describe as describe_webui
from etcd_chart.yamlio import YamlError, load_stream


class _Parser(argparse.ArgumentParser):
    """Sub-command parser; with `passthrough`, everything after `--` goes to `args` untouched, and
    so does everything else the sub-command does not know (`etcdctl etcd-0 member list -w table`
    works without `--`, whatever comes between)."""

    passthrough = False

    def parse_known_args(  # type: ignore[override]
        self, args: list[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        rest: list[str] = []
        if self.passthrough and args is not None and "--" in args:
            cut = args.index("--")
            args, rest = list(args[:cut]), list(args[cut + 1 :])
        parsed, unknown = super().parse_known_args(args, namespace)
        if self.passthrough:
            parsed.args = list(getattr(parsed, "args", None) or []) + unknown + rest
            unknown = []
        return parsed, unknown


def _render_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("chart", nargs="?", help="chart directory (or use --manifest)")
    parser.add_argument("--manifest", help="run this already-rendered stream instead of a chart")
    parser.add_argument(
        "-f", "--values", action="append", default=[], help="values file (repeatable)"
    )
    parser.add_argument(
        "--set", action="append", default=[], help="value as key=value (repeatable)"
    )
    parser.add_argument(
        "--set-string", action="append", default=[], help="string value as key=value"
    )
    parser.add_argument(
        "--objects",
        action="append",
        default=[],
        metavar="FILE",
        help="Secrets and ConfigMaps that exist before the release, as `kubectl create` would "
        "leave them (repeatable)",
    )
    parser.add_argument(
        "--no-post-renderer",
        action="store_true",
        help="apply the stream as rendered, as a chart-repository install or Argo CD would "
        "(default: through the post-renderer, with the sandbox's API as its live cluster)",
    )
    parser.add_argument("--name", default="etcd", help="release name (default: etcd)")
    parser.add_argument(
        "--namespace", default="default", help="release namespace (default: default)"
    )
    parser.add_argument(
        "--helm-version",
        type=int,
        choices=(3, 4),
        default=None,
        help="helm major version to render with (default: the installed one, Helm 4 first; "
        "`helm` on PATH is used after checking its version)",
    )
    parser.add_argument(
        "--helm",
        metavar="PATH",
        help="this helm binary (Helm 3 or 4) instead of looking one up by --helm-version",
    )
    parser.add_argument(
        "--cluster-domain",
        help="cluster domain (default: clusterDomain from the values, else cluster.local)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=180,
        help="seconds to wait for every pod to be Ready (default 180)",
    )
    parser.add_argument(
        "--bin-dir",
        help="directory holding the etcd binaries as v<version>/etcd, v<version>/etcdctl and "
        f"v<version>/etcdutl (env {BIN_DIR_ENV}); an etcd image runs the version its tag names, "
        "looked for here, then in the cache ci/install-tools.sh fills, then on PATH",
    )


def _state_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", required=True, help="the sandbox's state directory")


def _pod_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pod", help="pod name, e.g. etcd-0")
    parser.add_argument(
        "--namespace", help="the pod's namespace (needed only when the name is ambiguous)"
    )


def _node_count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 26:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of Nodes from 1 to 26")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=_Parser
    )
    up = actions.add_parser(
        "up", help="render, start the daemon and every pod, wait until all are Ready"
    )
    _render_arguments(up)
    _state_argument(up)
    up.add_argument(
        "--subnet", help="use this /24 of 127.0.0.0/8 (e.g. 127.77.1) instead of choosing one"
    )
    up.add_argument(
        "--nodes",
        type=_node_count,
        default=DEFAULT_NODES,
        help="how many Nodes the process kubelet serves (default 3, in three "
        "zones; a StatefulSet with required anti-affinity per host needs one per member)",
    )
    up.add_argument(
        "--pod-security",
        choices=POD_SECURITY_LEVELS,
        default=POD_SECURITY_LEVELS[0],
        help="the PodSecurity level the release namespace enforces (default "
        "restricted, which every pod of the chart meets)",
    )
    up.add_argument(
        "--storage-class",
        action="append",
        default=[],
        metavar="NAME",
        help=f"also serve StorageClass NAME (values that name a class, e.g. "
        f"standard) from the local provisioner; {STORAGE_CLASS} is the default class",
    )
    upgrade = actions.add_parser(
        "upgrade",
        help="render again and apply the change (hooks, scale, rolling update); a --name not "
        "installed yet is installed beside the running release",
    )
    _render_arguments(upgrade)
    _state_argument(upgrade)
    wait = actions.add_parser("wait", help="wait until every pod is Ready; print the status")
    wait.add_argument("--timeout", type=float, default=180)
    _state_argument(wait)
    status = actions.add_parser("status", help="print the status (JSON)")
    _state_argument(status)
    logs = actions.add_parser("logs", help="print a container's log")
    _pod_arguments(logs)
    logs.add_argument("-c", "--container", help="container name (default: the etcd container)")
    _state_argument(logs)
    kill = actions.add_parser(
        "kill", help="signal a container's process (default: the etcd container)"
    )
    _pod_arguments(kill)
    kill.add_argument("--signal", default="TERM", help="signal name, e.g. KILL (default TERM)")
    kill.add_argument("-c", "--container", help="container name")
    _state_argument(kill)
    for name, text in (
        ("restart", "delete the pod; its controller creates it again"),
        (
            "lose-volume",
            "delete and recreate the pod's claims empty (a running pod is stopped and started "
            "again; a stopped one stays stopped)",
        ),
        ("stop", "stop a StatefulSet pod and keep it down until `start` (a node outage)"),
        ("start", "let a stopped pod be created again"),
    ):
        sub = actions.add_parser(name, help=text)
        _pod_arguments(sub)
        if name == "lose-volume":
            sub.add_argument(
                "--claim",
                action="append",
                metavar="TEMPLATE",
                help="lose only this claim template's claim, e.g. wal (repeatable; default all)",
            )
        _state_argument(sub)
    for name, text in (
        ("stop-all", "stop every pod (a full outage)"),
        ("start-all", "start every pod again"),
    ):
        sub = actions.add_parser(name, help=text)
        _state_argument(sub)
    etcdctl = actions.add_parser(
        "etcdctl",
        help="run etcdctl in a pod's mount namespace with its ETCDCTL_* env",
        allow_abbrev=False,  # `--name`-like etcdctl flags must not match the sandbox's options
    )
    etcdctl.passthrough = True
    _pod_arguments(etcdctl)
    etcdctl.add_argument("-c", "--container", help="container whose environment and mounts to use")
    _state_argument(etcdctl)
    etcdctl.add_argument(
        "args",
        nargs="*",
        help="etcdctl arguments (after `--` when they clash with the options above)",
    )
    down = actions.add_parser("down", help="stop every process; keep volumes unless --purge")
    down.add_argument(
        "--purge", action="store_true", help="also delete the state dir with its volumes"
    )
    _state_argument(down)


def _fail(message: str, code: int) -> int:
    print(f"etcd-chart sandbox: {message}", file=sys.stderr)
    return code


def _render_args(args: argparse.Namespace) -> RenderArgs | None:
    if bool(args.chart) == bool(args.manifest):
        return None
    return RenderArgs(
        chart=args.chart,
        manifest=args.manifest,
        release=args.name,
        namespace=args.namespace,
        values=args.values,
        set=args.set,
        set_string=args.set_string,
        helm_version=args.helm_version,
        cluster_domain=args.cluster_domain,
        helm=str(Path(args.helm).resolve()) if args.helm else None,
    )


def _summary(status: dict[str, Any]) -> str:
    lines = []
    for pod in status.get("pods", []):
        ready = "ready" if pod.get("ready") else "not ready"
        url = pod.get("client_url") or "-"
        lines.append(f"{pod['namespace']}/{pod['name']}\t{pod['address']}\t{url}\t{ready}")
    return "\n".join(lines)


PREEXISTING_KINDS = ("Secret", "ConfigMap")


def existing_objects(paths: list[str]) -> list[dict[str, Any]]:
    """The objects of the --objects files; only Secrets and ConfigMaps, each with a name."""
    found: list[dict[str, Any]] = []
    for path in paths:
        try:
            documents = load_stream(Path(path).read_text())
        except OSError as err:
            raise RenderError(f"--objects {path}: cannot read: {err.strerror}", 1) from err
        except YamlError as err:
            raise RenderError(f"--objects {path}: {err}", 1) from err
        for document in documents:
            if document.kind not in PREEXISTING_KINDS or not document.name:
                raise RenderError(
                    f"--objects {path}: {document.kind or '(no kind)'}/{document.name or '?'}: "
                    "only named Secrets and ConfigMaps can exist before the release "
                    "(create anything else through the chart)",
                    1,
                )
            found.append(document.body)
    return found


def _bin_dir(args: argparse.Namespace, live: StateDir | None = None) -> str | None:
    """--bin-dir, else ETCD_CHART_BIN_DIR, as an absolute path (the daemon has its own cwd);
    for a running sandbox (`live`) without either, the one its daemon was started with."""
    given = args.bin_dir or os.environ.get(BIN_DIR_ENV) or None
    if given is None:
        started = live.bin_dir if live is not None else None
        return started.read_text() if started is not None and started.is_file() else None
    where = "--bin-dir" if args.bin_dir else BIN_DIR_ENV
    if not Path(given).is_dir():
        raise RenderError(f"{where} {given}: not a directory", 1)
    return str(Path(given).resolve())


def _preflight(
    text: str, render_args: RenderArgs, args: argparse.Namespace, live: StateDir | None = None
) -> None:
    """Refuse what cannot run, or would wait for ever, before anything starts (`live`: a running
    sandbox, whose objects may exist already)."""
    documents = parse(text)
    check_runnable(documents, render_args.namespace, _bin_dir(args, live))
    classes = live_storage_classes(live) if live is not None else args.storage_class
    check_storage_classes(documents, render_args.namespace, [STORAGE_CLASS, *classes])
    provided = existing_objects(args.objects or [])
    check_references(
        documents, render_args.namespace, provided, live_objects(live) if live is not None else None
    )


def _installed(state: StateDir, release: str, namespace: str) -> bool:
    """Whether Helm has a revision of `release` in the sandbox's control plane."""
    result = kubectl(
        state, "-n", namespace, "get", "secrets", "-l", f"owner=helm,name={release}", "-o", "name"
    )
    if result.returncode != 0:
        raise RenderError(f"looking for release {release}: {result.stderr.strip()}", 2)
    return bool(result.stdout.strip())


def _create_objects(state: StateDir, paths: list[str], namespace: str) -> None:
    """The --objects Secrets and ConfigMaps, created or updated as `kubectl apply` would (a kept
    state dir or an upgrade may have them already)."""
    if not paths:
        return
    for obj in existing_objects(paths):
        body = {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}
        result = kubectl(state, "apply", "-f", "-", stdin=json.dumps(body))
        if result.returncode != 0:
            raise RenderError(f"--objects: {result.stderr.strip()}", 1)


def _install(
    state: StateDir, action: str, args: argparse.Namespace, render_args: RenderArgs
) -> None:
    """A chart through `helm install/upgrade`; a --manifest post-rendered (live checks against
    the sandbox's API server) and applied, as `kubectl apply` would."""
    if not render_args.manifest:
        try:
            run_helm(state, action, render_args, args.timeout, not args.no_post_renderer)
        except RenderError as err:
            raise _helm_failed(state, args.namespace, err) from err
        return
    text, hooks = _without_hooks(source(render_args))
    if hooks:
        print(
            f"etcd-chart sandbox: {render_args.manifest}: left out {len(hooks)} Helm hook "
            f"object(s) ({', '.join(hooks)}): only Helm runs hooks; give the chart directory "
            "to have them run",
            file=sys.stderr,
        )
    manifest = text if args.no_post_renderer else post_render(text, state.kubeconfig)
    result = kubectl(state, "-n", args.namespace, "apply", "-f", "-", stdin=manifest)
    if result.returncode != 0:
        raise RenderError(f"kubectl apply of {render_args.manifest}: {result.stderr.strip()}", 1)


def _without_hooks(text: str) -> tuple[str, list[str]]:
    """The stream without its Helm hook objects (what `kubectl apply` of `helm template` output
    would apply as plain objects, and then fail to change: a Job's template is immutable)."""
    kept, hooks = [], []
    documents = parse(text)
    for document in documents:
        body = document.body
        metadata = body.get("metadata") if isinstance(body, dict) else None
        if isinstance(metadata, dict) and "helm.sh/hook" in (metadata.get("annotations") or {}):
            hooks.append(f"{body.get('kind')}/{metadata.get('name')}")
        elif body is not None:
            kept.append(body)
    if not hooks:
        return text, []
    return "".join("---\n" + json.dumps(body) + "\n" for body in kept), hooks


def _start(state: StateDir, args: argparse.Namespace, render_args: RenderArgs) -> int:
    """Start the daemon (the control plane and the process kubelet), install the release, wait
    until every pod is Ready; a failure stops everything and removes what this `up` wrote.

    In a state dir a `down` kept, the control plane starts on its own data, the pods of the
    release come back as after a power cut, and the release is upgraded with what is given now
    (installed if it never was)."""
    before = set(os.listdir(state.root)) if state.root.is_dir() else None
    kept = (state.root / "control-plane").is_dir()
    started = time.monotonic()
    try:
        bin_dir = _bin_dir(args)
        text = source(render_args)
        if not kept:
            _preflight(text, render_args, args)
        extra = ["--cert-manager"] if "apiVersion: cert-manager.io/" in text else []
        extra += [f"--storage-class={name}" for name in args.storage_class]
        extra += [f"--pod-security={args.pod_security}", f"--nodes={args.nodes}"]
        if bin_dir:
            extra += ["--bin-dir", bin_dir]
        daemon = client.spawn_daemon(state, args.namespace, args.subnet, extra=extra)
        client.wait_daemon(state, daemon, timeout=300)
        if bin_dir:
            state.bin_dir.write_text(bin_dir)
        else:
            state.bin_dir.unlink(missing_ok=True)
        plane_ready = time.monotonic()
        client.request(
            state,
            {
                "op": "release",
                "release": args.name,
                "namespace": args.namespace,
                "cluster_domain": cluster_domain(render_args),
            },
        )
        if kept:
            _preflight(text, render_args, args, live=state)
        action = "upgrade" if kept and _installed(state, args.name, args.namespace) else "install"
        _create_objects(state, args.objects, args.namespace)
        _install(state, action, args, render_args)
        installed = time.monotonic()
        status = client.request(
            state, {"op": "wait_ready", "timeout": args.timeout}, timeout=args.timeout + 30
        )["status"]
    except KeyboardInterrupt:
        return _failed_up(state, before, None)
    except (ControlError, RenderError) as err:
        return _failed_up(state, before, err)
    print(_summary(status))
    print(
        f"control plane ready in {plane_ready - started:.1f} s, release installed "
        f"{installed - plane_ready:.1f} s later, all Ready {time.monotonic() - installed:.1f} s "
        "after that"
    )
    for line in describe_webui(state, args.namespace, status):
        print(line)
    print(f"kubeconfig: {state.kubeconfig}")
    print(f"status: {state.status}")
    return 0


def _failed_hook_logs(state: StateDir, namespace: str) -> str:
    """The log tails of the failed hook Jobs' pods (Helm says only that a hook failed)."""
    result = kubectl(
        state, "-n", namespace, "get", "pods", "-l", "batch.kubernetes.io/job-name", "-o", "json"
    )
    if result.returncode != 0:
        return ""
    lines = []
    for pod in json.loads(result.stdout).get("items", []):
        if (pod.get("status") or {}).get("phase") != "Failed":
            continue
        name = pod["metadata"]["name"]
        for container in (pod.get("spec") or {}).get("containers") or []:
            log = state.log_file(namespace, name, container["name"])
            if log.exists():
                lines.append(f"hook pod {namespace}/{name} container {container['name']} ({log}):")
                lines += [f"  {line}" for line in tail(log, 10).splitlines()]
    return "\n".join(lines)


def _helm_failed(state: StateDir, namespace: str, err: RenderError) -> RenderError:
    logs = _failed_hook_logs(state, namespace) if "hook" in str(err) else ""
    return RenderError(f"{err}\n{logs}" if logs else str(err), err.code)


def _upgrade(state: StateDir, args: argparse.Namespace) -> int:
    if not client.running(state):
        return _fail(f"no sandbox is running in {state.root}; use `up`", 2)
    render_args = _render_args(args)
    if render_args is None:
        return _fail("give either a chart directory or --manifest FILE", 1)
    try:
        _preflight(source(render_args), render_args, args, live=state)
        _create_objects(state, args.objects, args.namespace)
        # A second release beside the first (a restore into a new release) is installed.
        action = "upgrade" if _installed(state, args.name, args.namespace) else "install"
        _install(state, action, args, render_args)
        status = client.request(
            state, {"op": "wait_ready", "timeout": args.timeout}, timeout=args.timeout + 30
        )["status"]
    except (ControlError, RenderError) as err:
        return _fail(f"upgrade failed:\n{err}", err.code)
    print(_summary(status))
    for line in describe_webui(state, args.namespace, status):
        print(line)
    return 0


def _up(state: StateDir, args: argparse.Namespace) -> int:
    if _render_args(args) is None:
        return _fail("give either a chart directory or --manifest FILE", 1)
    try:
        _bin_dir(args)
    except RenderError as err:
        return _fail(str(err), err.code)
    if client.running(state):
        return _fail(
            f"a sandbox is already running in {state.root}; use `upgrade`, or `down` first", 1
        )
    if client.has_leftovers(state):
        client.stop(state)  # a daemon that died, or an `up` whose `down` never ran
    render_args = _render_args(args)
    assert render_args is not None
    return _start(state, args, render_args)


def _failed_up(
    state: StateDir, before: set[str] | None, err: ControlError | RenderError | None
) -> int:
    """Stop everything a failed (or interrupted: `err` None) `up` started and remove what it
    wrote; says why."""
    client.stop(state)
    removed = _remove_new_files(state, before)
    if err is None:
        return _fail("interrupted: stopped everything", 130)
    message = str(err)
    if str(state.daemon_log) in message:
        message += "\n" + tail(state.daemon_log, 15)
    return _fail(f"up failed; stopped everything{removed}:\n{message}", err.code)


def _remove_new_files(state: StateDir, before: set[str] | None) -> str:
    """Undo what a failed `up` wrote: the whole state dir if it made it, else only the entries it
    added (a kept state dir's volumes and cluster record stay). Says what it removed."""
    if before is None:
        shutil.rmtree(state.root, ignore_errors=True)
        return f" and removed {state.root}"
    added = sorted(set(os.listdir(state.root)) - before) if state.root.is_dir() else []
    for name in added:
        path = state.root / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return f" and removed what it added to {state.root}" if added else ""


def _logs(state: StateDir, args: argparse.Namespace) -> int:
    namespaces = (
        [args.namespace]
        if args.namespace
        else sorted(p.name for p in state.logs.glob("*") if (p / args.pod).is_dir())
    )
    if not namespaces:
        return _fail(f"no logs for pod {args.pod!r} in {state.logs}", 1)
    if len(namespaces) > 1:
        return _fail(
            f"pod {args.pod!r} is in several namespaces ({', '.join(namespaces)}); "
            "pass --namespace",
            1,
        )
    directory = state.logs / namespaces[0] / args.pod
    files = sorted(p.stem for p in directory.glob("*.log"))
    known = ", ".join(files) or "none has a log yet"
    if args.container and args.container not in files:
        return _fail(
            f"pod {args.pod} has no container {args.container!r} with a log; its containers: "
            f"{known}",
            1,
        )
    name = args.container or (
        "etcd" if "etcd" in files else (files[0] if len(files) == 1 else None)
    )
    if name is None:
        return _fail(f"pod {args.pod}: choose a container with -c ({known})", 1)
    sys.stdout.write((directory / f"{name}.log").read_text(errors="replace"))
    return 0


def _etcdctl(state: StateDir, args: argparse.Namespace) -> int:
    extra = list(args.args)
    if extra and extra[0] == "--":
        extra = extra[1:]
    answer = client.request(
        state,
        {
            "op": "exec_spec",
            "pod": args.pod,
            "namespace": args.namespace,
            "container": args.container,
            "program": "etcdctl",
            "args": extra,
        },
    )
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=state.root, delete=False) as handle:
        json.dump(answer["spec"], handle)
        spec_file = handle.name
    try:
        result = subprocess.run(  # noqa: S603
            launcher_argv(spec_file),
            check=False,
        )
    finally:
        Path(spec_file).unlink(missing_ok=True)
    return result.returncode


def _signal_number(name: str) -> int:
    text = name.upper()
    if text.isdigit():
        return int(text)
    return int(signal.Signals[text if text.startswith("SIG") else f"SIG{text}"])


def run(args: argparse.Namespace) -> int:
    state = StateDir(args.state_dir)
    action = args.action
    try:
        if action == "up":
            return _up(state, args)
        if action == "upgrade":
            return _upgrade(state, args)
        if action == "down":
            if not state.root.exists():
                return _fail(
                    f"{state.root} does not exist: no sandbox to stop (check --state-dir)", 1
                )
            if not state.is_sandbox():
                return _fail(
                    f"{state.root} is not a sandbox state directory (no daemon.log, network.json "
                    "or volumes): nothing stopped, nothing removed (check --state-dir)",
                    1,
                )
            stopped = client.stop(state, purge=args.purge)
            print(f"stopped {stopped} process(es){'; state dir removed' if args.purge else ''}")
            return 0
        if action == "logs":
            return _logs(state, args)
        if action == "status":
            print(
                json.dumps(
                    client.request(state, {"op": "status"})["status"], indent=2, sort_keys=True
                )
            )
            return 0
        if action == "wait":
            answer = client.request(state, {"op": "wait_ready", "timeout": args.timeout})
            print(json.dumps(answer["status"], indent=2, sort_keys=True))
            return 0
        if action == "etcdctl":
            return _etcdctl(state, args)
        if action == "kill":
            try:
                number = _signal_number(args.signal)
            except (KeyError, ValueError):
                return _fail(f"--signal: unknown signal {args.signal!r}", 1)
            answer = client.request(
                state,
                {
                    "op": "kill",
                    "pod": args.pod,
                    "namespace": args.namespace,
                    "container": args.container,
                    "signal": number,
                },
            )
            print(f"sent {signal.Signals(number).name} to {args.pod}/{answer['container']}")
            return 0
        ops = {
            "restart": "restart",
            "lose-volume": "lose_volume",
            "stop": "stop_pod",
            "start": "start_pod",
            "stop-all": "stop_all",
            "start-all": "start_all",
        }
        payload: dict[str, Any] = {"op": ops[action]}
        if action in ("restart", "lose-volume", "stop", "start"):
            payload.update({"pod": args.pod, "namespace": args.namespace})
        if action == "lose-volume" and args.claim:
            payload["claims"] = args.claim
        answer = client.request(state, payload)
        if action == "lose-volume":
            print(
                f"{args.pod}: claims {', '.join(answer.get('claims', [])) or '(none)'} "
                "recreated empty"
            )
        return 0
    except ControlError as err:
        return _fail(str(err), err.code)
