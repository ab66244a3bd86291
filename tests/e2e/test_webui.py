"""The built-in Web UI in the sandbox, driven by a real headless Chromium.

Two releases, each with the UI on: a plain one (no TLS, no RBAC) whose UI may write and whose login
the sandbox creates (as `etcd-chart sandbox up` prints it), and one with TLS, mutual TLS for the
UI's own client certificate, etcd RBAC (the UI logs in as its own read-only etcd user) and the
NetworkPolicy, whose login Secret the test creates. In both the browser logs in, sees every member
and the leader, and finds a key written with etcdctl; the writable UI edits a key that etcdctl then
reads back; the read-only UI has no edit buttons and its API answers 403 to a write; a wrong
password and an API call without a session are refused. Screenshots of the cluster view and the
key browser land in the test's tmp dir (docs/webui-*.png are copies of them).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from browser import call, chromium
from etcd_chart.sandbox.client import Sandbox
from membership import leader, pod_names, wait_converged
from playwright.sync_api import expect
from strays import assert_no_stray_processes, subnet_of

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("test_webui")]

ROOT_PASSWORD = "root-password-for-the-webui-test"
UI_ETCD_PASSWORD = "etcd-password-of-the-webui"
LOGIN = ("operator", "login-password-for-the-webui-test")
URL_LINE = re.compile(
    r"^web UI: (http://[0-9.]+:8080/) \(log in as (\S+) with password (\S+):", re.M
)


class Release:
    def __init__(self, sb: Sandbox, url: str, login: tuple[str, str], root: list[str]):
        self.sb = sb
        self.url = url
        self.login = login
        self.root = root  # etcdctl arguments that act as root

    def etcdctl(self, *args: str) -> str:
        result = self.sb.etcdctl("etcd-0", *self.root, *args)
        assert result.returncode == 0, result.stderr
        return result.stdout


def secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}


def boot(sb: Sandbox, *args: str) -> str:
    result = sb.up(*args, timeout=240)
    wait_converged(sb, 3)
    return result.stdout


def stop(sb: Sandbox) -> None:
    subnet = subnet_of(sb.state_dir)
    sb.down(purge=True)
    assert_no_stray_processes(sb.state_dir, subnet)


def seed(release: Release) -> None:
    release.etcdctl("put", "/webui-test/greeting", "hello from etcdctl")
    release.etcdctl("put", "/webui-test/config.json", '{"replicas": 3, "tls": true}')
    release.etcdctl(
        "put",
        "/registry/configmaps/default/settings",
        '{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"settings"},"data":{"a":"1"}}',
    )


@pytest.fixture(scope="module")
def writable(tmp_path_factory: pytest.TempPathFactory, chart_dir: Path) -> Iterator[Release]:
    """No TLS, no RBAC, readOnly false; the login is the one `sandbox up` creates and prints."""
    sb = Sandbox(tmp_path_factory.mktemp("writable") / "state")
    try:
        out = boot(sb, str(chart_dir), "--set", "webui.enabled=true,webui.readOnly=false")
        found = URL_LINE.search(out)
        assert found, f"`sandbox up` printed no web UI line:\n{out}"
        release = Release(sb, found.group(1), (found.group(2), found.group(3)), [])
        seed(release)
        yield release
    finally:
        stop(sb)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, chart_dir: Path) -> Iterator[Release]:
    """TLS with client certificates, RBAC (the UI as its own read-only etcd user), NetworkPolicy
    restricting the client port; the login Secret made beforehand."""
    work = tmp_path_factory.mktemp("secured")
    objects = work / "objects.yaml"
    objects.write_text(
        yaml.safe_dump_all(
            [
                secret("etcd-root-password", {"password": ROOT_PASSWORD}),
                secret("etcd-webui-etcd", {"password": UI_ETCD_PASSWORD}),
                secret("ui-login", {"username": LOGIN[0], "password": LOGIN[1]}),
            ]
        )
    )
    values = ",".join(
        [
            "tls.enabled=true",
            "auth.rbac.enabled=true",
            "auth.rbac.rootPassword.existingSecret=etcd-root-password",
            "auth.token.type=simple",
            "networkPolicy.client.restrict=true",
            "webui.enabled=true",
            "webui.auth.existingSecret=ui-login",
            "webui.etcdUser.password.existingSecret=etcd-webui-etcd",
        ]
    )
    sb = Sandbox(work / "state")
    try:
        out = boot(sb, str(chart_dir), "--set", values, "--objects", str(objects))
        found = re.search(r"^web UI: (http://[0-9.]+:8080/) \(log in with", out, re.M)
        assert found, f"`sandbox up` printed no web UI line:\n{out}"
        release = Release(sb, found.group(1), LOGIN, [f"--user=root:{ROOT_PASSWORD}"])
        seed(release)
        yield release
    finally:
        stop(sb)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as running:
        yield running


def logged_in_page(browser: Any, release: Release) -> Any:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(release.url)
    page.fill("#login-user", release.login[0])
    page.fill("#login-password", release.login[1])
    page.click("#login-submit")
    page.wait_for_selector("#cluster-table tbody tr.member >> nth=2", timeout=30_000)
    return page


def check_cluster_view(page: Any, release: Release, screenshot: Path) -> None:
    expect(page.locator("#cluster-table tbody tr.leader")).to_have_count(1)
    rows = page.locator("#cluster-table tbody tr.member")
    names = [rows.nth(i).get_attribute("data-member") for i in range(rows.count())]
    assert names == pod_names(3)
    shown_leader = page.locator("#cluster-table tbody tr.leader").get_attribute("data-member")
    assert shown_leader == leader(release.sb, "etcd-0")
    assert page.locator("#cluster-table td.ok").count() == 3  # every member healthy
    assert page.locator("#cluster-leader").inner_text() == shown_leader
    page.screenshot(path=str(screenshot), full_page=True)


def open_key(page: Any, *path: str) -> None:
    page.click("#tab-keys")
    for step in path:
        page.click(f"#keys-list li button[data-key='{step}']")
    page.wait_for_selector("#key-detail:not([hidden])")


def test_writable_ui_shows_the_cluster_finds_and_edits_a_key(
    writable: Release, browser: Any, tmp_path: Path
) -> None:
    page = logged_in_page(browser, writable)
    assert page.locator("#mode").inner_text() == "read-write"
    check_cluster_view(page, writable, tmp_path / "webui-cluster.png")
    open_key(page, "/", "/webui-test/", "/webui-test/greeting")
    assert page.locator("#key-value").inner_text() == "hello from etcdctl"
    page.fill("#edit-value", "edited in the browser")
    page.click("#edit-save")
    expect(page.locator("#key-value")).to_have_text("edited in the browser")
    assert writable.etcdctl("get", "/webui-test/greeting", "--print-value-only") == (
        "edited in the browser\n"
    )
    assert page.locator("#key-meta dd >> nth=2").inner_text() == "2"  # the key's version
    page.click("#history-button")
    page.wait_for_selector("#history-list li")
    assert "hello from etcdctl" in page.locator("#history-list li >> nth=0").inner_text()
    page.close()


def test_key_browser_shows_kubernetes_objects(
    writable: Release, browser: Any, tmp_path: Path
) -> None:
    page = logged_in_page(browser, writable)
    open_key(
        page,
        "/",
        "/registry/",
        "/registry/configmaps/",
        "/registry/configmaps/default/",
        "/registry/configmaps/default/settings",
    )
    assert page.locator("#key-kubernetes").inner_text() == (
        "Kubernetes configmaps, ConfigMap (v1): default/settings"
    )
    assert '"name": "settings"' in page.locator("#key-value").inner_text()
    page.screenshot(path=str(tmp_path / "webui-keys.png"), full_page=True)
    page.close()


def test_secured_ui_reads_through_mtls_and_rbac_and_refuses_writes(
    secured: Release, browser: Any, tmp_path: Path
) -> None:
    page = logged_in_page(browser, secured)
    assert page.locator("#mode").inner_text() == "read-only"
    check_cluster_view(page, secured, tmp_path / "cluster.png")
    open_key(page, "/", "/webui-test/", "/webui-test/greeting")
    assert page.locator("#key-value").inner_text() == "hello from etcdctl"
    assert page.locator("#edit-save").count() == 0
    assert page.locator("#edit-delete").count() == 0
    assert page.locator("#new-key-create").count() == 0
    # The API refuses the write too, with the session and its CSRF token in place.
    answer = page.evaluate(
        """async () => {
            const session = await (await fetch('/api/session')).json();
            const response = await fetch('/api/key', {
                method: 'PUT',
                headers: {'Content-Type': 'application/json', 'X-CSRF-Token': session.csrf},
                body: JSON.stringify({key: btoa('/webui-test/greeting'), value: btoa('no')}),
            });
            return [response.status, (await response.json()).error];
        }"""
    )
    assert answer == [403, "this UI is read-only (webui.readOnly)"]
    assert secured.etcdctl("get", "/webui-test/greeting", "--print-value-only") == (
        "hello from etcdctl\n"
    )
    # Its etcd user may read, not write: the read-only role the chart gave it.
    denied = secured.sb.etcdctl(
        "etcd-0", f"--user=webui:{UI_ETCD_PASSWORD}", "put", "/webui-test/greeting", "no"
    )
    assert denied.returncode != 0
    assert "permission denied" in denied.stderr
    page.close()


@pytest.mark.parametrize("which", ["writable", "secured"])
def test_wrong_password_and_missing_session_are_refused(
    which: str, request: pytest.FixtureRequest, browser: Any
) -> None:
    release: Release = request.getfixturevalue(which)
    page = browser.new_page()
    page.goto(release.url)
    page.fill("#login-user", release.login[0])
    page.fill("#login-password", "not-the-password")
    page.click("#login-submit")
    page.wait_for_selector("#login-error:not([hidden])")
    assert page.locator("#login-error").inner_text() == "wrong user name or password"
    assert page.locator("#cluster-view").is_hidden()
    page.close()
    status, answer, _ = call(
        release.url + "api/login",
        "POST",
        {"username": release.login[0], "password": "not-the-password"},
    )
    assert (status, answer) == (401, {"error": "wrong user name or password"})
    for path in ("api/cluster", "api/keys?prefix=", "api/session"):
        status, answer, headers = call(release.url + path)
        assert (status, answer) == (401, {"error": "log in first"}), path
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Content-Security-Policy"].startswith("default-src 'self'")
    status, answer, _ = call(release.url + "healthz")
    assert (status, answer) == (200, {"ok": True})
