"""Password hashing (passlib's CryptContext over bcrypt), access tokens (PyJWT) and refresh tokens.

Nothing secret leaves this module in clear except the tokens handed to the client: passwords are
only ever hashed or verified here, refresh tokens are stored as their SHA-256 digest, and every
reason an access token fails is folded into one :class:`TokenError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

import jwt
from passlib.context import CryptContext

from postkit.errors import ServiceBusy
from postkit.models import MAX_ID
from postkit.settings import PostKitSettings

__all__ = [
    "AccessClaims",
    "HashingLane",
    "PasswordHasher",
    "TokenCodec",
    "TokenError",
    "hash_refresh_token",
    "key_id",
    "new_refresh_token",
    "new_session_id",
]

T = TypeVar("T")

REQUIRED_CLAIMS = ["exp", "iat", "sub", "iss", "aud", "jti"]
"""Claims every access token must carry; PyJWT refuses a token without any of them."""

_USER_ID = re.compile(r"[1-9][0-9]{0,9}")
_MAX_TOKEN_CHARS = 8192

VERIFIED_TOKENS_KEPT = 4096
"""How many verified access tokens a :class:`TokenCodec` remembers (about 2 MiB at most), so
that a client's next request with the same token skips the signature check."""

BCRYPT_MAX_BYTES = 72
"""bcrypt's input limit: older releases cut longer passwords to this, bcrypt 5 refuses them."""


class HashingLane:
    """A bounded queue of bcrypt work: ``workers`` threads of its own, at most ``queue`` more
    calls waiting, and :class:`~postkit.errors.ServiceBusy` (503) at once for the next one
    instead of an ever longer wait. bcrypt releases the GIL, so the threads use separate cores.

    ``niceness`` lowers the CPU priority of the lane's threads (Linux schedules threads one by
    one): when the cores are oversubscribed, the kernel runs the event loop and the verifying
    threads first, and new hashes take whatever time is left. The threads start on first use.
    """

    def __init__(self, name: str, *, workers: int, queue: int, niceness: int = 0) -> None:
        self.name = name
        self.workers = workers
        self.queue = queue
        self.niceness = niceness
        self.admitted = 0
        """Calls running or waiting for a thread."""
        self._executor: ThreadPoolExecutor | None = None

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.workers,
                thread_name_prefix=f"postkit-{self.name}",
                initializer=_lower_thread_priority,
                initargs=(self.niceness,),
            )
        return self._executor

    def check(self) -> None:
        """Refuse now, before any other work, when a call would be refused anyway.

        :raises ServiceBusy: the lane is full.
        """
        if self.admitted >= self.workers + self.queue:
            raise ServiceBusy(1)

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in one of the lane's threads.

        :raises ServiceBusy: ``workers + queue`` calls are already running or waiting.
        """
        self.check()
        self.admitted += 1
        try:
            return await asyncio.wrap_future(self._pool().submit(function, *args))
        finally:
            self.admitted -= 1


def _lower_thread_priority(niceness: int) -> None:
    if niceness <= 0 or not hasattr(os, "setpriority"):
        return
    with contextlib.suppress(OSError):
        thread = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, current + niceness))


class PasswordHasher:
    """Hashes and verifies passwords off the event loop.

    New hashes use ``bcrypt_sha256`` (the password is pre-hashed with HMAC-SHA256, so there is no
    72-byte truncation); plain ``bcrypt`` hashes still verify and are replaced on the next
    successful login, as are hashes made with an outdated cost factor.

    Verifying and hashing run in two separate :class:`HashingLane` queues, each bounded.

    :param rounds: the bcrypt cost factor for new hashes (``bcrypt_rounds`` in settings).
    :param verify_workers: threads verifying at once (default: the CPU cores).
    :param verify_queue: verifications that may wait for a thread.
    :param hash_workers: threads hashing new passwords at once (default: half the cores).
    :param hash_queue: new hashes that may wait for a thread.
    """

    def __init__(
        self,
        rounds: int,
        *,
        verify_workers: int | None = None,
        verify_queue: int = 64,
        hash_workers: int | None = None,
        hash_queue: int = 8,
    ) -> None:
        self.context = CryptContext(
            schemes=["bcrypt_sha256", "bcrypt"],
            deprecated="auto",
            bcrypt_sha256__rounds=rounds,
            bcrypt__rounds=rounds,
        )
        cores = os.cpu_count() or 2
        self.verifying = HashingLane(
            "verify", workers=verify_workers or max(1, cores), queue=verify_queue
        )
        """Checks of a password someone typed (logins, current-password checks)."""
        self.hashing = HashingLane(
            "hash", workers=hash_workers or max(1, cores // 2), queue=hash_queue, niceness=10
        )
        """New hashes (registrations, password changes): apart, so they cannot starve logins."""
        # Verified against when the account does not exist, so both paths cost the same.
        self._dummy_hash = self.context.hash(secrets.token_urlsafe(24))

    @classmethod
    def from_settings(cls, settings: PostKitSettings) -> PasswordHasher:
        return cls(
            settings.bcrypt_rounds,
            verify_workers=settings.password_verify_workers,
            verify_queue=settings.password_verify_queue,
            hash_workers=settings.password_hash_workers,
            hash_queue=settings.password_hash_queue,
        )

    async def hash(self, password: str) -> str:
        """A new ``bcrypt_sha256`` hash of ``password``, computed in a hashing thread.

        :raises ServiceBusy: the hashing queue is full.
        """
        return await self.hashing.run(self.context.hash, password)

    def _verify_and_update(self, password: str, password_hash: str) -> tuple[bool, str | None]:
        try:
            secret = password.encode()
            if len(secret) > BCRYPT_MAX_BYTES and self.context.identify(password_hash) == "bcrypt":
                # Plain bcrypt only ever saw the first 72 bytes of a longer password (bcrypt 5
                # refuses what older releases silently cut). Check those, and on a match store
                # a bcrypt_sha256 hash of the WHOLE password, so later logins need all of it.
                if not self.context.verify(secret[:BCRYPT_MAX_BYTES], password_hash):
                    return False, None
                return True, self.context.hash(password)
            matches, new_hash = self.context.verify_and_update(password, password_hash)
        except (ValueError, TypeError):
            # A password plain bcrypt cannot take (NUL byte, over 72 bytes), or a stored hash
            # passlib does not recognise: neither can match.
            return False, None
        return bool(matches), new_hash

    async def verify(self, password: str, password_hash: str | None) -> tuple[bool, str | None]:
        """Check ``password``; return (matches, replacement hash or None).

        The replacement is set when the stored hash uses a deprecated scheme or cost factor and
        should be stored instead. With ``password_hash=None`` (unknown account) a dummy hash is
        checked so the answer takes as long as for a real account, and ``(False, None)`` comes back.

        :raises ServiceBusy: the verification queue is full.
        """
        target = password_hash if password_hash is not None else self._dummy_hash
        matches, new_hash = await self.verifying.run(self._verify_and_update, password, target)
        if password_hash is None:
            return False, None
        return matches, new_hash


class TokenError(Exception):
    """A token that does not verify, for whatever reason (never shown to clients in detail)."""


@dataclass(frozen=True)
class AccessClaims:
    """What postkit reads from a verified access token."""

    user_id: int
    session_id: str
    token_version: int
    jti: str


def key_id(key: str) -> str:
    """A short public identifier of a verification key, carried in the token header as ``kid``.

    Derived from the HMAC secret (HS* algorithms) or the public key, with SHA-256: it names the
    key without revealing it.
    """
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def new_session_id() -> str:
    """A random, unguessable auth session id (the ``sid`` claim)."""
    return secrets.token_urlsafe(24)


def new_refresh_token() -> str:
    """A random refresh token: 256 bits, URL-safe. Only its digest is ever stored."""
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    """The SHA-256 hex digest under which a refresh token is stored and looked up.

    A fast hash is right here: the token is random and long, so it cannot be guessed from the
    digest, and a slow hash would only slow every refresh down.
    """
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class TokenCodec:
    """Issues and verifies access tokens with the one algorithm fixed in settings.

    With an HS* algorithm ``secret_key`` signs and ``previous_secret_keys`` still verify. With an
    asymmetric algorithm (RS*, ES*, EdDSA) ``jwt_private_key`` signs, ``jwt_public_key`` verifies,
    and ``previous_secret_keys`` may list retired *public* keys that still verify. Each token
    names its key with ``kid``; a token naming no known key is refused.

    :raises ValueError: at construction, when a key cannot be used with the algorithm.
    """

    def __init__(self, settings: PostKitSettings) -> None:
        self.algorithm = settings.jwt_algorithm
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self.leeway = settings.jwt_leeway_seconds
        self.access_ttl = settings.access_token_ttl
        verification_keys = list(settings.verification_keys)
        if not self.algorithm.startswith("HS"):
            verification_keys += [k.get_secret_value() for k in settings.previous_secret_keys]
        implementation = jwt.get_algorithm_by_name(self.algorithm)
        try:
            self._signing_key = implementation.prepare_key(settings.signing_key)
            self._verification_keys = {
                key_id(key): implementation.prepare_key(key) for key in verification_keys
            }
        except (ValueError, TypeError, jwt.PyJWTError):
            raise ValueError(f"a key does not suit jwt_algorithm {self.algorithm}") from None
        self._signing_kid = key_id(verification_keys[0])
        # token -> (claims, exp): a token already verified needs only its expiry checked again
        # (its signature, issuer, audience and iat cannot change; time only makes nbf/iat more
        # valid). Failures are never remembered.
        self._verified: dict[str, tuple[AccessClaims, float]] = {}
        # Refuse a private key that does not match the public key now, not at the first login.
        probe = self._encode({"probe": True})
        try:
            self._decode(probe, self._verification_keys[self._signing_kid], verify_claims=False)
        except jwt.PyJWTError as exc:
            raise ValueError(
                f"jwt_private_key and jwt_public_key are not a pair for {self.algorithm}"
            ) from exc

    def _encode(self, claims: dict[str, Any]) -> str:
        return jwt.encode(
            claims, self._signing_key, algorithm=self.algorithm, headers={"kid": self._signing_kid}
        )

    def _decode(self, token: str, key: Any, *, verify_claims: bool = True) -> dict[str, Any]:
        if not verify_claims:
            return jwt.decode(
                token, key, algorithms=[self.algorithm], options={"verify_exp": False}
            )
        return jwt.decode(
            token,
            key,
            algorithms=[self.algorithm],
            audience=self.audience,
            issuer=self.issuer,
            leeway=self.leeway,
            options={"require": REQUIRED_CLAIMS},
        )

    def issue_access_token(
        self, *, user_id: int, session_id: str, token_version: int
    ) -> tuple[str, int]:
        """Return a signed access token for ``user_id`` in auth session ``session_id``, and its
        lifetime in seconds."""
        now = datetime.now(timezone.utc)
        claims: dict[str, Any] = {
            "sub": str(user_id),
            "iat": now,
            "exp": now + self.access_ttl,
            "iss": self.issuer,
            "aud": self.audience,
            "jti": uuid.uuid4().hex,
            "sid": session_id,
            "ver": token_version,
        }
        return self._encode(claims), int(self.access_ttl.total_seconds())

    def verify_access_token(self, token: str) -> AccessClaims:
        """The claims of a valid access token.

        :raises TokenError: for every reason a token is refused (malformed, unknown ``kid``, bad
            signature, other algorithm, expired, not yet valid, wrong issuer or audience, a
            required claim missing or of the wrong type).
        """
        remembered = self._verified.get(token)
        if remembered is not None:
            claims, expires = remembered
            if time.time() < expires + self.leeway:
                return claims
            del self._verified[token]
            raise TokenError("ExpiredSignatureError")
        if len(token) > _MAX_TOKEN_CHARS:
            raise TokenError("token too long")
        try:
            header = jwt.get_unverified_header(token)
            kid = header.get("kid")
            key = self._verification_keys.get(kid) if isinstance(kid, str) else None
            if key is None:
                raise TokenError("unknown key id")
            payload = self._decode(token, key)
        except jwt.PyJWTError as exc:
            raise TokenError(type(exc).__name__) from None
        sub, sid, ver, jti = (payload.get(name) for name in ("sub", "sid", "ver", "jti"))
        if not isinstance(sub, str) or not _USER_ID.fullmatch(sub) or int(sub) > MAX_ID:
            raise TokenError("sub is not a user id")
        if not isinstance(sid, str) or not sid:
            raise TokenError("sid missing")
        if not isinstance(ver, int) or isinstance(ver, bool):
            raise TokenError("ver missing")
        if not isinstance(jti, str):
            raise TokenError("jti is not a string")
        claims = AccessClaims(user_id=int(sub), session_id=sid, token_version=ver, jti=jti)
        self._remember(token, claims, payload["exp"])
        return claims

    def _remember(self, token: str, claims: AccessClaims, expires: Any) -> None:
        if isinstance(expires, bool) or not isinstance(expires, (int, float)):
            return
        verified = self._verified
        if len(verified) >= VERIFIED_TOKENS_KEPT:
            # Forget the oldest tenth at once (dicts keep insertion order).
            for old in list(verified)[: VERIFIED_TOKENS_KEPT // 10]:
                verified.pop(old, None)
        verified[token] = (claims, float(expires))
