"""Rate limits: how often one client, or one account, may do a costly or abusable thing.

A :class:`Policy` names an action, its :class:`Rate` (``limit`` hits per ``window`` seconds)
and what it counts against: the client address (``per="address"``, IPv6 grouped by /64), the
account (``per="account"``), or the account when there is one and the address otherwise
(``per="reader"``). :class:`RateLimits` (``kit.rate_limits``) counts hits in a
:class:`RateLimitStore` and answers each with a :class:`Decision`; a hit over the limit raises
:class:`~postkit.errors.RateLimited` (429 with ``Retry-After`` and the ``RateLimit`` fields).

Counting is a fixed window per key, offset by a hash of the key so that clients do not all
reset at the same second. Two stores:

- :class:`DatabaseStore` (the default): table ``postkit_rate_limits``, one
  ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` statement per hit on its own connection
  and transaction (never the request's), so it is exact across worker processes and needs no
  other service. Expired rows are pruned now and then by the hits themselves.
- :class:`RedisStore` (when ``redis_url`` is set): ``INCR`` and ``EXPIREAT`` in one
  ``MULTI``/``EXEC`` round trip on a key per window. When Redis does not answer, requests are
  let through (``rate_limit_fail_open``, the default) or refused with 503, and the outage is
  logged once at WARNING, not once per request.

The response fields follow the IETF draft "RateLimit header fields for HTTP"
(draft-ietf-httpapi-ratelimit-headers-12, whose form -11 shares): ``RateLimit-Policy:
"vote";q=120;w=60`` and ``RateLimit: "vote";r=117;t=42``. Nothing here runs at import time;
``redis`` is imported only when a Redis store is built.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import math
import re
import secrets
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from fastapi import Request, Response
from fastapi.routing import APIRoute
from sqlalchemy import case, delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from postkit.errors import ErrorBody, RateLimited, RateLimitUnavailable
from postkit.models import RateLimitCounter

if TYPE_CHECKING:
    from postkit.settings import PostKitSettings

__all__ = [
    "DRAFT",
    "DatabaseStore",
    "Decision",
    "Hit",
    "Per",
    "Policy",
    "Rate",
    "RateLimitStore",
    "RateLimits",
    "RedisStore",
    "StoreUnavailable",
    "address_partition",
    "parse_rate",
    "rate_limited_response",
    "with_rate_limit_headers",
]

logger = logging.getLogger("postkit")

DRAFT = "draft-ietf-httpapi-ratelimit-headers-12"
"""The version of the IETF draft whose ``RateLimit`` and ``RateLimit-Policy`` fields are sent."""

Per = Literal["address", "account", "reader"]
"""What a policy counts against: the client address, the account, or the account when the
request has one and the address otherwise."""

_UNITS = {
    "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
}  # fmt: skip
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*$")
_OFF = frozenset({"off", "none", "unlimited", "disabled"})
_POLICY_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_SCOPE_KEY = "postkit.rate_limits"
_PRUNE_ODDS = 100
_PRUNE_BATCH = 500
_RETRY_STORE_AFTER = 1.0


@dataclass(frozen=True)
class Rate:
    """``limit`` hits per ``window`` seconds."""

    limit: int
    window: int

    def __str__(self) -> str:
        return f"{self.limit}/{self.window}s"


def parse_rate(text: str) -> Rate | None:
    """``"10/minute"``, ``"5/15minutes"``, ``"100/3600s"`` → a :class:`Rate`; ``"off"`` → None.

    :raises ValueError: with the accepted forms, for anything else.
    """
    value = text.strip().lower()
    if value in _OFF:
        return None
    match = _RATE.match(value)
    if match is None or match.group(3) not in _UNITS:
        raise ValueError(
            f"{text!r} is not a rate: write hits/period like '10/minute', '5/15minutes' or "
            "'100/3600s' (units: second, minute, hour, day), or 'off'"
        )
    limit = int(match.group(1))
    window = int(match.group(2) or 1) * _UNITS[match.group(3)]
    if limit < 1 or window < 1:
        raise ValueError(f"{text!r}: the limit and the period must be positive; use 'off' instead")
    return Rate(limit=limit, window=window)


@dataclass(frozen=True)
class Policy:
    """One rate limit: its ``name`` (shown to clients in the ``RateLimit`` fields), its ``rate``
    (``None``: not limited) and what it counts against (:data:`Per`)."""

    name: str
    rate: Rate | None
    per: Per

    def __post_init__(self) -> None:
        if not _POLICY_NAME.match(self.name):
            raise ValueError(
                f"rate limit name {self.name!r}: use 1-64 lower-case letters, digits, '_', '.', '-'"
            )


@dataclass(frozen=True)
class Hit:
    """A store's answer to one hit: the hits counted in the current window, this one included,
    and the seconds until that window ends."""

    count: int
    resets_in: int


@dataclass(frozen=True)
class Decision:
    """Whether one hit of ``policy`` is allowed, and what to tell the client."""

    policy: Policy
    rate: Rate
    count: int
    resets_in: int

    @property
    def allowed(self) -> bool:
        return self.count <= self.rate.limit

    @property
    def remaining(self) -> int:
        return max(0, self.rate.limit - self.count)

    def policy_item(self) -> str:
        return f'"{self.policy.name}";q={self.rate.limit};w={self.rate.window}'

    def limit_item(self) -> str:
        return f'"{self.policy.name}";r={self.remaining};t={self.resets_in}'


def render_headers(decisions: list[Decision]) -> dict[str, str]:
    """The ``RateLimit-Policy`` and ``RateLimit`` fields for the decisions of one request (and
    ``Retry-After`` when one of them refused it)."""
    headers = {
        "RateLimit-Policy": ", ".join(d.policy_item() for d in decisions),
        "RateLimit": ", ".join(d.limit_item() for d in decisions),
    }
    refused = [d.resets_in for d in decisions if not d.allowed]
    if refused:
        headers["Retry-After"] = str(max(refused))
    return headers


def address_partition(address: str) -> str:
    """The counter an address counts against: itself for IPv4 (and IPv4-mapped IPv6), its /64
    network for IPv6 (one subscriber usually holds a whole /64), the text as given otherwise."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"host:{address}"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"ip:{ip.ipv4_mapped}"
        return f"ip:{ipaddress.IPv6Network((ip, 64), strict=False)}"
    return f"ip:{ip}"


def _window(key: str, window: int, now: float) -> tuple[int, int]:
    """The start and end (epoch seconds) of the window ``now`` falls in, for ``key``: windows
    are offset per key by a hash, so that different clients do not all reset together."""
    offset = int(key[-8:], 16) % window
    index = math.floor((now + offset) / window)
    start = index * window - offset
    return start, start + window


class StoreUnavailable(Exception):
    """The store did not answer (Redis down, unreachable or too slow)."""


class RateLimitStore(Protocol):
    """Where hits are counted. ``key`` is already a digest; a store adds its own namespace."""

    async def hit(self, key: str, *, window: int) -> Hit:
        """Count one hit of ``key`` in its current window of ``window`` seconds.

        :raises StoreUnavailable: when the store cannot be reached (stores that share the
            request's database let its errors through instead: the request needs it anyway).
        """
        ...

    async def close(self) -> None: ...


class DatabaseStore:
    """Counters in ``postkit_rate_limits``: one atomic upsert per hit, committed on its own.

    The statement either inserts the key's row for the current window or, in one step,
    increments it (or restarts it when its window is over) and returns the count: concurrent
    hits from any number of workers each see a distinct count, so exactly ``limit`` pass.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.postgresql = engine.dialect.name == "postgresql"

    def _upsert(self, key: str, start: int, end: int) -> Any:
        from sqlalchemy.dialects import postgresql, sqlite

        values = {"key": key, "window_start": start, "hits": 1, "expires_at": end}
        stmt = (postgresql.insert if self.postgresql else sqlite.insert)(RateLimitCounter)
        stmt = stmt.values(values)
        row = RateLimitCounter
        # In the update, columns are the row's old values: a later window restarts the count;
        # a hit stamped with an earlier window (a worker whose clock lags) joins the current one.
        current = row.window_start >= stmt.excluded.window_start
        return stmt.on_conflict_do_update(
            index_elements=[row.key],
            set_={
                "hits": case((current, row.hits + 1), else_=1),
                "window_start": case((current, row.window_start), else_=start),
                "expires_at": case((current, row.expires_at), else_=end),
            },
        ).returning(row.hits, row.expires_at)

    async def hit(self, key: str, *, window: int) -> Hit:
        now = time.time()
        start, end = _window(key, window, now)
        async with self.engine.begin() as connection:
            count, expires_at = (await connection.execute(self._upsert(key, start, end))).one()
        if secrets.randbelow(_PRUNE_ODDS) == 0:
            await self.prune(now=now)
        return Hit(count=int(count), resets_in=max(1, math.ceil(int(expires_at) - now)))

    async def prune(self, *, now: float | None = None) -> None:
        """Delete a batch of counters whose window is over, skipping rows other transactions
        hold (``SKIP LOCKED`` on PostgreSQL), in a transaction of its own."""
        cutoff = int(now if now is not None else time.time())
        doomed = (
            select(RateLimitCounter.key)
            .where(RateLimitCounter.expires_at < cutoff)
            .limit(_PRUNE_BATCH)
            .with_for_update(skip_locked=True)
        )
        async with self.engine.begin() as connection:
            await connection.execute(
                delete(RateLimitCounter).where(RateLimitCounter.key.in_(doomed))
            )

    async def close(self) -> None:
        """Nothing to close: the engine belongs to the kit."""


class RedisStore:
    """Counters in Redis: ``INCR`` and ``EXPIREAT`` in one ``MULTI``/``EXEC`` on a key per window.

    ``INCR`` is atomic, so concurrent hits each see a distinct count. The key names its window,
    and expires one second after the window ends. The client makes no retries of its own: a
    failure answers at once (:class:`StoreUnavailable`) and :class:`RateLimits` decides.
    """

    def __init__(self, url: str, *, prefix: str, timeout: float) -> None:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.prefix = prefix
        self.timeout = timeout
        self.client = Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            retry_on_error=[],
        )

    async def hit(self, key: str, *, window: int) -> Hit:
        from redis.exceptions import RedisError

        now = time.time()
        start, end = _window(key, window, now)
        name = f"{self.prefix}{key}:{start}"

        async def incr() -> list[Any]:
            pipe = self.client.pipeline(transaction=True)
            pipe.incr(name)
            pipe.expireat(name, end + 1)
            return list(await pipe.execute())

        try:
            # The socket timeouts bound each read and connect; this bounds the whole exchange.
            count, _ = await asyncio.wait_for(incr(), self.timeout * 2)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return Hit(count=int(count), resets_in=max(1, math.ceil(end - now)))

    async def close(self) -> None:
        await self.client.aclose()


class RateLimits:
    """The rate limits of one kit (``kit.rate_limits``): the policies, the store, the outage
    state.

    :param store: where hits are counted.
    :param policies: the policies by name; more can be added with :meth:`define`.
    :param enabled: ``False`` turns every limit off.
    :param fail_open: when the store does not answer, let requests through (``True``) or
        refuse them with 503 ``RATE_LIMIT_UNAVAILABLE``.
    :param namespace: prefixed to every counter key.
    """

    def __init__(
        self,
        store: RateLimitStore,
        policies: Mapping[str, Policy] | None = None,
        *,
        enabled: bool = True,
        fail_open: bool = True,
        namespace: str = "",
    ) -> None:
        self.store = store
        self.policies: dict[str, Policy] = dict(policies or {})
        self.enabled = enabled
        self.fail_open = fail_open
        self.namespace = namespace
        self._outage = False
        self._retry_store_at = 0.0

    @classmethod
    def from_settings(cls, settings: PostKitSettings, *, engine: AsyncEngine) -> RateLimits:
        """The store and the built-in policies that ``settings`` describe."""
        store: RateLimitStore
        if settings.redis_url is not None:
            store = RedisStore(
                settings.redis_url.get_secret_value(),
                prefix=settings.redis_key_prefix,
                timeout=settings.redis_timeout,
            )
        else:
            store = DatabaseStore(engine)
        builtin: list[tuple[str, str, Per]] = [
            ("register", settings.rate_limit_register, "address"),
            ("login", settings.rate_limit_login, "address"),
            ("token_refresh", settings.rate_limit_token_refresh, "address"),
            ("password_change", settings.rate_limit_password_change, "account"),
            ("account_email", settings.rate_limit_account_email, "address"),
            ("post_create", settings.rate_limit_post_create, "account"),
            ("comment_create", settings.rate_limit_comment_create, "account"),
            ("vote", settings.rate_limit_vote, "account"),
            ("search", settings.rate_limit_search, "reader"),
        ]
        policies = {name: Policy(name, parse_rate(rate), per) for name, rate, per in builtin}
        return cls(
            store,
            policies,
            enabled=settings.rate_limits_enabled,
            fail_open=settings.rate_limit_fail_open,
        )

    def define(self, name: str, rate: str | Rate | None, *, per: Per = "account") -> Policy:
        """Add (or replace) the policy ``name``: ``kit.rate_limits.define("reports", "5/hour")``."""
        parsed = parse_rate(rate) if isinstance(rate, str) else rate
        policy = Policy(name, parsed, per)
        self.policies[name] = policy
        return policy

    def policy(self, name: str) -> Policy:
        try:
            return self.policies[name]
        except KeyError:
            known = ", ".join(sorted(self.policies))
            raise ValueError(
                f"no rate limit named {name!r} (known: {known}); define it first with "
                f"kit.rate_limits.define({name!r}, '10/minute')"
            ) from None

    def active(self, name: str) -> bool:
        """Whether the policy ``name`` limits anything (limits on, and a rate set)."""
        return self.enabled and self.policy(name).rate is not None

    async def check(self, policy: Policy, partition: str) -> Decision | None:
        """Count one hit of ``policy`` for ``partition`` (``"ip:..."``, ``"user:42"``).

        Returns ``None`` when nothing is limited (the policy is off, or the store is down and
        ``fail_open`` is set).

        :raises RateLimitUnavailable: the store is down and ``fail_open`` is not set.
        """
        rate = policy.rate
        if not self.enabled or rate is None:
            return None
        digest = hashlib.sha256(
            f"{self.namespace}{policy.name}|{partition}".encode("utf-8", "surrogatepass")
        ).hexdigest()
        key = f"{policy.name}:{digest}"
        if self._outage and time.monotonic() < self._retry_store_at:
            self._unavailable(None)
            return None
        try:
            hit = await self.store.hit(key, window=rate.window)
        except StoreUnavailable as exc:
            self._unavailable(exc)
            return None
        if self._outage:
            self._outage = False
            logger.warning("postkit: the rate limit store answers again; limits apply again")
        return Decision(policy=policy, rate=rate, count=hit.count, resets_in=hit.resets_in)

    def _unavailable(self, exc: StoreUnavailable | None) -> None:
        """Note the outage (logged once), then let the request through or refuse it."""
        if exc is not None:
            self._retry_store_at = time.monotonic() + _RETRY_STORE_AFTER
            if not self._outage:
                self._outage = True
                logger.warning(
                    "postkit: the rate limit store does not answer (%s); %s until it does",
                    exc,
                    "requests are let through unlimited"
                    if self.fail_open
                    else "limited requests are refused with 503",
                )
        if not self.fail_open:
            raise RateLimitUnavailable()

    async def enforce(
        self,
        policy: Policy,
        partition: str,
        *,
        request: Request | None = None,
        response: Response | None = None,
    ) -> Decision | None:
        """:meth:`check`, then raise :class:`~postkit.errors.RateLimited` when over the limit.

        With ``request``, the ``RateLimit`` fields are added to the route's answer by a route
        class from :func:`with_rate_limit_headers`; with ``response`` (FastAPI's sub-response),
        to an answer the route returns as a model.
        """
        decision = await self.check(policy, partition)
        if decision is None:
            return None
        decisions: list[Decision] = [decision]
        if request is not None:
            recorded: list[Decision] = request.scope.setdefault(_SCOPE_KEY, [])
            recorded[:] = [d for d in recorded if d.policy.name != policy.name]
            recorded.append(decision)
            decisions = recorded
        headers = render_headers(decisions)
        if not decision.allowed:
            raise RateLimited(policy.name, retry_after=decision.resets_in, headers=headers)
        if response is not None:
            response.headers.update(headers)
        return decision

    async def close(self) -> None:
        await self.store.close()


def with_rate_limit_headers(route_class: type[APIRoute]) -> type[APIRoute]:
    """A subclass of ``route_class`` that adds the ``RateLimit`` fields of the limits the
    request went through to whatever the route answers (errors included)."""

    class RateLimitHeadersRoute(route_class):  # type: ignore[valid-type,misc]
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def handle(request: Request) -> Response:
                response: Response = await handler(request)
                decisions = request.scope.get(_SCOPE_KEY)
                if decisions:
                    response.headers.update(render_headers(decisions))
                return response

            return handle

    RateLimitHeadersRoute.__name__ = f"RateLimited{route_class.__name__}"
    return RateLimitHeadersRoute


_HEADER_DOCS: dict[str, dict[str, Any]] = {
    "Retry-After": {
        "description": "Seconds until the limit's window ends and the request may be retried.",
        "schema": {"type": "integer"},
    },
    "RateLimit-Policy": {
        "description": (
            f'The limit ({DRAFT}): `"<name>";q=<hits>;w=<window seconds>`, e.g. '
            '`"vote";q=120;w=60`.'
        ),
        "schema": {"type": "string"},
    },
    "RateLimit": {
        "description": (
            'What is left of it: `"<name>";r=<remaining>;t=<seconds until it resets>`, e.g. '
            '`"vote";r=0;t=42`.'
        ),
        "schema": {"type": "string"},
    },
}


def rate_limited_response() -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses=`` entry of a rate-limited route: 429 with its headers."""
    return {
        429: {
            "model": ErrorBody,
            "description": (
                "Too many requests: `RATE_LIMITED` when the route's rate limit is used up "
                "(wait `Retry-After` seconds). The `RateLimit` fields are sent on successful "
                "answers too."
            ),
            "headers": _HEADER_DOCS,
        }
    }
