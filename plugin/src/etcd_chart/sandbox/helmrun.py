"""`helm install` / `helm upgrade` of the release into a sandbox's real control plane, with the
post-renderer, as a user would type them: Helm 4 through the `etcd-chart` plugin (installed into
a Helm home of the state dir's own), Helm 3 through the executable `plugin/bin/etcd-post-render`.
Helm runs the hooks itself. Before Helm runs, what the sandbox cannot run, and Secrets nobody
would create, are refused with the whole list."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from etcd_chart import bundled
from etcd_chart.helm import REPO_ROOT, ToolMissing, find_tool, helm_major, isolated_helm_env
from etcd_chart.sandbox import podspec, references
from etcd_chart.sandbox.render import RenderArgs, RenderError
from etcd_chart.sandbox.state import StateDir
from etcd_chart.yamlio import Document, YamlError, load_stream

PLUGIN_DIR = REPO_ROOT / "plugin"
POST_RENDER_EXECUTABLE = PLUGIN_DIR / "bin" / "etcd-post-render"


def helm_env(state: StateDir, major: int) -> dict[str, str]:
    """A Helm home of the sandbox's own per major version."""
    return isolated_helm_env(state.root / "helm" / f"helm{major}", str(state.kubeconfig))


def plugin_source(state: StateDir) -> Path:
    """The plugin directory to install: the checkout's `plugin/`, or, for a package installed
    with pip (which has no such directory), one written into the state dir from the plugin.yaml
    the package carries, whose command runs this interpreter's `etcd-chart post-render`."""
    if (PLUGIN_DIR / "plugin.yaml").is_file() and POST_RENDER_EXECUTABLE.is_file():
        return PLUGIN_DIR
    written = state.root / "helm" / "plugin"
    (written / "bin").mkdir(parents=True, exist_ok=True)
    try:
        manifest = bundled.plugin_manifest().read_text()
    except OSError as err:
        raise RenderError(f"the Helm 4 post-renderer plugin cannot be installed: {err}", 2) from err
    (written / "plugin.yaml").write_text(manifest)
    command = written / "bin" / "etcd-post-render"
    command.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m etcd_chart.cli post-render "$@"\n')
    command.chmod(0o755)
    return written


def _post_renderer(state: StateDir, helm: str, major: int, env: dict[str, str]) -> str:
    source = plugin_source(state)
    if major < 4:
        return str(source / "bin" / "etcd-post-render")
    # helm 4 names the installed plugin after the source directory (`plugin`), so look inside.
    installed = any(
        "name: etcd-chart" in path.read_text(errors="replace")
        for path in Path(env["HELM_PLUGINS"]).glob("*/plugin.yaml")
    )
    if not installed:
        result = subprocess.run(  # noqa: S603
            [helm, "plugin", "install", str(source)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=120,
        )
        if result.returncode != 0:
            raise RenderError(
                f"installing the post-renderer plugin ({source}) into the sandbox's Helm "
                f"home failed:\n{result.stderr.strip()}",
                2,
            )
    return "etcd-chart"


def helm_command(
    state: StateDir, action: str, args: RenderArgs, timeout: float, post_render: bool = True
) -> list[str]:
    """The helm command line of `action` (install or upgrade); installs the plugin if needed.
    Without `post_render`, as a chart-repository install or Argo CD would run it."""
    if not args.chart:
        raise RenderError(
            "the sandbox installs a chart with helm: give a chart directory (a --manifest is "
            "applied with kubectl instead)",
            1,
        )
    try:
        helm = args.find_helm()
        major = helm_major(helm)
    except (ToolMissing, OSError, ValueError, subprocess.CalledProcessError) as err:
        raise RenderError(str(err), 2) from err
    env = helm_env(state, major)
    kubeconfig = str(state.kubeconfig)
    return [
        helm,
        action,
        args.release,
        str(args.chart),
        "--namespace",
        args.namespace,
        "--kubeconfig",
        kubeconfig,
        *(
            [
                "--post-renderer",
                _post_renderer(state, helm, major, env),
                "--post-renderer-args",
                f"--kubeconfig={kubeconfig}",
            ]
            if post_render
            else []
        ),
        "--timeout",
        f"{int(timeout)}s",
        *args.helm_args(),
    ]


def run_helm(
    state: StateDir, action: str, args: RenderArgs, timeout: float, post_render: bool = True
) -> str:
    """Run helm; returns its output, raises RenderError with Helm's message on failure."""
    command = helm_command(state, action, args, timeout, post_render)
    major = helm_major(command[0])
    # Helm 4 drops a post-renderer plugin's stderr: its messages come back through this file.
    messages = state.root / "helm" / "post-render-messages"
    messages.parent.mkdir(parents=True, exist_ok=True)
    messages.unlink(missing_ok=True)
    result = subprocess.run(  # noqa: S603
        command,
        capture_output=True,
        text=True,
        env={**helm_env(state, major), "ETCD_CHART_ERROR_FILE": str(messages)},
        check=False,
        timeout=timeout + 60,
    )
    if result.returncode != 0:
        shown = " ".join(command[:4])
        said = messages.read_text(errors="replace").strip() if messages.exists() else ""
        said = "\n".join(line for line in said.splitlines() if line not in result.stderr)
        told = f"{result.stderr.strip()}\n{said}" if said else result.stderr.strip()
        raise RenderError(f"{shown} failed:\n{told}", 1)
    return result.stdout


def kubectl(
    state: StateDir, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`kubectl ARGS` against the sandbox's control plane, output captured, never raising."""
    return subprocess.run(  # noqa: S603
        [find_tool("kubectl"), f"--kubeconfig={state.kubeconfig}", *args],
        input=stdin, capture_output=True, text=True, check=False,
    )  # fmt: skip


def parse(text: str) -> list[Document]:
    """The rendered stream's documents, once for every check below."""
    try:
        return load_stream(text)
    except YamlError as err:
        raise RenderError(str(err), 1) from err


def _objects(documents: list[Document]) -> list[dict[str, Any]]:
    return [
        d.body
        for d in documents
        if isinstance(d.body, dict) and isinstance(d.body.get("metadata"), dict)
    ]


def check_runnable(documents: list[Document], namespace: str, bin_dir: str | None) -> None:
    """Before anything is installed: every pod template of the rendered chart can run here (an
    etcd image whose tag names a release this machine has binaries for, and nothing the process
    kubelet cannot do). RenderError 1 for what it cannot run, 2 for missing binaries."""
    tools = podspec.Tools()
    tools.set_bin_dir(bin_dir)
    sources = {id(d.body): d.source for d in documents}
    objects = [d.body for d in documents if isinstance(d.body, dict)]
    configmaps = {
        (str(o["metadata"].get("namespace") or namespace), str(o["metadata"].get("name"))): o
        for o in objects
        if o.get("kind") == "ConfigMap" and isinstance(o.get("metadata"), dict)
    }

    def lookup(kind: str, ns: str, name: str) -> dict[str, Any] | None:
        return configmaps.get((ns, name)) if kind == "ConfigMap" else None

    errors: list[str] = []
    for obj in objects:
        if obj.get("kind") not in ("StatefulSet", "Deployment", "Job", "CronJob"):
            continue
        meta = obj.get("metadata") or {}
        where = f"{obj['kind']} {meta.get('namespace') or namespace}/{meta.get('name')}"
        if sources.get(id(obj)):
            where = f"{sources[id(obj)]}: {where}"
        template = copy.deepcopy(references.pod_template(obj))
        spec = template.setdefault("spec", {})
        claims = [
            str((t.get("metadata") or {}).get("name"))
            for t in (obj.get("spec") or {}).get("volumeClaimTemplates") or []
        ]
        spec["volumes"] = [
            *(spec.get("volumes") or []),
            *({"name": c, "persistentVolumeClaim": {"claimName": c}} for c in claims),
        ]
        try:
            errors += podspec.check_template(where, template, tools, lookup, namespace)
        except podspec.ToolMissing as err:
            raise RenderError(str(err), 2) from err
    if errors:
        raise RenderError("\n".join(errors), 1)


Exists = Callable[[str, str, str], bool]  # (kind, namespace, name) -> found on the cluster


def check_references(
    documents: list[Document],
    namespace: str,
    provided: list[dict[str, Any]],
    exists: Exists | None = None,
) -> None:
    """Before anything is installed: every Secret and ConfigMap the pod templates need is
    rendered, made by cert-manager (a Certificate's secretName) or by Kubernetes itself
    (kube-root-ca.crt), given with --objects, or (`exists`) already on the cluster. On a cluster
    a pod would wait for it for ever; nothing in the sandbox would create it, so say so now."""
    objects = []
    made: set[tuple[str, str, str]] = set()
    for obj in _objects(documents):
        placed = {**obj, "metadata": {**obj["metadata"]}}
        placed["metadata"].setdefault("namespace", namespace)
        objects.append(placed)
        if obj.get("kind") == "Certificate" and (obj.get("spec") or {}).get("secretName"):
            made.add(("Secret", placed["metadata"]["namespace"], obj["spec"]["secretName"]))
    for obj in provided:
        made.add((str(obj["kind"]), namespace, str(obj["metadata"]["name"])))

    def lookup(kind: str, ns: str, name: str) -> dict[str, Any] | None:
        if (kind, ns, name) in made or (kind, name) == ("ConfigMap", "kube-root-ca.crt"):
            return {}
        return {} if exists is not None and exists(kind, ns, name) else None

    absent = references.missing(objects, lookup)
    if absent:
        raise RenderError(references.report(absent), 1)


def live_objects(state: StateDir) -> Exists:
    """Whether an object exists on the sandbox's control plane (`kubectl get`)."""

    def exists(kind: str, namespace: str, name: str) -> bool:
        got = kubectl(state, "-n", namespace, "get", kind.lower(), name, "--ignore-not-found",
                      "-o", "name")  # fmt: skip
        return got.returncode == 0 and bool(got.stdout.strip())

    return exists


def check_storage_classes(documents: list[Document], namespace: str, available: list[str]) -> None:
    """Every claim (template) names a StorageClass the sandbox serves, or none (the default)."""
    problems = []
    missing: set[str] = set()
    for obj in _objects(documents):
        where = f"{obj.get('kind')} {obj['metadata'].get('namespace') or namespace}/"
        where += str(obj["metadata"].get("name"))
        if obj.get("kind") == "PersistentVolumeClaim":
            claims = [("", obj)]
        else:
            templates = (obj.get("spec") or {}).get("volumeClaimTemplates") or []
            claims = [
                (f"claim template {(t.get('metadata') or {}).get('name')} ", t) for t in templates
            ]
        for what, claim in claims:
            name = (claim.get("spec") or {}).get("storageClassName")
            if name and name not in available:
                problems.append(f"{where}: {what}asks for StorageClass {name!r}")
                missing.add(str(name))
    if problems:
        raise RenderError(
            "\n".join(problems)
            + f"\nthe sandbox has no such StorageClass (it has: {', '.join(available)}; "
            f"{available[0]} is the default). Leave the class empty for the default, or let the "
            "sandbox serve the names too: `sandbox up "
            + " ".join(f"--storage-class {m}" for m in sorted(missing))
            + "`",
            1,
        )


def live_storage_classes(state: StateDir) -> list[str]:
    got = kubectl(state, "get", "storageclasses", "-o", "jsonpath={.items[*].metadata.name}")
    return got.stdout.split() if got.returncode == 0 else []
