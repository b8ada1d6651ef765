"""The app's own configuration, read from the environment or a ``.env`` file.

The names are the conventional ones platforms set (``DATABASE_URL``, ``SECRET_KEY``, ``PORT``,
``WEB_CONCURRENCY``); :meth:`AppSettings.postkit_settings` maps them onto postkit's settings by
explicit keywords, so nothing depends on postkit's ``POSTKIT_`` names. Any other postkit setting
can still be given as a ``POSTKIT_*`` variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from postkit import PostKitSettings

DEFAULT_DATABASE_URL = "sqlite:///./socialapp.db"


class AppSettings(BaseSettings):
    """Settings of the reference app (environment variables are the upper-case field names)."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    environment: Literal["development", "production"] = Field(
        default="development",
        description="`production` refuses to start without SECRET_KEY.",
    )
    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        description="postgres://, postgresql:// or sqlite:/// URL (default: SQLite file in cwd).",
    )
    secret_key: SecretStr | None = Field(
        default=None, description="Token signing key, 32+ bytes. Required in production."
    )
    host: str = Field(default="0.0.0.0", description="Interface gunicorn binds to.")  # noqa: S104
    port: int = Field(default=8000, ge=1, le=65535, description="Port gunicorn binds to.")
    web_concurrency: int = Field(default=2, ge=1, description="Number of gunicorn workers.")
    log_level: str = Field(default="info", description="Log level of the app and gunicorn.")
    migrate_on_startup: bool = Field(
        default=True, description="Apply the migrations (postkit's and the app's) at start-up."
    )
    bcrypt_rounds: int = Field(default=12, ge=4, le=20, description="bcrypt cost factor.")
    public_reads: bool = Field(default=False, description="Let anonymous clients read posts.")
    database_pool_size: int = Field(default=10, ge=1, description="Connections per worker.")
    database_statement_cache_size: int = Field(
        default=100, ge=0, description="0 behind PgBouncer in transaction pooling mode."
    )
    banned_words: str = Field(
        default="spam,scam",
        description="Comma-separated words the community rules plugin refuses in posts.",
    )

    # --8<-- [start:postkit_settings]
    def postkit_settings(self) -> PostKitSettings:
        """postkit's settings, built from this app's ones by explicit keywords."""
        values: dict[str, Any] = {
            "environment": self.environment,
            "database_url": self.database_url,
            "bcrypt_rounds": self.bcrypt_rounds,
            "public_reads": self.public_reads,
            "database_pool_size": self.database_pool_size,
            "database_statement_cache_size": self.database_statement_cache_size,
            # The app migrates postkit's tables and its own together (app/migrate.py).
            "auto_migrate": False,
        }
        if self.secret_key is not None:
            values["secret_key"] = self.secret_key
        return PostKitSettings(**values)

    # --8<-- [end:postkit_settings]

    @property
    def banned_word_list(self) -> list[str]:
        """The banned words, lower-cased, without blanks."""
        return [word.strip().lower() for word in self.banned_words.split(",") if word.strip()]

    @property
    def sqlite_path(self) -> Path | None:
        """The absolute path of the SQLite database file, or ``None`` for other databases."""
        url = make_url(self.database_url)
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            return None
        return Path(url.database).resolve()


def describe_database(settings: AppSettings) -> str:
    """Where the data lives, for logs: the SQLite file's absolute path, or the server."""
    path = settings.sqlite_path
    if path is not None:
        return f"SQLite database at {path}"
    url = make_url(settings.database_url)
    return f"{url.get_backend_name()} database {url.database!r} on {url.host}:{url.port or ''}"
