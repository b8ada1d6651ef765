"""Database URLs: what postkit accepts, and the form its async drivers need.

Settings validate their URL with :func:`normalize_database_url`; the database layer, the CLI
and the migrations use the normalised form. This module imports nothing of postkit's.
"""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

__all__ = ["normalize_database_url"]

_POSTGRES_NAMES = {"postgres", "postgresql", "postgresql+asyncpg"}
_SQLITE_NAMES = {"sqlite", "sqlite+aiosqlite"}
_LIBPQ_TO_ASYNCPG = {"sslmode": "ssl", "connect_timeout": "timeout"}
# Keyword arguments of asyncpg.connect() that make sense in a URL, plus SQLAlchemy's own.
_ASYNCPG_QUERY_NAMES = frozenset(
    {
        "host",
        "port",
        "passfile",
        "service",
        "servicefile",
        "timeout",
        "command_timeout",
        "statement_cache_size",
        "max_cached_statement_lifetime",
        "max_cacheable_statement_size",
        "ssl",
        "direct_tls",
        "target_session_attrs",
        "krbsrvname",
        "gsslib",
        "prepared_statement_cache_size",
    }
)


def normalize_database_url(url: str) -> str:
    """Return ``url`` rewritten for postkit's async drivers, or raise ``ValueError``.

    ``postgres://`` (Heroku and most hosts) and ``postgresql://`` become ``postgresql+asyncpg://``,
    with libpq's ``sslmode`` and ``connect_timeout`` turned into asyncpg's ``ssl`` and ``timeout``
    and parameters asyncpg does not know refused; ``sqlite://`` becomes
    ``sqlite+aiosqlite://``. Any other scheme is refused with a message that says what is accepted.
    """
    url = url.strip()
    if not url:
        raise ValueError("must not be empty")
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise ValueError(
            "is not a database URL (expected e.g. postgresql://user:pass@host/db "
            "or sqlite:///./postkit.db)"
        ) from exc
    name = parsed.drivername.lower()
    if name in _POSTGRES_NAMES:
        parsed = parsed.set(drivername="postgresql+asyncpg", query=_asyncpg_query(parsed))
    elif name in _SQLITE_NAMES:
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif name.startswith(("postgresql+", "sqlite+")):
        driver = name.split("+", 1)[1]
        raise ValueError(
            f"uses the {driver!r} driver; postkit is async and needs asyncpg (PostgreSQL) or "
            "aiosqlite (SQLite): drop the driver from the scheme and postkit picks the right one"
        )
    else:
        raise ValueError(
            f"has the unsupported scheme {parsed.drivername!r}; use postgresql://, postgres:// "
            "or sqlite:///"
        )
    return parsed.render_as_string(hide_password=False)


def _asyncpg_query(parsed: URL) -> dict[str, str | tuple[str, ...]]:
    """The URL's query for asyncpg: libpq's names translated, anything asyncpg lacks refused.

    asyncpg receives every query parameter as a keyword argument, so an unknown one (libpq's
    ``application_name``, ``channel_binding``...) would fail at the first connection instead.
    """
    query = dict(parsed.query)
    for libpq_name, asyncpg_name in _LIBPQ_TO_ASYNCPG.items():
        if libpq_name in query:
            query[asyncpg_name] = query.pop(libpq_name)
    unknown = sorted(set(query) - _ASYNCPG_QUERY_NAMES)
    if unknown:
        raise ValueError(
            f"has the query parameter(s) {', '.join(unknown)}, which the asyncpg driver does not "
            f"accept; accepted: {', '.join(sorted(_ASYNCPG_QUERY_NAMES | set(_LIBPQ_TO_ASYNCPG)))}"
        )
    for name in ("timeout", "command_timeout"):
        if name in query and not _is_positive_number(query[name]):
            raise ValueError(f"has {name}={query[name]!r}; it must be a positive number of seconds")
    return query


def _is_positive_number(value: object) -> bool:
    try:
        return float(str(value)) > 0
    except ValueError:
        return False
