"""Login throttling that bounds password guessing without handing anyone a lockout switch.

Every password check (a login, or the current-password check of ``PATCH /users/me``) is made
for an *account* from a *network* (the client's IPv4 address, or its IPv6 /64, which is what one
subscriber gets). The account is counted as the identifier typed, normalised (trimmed, lower
case), whether or not an account has it: unknown identifiers are counted exactly like real
ones, and an account's email and username each have a budget of their own. (One budget shared
by both, keyed on the user id, let anyone who exhausted it through the public username find the
private email that answered "throttled" too.) Three failure budgets guard it:

``pair``     failures for this account from this network (``login_max_failures``, 5). Past it
             the next check waits ``login_delay`` (1 s), then twice that after the next
             failure, and so on up to the window: a progressive delay, never a hard lockout.
``network``  failures from this network over all accounts (``login_address_max_failures``,
             100): sized for credential stuffing, far above one person's typos or a campus
             behind one address.
``account``  failures for this account from every network where it is *unfamiliar*
             (``login_account_max_failures``, 20): bounds distributed guessing. Past it the
             account answers 429 from unfamiliar networks until failures leave the window or
             the password is changed.

A network is *familiar* for an account when a correct password for it was checked from there
within ``login_familiar_window`` (30 days). A familiar check is guarded by its ``pair`` budget
only, so neither a stuffing campaign sharing the owner's address nor guessing at the owner's
account from elsewhere keeps the owner out at home. An attacker cannot make a network familiar
without the password.

Rows of ``postkit_login_attempts`` encode all of it in their ``key``: one letter for the kind
(``R`` an attempt in flight, ``F`` a recorded failure, ``S`` a success that makes a network
familiar) and 63 hex digits of the SHA-256 of the budget's name and values, so the table holds no
typed-in identifier or address in clear.

Why only recorded failures refuse, and why the bound stays exact
-----------------------------------------------------------------
Refusing on reservations would let in-flight attempts (six people behind one NAT logging in at
once) turn away a correct password. So an attempt is *refused* (429) only by recorded failures.
But counting only failures would let a burst of parallel guesses all pass the count before any
of them fails. The two are reconciled by making in-flight attempts *wait*, not refuse:

1. The attempt inserts an ``R`` row under every budget key and commits it.
2. It then reads, in one statement, every row of those keys in the window: failures (``F``, plus
   ``R`` rows older than the ``_LEASE``, whose request died mid-check) and the *other* attempts
   in flight (``R`` rows within the lease).
3. If a guarding budget's failures alone exhaust it, the reservation is withdrawn and the answer
   is 429 with ``Retry-After``. If failures plus the others in flight leave room under every
   guarding budget, the password is checked. Otherwise the reservation is withdrawn and the
   attempt tries again after a short random pause (bounded by ``_PATIENCE``, then 503).
4. A failed check turns its own ``R`` rows into ``F`` rows in one statement; a successful one
   deletes them. There is no moment at which a checked attempt is in neither form.

Take any set of checks admitted under one budget key whose outcomes are failures in one window,
and the one among them whose ``R`` row was committed last. Every other one committed its ``R``
row before, and that row stayed an ``R`` or became an ``F`` in one step, so the last one's read
(which starts after its own commit) saw all of them: it was admitted only if they, plus the
older failures, were fewer than the budget. Hence no budget ever sees more checked failures than
it allows, however many attempts run at once and in however many processes. Two attempts that
see each other both step back and retry after random pauses, so one of them gets through.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import math
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from postkit.errors import ServiceBusy, TooManyAttempts
from postkit.models import LoginAttempt, utcnow
from postkit.settings import PostKitSettings

__all__ = [
    "Admission",
    "LoginThrottle",
    "ThrottleKeys",
    "delete_attempts",
    "network_of",
    "throttle_keys",
]

# One in this many attempts also prunes expired rows of *other* keys (the table stays small
# without a scheduled job).
_GLOBAL_PRUNE_ODDS = 50
# An attempt in flight for longer than this died mid-check (its process crashed or the request
# was cancelled): from then on its reservation counts as a failure.
_LEASE = timedelta(seconds=60)
# How long an attempt may keep stepping back for others in flight before answering 503.
_PATIENCE = 10.0

_IN_FLIGHT, _FAILURE, _SUCCESS = "R", "F", "S"


def network_of(address: str) -> str:
    """The network an address is counted under: an IPv4 address itself, an IPv6 address's /64
    (IPv4-mapped IPv6 addresses as IPv4); anything that is not an IP address as it is."""
    try:
        ip = ipaddress.ip_address(address.strip().split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _digest(*parts: str) -> str:
    raw = "\x1f".join(parts).encode("utf-8", "surrogatepass")
    return hashlib.sha256(raw).hexdigest()[:63]


@dataclass(frozen=True)
class ThrottleKeys:
    """The budget keys of one password check (digests, without their kind letter)."""

    pair: str
    network: str
    account: str
    seen: str

    @property
    def budgets(self) -> tuple[str, str, str]:
        return (self.pair, self.network, self.account)


def throttle_keys(*, subject: str, address: str) -> ThrottleKeys:
    """The keys of a password check for ``subject`` from ``address``.

    :param subject: ``login:<identifier>``, the identifier typed (normalised), whether or not
        an account has it.
    """
    network = network_of(address)
    return ThrottleKeys(
        pair=_digest("pair", subject, network),
        network=_digest("network", network),
        account=_digest("account", subject),
        seen=_digest("seen", subject, network),
    )


@dataclass
class Admission:
    """A password check the throttle let through: resolve it with ``failed``, ``succeeded`` or
    ``withdraw``."""

    keys: ThrottleKeys
    guards: tuple[str, ...]
    """The budgets that this check counts against (the pair only, from a familiar network)."""
    ids: list[int] = field(default_factory=list)
    """Its ``R`` rows, one per budget key."""
    familiar: bool = False


@dataclass
class LoginThrottle:
    """Failed password checks counted in ``postkit_login_attempts``, shared by every worker
    process (the module docstring states the rules and why the bound is exact)."""

    max_failures: int = 5
    address_max_failures: int = 100
    account_max_failures: int = 20
    window: timedelta = timedelta(minutes=15)
    delay: timedelta = timedelta(seconds=1)
    familiar_window: timedelta = timedelta(days=30)

    @classmethod
    def from_settings(cls, settings: PostKitSettings) -> LoginThrottle:
        return cls(
            max_failures=settings.login_max_failures,
            address_max_failures=settings.login_address_max_failures,
            account_max_failures=settings.login_account_max_failures,
            window=settings.login_failure_window,
            delay=settings.login_delay,
            familiar_window=settings.login_familiar_window,
        )

    async def admit(self, session: AsyncSession, *, keys: ThrottleKeys) -> Admission:
        """Wait for room under the budgets of ``keys`` and reserve it (committed).

        :raises TooManyAttempts: a guarding budget is used up by recorded failures (nothing
            stays reserved).
        :raises ServiceBusy: other attempts in flight kept the budget full for ``_PATIENCE``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _PATIENCE
        pause = 0.01
        while True:
            admission, retry_after = await self._try(session, keys)
            if admission is not None:
                return admission
            if retry_after:
                raise TooManyAttempts(retry_after)
            if loop.time() + pause > deadline:
                raise ServiceBusy(1)
            # Random, so two attempts that saw each other do not step back in lockstep.
            await asyncio.sleep(pause * (0.5 + secrets.randbelow(1000) / 1000))
            pause = min(pause * 2, 0.2)

    async def _try(self, session: AsyncSession, keys: ThrottleKeys) -> tuple[Admission | None, int]:
        now = utcnow()
        cutoff = now - self.window
        await self._prune(session, keys, now)
        rows = [LoginAttempt(key=_IN_FLIGHT + key, attempted_at=now) for key in keys.budgets]
        session.add_all(rows)
        await session.commit()
        ids = [row.id for row in rows]

        budget_keys = [kind + key for key in keys.budgets for kind in (_IN_FLIGHT, _FAILURE)]
        seen = (
            await session.execute(
                select(LoginAttempt.key, LoginAttempt.attempted_at).where(
                    or_(
                        LoginAttempt.key.in_(budget_keys) & (LoginAttempt.attempted_at > cutoff),
                        (LoginAttempt.key == _SUCCESS + keys.seen)
                        & (LoginAttempt.attempted_at > now - self.familiar_window),
                    ),
                    LoginAttempt.id.not_in(ids),
                )
            )
        ).all()
        await session.commit()  # end the read transaction before writing again

        familiar = any(key == _SUCCESS + keys.seen for key, _ in seen)
        guards = (keys.pair,) if familiar else keys.budgets
        retry_after = 0
        room = True
        for key in guards:
            failures = sorted(
                at
                for kind_key, at in seen
                if kind_key == _FAILURE + key
                or (kind_key == _IN_FLIGHT + key and at <= now - _LEASE)
            )
            in_flight = sum(
                1 for kind_key, at in seen if kind_key == _IN_FLIGHT + key and at > now - _LEASE
            )
            wait, fits = self._judge(key, keys, failures, in_flight, now)
            retry_after = max(retry_after, wait)
            room = room and fits
        if retry_after or not room:
            await self._delete_ids(session, ids)
            return None, retry_after
        return Admission(keys=keys, guards=guards, ids=ids, familiar=familiar), 0

    def _judge(
        self,
        key: str,
        keys: ThrottleKeys,
        failures: list[datetime],
        in_flight: int,
        now: datetime,
    ) -> tuple[int, bool]:
        """(seconds until the recorded failures allow a check or 0, whether there is room now)."""
        count = len(failures)
        if key == keys.pair:
            if count < self.max_failures:
                return 0, count + in_flight < self.max_failures
            # Progressive delay: one check per delay, doubling with each further failure.
            extra = count - self.max_failures
            gap = min(self.delay * (2 ** min(extra, 40)), self.window)
            allowed_at = failures[-1] + gap
            if now < allowed_at:
                return max(1, math.ceil((allowed_at - now).total_seconds())), False
            return 0, in_flight == 0
        budget = self.address_max_failures if key == keys.network else self.account_max_failures
        if count >= budget:
            frees_at = failures[count - budget] + self.window
            return max(1, math.ceil((frees_at - now).total_seconds())), False
        return 0, count + in_flight < budget

    async def failed(self, session: AsyncSession, admission: Admission) -> None:
        """Record the check as a failure under its guarding budgets, and commit."""
        guard_ids = [
            row_id
            for row_id, key in zip(admission.ids, admission.keys.budgets, strict=True)
            if key in admission.guards
        ]
        other_ids = [row_id for row_id in admission.ids if row_id not in guard_ids]
        for row_id, key in zip(admission.ids, admission.keys.budgets, strict=True):
            if row_id in guard_ids:
                # R becomes F in one statement: never neither (see the module docstring).
                await session.execute(
                    update(LoginAttempt)
                    .where(LoginAttempt.id == row_id)
                    .values(key=_FAILURE + key, attempted_at=utcnow())
                )
        if other_ids:
            await self._delete_ids(session, other_ids, commit=False)
        await session.commit()

    async def withdraw(self, session: AsyncSession, admission: Admission) -> None:
        """Forget a check that was never made (the hashing queue was full), and commit."""
        await self._delete_ids(session, admission.ids)

    async def succeeded(self, session: AsyncSession, admission: Admission) -> None:
        """Withdraw the reservations of a correct password, forget the failures of its account
        from its network, and remember the network as familiar. Not committed: it goes with the
        caller's own writes."""
        keys = admission.keys
        await delete_attempts(
            session,
            LoginAttempt.id.in_(admission.ids)
            | LoginAttempt.key.in_([_FAILURE + keys.pair, _SUCCESS + keys.seen]),
        )
        session.add(LoginAttempt(key=_SUCCESS + keys.seen, attempted_at=utcnow()))

    async def password_changed(self, session: AsyncSession, *, logins: list[str]) -> None:
        """Forget the failures counted against the account's identifiers (``logins``: its email
        and username) from unfamiliar networks (the password they guessed at is gone), so it
        answers from everywhere again. Not committed."""
        accounts = [
            _FAILURE + throttle_keys(subject=f"login:{login.strip().lower()}", address="").account
            for login in logins
        ]
        await delete_attempts(session, LoginAttempt.key.in_(accounts))

    async def _prune(self, session: AsyncSession, keys: ThrottleKeys, now: datetime) -> None:
        budget_expired = (LoginAttempt.attempted_at <= now - self.window) & ~LoginAttempt.key.like(
            _SUCCESS + "%"
        )
        if secrets.randbelow(_GLOBAL_PRUNE_ODDS) == 0:
            success_expired = LoginAttempt.key.like(_SUCCESS + "%") & (
                LoginAttempt.attempted_at <= now - self.familiar_window
            )
            await delete_attempts(session, budget_expired | success_expired)
            return
        own = [kind + key for key in keys.budgets for kind in (_IN_FLIGHT, _FAILURE)]
        await delete_attempts(session, budget_expired & LoginAttempt.key.in_(own))

    async def _delete_ids(
        self, session: AsyncSession, ids: list[int], *, commit: bool = True
    ) -> None:
        await delete_attempts(session, LoginAttempt.id.in_(ids))
        if commit:
            await session.commit()


async def delete_attempts(session: AsyncSession, condition: ColumnElement[bool]) -> None:
    """Delete the login attempt rows matching ``condition``, skipping rows another transaction
    is deleting right now (``FOR UPDATE SKIP LOCKED`` on PostgreSQL): concurrent logins never
    wait on, or deadlock over, the same rows. SQLite serialises writers and ignores the clause.
    """
    doomed = select(LoginAttempt.id).where(condition).with_for_update(skip_locked=True)
    await session.execute(delete(LoginAttempt).where(LoginAttempt.id.in_(doomed)))
