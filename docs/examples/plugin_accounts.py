"""Account hooks: refuse sign-ups from throwaway email domains, greet new users, note logins."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from postkit import PostKitError, User, hookimpl


class AccountPolicy:
    """``validate_registration``, ``after_user_register`` and ``after_login``."""

    def __init__(self, *, blocked_domains: Iterable[str]) -> None:
        self.blocked_domains = {domain.lower() for domain in blocked_domains}
        self.welcomed: list[str] = []
        self.logins: list[str] = []

    @hookimpl
    def validate_registration(self, email: str, username: str, data: dict[str, Any]) -> None:
        if email.rsplit("@", 1)[1] in self.blocked_domains:
            raise PostKitError(
                "Sign-ups from this email domain are not accepted",
                status_code=403,
                code="EMAIL_DOMAIN_BLOCKED",
            )

    @hookimpl
    async def after_user_register(self, user: User) -> None:
        self.welcomed.append(user.username)  # e.g. queue a welcome email

    @hookimpl
    def after_login(self, user: User) -> None:
        self.logins.append(user.username)
