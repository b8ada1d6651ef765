"""Configuration for one :class:`~postkit.PostKit` object.

Settings come from keyword arguments (hosts that have settings of their own), from
environment variables prefixed ``POSTKIT_`` and from a ``.env`` file, in that order of
precedence. Every value is checked when the object is built, so a bad configuration fails at
start-up with the setting named.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from postkit.urls import normalize_database_url

__all__ = ["MIN_SECRET_BYTES", "PostKitSettings"]

logger = logging.getLogger("postkit")

MIN_SECRET_BYTES = 32
"""The shortest HMAC secret accepted: 256 bits, as RFC 7518 asks for HS256."""

JwtAlgorithm = Literal[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "EdDSA"
]

_ephemeral_secret_warned = False

_DURATIONS = (
    "access_token_ttl",
    "refresh_token_ttl",
    "login_failure_window",
    "login_delay",
    "login_familiar_window",
    "password_reset_ttl",
    "email_verification_ttl",
    "email_request_window",
    "session_max_lifetime",
)
"""The duration settings: plain numbers are seconds, and each must be positive."""


class PostKitSettings(BaseSettings):
    """Everything a :class:`~postkit.PostKit` needs to know about its environment.

    Build it with keywords (``PostKitSettings(database_url=..., secret_key=...)``) or let it read
    ``POSTKIT_*`` environment variables and a ``.env`` file in the working directory.
    """

    model_config = SettingsConfigDict(
        env_prefix="POSTKIT_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
        # Errors name the setting and the reason but never echo the value: it may be a secret
        # or a database URL with a password in it, and start-up errors end up in logs.
        hide_input_in_errors=True,
    )

    # --- Environment and database -------------------------------------------------------------
    environment: Literal["development", "production"] = Field(
        default="development",
        description="In `production` a missing `secret_key` is an error instead of a warning.",
    )
    database_url: str = Field(
        default="sqlite+aiosqlite:///./postkit.db",
        description=(
            "SQLAlchemy URL of the database. `postgres://` and `postgresql://` URLs are rewritten "
            "for the asyncpg driver, `sqlite://` URLs for aiosqlite."
        ),
    )
    database_pool_size: int = Field(
        default=10, ge=1, le=1000, description="Connections kept open per process (PostgreSQL)."
    )
    database_max_overflow: int = Field(
        default=10, ge=0, le=1000, description="Extra connections opened under load (PostgreSQL)."
    )
    database_pool_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds to wait for a free pooled connection before answering 503.",
    )
    database_connect_timeout: float = Field(
        default=5.0, gt=0, description="Seconds to wait for a new database connection."
    )
    database_command_timeout: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Seconds a query may wait for the database (PostgreSQL) before the request answers "
            "503: bounds how long requests hang when the network to the database fails."
        ),
    )
    database_statement_cache_size: int = Field(
        default=100,
        ge=0,
        description=(
            "asyncpg's prepared statement cache per connection. Set 0 behind PgBouncer in "
            "transaction pooling mode."
        ),
    )
    database_echo: bool = Field(default=False, description="Log every SQL statement (debugging).")
    auto_migrate: bool = Field(
        default=False,
        description="Apply postkit's migrations when the app starts (through `kit.lifespan`).",
    )

    # --- Tokens -------------------------------------------------------------------------------
    secret_key: SecretStr | None = Field(
        default=None,
        description=(
            "Key that signs access tokens (HS* algorithms), at least 32 bytes. Unset in "
            "development: an ephemeral key is generated and every restart logs users out."
        ),
    )
    previous_secret_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Retired signing keys that still verify tokens until removed (key rotation).",
    )
    jwt_algorithm: JwtAlgorithm = Field(
        default="HS256", description="The one algorithm tokens are signed and verified with."
    )
    jwt_private_key: SecretStr | None = Field(
        default=None, description="PEM private key, for the RS*, ES* and EdDSA algorithms."
    )
    jwt_public_key: str | None = Field(
        default=None, description="PEM public key matching `jwt_private_key`."
    )
    jwt_issuer: str = Field(default="postkit", min_length=1, description="The `iss` claim.")
    jwt_audience: str = Field(default="postkit", min_length=1, description="The `aud` claim.")
    jwt_leeway_seconds: int = Field(
        default=30, ge=0, le=300, description="Clock skew tolerated when checking `exp` and `iat`."
    )
    access_token_ttl: timedelta = Field(
        default=timedelta(minutes=15), description="Lifetime of an access token."
    )
    refresh_token_ttl: timedelta = Field(
        default=timedelta(days=30), description="Lifetime of a refresh token."
    )
    session_max_lifetime: timedelta = Field(
        default=timedelta(days=30),
        description=(
            "Longest a login lasts, however often it is refreshed: past it, its refresh and "
            "access tokens stop working and the user signs in again."
        ),
    )

    # --- Passwords and login throttling -------------------------------------------------------
    bcrypt_rounds: int = Field(
        default=12, ge=4, le=20, description="bcrypt cost factor (log2 of the work)."
    )
    password_min_length: int = Field(
        default=8, ge=1, le=128, description="Shortest password accepted at registration."
    )
    login_max_failures: int = Field(
        default=5,
        ge=1,
        description=(
            "Failed password checks allowed per account from one network (IPv4 address or "
            "IPv6 /64) per window before each further one waits `login_delay`, doubling."
        ),
    )
    login_address_max_failures: int = Field(
        default=100,
        ge=1,
        description=(
            "Failed password checks allowed per network over all accounts per window (credential "
            "stuffing); past it the network's logins answer 429, except for accounts it is "
            "familiar to."
        ),
    )
    login_account_max_failures: int = Field(
        default=20,
        ge=1,
        description=(
            "Failed password checks allowed per account per window from networks it is not "
            "familiar to (distributed guessing); past it those networks get 429 for that account "
            "until failures leave the window or the password is changed."
        ),
    )
    login_failure_window: timedelta = Field(
        default=timedelta(minutes=15), description="Window in which failed logins are counted."
    )
    login_delay: timedelta = Field(
        default=timedelta(seconds=1),
        description=(
            "Wait before the first check past `login_max_failures` (per account and network); "
            "it doubles with each further failure, up to `login_failure_window`."
        ),
    )
    login_familiar_window: timedelta = Field(
        default=timedelta(days=30),
        description=(
            "How long a correct password from a network makes it familiar for the account "
            "(exempt from the per-network and per-account budgets)."
        ),
    )
    password_verify_workers: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description=(
            "Threads verifying passwords for logins and current-password checks at once, per "
            "process; unset: the number of CPU cores."
        ),
    )
    password_verify_queue: int = Field(
        default=64,
        ge=0,
        description=(
            "Password checks that may wait for a verifying thread; more answer "
            "`503 SERVICE_BUSY` with `Retry-After`."
        ),
    )
    password_hash_workers: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description=(
            "Threads hashing new passwords (registrations, password changes) at once, per "
            "process; unset: half the CPU cores, at least 1. Kept apart from verification, so "
            "a flood of registrations cannot starve logins."
        ),
    )
    password_hash_queue: int = Field(
        default=8,
        ge=0,
        description=(
            "New-password hashes that may wait for a hashing thread; more answer "
            "`503 SERVICE_BUSY` with `Retry-After`."
        ),
    )

    # --- Account mail: password reset, email verification, email change ---------------------
    email_enabled: bool = Field(
        default=False,
        description=(
            "Turn on the features that send mail: password reset, email verification (a mail at "
            "registration) and changing the email address. Off, those routes are not mounted."
        ),
    )
    public_base_url: str | None = Field(
        default=None,
        description=(
            "Where your front end lives (`https://app.example.com`): links in mail are built "
            "from it and the `*_url_path` settings. Required in production when "
            "`email_enabled` is on; `http://localhost:8000` in development."
        ),
    )
    reset_url_path: str = Field(
        default="/reset-password?token={token}",
        description="Path of the password reset link, with a `{token}` placeholder.",
    )
    verify_url_path: str = Field(
        default="/verify-email?token={token}",
        description=(
            "Path of the email verification link (and of the link confirming a new address), "
            "with a `{token}` placeholder."
        ),
    )
    password_reset_ttl: timedelta = Field(
        default=timedelta(hours=1), description="How long a password reset link works."
    )
    email_verification_ttl: timedelta = Field(
        default=timedelta(days=2),
        description="How long an email verification (or email change) link works.",
    )
    require_verified_email: bool = Field(
        default=False,
        description=(
            "Only accounts with a verified email may create, change or delete posts and vote "
            "(403 `EMAIL_NOT_VERIFIED`). Needs `email_enabled`."
        ),
    )
    email_requests_per_account: int = Field(
        default=3,
        ge=1,
        description="Mails (reset or verification) one address or account may ask for per window.",
    )
    email_requests_per_client: int = Field(
        default=20,
        ge=1,
        description="Mail requests one client address may make per window.",
    )
    email_request_window: timedelta = Field(
        default=timedelta(hours=1), description="Window in which mail requests are counted."
    )
    mail_send_attempts: int = Field(
        default=3, ge=1, le=10, description="Tries per message before it is given up (logged)."
    )
    mail_retry_delay: float = Field(
        default=2.0,
        ge=0,
        description="Seconds before the first retry of a failed send; doubled for each next one.",
    )
    mail_queue_size: int = Field(
        default=1000,
        ge=1,
        description="Messages waiting to be sent at most; past it new ones are dropped (logged).",
    )
    smtp_host: str | None = Field(
        default=None,
        description=(
            "SMTP server to send mail through. Unset: mail is only logged (at INFO, links "
            "included), which suits development only."
        ),
    )
    smtp_port: int = Field(
        default=587, ge=1, le=65535, description="SMTP port: 587 for STARTTLS, 465 for TLS."
    )
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description=(
            "`starttls`: upgrade the connection (required); `tls`: implicit TLS from the "
            "first byte (port 465); `none`: plain text (a relay on localhost only)."
        ),
    )
    smtp_username: str | None = Field(default=None, description="SMTP login, if the server asks.")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password.")
    smtp_from: str | None = Field(
        default=None,
        description="The From address of postkit's mail (`Example <no-reply@example.com>`).",
    )
    smtp_timeout: float = Field(
        default=10.0, gt=0, description="Seconds an SMTP connection or command may take."
    )
    smtp_ca_file: str | None = Field(
        default=None,
        description="CA bundle (PEM) that verifies the SMTP server's certificate, if not public.",
    )

    # --- Accounts -----------------------------------------------------------------------------
    account_deletion_posts: Literal["delete", "anonymize"] = Field(
        default="delete",
        description=(
            "What deleting an account does to its posts: `delete` them, or `anonymize` them "
            "(published posts stay, shown as by `[deleted]`; drafts are deleted)."
        ),
    )

    # --- Posts and votes ----------------------------------------------------------------------
    public_reads: bool = Field(
        default=False, description="Let anonymous clients read published posts."
    )
    posts_default_limit: int = Field(default=10, ge=1, description="Page size when none is asked.")
    posts_max_limit: int = Field(
        default=100, ge=1, description="Largest page size a client may ask."
    )
    search_min_length: int = Field(
        default=3,
        ge=1,
        le=200,
        description=(
            "Shortest `search` term `GET /posts` accepts (422 below it): shorter terms cannot "
            "use the trigram index on PostgreSQL and scan every post."
        ),
    )
    post_content_max_length: int = Field(
        default=50_000, ge=1, description="Longest post content, in characters."
    )
    # --- Discussion (docs/comments.md) -----------------------------------------------------
    allow_downvotes: bool = Field(
        default=True,
        description=(
            "Accept down-votes (`dir: -1`, a vote value of -1) on posts and comments; with "
            "`false` they answer 422 and only up-votes count."
        ),
    )
    comment_max_depth: int = Field(
        default=8,
        ge=1,
        le=64,
        description=(
            "Deepest reply level: a top-level comment is depth 1; a reply deeper than this "
            "answers 422."
        ),
    )
    comment_content_max_length: int = Field(
        default=10_000, ge=1, description="Longest comment body, in characters."
    )
    revisions_visible_to: Literal["readers", "author"] = Field(
        default="readers",
        description=(
            "Who may list an item's edit history (`GET /posts/{id}/revisions`, "
            "`GET /comments/{id}/revisions`): `readers`, whoever can see the item, or "
            "`author`, its author only (others get 404)."
        ),
    )
    max_body_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        description="Request bodies larger than this are refused with 413.",
    )

    # --- Rate limits (docs/rate-limits.md) ----------------------------------------------------
    # Each rate is hits per period ("10/minute", "5/15minutes", "100/3600s") or "off".
    rate_limits_enabled: bool = Field(
        default=True, description="Apply the rate limits below; `false` turns all of them off."
    )
    rate_limit_register: str = Field(
        default="300/hour",
        description=(
            "Registrations (`POST /users`) per client address (IPv6: per /64). A flood backstop, "
            "sized above what a campus or carrier address behind one IP sends."
        ),
    )
    rate_limit_login: str = Field(
        default="300/minute",
        description=(
            "Login attempts (`POST /login`), successful or not, per client address; failed "
            "ones are also throttled by `login_max_failures`."
        ),
    )
    rate_limit_token_refresh: str = Field(
        default="300/minute",
        description="Token refreshes (`POST /token/refresh`) per client address.",
    )
    rate_limit_password_change: str = Field(
        default="10/hour",
        description="Password changes (`PATCH /users/me` with a `password`) per account.",
    )
    rate_limit_account_email: str = Field(
        default="30/hour",
        description=(
            "Requests that send an account email (password reset, address verification) per "
            'client address: `kit.rate_limit("account_email")`.'
        ),
    )
    rate_limit_post_create: str = Field(
        default="60/hour", description="Posts created (`POST /posts`) per account."
    )
    rate_limit_comment_create: str = Field(
        default="300/hour",
        description="Comments and replies written (`POST /posts/{id}/comments`) per account.",
    )
    rate_limit_vote: str = Field(
        default="120/minute",
        description=(
            "Votes (`POST /vote`, `PUT` and `DELETE /posts/{id}/vote`, and the same on "
            "`/comments/{id}/vote`) per account."
        ),
    )
    rate_limit_search: str = Field(
        default="60/minute",
        description=(
            "Searches (`GET /posts?search=...`) per account, or per client address when "
            "anonymous (`public_reads`)."
        ),
    )
    rate_limit_fail_open: bool = Field(
        default=True,
        description=(
            "When Redis does not answer, let limited requests through (`true`) or refuse them "
            "with 503 `RATE_LIMIT_UNAVAILABLE` (`false`). Logged once per outage."
        ),
    )
    redis_url: SecretStr | None = Field(
        default=None,
        description=(
            "Count rate limits in Redis (`redis://host:6379/0`, `rediss://` for TLS) instead of "
            "the database table `postkit_rate_limits`."
        ),
    )
    redis_key_prefix: str = Field(
        default="postkit:rl:",
        max_length=100,
        description="Prefix of postkit's Redis keys: give each app sharing a Redis its own.",
    )
    redis_timeout: float = Field(
        default=0.5,
        gt=0,
        le=30,
        description="Seconds to wait for Redis (connect, and each answer) before failing over.",
    )

    # --- Plugins ------------------------------------------------------------------------------
    discover_plugins: bool = Field(
        default=True, description="Load plugins from the `postkit` entry-point group."
    )

    @field_validator("database_url")
    @classmethod
    def _normalize_database_url(cls, value: str) -> str:
        return normalize_database_url(value)

    @field_validator(
        "rate_limit_register",
        "rate_limit_login",
        "rate_limit_token_refresh",
        "rate_limit_password_change",
        "rate_limit_account_email",
        "rate_limit_post_create",
        "rate_limit_comment_create",
        "rate_limit_vote",
        "rate_limit_search",
    )
    @classmethod
    def _check_rate(cls, value: str) -> str:
        from postkit.ratelimit import parse_rate

        parse_rate(value)
        return value.strip().lower()

    @field_validator("redis_url", mode="after")
    @classmethod
    def _check_redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        scheme = value.get_secret_value().split("://", 1)[0].lower()
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("secret_key", "previous_secret_keys", mode="after")
    @classmethod
    def _check_secret_length(
        cls, value: SecretStr | list[SecretStr] | None
    ) -> SecretStr | list[SecretStr] | None:
        keys = value if isinstance(value, list) else [value] if value is not None else []
        for key in keys:
            if len(key.get_secret_value().encode()) < MIN_SECRET_BYTES:
                raise ValueError(
                    f"must be at least {MIN_SECRET_BYTES} bytes long; generate one with "
                    "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
                )
        return value

    @field_validator("public_base_url")
    @classmethod
    def _check_public_base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip("/")
        scheme, _, rest = value.partition("://")
        if scheme not in ("http", "https") or not rest or "?" in rest or "#" in rest:
            raise ValueError(
                "must be an http:// or https:// URL without query or fragment, "
                "like https://app.example.com"
            )
        return value

    @field_validator("reset_url_path", "verify_url_path")
    @classmethod
    def _check_url_path(cls, value: str) -> str:
        if not value.startswith("/") or value.count("{token}") != 1:
            raise ValueError("must start with / and contain {token} exactly once")
        if "{" in value.replace("{token}", "") or "}" in value.replace("{token}", ""):
            raise ValueError("may contain no placeholder but {token}")
        return value

    @field_validator(*_DURATIONS, mode="before")
    @classmethod
    def _seconds_as_duration(cls, value: object) -> object:
        # POSTKIT_ACCESS_TOKEN_TTL=900 means seconds; pydantic alone only parses "PT15M" strings.
        if isinstance(value, str) and value.strip().lstrip("-").replace(".", "", 1).isdigit():
            return float(value)
        return value

    @field_validator(*_DURATIONS)
    @classmethod
    def _positive_duration(cls, value: timedelta) -> timedelta:
        if value.total_seconds() <= 0:
            raise ValueError("must be a positive duration")
        return value

    @model_validator(mode="after")
    def _check_keys(self) -> PostKitSettings:
        if self.posts_default_limit > self.posts_max_limit:
            raise ValueError("posts_default_limit must not exceed posts_max_limit")
        self._check_mail()
        if self.jwt_algorithm.startswith("HS"):
            if self.secret_key is None:
                if self.environment == "production":
                    raise ValueError(
                        "secret_key is required when environment is 'production' "
                        "(set POSTKIT_SECRET_KEY)"
                    )
                self.secret_key = SecretStr(secrets.token_urlsafe(48))
                _warn_ephemeral_secret()
        elif self.jwt_private_key is None or self.jwt_public_key is None:
            raise ValueError(
                f"jwt_algorithm {self.jwt_algorithm} needs jwt_private_key and jwt_public_key"
            )
        return self

    def _check_mail(self) -> None:
        if self.require_verified_email and not self.email_enabled:
            raise ValueError(
                "require_verified_email needs email_enabled (set POSTKIT_EMAIL_ENABLED=true): "
                "accounts verify their address by following a mailed link"
            )
        if self.email_enabled and self.public_base_url is None and self.environment == "production":
            raise ValueError(
                "public_base_url is required when email_enabled is on and environment is "
                "'production' (set POSTKIT_PUBLIC_BASE_URL to your front end's URL, like "
                "https://app.example.com): the links in password reset and verification mail "
                "are built from it"
            )
        if self.smtp_host is not None and not self.smtp_from:
            raise ValueError(
                "smtp_from is required when smtp_host is set (set POSTKIT_SMTP_FROM, like "
                "'Example <no-reply@example.com>')"
            )

    @property
    def link_base_url(self) -> str:
        """The base of links in mail: ``public_base_url``, else ``http://localhost:8000``."""
        return self.public_base_url or "http://localhost:8000"

    @property
    def signing_key(self) -> str:
        """The key new tokens are signed with."""
        if self.jwt_algorithm.startswith("HS"):
            assert self.secret_key is not None  # guaranteed by the model validator
            return self.secret_key.get_secret_value()
        assert self.jwt_private_key is not None
        return self.jwt_private_key.get_secret_value()

    @property
    def verification_keys(self) -> list[str]:
        """Keys that verify tokens: the current one first, then the retired ones."""
        if self.jwt_algorithm.startswith("HS"):
            return [self.signing_key, *(k.get_secret_value() for k in self.previous_secret_keys)]
        assert self.jwt_public_key is not None
        return [self.jwt_public_key]


def _warn_ephemeral_secret() -> None:
    global _ephemeral_secret_warned
    if _ephemeral_secret_warned:
        return
    _ephemeral_secret_warned = True
    logger.warning(
        "postkit: no secret_key is set, so an ephemeral one was generated for this process. "
        "Tokens will stop working when it restarts and will not be shared between workers. "
        "Set the secret_key setting (32+ bytes; POSTKIT_SECRET_KEY in the environment, or "
        "however your app passes it to PostKitSettings) before deploying."
    )
