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
        default=5, ge=1, description="Failed logins allowed per account and per client address."
    )
    login_failure_window: timedelta = Field(
        default=timedelta(minutes=15), description="Window in which failed logins are counted."
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
    post_content_max_length: int = Field(
        default=50_000, ge=1, description="Longest post content, in characters."
    )
    max_body_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        description="Request bodies larger than this are refused with 413.",
    )

    # --- Plugins ------------------------------------------------------------------------------
    discover_plugins: bool = Field(
        default=True, description="Load plugins from the `postkit` entry-point group."
    )

    @field_validator("database_url")
    @classmethod
    def _normalize_database_url(cls, value: str) -> str:
        return normalize_database_url(value)

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

    @field_validator(
        "access_token_ttl",
        "refresh_token_ttl",
        "session_max_lifetime",
        "login_failure_window",
        mode="before",
    )
    @classmethod
    def _seconds_as_duration(cls, value: object) -> object:
        # POSTKIT_ACCESS_TOKEN_TTL=900 means seconds; pydantic alone only parses "PT15M" strings.
        if isinstance(value, str) and value.strip().lstrip("-").replace(".", "", 1).isdigit():
            return float(value)
        return value

    @field_validator(
        "access_token_ttl", "refresh_token_ttl", "session_max_lifetime", "login_failure_window"
    )
    @classmethod
    def _positive_duration(cls, value: timedelta) -> timedelta:
        if value.total_seconds() <= 0:
            raise ValueError("must be a positive duration")
        return value

    @model_validator(mode="after")
    def _check_keys(self) -> PostKitSettings:
        if self.posts_default_limit > self.posts_max_limit:
            raise ValueError("posts_default_limit must not exceed posts_max_limit")
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
