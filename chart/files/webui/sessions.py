"""Login, sessions and CSRF tokens.

A session is a signed token in an HttpOnly cookie: `v1.USER.EXPIRES.NONCE.MAC`, the MAC an
HMAC-SHA256 under a key derived from the login (PBKDF2 of user name and password), so every
replica of the UI accepts the sessions of the others, a restart keeps them, and a changed
password ends them all. The CSRF token is an HMAC of the session token under the same key: the
page gets it from /api/session and sends it in a header with every write; a cross-site page can
neither read it nor set the header. Logging out records the nonce as revoked in this process.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections.abc import Callable

TOKEN_VERSION = "v1"
KEY_ITERATIONS = 200_000
# A failed login waits FAILURE_DELAY * 2**(recent failures from that address - 1), capped.
FAILURE_DELAY = 0.5
MAX_FAILURE_DELAY = 8.0
FAILURE_MEMORY = 300.0
ANONYMOUS = "anonymous"


@dataclasses.dataclass(frozen=True)
class Login:
    """The user name and password the UI accepts (files of the mounted login Secret)."""

    username: str
    password: str


@dataclasses.dataclass(frozen=True)
class Session:
    user: str
    expires: int
    nonce: str


def read_login(
    directory: str, username_file: str = "username", password_file: str = "password"
) -> Login | None:
    """The login from the mounted Secret, None while the Secret (optional) does not exist."""
    try:
        with open(os.path.join(directory, username_file), encoding="utf-8") as handle:
            username = handle.read().strip()
        with open(os.path.join(directory, password_file), encoding="utf-8") as handle:
            password = handle.read().rstrip("\r\n")
    except OSError:
        return None
    if not username or not password:
        return None
    return Login(username, password)


def credentials_match(login: Login, username: str, password: str) -> bool:
    """Constant-time comparison of both fields (no early exit on the user name)."""
    user_ok = hmac.compare_digest(login.username.encode(), username.encode())
    password_ok = hmac.compare_digest(login.password.encode(), password.encode())
    return user_ok & password_ok


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    """Issues and checks session tokens and CSRF tokens under one key."""

    def __init__(self, key: bytes, ttl: int, clock: Callable[[], float] = time.time):
        self._key = key
        self.ttl = ttl
        self._clock = clock
        self._revoked: dict[str, int] = {}
        self._lock = threading.Lock()

    def _mac(self, text: str) -> str:
        return _b64(hmac.new(self._key, text.encode(), hashlib.sha256).digest())

    def issue(self, user: str) -> str:
        expires = int(self._clock()) + self.ttl
        body = f"{TOKEN_VERSION}.{_b64(user.encode())}.{expires}.{secrets.token_urlsafe(16)}"
        return f"{body}.{self._mac(body)}"

    def check(self, token: str) -> Session | None:
        """The session a token stands for; None when forged, expired, revoked or malformed."""
        parts = token.split(".")
        if len(parts) != 5 or parts[0] != TOKEN_VERSION:
            return None
        body, mac = ".".join(parts[:4]), parts[4]
        if not hmac.compare_digest(self._mac(body), mac):
            return None
        try:
            user = _unb64(parts[1]).decode()
            expires = int(parts[2])
        except ValueError:
            return None
        now = self._clock()
        with self._lock:
            if parts[3] in self._revoked:
                return None
        if expires <= now:
            return None
        return Session(user, expires, parts[3])

    def revoke(self, session: Session) -> None:
        now = self._clock()
        with self._lock:
            self._revoked = {n: e for n, e in self._revoked.items() if e > now}
            self._revoked[session.nonce] = session.expires

    def csrf_token(self, token: str) -> str:
        return self._mac(f"csrf.{token}")

    def csrf_ok(self, token: str, sent: str) -> bool:
        return bool(sent) and hmac.compare_digest(self.csrf_token(token), sent)


def derive_key(login: Login) -> bytes:
    """The session key of a login: slow to derive, so a leaked session token does not let anyone
    test password guesses quickly."""
    salt = b"etcd-webui-session\0" + login.username.encode()
    return hashlib.pbkdf2_hmac("sha256", login.password.encode(), salt, KEY_ITERATIONS)


class FailureThrottle:
    """Slows repeated failed logins from one address: each failure waits longer (doubling up to
    MAX_FAILURE_DELAY) and attempts from one address are handled one at a time."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._failures: dict[str, list[float]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def lock_for(self, address: str) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(address, threading.Lock())

    def _recent(self, address: str) -> list[float]:
        now = self._clock()
        recent = [t for t in self._failures.get(address, []) if now - t < FAILURE_MEMORY]
        if recent:
            self._failures[address] = recent
        else:
            self._failures.pop(address, None)
        return recent

    def failed(self, address: str) -> float:
        """Record a failure; returns the seconds to wait before answering it."""
        with self._lock:
            recent = self._recent(address)
            recent.append(self._clock())
            self._failures[address] = recent
            return float(min(FAILURE_DELAY * 2.0 ** (len(recent) - 1), MAX_FAILURE_DELAY))

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)


class Authenticator:
    """The login of the UI: checks credentials against the mounted Secret (read on every login,
    so a changed password applies without a restart) and keeps one signer per login."""

    def __init__(self, enabled: bool, login_dir: str, ttl: int):
        self.enabled = enabled
        self._login_dir = login_dir
        self._ttl = ttl
        self._signers: dict[Login, SessionSigner] = {}
        # Without a login the sessions only carry the CSRF token: a key of this process will do.
        self._anonymous = SessionSigner(secrets.token_bytes(32), ttl)
        self._lock = threading.Lock()
        self.throttle = FailureThrottle()

    def login(self) -> Login | None:
        return read_login(self._login_dir) if self.enabled else None

    def signer(self) -> SessionSigner | None:
        """The signer of the current login; None while login is on but no Secret is mounted."""
        if not self.enabled:
            return self._anonymous
        login = self.login()
        if login is None:
            return None
        with self._lock:
            signer = self._signers.get(login)
        if signer is None:
            signer = SessionSigner(derive_key(login), self._ttl)
            with self._lock:
                self._signers = {login: signer}
        return signer

    def session(self, token: str) -> tuple[SessionSigner, Session] | None:
        signer = self.signer()
        if signer is None or not token:
            return None
        session = signer.check(token)
        return (signer, session) if session is not None else None
