"""The data layer: foreign keys, the per-request session, isolation between kits, no import work."""

# No `from __future__ import annotations`: FastAPI must resolve the local Annotated aliases.

import asyncio
import socket
import subprocess
import sys
from typing import Annotated

import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from postkit import PostKit, PostKitSettings, User, Vote
from postkit.db import Database
from postkit.errors import PostKitError
from postkit.routing import PostKitRoute
from tests.support.api import serve_asgi as serve
from tests.support.servers import clean_env


async def count_users(kit: PostKit, email: str) -> int:
    async with kit.db.sessionmaker() as session:
        return int(
            await session.scalar(select(func.count()).select_from(User).where(User.email == email))
            or 0
        )


def host_app(kit: PostKit) -> FastAPI:
    """A host with routes of its own that write through postkit's session dependency."""
    app = FastAPI(lifespan=kit.lifespan)
    app.include_router(kit.router)
    SessionDep = Annotated[AsyncSession, Depends(kit.session, scope="function")]

    def add_user(session: AsyncSession, name: str) -> None:
        session.add(User(email=f"{name}@example.com", username=name, password_hash="x"))

    @app.post("/ok/{name}")
    async def ok(name: str, session: SessionDep) -> dict[str, str]:
        add_user(session, name)
        await session.commit()  # the route that writes commits its writes
        return {"created": name}

    @app.post("/uncommitted/{name}")
    async def uncommitted(name: str, session: SessionDep) -> dict[str, str]:
        add_user(session, name)
        await session.flush()
        return {"staged": name}  # never committed: the dependency commits nothing

    @app.post("/refused/{name}")
    async def refused(name: str, session: SessionDep) -> None:
        add_user(session, name)
        await session.flush()
        raise HTTPException(status_code=409, detail="changed my mind")

    # A route under postkit's route class answers a PostKitError itself, before the session
    # dependency closes: the session must still roll back.
    refusing = APIRouter(route_class=PostKitRoute)

    @refusing.post("/postkit-refused/{name}")
    async def postkit_refused(name: str, session: SessionDep) -> None:
        add_user(session, name)
        await session.flush()
        raise PostKitError("refused", status_code=403, code="REFUSED")

    app.include_router(refusing)

    @app.post("/crash/{name}")
    async def crash(name: str, session: SessionDep) -> None:
        add_user(session, name)
        await session.flush()
        raise RuntimeError("host bug")

    return app


# --- The per-request session ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "status", "kept"),
    [
        ("/ok/alice", 200, 1),  # the route committed
        ("/uncommitted/erin", 200, 0),  # staged but not committed: rolled back at close
        ("/refused/bob", 409, 0),  # HTTPException: rolled back
        ("/postkit-refused/dave", 403, 0),  # PostKitError answered by the route: rolled back
        ("/crash/carol", 500, 0),  # unhandled error: rolled back
    ],
)
async def test_session_keeps_only_what_the_route_committed(settings_factory, route, status, kept):
    kit = PostKit(settings_factory())
    async with serve(host_app(kit), raise_app_exceptions=False) as http:
        response = await http.post(route)
        assert response.status_code == status
        name = route.rsplit("/", 1)[1]
        assert await count_users(kit, f"{name}@example.com") == kept


async def test_host_route_and_current_user_share_one_session(settings_factory, new_user):
    """current_user and the route get the same session, so the user object is usable."""
    kit = PostKit(settings_factory())
    app = host_app(kit)

    @app.get("/whoami")
    async def whoami(
        session: Annotated[AsyncSession, Depends(kit.session, scope="function")],
        user: Annotated[User, Depends(kit.current_user)],
    ) -> dict[str, object]:
        return {"same": user in session, "id": user.id}

    async with serve(app) as http:
        person = await new_user(http)
        response = await http.get("/whoami", headers=person.headers)
    assert response.status_code == 200
    assert response.json() == {"same": True, "id": person.id}


# --- Foreign keys ---------------------------------------------------------------------------------


async def test_foreign_keys_are_enforced(settings_factory):
    """On SQLite too: every connection runs PRAGMA foreign_keys=ON."""
    kit = PostKit(settings_factory())
    try:
        async with kit.db.sessionmaker() as session:
            user = User(email="dan@example.com", username="dan", password_hash="x")
            session.add(user)
            await session.commit()
            session.add(Vote(user_id=user.id, post_id=424242))
            with pytest.raises(IntegrityError, match=r"(?i)foreign key"):
                await session.commit()
    finally:
        await kit.db.dispose()


async def test_deleting_a_user_cascades(settings_factory):
    from postkit import Post

    kit = PostKit(settings_factory())
    try:
        async with kit.db.sessionmaker() as session:
            user = User(email="eve@example.com", username="eve", password_hash="x")
            session.add(user)
            await session.flush()
            post = Post(title="t", content="c", owner_id=user.id)
            session.add(post)
            await session.flush()
            session.add(Vote(user_id=user.id, post_id=post.id))
            await session.commit()
            await session.execute(User.__table__.delete().where(User.id == user.id))
            await session.commit()
            assert await session.scalar(select(func.count()).select_from(Post)) == 0
            assert await session.scalar(select(func.count()).select_from(Vote)) == 0
    finally:
        await kit.db.dispose()


# --- Isolation and lifecycle ----------------------------------------------------------------------


class Marker:
    """A plugin object with no hooks: only its registration is observed."""


async def test_two_kits_share_nothing(settings_factory, empty_database_url, make_client, new_user):
    plugin = Marker()
    first = await make_client(plugins=[plugin])
    second = await make_client(
        database_url=empty_database_url,
        auto_migrate=True,
        secret_key="another-secret-key-that-is-long-enough-987654",
    )
    assert first.kit.db.engine is not second.kit.db.engine
    assert first.kit.plugin_manager is not second.kit.plugin_manager
    assert first.kit.plugin_manager.is_registered(plugin)
    assert not second.kit.plugin_manager.is_registered(plugin)
    assert first.kit.router is not second.kit.router

    # The same account can exist in both: they are different databases...
    person = await new_user(first, email="same@example.com", username="same")
    await new_user(second, email="same@example.com", username="same")
    # ...and a token signed by one kit means nothing to the other.
    assert (await first.get("/users/me", headers=person.headers)).status_code == 200
    assert (await second.get("/users/me", headers=person.headers)).status_code == 401


async def test_lifespan_disposes_of_the_engine(settings_factory):
    kit = PostKit(settings_factory())
    app = host_app(kit)
    async with serve(app) as http:
        assert (await http.post("/ok/frank")).status_code == 200
        assert kit.db.engine.pool.checkedin() >= 1  # a pooled connection is being kept
    assert kit.db.engine.pool.checkedin() == 0  # disposed of on shutdown


async def test_database_from_settings_uses_the_settings(settings_factory):
    settings = settings_factory(database_pool_size=3, database_max_overflow=2)
    database = Database.from_settings(settings)
    try:
        assert database.engine.url.render_as_string(hide_password=False) == settings.database_url
        if not database.is_sqlite:
            assert database.engine.pool.size() == 3  # type: ignore[attr-defined]
    finally:
        await database.dispose()


# --- Import-time behaviour ------------------------------------------------------------------------

IMPORT_EVERYTHING = """
import gc
import importlib
import pkgutil

import postkit

skipped = {"postkit.__main__", "postkit.migrations.env"}  # a program and Alembic's script
for module in pkgutil.walk_packages(postkit.__path__, "postkit."):
    if module.name not in skipped and ".versions." not in module.name:
        importlib.import_module(module.name)

from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from postkit import PostKitSettings
import pluggy

for kind in (Engine, AsyncEngine, PostKitSettings, pluggy.PluginManager):
    alive = [obj for obj in gc.get_objects() if isinstance(obj, kind)]
    assert not alive, f"import created {kind.__name__}: {alive}"
print("clean")
"""


def test_importing_postkit_creates_nothing(tmp_path):
    # Settings that would fail validation: importing must not read them.
    env = clean_env(POSTKIT_DATABASE_URL="bogus://nowhere", POSTKIT_SECRET_KEY="short")
    (tmp_path / ".env").write_text("POSTKIT_BCRYPT_ROUNDS=not-a-number\n")
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", IMPORT_EVERYTHING],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "clean"
    assert result.stderr == ""
    assert not list(tmp_path.glob("*.db"))  # no SQLite file appeared either


async def test_a_timeout_in_the_url_wins_over_the_setting():
    """``?connect_timeout=`` in the URL is honoured (as a number), not overridden by the setting."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts connections and never answers: a connect can only time out
    port = silent.getsockname()[1]
    try:
        kit = PostKit(
            PostKitSettings(
                _env_file=None,
                database_url=f"postgres://u@127.0.0.1:{port}/app?connect_timeout=0.5",
                database_connect_timeout=60,
                secret_key="k" * 40,
                discover_plugins=False,
            )
        )
        # With the setting's 60 s the connect would outlast this bound; with the URL's 0.5 s the
        # driver gives up on its own, well before it.
        attempt = asyncio.ensure_future(_connect(kit))
        done, _ = await asyncio.wait({attempt}, timeout=20)
        if not done:
            attempt.cancel()
        assert attempt in done, "the URL's connect_timeout was not applied"
        assert isinstance(attempt.exception(), (TimeoutError, OSError))
        await kit.db.dispose()
    finally:
        silent.close()


async def _connect(kit: PostKit) -> None:
    async with kit.db.engine.connect():
        pass
