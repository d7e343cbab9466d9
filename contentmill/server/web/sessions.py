"""Session cookies of the web pages: signed by the server, never holding a key.

A cookie is ``<principal>.<expires>.<mac>``: the principal is ``admin`` or a virtual key's id, ``expires`` a
UNIX time, and ``mac`` an HMAC-SHA256 over both and the principal's fingerprint under a secret kept in the data
directory (``web-secret``, 32 random bytes made on first use, mode 0600, shared by the workers of one machine).
The fingerprint is a hash of the admin key for ``admin`` and a key's hint and rotation time for a virtual key,
so changing the admin key or rotating a key ends its sessions; a revoked key's sessions end because every page
looks its key up again. Nothing is stored per session, so any worker can check any cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

from contentmill.errors import ConfigError

COOKIE = "cm_session"
SECRET_FILE = "web-secret"
SESSION_S = 12 * 3600


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def load_secret(data_dir: Path) -> bytes:
    """The data directory's signing secret, made atomically by the first process that needs it."""
    path = data_dir.expanduser() / SECRET_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            for _ in range(50):  # another worker is writing it: its 32 bytes arrive at once
                secret = path.read_bytes()
                if len(secret) >= 32:
                    return secret
                time.sleep(0.01)
            raise ConfigError(f"{path} holds no session secret; delete it and restart the server") from None
        with os.fdopen(fd, "wb") as file:
            file.write(secrets.token_bytes(32))
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot keep the session secret in {path}: {exc.strerror or exc}; "
                          "make CONTENTMILL_DATA_DIR writable") from None


def fingerprint(*parts: object) -> str:
    """A hash of what a session depends on (never shown, never stored)."""
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


class Sessions:
    """Makes and checks session cookie values with one secret."""

    def __init__(self, secret: bytes, lifetime_s: int = SESSION_S) -> None:
        self._secret = secret
        self.lifetime_s = lifetime_s

    def _mac(self, principal: str, expires: int, print_: str) -> str:
        message = f"{principal}.{expires}.{print_}".encode()
        return _b64(hmac.new(self._secret, message, hashlib.sha256).digest())

    def issue(self, principal: str, print_: str, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + self.lifetime_s)
        return f"{principal}.{expires}.{self._mac(principal, expires, print_)}"

    @staticmethod
    def principal(value: str) -> str | None:
        """Whose session a cookie claims to be, before it is checked (its fingerprint is looked up by it)."""
        parts = value.split(".")
        return parts[0] if len(parts) == 3 and parts[0] else None

    def check(self, value: str, print_: str, now: float | None = None) -> bool:
        """Whether the cookie was made here for this fingerprint and has not expired."""
        parts = value.split(".")
        if len(parts) != 3 or not parts[1].isdigit():
            return False
        principal, expires, mac = parts[0], int(parts[1]), parts[2]
        if expires < (time.time() if now is None else now):
            return False
        return hmac.compare_digest(mac, self._mac(principal, expires, print_))
