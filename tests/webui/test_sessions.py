"""Sessions, CSRF tokens, the login check and the throttle of failed logins."""

from __future__ import annotations

from pathlib import Path

import pytest
from sessions import (
    Authenticator,
    FailureThrottle,
    Login,
    SessionSigner,
    credentials_match,
    read_login,
)


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_session_token_is_accepted_until_it_expires() -> None:
    clock = Clock()
    signer = SessionSigner(b"k" * 32, ttl=60, clock=clock)
    token = signer.issue("operator")
    session = signer.check(token)
    assert session is not None
    assert (session.user, session.expires) == ("operator", 1_000_060)
    clock.now += 59
    assert signer.check(token) is not None
    clock.now += 1
    assert signer.check(token) is None


def test_forged_and_foreign_tokens_are_refused() -> None:
    signer = SessionSigner(b"k" * 32, ttl=60)
    token = signer.issue("operator")
    version, user, expires, nonce, mac = token.split(".")
    later = f"{version}.{user}.{int(expires) + 3600}.{nonce}.{mac}"
    assert signer.check(later) is None
    assert SessionSigner(b"other key" * 4, ttl=60).check(token) is None
    assert signer.check("") is None
    assert signer.check("v1.a.b.c") is None
    assert signer.check("v2." + token[3:]) is None


def test_logout_revokes_the_session() -> None:
    signer = SessionSigner(b"k" * 32, ttl=60)
    token = signer.issue("operator")
    session = signer.check(token)
    assert session is not None
    signer.revoke(session)
    assert signer.check(token) is None
    assert signer.check(signer.issue("operator")) is not None


def test_the_csrf_token_is_bound_to_its_session() -> None:
    signer = SessionSigner(b"k" * 32, ttl=60)
    first, second = signer.issue("a"), signer.issue("a")
    assert signer.csrf_ok(first, signer.csrf_token(first))
    assert not signer.csrf_ok(first, signer.csrf_token(second))
    assert not signer.csrf_ok(first, "")


def test_credentials_must_match_in_both_fields() -> None:
    login = Login("admin", "s3cret")
    assert credentials_match(login, "admin", "s3cret")
    assert not credentials_match(login, "admin", "s3cre")
    assert not credentials_match(login, "Admin", "s3cret")
    assert not credentials_match(login, "", "")


def test_failed_logins_wait_longer_each_time_up_to_a_cap() -> None:
    clock = Clock()
    throttle = FailureThrottle(clock)
    delays = [throttle.failed("10.0.0.1") for _ in range(7)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert throttle.failed("10.0.0.2") == 0.5  # per address
    throttle.succeeded("10.0.0.1")
    assert throttle.failed("10.0.0.1") == 0.5
    clock.now += 301
    assert throttle.failed("10.0.0.2") == 0.5  # failures are forgotten after five minutes


def test_the_login_comes_from_the_mounted_secret(tmp_path: Path) -> None:
    assert read_login(str(tmp_path)) is None
    (tmp_path / "username").write_text("admin\n")
    (tmp_path / "password").write_text("pass word\n")
    assert read_login(str(tmp_path)) == Login("admin", "pass word")


@pytest.mark.parametrize("enabled", [True, False])
def test_authenticator_without_a_secret(tmp_path: Path, enabled: bool) -> None:
    auth = Authenticator(enabled, str(tmp_path), ttl=60)
    if enabled:
        assert auth.signer() is None  # no login mounted: nobody gets in
    else:
        signer = auth.signer()
        assert signer is not None and signer.check(signer.issue("anonymous")) is not None


def test_a_changed_password_ends_every_session(tmp_path: Path) -> None:
    (tmp_path / "username").write_text("admin")
    (tmp_path / "password").write_text("first")
    auth = Authenticator(True, str(tmp_path), ttl=60)
    signer = auth.signer()
    assert signer is not None
    token = signer.issue("admin")
    assert auth.session(token) is not None
    (tmp_path / "password").write_text("second")
    assert auth.session(token) is None
