"""Every hook with a real plugin, through HTTP on SQLite and PostgreSQL: the example plugins from
docs/examples, sync and async implementations, refusals, ordering, failures and rollbacks."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy import func, select

from postkit import PostKitError, PostRejected, VoteRejected, hookimpl
from postkit.models import Post, Vote
from tests.support.api import make_post
from tests.support.examples import load_example


async def count_rows(client: Any, model: Any) -> int:
    async with client.kit.db.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


# --- docs/examples/plugin_community_rules.py --------------------------------------------------


@pytest.fixture
async def community(make_client: Any) -> Any:
    rules = load_example("plugin_community_rules").CommunityRules(
        banned_words=["spam", "scam"], moderators=["mod_alice"]
    )
    return await make_client(plugins=[rules])


async def test_banned_words_are_refused_with_the_plugins_code(community, new_user):
    user = await new_user(community)
    refused = await community.post(
        "/posts", json={"title": "Great SCAM", "content": "no spam here"}, headers=user.headers
    )
    assert refused.status_code == 422
    assert refused.json() == {"detail": "Please leave out: scam, spam", "code": "BANNED_WORDS"}
    assert await count_rows(community, Post) == 0

    post = await make_post(community, user, title="fine")
    patched = await community.patch(
        f"/posts/{post['id']}", json={"content": "spam"}, headers=user.headers
    )
    assert patched.status_code == 422
    assert patched.json()["code"] == "BANNED_WORDS"
    fetched = await community.get(f"/posts/{post['id']}", headers=user.headers)
    assert fetched.json()["content"] == "Some content"


async def test_self_votes_are_refused_with_403(community, new_user):
    author = await new_user(community)
    other = await new_user(community)
    post = await make_post(community, author)
    own = await community.post(
        "/vote", json={"post_id": post["id"], "dir": 1}, headers=author.headers
    )
    assert own.status_code == 403
    assert own.json() == {"detail": "You cannot vote for your own post", "code": "SELF_VOTE"}
    assert (
        await community.put(f"/posts/{post['id']}/vote", headers=author.headers)
    ).status_code == 403
    assert await count_rows(community, Vote) == 0
    ok = await community.post(
        "/vote", json={"post_id": post["id"], "dir": 1}, headers=other.headers
    )
    assert ok.status_code == 201


async def test_community_rules_for_comments(community, new_user):
    author = await new_user(community)
    moderator = await new_user(community, username="mod_alice")
    other = await new_user(community)
    post = await make_post(community, author)
    url = f"/posts/{post['id']}/comments"
    refused = await community.post(url, json={"body": "pure SPAM"}, headers=author.headers)
    assert refused.status_code == 422
    assert refused.json() == {"detail": "Please leave out: spam", "code": "BANNED_WORDS"}
    created = await community.post(url, json={"body": "fine"}, headers=author.headers)
    comment_id = created.json()["id"]
    edit = await community.patch(
        f"/comments/{comment_id}", json={"body": "a scam"}, headers=author.headers
    )
    assert edit.json()["code"] == "BANNED_WORDS"

    own = await community.put(f"/comments/{comment_id}/vote", headers=author.headers)
    assert own.status_code == 403
    assert own.json()["code"] == "SELF_VOTE"
    assert (
        await community.put(f"/comments/{comment_id}/vote", headers=other.headers)
    ).status_code == 201

    rewrite = await community.patch(
        f"/comments/{comment_id}", json={"body": "mine now"}, headers=moderator.headers
    )
    assert rewrite.status_code == 403
    assert (
        await community.delete(f"/comments/{comment_id}", headers=other.headers)
    ).status_code == 403
    removed = await community.delete(f"/comments/{comment_id}", headers=moderator.headers)
    assert removed.status_code == 204


async def test_moderators_may_modify_any_post_others_may_not(community, new_user):
    author = await new_user(community)
    moderator = await new_user(community, username="mod_alice")
    stranger = await new_user(community)
    post = await make_post(community, author)
    denied = await community.patch(
        f"/posts/{post['id']}", json={"title": "x"}, headers=stranger.headers
    )
    assert denied.status_code == 403
    assert denied.json()["code"] == "NOT_POST_OWNER"
    edited = await community.patch(
        f"/posts/{post['id']}", json={"title": "moderated"}, headers=moderator.headers
    )
    assert edited.status_code == 200
    assert edited.json()["title"] == "moderated"
    assert edited.json()["owner"]["id"] == author.id
    own = await community.patch(
        f"/posts/{post['id']}", json={"title": "mine"}, headers=author.headers
    )
    assert own.status_code == 200
    removed = await community.delete(f"/posts/{post['id']}", headers=moderator.headers)
    assert removed.status_code == 204


# --- docs/examples/plugin_reputation.py -------------------------------------------------------


async def test_weighted_votes_and_extra_fields(make_client, new_user):
    reputation = load_example("plugin_reputation").Reputation(trusted=["trusted_tom"])
    client = await make_client(plugins=[reputation])
    author = await new_user(client)
    trusted = await new_user(client, username="trusted_tom")
    regular = await new_user(client)
    post = await make_post(client, author, content="word " * 450)

    voted = await client.post(
        "/vote", json={"post_id": post["id"], "dir": 1}, headers=trusted.headers
    )
    assert voted.json()["votes"] == 3
    voted = await client.put(f"/posts/{post['id']}/vote", headers=regular.headers)
    assert voted.json()["votes"] == 4
    for viewer, mine in ((author, True), (regular, False)):
        fetched = (await client.get(f"/posts/{post['id']}", headers=viewer.headers)).json()
        assert fetched["votes"] == 4
        assert fetched["extra"] == {"reading_minutes": 2, "mine": mine}
    listed = (await client.get("/posts", headers=author.headers)).json()
    assert listed[0]["extra"] == {"reading_minutes": 2, "mine": True}
    assert post["extra"] == {"reading_minutes": 2, "mine": True}
    # Removing a vote takes back the weight it was cast with.
    removed = await client.post(
        "/vote", json={"post_id": post["id"], "dir": 0}, headers=trusted.headers
    )
    assert removed.json()["votes"] == 1


# --- docs/examples/plugin_tenancy.py -----------------------------------------------------------


async def test_tenant_filters_apply_to_every_read_and_lookup(make_client, new_user):
    client = await make_client(plugins=[load_example("plugin_tenancy").SameDomainOnly()])
    acme = await new_user(client, email="ann@acme.example")
    acme2 = await new_user(client, email="bob@acme.example")
    globex = await new_user(client, email="cy@globex.example")
    acme_post = await make_post(client, acme, title="acme news")
    globex_post = await make_post(client, globex, title="globex news")

    assert [p["id"] for p in (await client.get("/posts", headers=acme2.headers)).json()] == [
        acme_post["id"]
    ]
    assert [p["id"] for p in (await client.get("/posts", headers=globex.headers)).json()] == [
        globex_post["id"]
    ]
    url = f"/posts/{globex_post['id']}"
    for method, path, body in [
        ("GET", url, None),
        ("PATCH", url, {"title": "x"}),
        ("DELETE", url, None),
        ("PUT", f"{url}/vote", None),
        ("POST", "/vote", {"post_id": globex_post["id"], "dir": 1}),
    ]:
        response = await client.request(method, path, json=body, headers=acme.headers)
        assert response.status_code == 404, (method, path)
        assert response.json()["code"] == "POST_NOT_FOUND"
    assert (
        await client.put(f"/posts/{acme_post['id']}/vote", headers=acme2.headers)
    ).status_code == 201


async def test_tenant_filter_hides_everything_from_anonymous_readers(make_client, new_user):
    tenancy = load_example("plugin_tenancy").SameDomainOnly()
    client = await make_client(plugins=[tenancy], public_reads=True)
    user = await new_user(client, email="ann@acme.example")
    post = await make_post(client, user)
    assert (await client.get("/posts")).json() == []
    assert (await client.get(f"/posts/{post['id']}")).status_code == 404


# --- docs/examples/plugin_audit.py ------------------------------------------------------------


async def test_audit_trail_sees_committed_changes(make_client, new_user):
    audit = load_example("plugin_audit").AuditTrail()
    client = await make_client(plugins=[audit])
    author = await new_user(client)
    voter = await new_user(client)
    post = await make_post(client, author, title="  spaced    out   title ")
    assert post["title"] == "spaced out title"
    await client.patch(f"/posts/{post['id']}", json={"title": "a  b"}, headers=author.headers)
    await client.put(f"/posts/{post['id']}/vote", headers=voter.headers)
    await client.put(f"/posts/{post['id']}/vote", headers=voter.headers)  # no change, no event
    await client.delete(f"/posts/{post['id']}/vote", headers=voter.headers)
    await client.delete(f"/posts/{post['id']}", headers=author.headers)
    by = author.username
    assert audit.events == [
        ("created", {"post": post["id"], "by": by}),
        ("updated", {"post": post["id"], "by": by, "fields": ["title"]}),
        ("voted", {"post": post["id"], "by": voter.username, "dir": 1, "previous": 0, "votes": 1}),
        ("voted", {"post": post["id"], "by": voter.username, "dir": 0, "previous": 1, "votes": 0}),
        ("deleted", {"post": post["id"], "by": by}),
    ]
    assert (await client.get(f"/posts/{post['id']}", headers=author.headers)).status_code == 404


# --- docs/examples/plugin_accounts.py ---------------------------------------------------------


async def test_account_hooks(make_client, new_user):
    policy = load_example("plugin_accounts").AccountPolicy(blocked_domains=["throwaway.example"])
    client = await make_client(plugins=[policy])
    refused = await client.post(
        "/users", json={"email": "x@throwaway.example", "password": "long enough password"}
    )
    assert refused.status_code == 403
    assert refused.json()["code"] == "EMAIL_DOMAIN_BLOCKED"
    await new_user(client, username="welcome_me")
    assert policy.welcomed == ["welcome_me"]
    assert policy.logins == ["welcome_me"]


# --- Hooks written here: sync and async, ordering, failures ---------------------------------------


class SyncChecks:
    """Synchronous implementations."""

    def __init__(self) -> None:
        self.after_create: list[int] = []

    @hookimpl
    def validate_post(self, data: dict[str, Any], existing: Post | None) -> None:
        if data.get("title") == "sync-forbidden":
            raise PostRejected("sync says no", code="SYNC_NO")
        if existing is not None and data.get("title") == "no edits":
            raise PostRejected("not like that", status_code=403, code="NO_EDITS")

    @hookimpl
    def after_post_create(self, post: Post) -> None:
        self.after_create.append(post.id)


class AsyncChecks:
    """Asynchronous implementations of the same hooks."""

    def __init__(self) -> None:
        self.after_create: list[int] = []

    @hookimpl
    async def validate_post(self, data: dict[str, Any]) -> None:
        if data.get("title") == "async-forbidden":
            raise PostRejected("async says no", code="ASYNC_NO")

    @hookimpl
    async def after_post_create(self, post: Post) -> None:
        self.after_create.append(post.id)


async def test_sync_and_async_implementations_both_run(make_client, new_user):
    sync, asynchronous = SyncChecks(), AsyncChecks()
    client = await make_client(plugins=[sync, asynchronous])
    user = await new_user(client)
    for title, code in [("sync-forbidden", "SYNC_NO"), ("async-forbidden", "ASYNC_NO")]:
        response = await client.post(
            "/posts", json={"title": title, "content": "c"}, headers=user.headers
        )
        assert response.status_code == 422
        assert response.json()["code"] == code
    post = await make_post(client, user)
    assert sync.after_create == asynchronous.after_create == [post["id"]]
    refused = await client.put(
        f"/posts/{post['id']}", json={"title": "no edits", "content": "c"}, headers=user.headers
    )
    assert refused.status_code == 403
    assert refused.json() == {"detail": "not like that", "code": "NO_EDITS"}


class FirstAnswers:
    def __init__(self, name: str) -> None:
        self.name = name

    @hookimpl
    def extra_post_fields(self) -> dict[str, Any]:
        return {"who": self.name, self.name: True}


class DenyEveryone:
    @hookimpl
    async def can_modify_post(self, action: str) -> bool | None:
        return False if action == "delete" else None


async def test_plugin_answers_come_before_the_defaults_and_first_key_wins(make_client, new_user):
    client = await make_client(plugins=[FirstAnswers("a"), FirstAnswers("b"), DenyEveryone()])
    user = await new_user(client)
    post = await make_post(client, user)
    # Plugins are called in the order given, so "a" sets "who" before "b" can.
    assert post["extra"] == {"who": "a", "a": True, "b": True}
    # DenyEveryone answers before the owner-only default: even the owner cannot delete.
    refused = await client.delete(f"/posts/{post['id']}", headers=user.headers)
    assert refused.status_code == 403
    assert (
        await client.patch(f"/posts/{post['id']}", json={"title": "ok"}, headers=user.headers)
    ).status_code == 200
    names = dict(client.kit.hooks.describe())
    assert names["postkit.defaults"] == [
        "can_modify_comment",
        "can_modify_post",
        "comment_vote_weight",
        "rank_score",
        "render_email",
        "vote_weight",
    ]


class VotesOnlyOnWeekdays:
    @hookimpl
    def validate_vote(self, direction: int) -> None:
        if direction == 0:
            raise VoteRejected("votes are forever")


async def test_vote_rejection_defaults_to_422(make_client, new_user):
    client = await make_client(plugins=[VotesOnlyOnWeekdays()])
    author = await new_user(client)
    voter = await new_user(client)
    post = await make_post(client, author)
    assert (await client.put(f"/posts/{post['id']}/vote", headers=voter.headers)).status_code == 201
    refused = await client.delete(f"/posts/{post['id']}/vote", headers=voter.headers)
    assert refused.status_code == 422
    assert refused.json() == {"detail": "votes are forever", "code": "VOTE_REJECTED"}
    assert await count_rows(client, Vote) == 1


class Broken:
    """Each hook fails unexpectedly when the title (or, for votes, the post) asks it to."""

    @hookimpl
    def before_post_save(self, post: Post) -> None:
        if post.title == "explode":
            raise RuntimeError("plugin bug in before_post_save")

    @hookimpl
    async def vote_weight(self, post: Post) -> int | None:
        if post.title == "weightless":
            raise RuntimeError("plugin bug in vote_weight")
        return None

    @hookimpl
    def post_query_filters(self, user: Any) -> None:
        if user is not None and user.username == "breaks_reads":
            raise RuntimeError("plugin bug in post_query_filters")

    @hookimpl
    async def after_post_update(self, post: Post) -> None:
        raise RuntimeError("plugin bug in after_post_update")


async def test_an_unexpected_plugin_error_is_a_logged_500_and_rolls_back(
    make_client, new_user, caplog
):
    client = await make_client(plugins=[Broken()], raise_app_exceptions=False)
    user = await new_user(client)
    with caplog.at_level(logging.ERROR, logger="postkit"):
        failed = await client.post(
            "/posts", json={"title": "explode", "content": "c"}, headers=user.headers
        )
    assert failed.status_code == 500
    assert await count_rows(client, Post) == 0
    assert "plugin bug in before_post_save" in caplog.text
    assert "before_post_save" in caplog.text

    post = await make_post(client, user, title="calm")
    exploded = await client.put(
        f"/posts/{post['id']}", json={"title": "explode", "content": "new"}, headers=user.headers
    )
    assert exploded.status_code == 500
    fetched = (await client.get(f"/posts/{post['id']}", headers=user.headers)).json()
    assert (fetched["title"], fetched["content"]) == ("calm", "Some content")

    weightless = await make_post(client, user, title="weightless")
    voted = await client.put(f"/posts/{weightless['id']}/vote", headers=user.headers)
    assert voted.status_code == 500
    assert await count_rows(client, Vote) == 0

    reader = await new_user(client, username="breaks_reads")
    assert (await client.get("/posts", headers=reader.headers)).status_code == 500


async def test_a_failing_after_hook_is_logged_and_keeps_the_write(make_client, new_user, caplog):
    client = await make_client(plugins=[Broken()])
    user = await new_user(client)
    post = await make_post(client, user)
    with caplog.at_level(logging.ERROR, logger="postkit"):
        updated = await client.patch(
            f"/posts/{post['id']}", json={"title": "kept"}, headers=user.headers
        )
    assert updated.status_code == 200
    assert updated.json()["title"] == "kept"
    assert "after_post_update" in caplog.text
    assert "plugin bug in after_post_update" in caplog.text
    fetched = await client.get(f"/posts/{post['id']}", headers=user.headers)
    assert fetched.json()["title"] == "kept"


class ChecksTheCommit:
    """An after-hook that looks at the database from another session: the write is visible."""

    def __init__(self) -> None:
        self.kit: Any = None
        self.seen: list[tuple[str, Any]] = []

    async def _stored_title(self, post_id: int) -> Any:
        async with self.kit.db.sessionmaker() as session:
            return await session.scalar(select(Post.title).where(Post.id == post_id))

    @hookimpl
    async def after_post_create(self, post: Post) -> None:
        self.seen.append(("create", await self._stored_title(post.id)))

    @hookimpl
    async def after_post_delete(self, post: Post) -> None:
        self.seen.append(("delete", await self._stored_title(post.id)))

    @hookimpl
    async def after_vote(self, post: Post) -> None:
        async with self.kit.db.sessionmaker() as session:
            count = await session.scalar(select(Post.vote_count).where(Post.id == post.id))
        self.seen.append(("vote", count))


async def test_after_hooks_run_after_the_commit(make_client, new_user):
    checker = ChecksTheCommit()
    client = await make_client(plugins=[checker])
    checker.kit = client.kit
    user = await new_user(client)
    post = await make_post(client, user, title="committed")
    await client.put(f"/posts/{post['id']}/vote", headers=user.headers)
    await client.delete(f"/posts/{post['id']}", headers=user.headers)
    assert checker.seen == [("create", "committed"), ("vote", 1), ("delete", None)]


class RegistrationGate:
    @hookimpl
    async def validate_registration(self, username: str) -> None:
        if username.startswith("bot_"):
            raise PostKitError("No bots", status_code=403, code="NO_BOTS")


async def test_registration_can_be_refused_by_an_async_hook(make_client):
    client = await make_client(plugins=[RegistrationGate()])
    response = await client.post(
        "/users",
        json={"email": "b@example.com", "password": "long enough password", "username": "bot_1"},
    )
    assert response.status_code == 403
    assert response.json()["code"] == "NO_BOTS"


class LateRefusal:
    """Refuses from before_post_save, after postkit has already staged the write."""

    @hookimpl
    async def before_post_save(self, post: Post) -> None:
        if "refuse late" in post.title:
            raise PostRejected("refused at the last moment", code="LATE", status_code=403)


async def test_a_refusal_after_the_write_was_staged_writes_nothing(make_client, new_user):
    client = await make_client(plugins=[LateRefusal()])
    user = await new_user(client)
    refused = await client.post(
        "/posts", json={"title": "refuse late", "content": "c"}, headers=user.headers
    )
    assert refused.status_code == 403
    assert refused.json() == {"detail": "refused at the last moment", "code": "LATE"}
    assert await count_rows(client, Post) == 0

    post = await make_post(client, user, title="fine", content="original")
    refused = await client.put(
        f"/posts/{post['id']}",
        json={"title": "refuse late", "content": "changed"},
        headers=user.headers,
    )
    assert refused.status_code == 403
    fetched = (await client.get(f"/posts/{post['id']}", headers=user.headers)).json()
    assert (fetched["title"], fetched["content"]) == ("fine", "original")
    # The same session keeps working after the rollback.
    again = await client.patch(
        f"/posts/{post['id']}", json={"content": "edited"}, headers=user.headers
    )
    assert again.status_code == 200
    assert again.json()["content"] == "edited"
