"""Listing a prefix of 10,000 keys through the Web UI's API, page by page, vs etcdctl.

One etcd (the binary of .cache/bin, or `etcd` on PATH) on loopback holds N keys under /bench/
(written in transactions of 100 puts). The UI's program runs as its pod runs it: a directory with
chart/files/webui/ and the agent's etcd_client.py and errors.py, `python3 DIR`, login on. Each run
times, side by side:

- the UI: log in once, then GET /api/keys?prefix=/bench/&limit=PAGE, following `next` until the
  last page (keys_only ranges with a limit behind it), for each page size;
- etcdctl: `etcdctl get --prefix /bench/ --keys-only` (one range, the whole prefix at once).

It prints the medians and the ratio UI / etcdctl.
Usage: `python bench/webui.py [--keys 10000] [--runs 5] [--page-sizes 200 1000]`.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from etcd_chart.helm import find_tool

REPO = Path(__file__).resolve().parents[1]
FILES = REPO / "chart" / "files"
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def post(url: str, body: dict[str, object], cookie: str = "") -> tuple[dict[str, object], str]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    if cookie:
        request.add_header("Cookie", cookie)
    with OPENER.open(request, timeout=30) as response:
        return json.loads(response.read()), response.headers.get("Set-Cookie", "")


def get(url: str, cookie: str) -> dict[str, object]:
    request = urllib.request.Request(url, headers={"Cookie": cookie})
    with OPENER.open(request, timeout=30) as response:
        answer: dict[str, object] = json.loads(response.read())
        return answer


def wait_for(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with OPENER.open(url, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not answer within {timeout:.0f} s")


def fill(client_url: str, keys: int) -> None:
    for start in range(0, keys, 100):
        puts = [
            {"request_put": {"key": b64(f"/bench/{i:06d}".encode()), "value": b64(b"v" * 64)}}
            for i in range(start, min(start + 100, keys))
        ]
        post(f"{client_url}/v3/kv/txn", {"success": puts})


def list_through_ui(ui: str, cookie: str, page: int) -> int:
    prefix = b64(b"/bench/")
    seen, after = 0, ""
    while True:
        query = f"prefix={prefix}&limit={page}" + (f"&after={after}" if after else "")
        answer = get(f"{ui}/api/keys?{query}", cookie)
        seen += len(answer["entries"])  # type: ignore[arg-type]
        after = str(answer["next"])
        if not after:
            return seen


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--page-sizes", type=int, nargs="+", default=[200, 1000])
    args = parser.parse_args(argv)
    etcd, etcdctl = find_tool("etcd"), find_tool("etcdctl")
    work = Path(tempfile.mkdtemp(prefix="bench-webui-"))
    client_port, peer_port, ui_port = free_port(), free_port(), free_port()
    client_url = f"http://127.0.0.1:{client_port}"
    program = work / "program"
    shutil.copytree(FILES / "webui", program)
    for name in ("etcd_client.py", "errors.py"):
        shutil.copy(FILES / "etcd-agent" / name, program / name)
    (work / "login").mkdir()
    (work / "login" / "username").write_text("bench")
    (work / "login" / "password").write_text("bench-password")
    processes = []
    try:
        processes.append(
            subprocess.Popen(  # noqa: S603
                [
                    etcd,
                    f"--data-dir={work / 'data'}",
                    f"--listen-client-urls={client_url}",
                    f"--advertise-client-urls={client_url}",
                    f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                    f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                    f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        wait_for(f"{client_url}/readyz")
        fill(client_url, args.keys)
        env = {
            **os.environ,
            "POD_IP": "127.0.0.1",
            "ETCD_WEBUI_PORT": str(ui_port),
            "ETCD_WEBUI_ENDPOINTS": client_url,
            "ETCD_WEBUI_LOGIN_DIR": str(work / "login"),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        processes.append(
            subprocess.Popen(  # noqa: S603
                [sys.executable, str(program)], env=env, stderr=subprocess.DEVNULL
            )
        )
        ui = f"http://127.0.0.1:{ui_port}"
        wait_for(f"{ui}/healthz")
        _, cookie = post(f"{ui}/api/login", {"username": "bench", "password": "bench-password"})
        cookie = cookie.split(";")[0]
        ui_times: dict[int, list[float]] = {page: [] for page in args.page_sizes}
        etcdctl_times: list[float] = []
        for _ in range(args.runs):
            for page in args.page_sizes:
                start = time.monotonic()
                assert list_through_ui(ui, cookie, page) == args.keys
                ui_times[page].append(time.monotonic() - start)
            start = time.monotonic()
            listed = subprocess.run(  # noqa: S603
                [etcdctl, f"--endpoints={client_url}", "get", "--prefix", "/bench/", "--keys-only"],
                capture_output=True,
                text=True,
                check=True,
            )
            etcdctl_times.append(time.monotonic() - start)
            assert len([line for line in listed.stdout.splitlines() if line]) == args.keys
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    baseline = statistics.median(etcdctl_times)
    print(f"{args.keys} keys under /bench/, median of {args.runs} runs")
    print(f"  etcdctl get --prefix --keys-only: {baseline * 1000:.0f} ms")
    for page, times in ui_times.items():
        median = statistics.median(times)
        pages = -(-args.keys // page)
        print(
            f"  UI API, {pages} pages of {page}: {median * 1000:.0f} ms "
            f"({median / baseline:.2f} x etcdctl)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
