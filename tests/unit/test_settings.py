"""PostKitSettings: validations name the setting; URLs are normalised; env and .env are read."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from postkit import PostKitSettings
from tests.support.servers import clean_env

SECRET = "s" * 32
RSA_PRIVATE = "-----BEGIN PRIVATE KEY-----\nnot-checked-here\n-----END PRIVATE KEY-----"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No POSTKIT_* variables and a working directory without a .env file."""
    for name in list(os.environ):
        if name.startswith("POSTKIT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def settings(**values: Any) -> PostKitSettings:
    values.setdefault("secret_key", SECRET)
    return PostKitSettings(**values)


def rejected(fragments: tuple[str, ...], **values: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        settings(**values)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


# --- Validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("not a url at all", "is not a database URL"),
        ("://nothing", "is not a database URL"),
        ("", "must not be empty"),
        ("mysql://user@localhost/db", "unsupported scheme 'mysql'"),
        ("oracle+cx_oracle://scott@db/orcl", "unsupported scheme"),
        ("postgresql+psycopg2://user@localhost/db", "'psycopg2' driver"),
        ("postgresql+psycopg://user@localhost/db", "'psycopg' driver"),
        ("sqlite+pysqlite:///x.db", "'pysqlite' driver"),
        # asyncpg would fail on these at the first connection, far from the configuration.
        ("postgres://u@db/app?application_name=web", "query parameter(s) application_name"),
        ("postgres://u@db/app?sslmode=require&channel_binding=require", "channel_binding"),
    ],
)
def test_bad_database_urls_name_the_setting(url, fragment):
    rejected(("database_url", fragment), database_url=url)


def test_short_secret_names_the_setting_and_the_minimum():
    message = rejected(("secret_key", "at least 32 bytes"), secret_key="x" * 31)
    assert "x" * 31 not in message  # the rejected secret is not echoed back


def test_secret_length_counts_bytes_not_characters():
    rejected(("secret_key",), secret_key="é" * 15)  # 15 characters, 30 bytes
    assert settings(secret_key="é" * 16).signing_key == "é" * 16


def test_short_previous_key_names_the_setting():
    rejected(("previous_secret_keys", "at least 32 bytes"), previous_secret_keys=[SECRET, "short"])


def test_production_requires_a_secret():
    with pytest.raises(ValidationError, match="secret_key is required"):
        PostKitSettings(environment="production")


def test_production_with_a_secret_is_fine():
    assert settings(environment="production").signing_key == SECRET


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "EdDSA"])
def test_asymmetric_algorithms_need_both_keys(algorithm):
    rejected(("jwt_private_key", "jwt_public_key"), jwt_algorithm=algorithm)
    rejected(("jwt_public_key",), jwt_algorithm=algorithm, jwt_private_key=RSA_PRIVATE)


def test_asymmetric_keys_are_used_for_signing_and_verification():
    configured = settings(
        jwt_algorithm="RS256", jwt_private_key=RSA_PRIVATE, jwt_public_key="public-pem"
    )
    assert configured.signing_key == RSA_PRIVATE
    assert configured.verification_keys == ["public-pem"]


def test_unknown_algorithm_is_refused():
    rejected(("jwt_algorithm",), jwt_algorithm="none")


def test_default_limit_may_not_exceed_max_limit():
    rejected(("posts_default_limit", "posts_max_limit"), posts_default_limit=50, posts_max_limit=20)
    assert settings(posts_default_limit=20, posts_max_limit=20).posts_default_limit == 20


@pytest.mark.parametrize("name", ["access_token_ttl", "refresh_token_ttl", "login_failure_window"])
@pytest.mark.parametrize("value", [timedelta(seconds=-1), timedelta(0), -60, "-60", "0"])
def test_durations_must_be_positive(name, value):
    rejected((name, "positive duration"), **{name: value})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("bcrypt_rounds", 3),
        ("bcrypt_rounds", 21),
        ("posts_max_limit", 0),
        ("max_body_bytes", 10),
        ("database_pool_size", 0),
        ("database_statement_cache_size", -1),
        ("jwt_leeway_seconds", 301),
        ("environment", "staging"),
    ],
)
def test_out_of_range_values_name_the_setting(name, value):
    rejected((name,), **{name: value})


# --- URL normalisation ----------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["connect_timeout=soon", "timeout=-1", "command_timeout=0"])
def test_url_timeouts_must_be_positive_numbers(query):
    rejected(
        ("database_url", "positive number of seconds"), database_url=f"postgres://u@db/app?{query}"
    )


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            "postgres://u:p@db.example.com:5432/app",
            "postgresql+asyncpg://u:p@db.example.com:5432/app",
        ),
        ("postgresql://u:p@db.example.com/app", "postgresql+asyncpg://u:p@db.example.com/app"),
        ("postgresql+asyncpg://u@db/app", "postgresql+asyncpg://u@db/app"),
        ("POSTGRES://u@db/app", "postgresql+asyncpg://u@db/app"),
        ("  postgres://u@db/app  ", "postgresql+asyncpg://u@db/app"),
        ("postgres://u@db/app?sslmode=require", "postgresql+asyncpg://u@db/app?ssl=require"),
        ("postgres://u@db/app?connect_timeout=10", "postgresql+asyncpg://u@db/app?timeout=10"),
        (
            "postgresql://u@db/app?ssl=require&command_timeout=30",
            "postgresql+asyncpg://u@db/app?command_timeout=30&ssl=require",
        ),
        ("sqlite:///./postkit.db", "sqlite+aiosqlite:///./postkit.db"),
        ("sqlite:////var/lib/app/postkit.db", "sqlite+aiosqlite:////var/lib/app/postkit.db"),
        ("sqlite://", "sqlite+aiosqlite://"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ],
)
def test_urls_are_normalised_for_the_async_drivers(given, expected):
    assert settings(database_url=given).database_url == expected


def test_errors_do_not_echo_secrets_or_url_passwords():
    message = rejected(("database_url",), database_url="mysql://app:hunter2-secret@db/app")
    assert "hunter2-secret" not in message
    message = rejected(("previous_secret_keys",), previous_secret_keys=["old-but-short-key"])
    assert "old-but-short-key" not in message


def test_passwords_with_special_characters_survive_normalisation():
    url = settings(database_url="postgres://app:p%40ss%2Fw%25rd@db/app").database_url
    parsed = make_url(url)
    assert parsed.password == "p@ss/w%rd"
    assert parsed.drivername == "postgresql+asyncpg"


def test_default_database_is_a_sqlite_file_in_the_working_directory():
    assert settings().database_url == "sqlite+aiosqlite:///./postkit.db"


# --- Environment and .env -------------------------------------------------------------------------


def test_environment_variables_are_read(monkeypatch):
    monkeypatch.setenv("POSTKIT_SECRET_KEY", "e" * 40)
    monkeypatch.setenv("POSTKIT_DATABASE_URL", "postgres://u@db/app")
    monkeypatch.setenv("POSTKIT_BCRYPT_ROUNDS", "5")
    monkeypatch.setenv("POSTKIT_PUBLIC_READS", "true")
    monkeypatch.setenv("POSTKIT_ACCESS_TOKEN_TTL", "PT5M")
    monkeypatch.setenv("POSTKIT_REFRESH_TOKEN_TTL", "3600")  # plain numbers are seconds
    monkeypatch.setenv("POSTKIT_LOGIN_FAILURE_WINDOW", "90.5")
    monkeypatch.setenv("POSTKIT_PREVIOUS_SECRET_KEYS", f'["{"o" * 32}"]')
    configured = PostKitSettings()
    assert configured.signing_key == "e" * 40
    assert configured.database_url == "postgresql+asyncpg://u@db/app"
    assert configured.bcrypt_rounds == 5
    assert configured.public_reads is True
    assert configured.access_token_ttl == timedelta(minutes=5)
    assert configured.refresh_token_ttl == timedelta(hours=1)
    assert configured.login_failure_window == timedelta(seconds=90.5)
    assert configured.verification_keys == ["e" * 40, "o" * 32]


def test_bad_environment_value_names_the_setting(monkeypatch):
    monkeypatch.setenv("POSTKIT_SECRET_KEY", SECRET)
    monkeypatch.setenv("POSTKIT_DATABASE_URL", "ftp://files.example.com")
    with pytest.raises(ValidationError, match="database_url"):
        PostKitSettings()


def test_dotenv_file_is_read(clean_environment):
    (clean_environment / ".env").write_text(
        f"POSTKIT_SECRET_KEY={'d' * 32}\nPOSTKIT_DATABASE_URL=postgres://u@db/fromdotenv\n"
        "POSTKIT_POSTS_DEFAULT_LIMIT=7\nUNRELATED_SETTING=ignored\n"
    )
    configured = PostKitSettings()
    assert configured.signing_key == "d" * 32
    assert configured.database_url.endswith("/fromdotenv")
    assert configured.posts_default_limit == 7


def test_precedence_keywords_then_environment_then_dotenv(clean_environment, monkeypatch):
    (clean_environment / ".env").write_text(
        f"POSTKIT_SECRET_KEY={'d' * 32}\nPOSTKIT_BCRYPT_ROUNDS=6\nPOSTKIT_POSTS_MAX_LIMIT=50\n"
    )
    monkeypatch.setenv("POSTKIT_BCRYPT_ROUNDS", "7")
    monkeypatch.setenv("POSTKIT_POSTS_MAX_LIMIT", "60")
    configured = PostKitSettings(posts_max_limit=70)
    assert configured.posts_max_limit == 70  # keyword
    assert configured.bcrypt_rounds == 7  # environment over .env
    assert configured.signing_key == "d" * 32  # .env


def test_a_bad_value_in_dotenv_names_the_setting(clean_environment):
    (clean_environment / ".env").write_text("POSTKIT_SECRET_KEY=too-short\n")
    with pytest.raises(ValidationError, match="secret_key"):
        PostKitSettings()


# --- The ephemeral development secret -------------------------------------------------------------

EPHEMERAL_SCRIPT = """
import logging
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
from postkit import PostKitSettings
first = PostKitSettings(_env_file=None)
second = PostKitSettings(_env_file=None)
assert len(first.signing_key) >= 32 and len(second.signing_key) >= 32
print(first.signing_key)
"""


def test_missing_secret_generates_one_and_warns_once(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", EPHEMERAL_SCRIPT],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1, result.stderr
    assert warnings[0].startswith("WARNING postkit ")
    assert "POSTKIT_SECRET_KEY" in warnings[0]
    generated = result.stdout.strip()
    assert generated not in result.stderr  # the key itself is never logged


def test_ephemeral_secret_warning_in_process(caplog, monkeypatch):
    # The warning is once per process; reset that memory so this test does not depend on order.
    import postkit.settings

    monkeypatch.setattr(postkit.settings, "_ephemeral_secret_warned", False)
    with caplog.at_level("WARNING", logger="postkit"):
        PostKitSettings()
        PostKitSettings()
    messages = [r.getMessage() for r in caplog.records if "secret_key" in r.getMessage()]
    assert len(messages) == 1
    assert "ephemeral" in messages[0]
