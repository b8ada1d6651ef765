"""Password hashing (passlib's CryptContext over bcrypt) and access tokens (PyJWT)."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import anyio.to_thread
import jwt
from passlib.context import CryptContext

from postkit.settings import PostKitSettings

__all__ = ["AccessClaims", "PasswordHasher", "TokenCodec", "TokenError"]

_REQUIRED_CLAIMS = ["exp", "iat", "sub", "iss", "aud", "jti"]


class PasswordHasher:
    """Hashes and verifies passwords off the event loop.

    New hashes use ``bcrypt_sha256`` (no 72-byte truncation); plain ``bcrypt`` hashes still verify
    and are upgraded on the next successful login, as are hashes with an outdated cost factor.
    """

    def __init__(self, rounds: int) -> None:
        self.context = CryptContext(
            schemes=["bcrypt_sha256", "bcrypt"],
            deprecated="auto",
            bcrypt_sha256__rounds=rounds,
            bcrypt__rounds=rounds,
        )
        # Verified against when the account does not exist, so both paths cost the same.
        self._dummy_hash = self.context.hash(secrets.token_urlsafe(24))

    async def hash(self, password: str) -> str:
        result: str = await anyio.to_thread.run_sync(self.context.hash, password)
        return result

    async def verify(self, password: str, password_hash: str | None) -> tuple[bool, str | None]:
        """Check ``password``; return (matches, replacement hash or None).

        With ``password_hash=None`` (unknown account) a dummy hash is checked so the answer takes
        as long as for a real account, and ``(False, None)`` comes back.
        """
        target = password_hash if password_hash is not None else self._dummy_hash
        matches, new_hash = await anyio.to_thread.run_sync(
            self.context.verify_and_update, password, target
        )
        if password_hash is None:
            return False, None
        return bool(matches), new_hash


class TokenError(Exception):
    """A token that does not verify, for whatever reason (never shown to clients in detail)."""


@dataclass(frozen=True)
class AccessClaims:
    user_id: int
    session_id: str | None
    token_version: int
    jti: str


def key_id(key: str) -> str:
    """A short public identifier of a signing key, carried in the token header as ``kid``."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


class TokenCodec:
    """Issues and verifies access tokens with the one algorithm fixed in settings."""

    def __init__(self, settings: PostKitSettings) -> None:
        self.algorithm = settings.jwt_algorithm
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self.leeway = settings.jwt_leeway_seconds
        self.access_ttl = settings.access_token_ttl
        self._signing_key = settings.signing_key
        self._signing_kid = key_id(settings.verification_keys[0])
        self._verification_keys = {key_id(k): k for k in settings.verification_keys}

    def issue_access_token(
        self, *, user_id: int, session_id: str | None, token_version: int
    ) -> tuple[str, int]:
        """Return an access token and its lifetime in seconds."""
        now = datetime.now(timezone.utc)
        claims: dict[str, Any] = {
            "sub": str(user_id),
            "iat": now,
            "exp": now + self.access_ttl,
            "iss": self.issuer,
            "aud": self.audience,
            "jti": uuid.uuid4().hex,
            "ver": token_version,
        }
        if session_id is not None:
            claims["sid"] = session_id
        token = jwt.encode(
            claims, self._signing_key, algorithm=self.algorithm, headers={"kid": self._signing_kid}
        )
        return token, int(self.access_ttl.total_seconds())

    def verify_access_token(self, token: str) -> AccessClaims:
        try:
            header = jwt.get_unverified_header(token)
            key = self._verification_keys.get(str(header.get("kid", "")))
            if key is None:
                raise TokenError("unknown key id")
            payload = jwt.decode(
                token,
                key,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": _REQUIRED_CLAIMS},
            )
            user_id = int(payload["sub"])
            version = int(payload.get("ver", 0))
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
            raise TokenError(str(exc)) from exc
        sid = payload.get("sid")
        return AccessClaims(
            user_id=user_id,
            session_id=sid if isinstance(sid, str) else None,
            token_version=version,
            jti=str(payload["jti"]),
        )
