"""Comments through HTTP on SQLite and PostgreSQL: threads, depth, paging in every sort, flat
reply pages, soft deletion, cascades, visibility, ownership, edits and their revisions, and
exact counters."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from postkit import PostKitError, hookimpl
from postkit.models import Comment, CommentRevision, Post, User
from tests.support.api import make_comment as comment
from tests.support.api import make_post


async def counts(client: Any, post_id: int) -> dict[str, Any]:
    """The stored counters against a recount of the rows: they must agree."""
    async with client.kit.db.sessionmaker() as session:
        stored = await session.scalar(select(Post.comment_count).where(Post.id == post_id))
        live = await session.scalar(
            select(func.count())
            .select_from(Comment)
            .where(Comment.post_id == post_id, Comment.deleted_at.is_(None))
        )
        rows = (
            await session.execute(
                select(Comment.id, Comment.reply_count).where(Comment.post_id == post_id)
            )
        ).all()
        children = dict(
            (
                await session.execute(
                    select(Comment.parent_id, func.count())
                    .where(Comment.post_id == post_id, Comment.parent_id.is_not(None))
                    .group_by(Comment.parent_id)
                )
            ).all()
        )
    for comment_id, reply_count in rows:
        assert reply_count == children.get(comment_id, 0), (comment_id, reply_count)
    assert stored == live
    return {"comment_count": stored, "rows": len(rows)}


async def test_comment_reply_and_read_back(client, new_user):
    author, reader = await new_user(client), await new_user(client)
    post = await make_post(client, author)
    top = await comment(client, reader, post["id"], "First!")
    assert top == {
        "id": top["id"],
        "post_id": post["id"],
        "parent_id": None,
        "depth": 1,
        "body": "First!",
        "author": {"id": reader.id, "username": reader.username},
        "created_at": top["created_at"],
        "updated_at": top["created_at"],
        "edited_at": None,
        "deleted": False,
        "score": 0,
        "upvotes": 0,
        "downvotes": 0,
        "reply_count": 0,
        "replies": [],
    }
    reply = await comment(client, author, post["id"], "Thanks", parent_id=top["id"])
    assert (reply["parent_id"], reply["depth"]) == (top["id"], 2)

    fetched = (await client.get(f"/comments/{top['id']}", headers=author.headers)).json()
    assert fetched["reply_count"] == 1
    thread = (await client.get(f"/posts/{post['id']}/comments", headers=reader.headers)).json()
    assert [c["id"] for c in thread] == [top["id"]]
    assert [r["id"] for r in thread[0]["replies"]] == [reply["id"]]
    post_after = (await client.get(f"/posts/{post['id']}", headers=reader.headers)).json()
    assert post_after["comment_count"] == 2
    assert post_after["updated_at"] == post["updated_at"]  # a comment is not an edit
    assert await counts(client, post["id"]) == {"comment_count": 2, "rows": 2}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [("", "at least 1"), ("   \n\t", "more than whitespace"), ("a\x00b", "NUL")],
)
async def test_empty_or_unstorable_bodies_are_422(client, new_user, body, fragment):
    user = await new_user(client)
    post = await make_post(client, user)
    response = await client.post(
        f"/posts/{post['id']}/comments", json={"body": body}, headers=user.headers
    )
    assert response.status_code == 422
    assert response.json()["code"] == "VALIDATION_ERROR"
    assert fragment in response.text


async def test_body_length_follows_the_setting(make_client, new_user):
    client = await make_client(comment_content_max_length=10)
    user = await new_user(client)
    post = await make_post(client, user)
    url = f"/posts/{post['id']}/comments"
    assert (
        await client.post(url, json={"body": "x" * 10}, headers=user.headers)
    ).status_code == 201
    long = await client.post(url, json={"body": "x" * 11}, headers=user.headers)
    assert long.status_code == 422
    assert "at most 10 characters" in long.text
    created = (await client.get(url, headers=user.headers)).json()
    edit = await client.patch(
        f"/comments/{created[0]['id']}", json={"body": "y" * 11}, headers=user.headers
    )
    assert edit.status_code == 422


async def test_depth_limit(make_client, new_user):
    client = await make_client(comment_max_depth=3)
    user = await new_user(client)
    post = await make_post(client, user)
    parent = None
    for depth in (1, 2, 3):
        fields = {"parent_id": parent} if parent else {}
        created = await comment(client, user, post["id"], f"level {depth}", **fields)
        assert created["depth"] == depth
        parent = created["id"]
    too_deep = await client.post(
        f"/posts/{post['id']}/comments",
        json={"body": "level 4", "parent_id": parent},
        headers=user.headers,
    )
    assert too_deep.status_code == 422
    assert too_deep.json() == {
        "detail": "Replies may nest at most 3 levels deep; reply higher up the thread",
        "code": "COMMENT_TOO_DEEP",
    }
    assert await counts(client, post["id"]) == {"comment_count": 3, "rows": 3}


async def test_parent_must_be_a_live_comment_of_the_same_post(client, new_user):
    user = await new_user(client)
    post, other = await make_post(client, user), await make_post(client, user)
    elsewhere = await comment(client, user, other["id"])
    for parent_id in (elsewhere["id"], 2**31 - 1, 0, -5, 2**40):
        refused = await client.post(
            f"/posts/{post['id']}/comments",
            json={"body": "x", "parent_id": parent_id},
            headers=user.headers,
        )
        assert refused.status_code == 422, parent_id
        assert refused.json()["code"] == "INVALID_PARENT"
    # A deleted parent (kept as a placeholder for its reply) takes no new replies: 409.
    top = await comment(client, user, post["id"])
    await comment(client, user, post["id"], parent_id=top["id"])
    assert (await client.delete(f"/comments/{top['id']}", headers=user.headers)).status_code == 204
    late = await client.post(
        f"/posts/{post['id']}/comments",
        json={"body": "x", "parent_id": top["id"]},
        headers=user.headers,
    )
    assert late.status_code == 409
    assert late.json()["code"] == "PARENT_DELETED"
    assert await counts(client, post["id"]) == {"comment_count": 1, "rows": 2}


async def test_unknown_or_invisible_posts_are_404(client, new_user):
    owner, stranger = await new_user(client), await new_user(client)
    draft = await make_post(client, owner, published=False)
    mine = await comment(client, owner, draft["id"], "note to self")
    for method, url, body in [
        ("GET", f"/posts/{draft['id']}/comments", None),
        ("POST", f"/posts/{draft['id']}/comments", {"body": "hi"}),
        ("GET", "/posts/999999/comments", None),
        ("POST", "/posts/999999/comments", {"body": "hi"}),
    ]:
        response = await client.request(method, url, json=body, headers=stranger.headers)
        assert response.status_code == 404, (method, url)
        assert response.json()["code"] == "POST_NOT_FOUND"
    for method, url, body in [
        ("GET", f"/comments/{mine['id']}", None),
        ("PATCH", f"/comments/{mine['id']}", {"body": "x"}),
        ("DELETE", f"/comments/{mine['id']}", None),
        ("PUT", f"/comments/{mine['id']}/vote", None),
        ("DELETE", f"/comments/{mine['id']}/vote", None),
        ("GET", f"/comments/{mine['id']}/revisions", None),
        ("GET", "/comments/999999", None),
    ]:
        response = await client.request(method, url, json=body, headers=stranger.headers)
        assert response.status_code == 404, (method, url)
        assert response.json()["code"] == "COMMENT_NOT_FOUND"
    # The owner still sees their draft's comments.
    own = await client.get(f"/posts/{draft['id']}/comments", headers=owner.headers)
    assert [c["id"] for c in own.json()] == [mine["id"]]


class HideTagged:
    """Hides posts titled "hidden" from everyone, and comments saying "spam"."""

    @hookimpl
    def post_query_filters(self, user: User | None) -> list[Any]:
        return [Post.title != "hidden"]

    @hookimpl
    def comment_query_filters(self, user: User | None) -> list[Any]:
        return [Comment.body.is_(None) | (Comment.body != "spam")]


async def test_plugin_filters_hide_posts_and_comments(make_client, new_user):
    client = await make_client(plugins=[HideTagged()])
    user = await new_user(client)
    hidden = await make_post(client, user, title="hidden")
    shown = await make_post(client, user)
    refused = await client.post(
        f"/posts/{hidden['id']}/comments", json={"body": "x"}, headers=user.headers
    )
    assert refused.status_code == 404
    listed = await client.get(f"/posts/{hidden['id']}/comments", headers=user.headers)
    assert listed.status_code == 404

    spam = await comment(client, user, shown["id"], "spam")
    fine = await comment(client, user, shown["id"], "fine")
    reply_to_fine = await comment(client, user, shown["id"], "spam", parent_id=fine["id"])
    page = (await client.get(f"/posts/{shown['id']}/comments", headers=user.headers)).json()
    assert [c["id"] for c in page] == [fine["id"]]
    assert page[0]["replies"] == []  # the spam reply is hidden in the tree too
    assert page[0]["reply_count"] == 1
    for comment_id in (spam["id"], reply_to_fine["id"]):
        gone = await client.get(f"/comments/{comment_id}", headers=user.headers)
        assert gone.status_code == 404
    cannot_reply = await client.post(
        f"/posts/{shown['id']}/comments",
        json={"body": "x", "parent_id": spam["id"]},
        headers=user.headers,
    )
    assert cannot_reply.json()["code"] == "INVALID_PARENT"
    flat = await client.get(
        f"/posts/{shown['id']}/comments",
        params={"parent_id": spam["id"]},
        headers=user.headers,
    )
    assert flat.status_code == 404


async def test_paging_in_every_sort(client, new_user):
    author = await new_user(client)
    voters = [await new_user(client) for _ in range(3)]
    post = await make_post(client, author)
    made = [await comment(client, author, post["id"], f"c{i}") for i in range(7)]
    # Votes give the sorts something to order by: c2 +3, c4 +1 -2 (score -1), c5 +2 -1.
    plan = {2: [1, 1, 1], 4: [1, -1, -1], 5: [1, 1, -1]}
    for index, directions in plan.items():
        for voter, direction in zip(voters, directions, strict=True):
            voted = await client.put(
                f"/comments/{made[index]['id']}/vote",
                json={"dir": direction},
                headers=voter.headers,
            )
            assert voted.status_code == 201
    ids = [c["id"] for c in made]
    expected = {
        "new": list(reversed(ids)),
        "top": [ids[2], ids[5], ids[6], ids[3], ids[1], ids[0], ids[4]],
        # Wilson lower bounds: 3/3 > 2/3 > 1/3 > no votes (0, newest first).
        "best": [ids[2], ids[5], ids[4], ids[6], ids[3], ids[1], ids[0]],
    }
    for sort, order in expected.items():
        seen: list[int] = []
        url = f"/posts/{post['id']}/comments"
        params: dict[str, Any] = {"sort": sort, "limit": 3}
        while True:
            page = await client.get(url, params=params, headers=author.headers)
            assert page.status_code == 200
            seen += [c["id"] for c in page.json()]
            cursor = page.headers.get("x-next-cursor")
            if cursor is None:
                assert "link" not in page.headers
                break
            assert page.headers["link"].endswith('>; rel="next"')
            params["cursor"] = cursor
        assert seen == order, sort
        if sort != "new":
            wrong = await client.get(
                url, params={"sort": "new", "cursor": cursor or params["cursor"]},
                headers=author.headers,
            )  # fmt: skip
            assert wrong.status_code == 400
            assert wrong.json()["code"] == "INVALID_CURSOR"


@pytest.mark.parametrize("cursor", ["nope", "e30", "eyJzIjoibmV3IiwiayI6MSwiaSI6MX0"])
async def test_forged_cursors_are_400(client, new_user, cursor):
    user = await new_user(client)
    post = await make_post(client, user)
    response = await client.get(
        f"/posts/{post['id']}/comments", params={"cursor": cursor}, headers=user.headers
    )
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_CURSOR"


async def test_a_post_feed_cursor_is_not_a_comment_cursor(client, new_user):
    user = await new_user(client)
    post = await make_post(client, user)
    await make_post(client, user)
    feed_cursor = (await client.get("/posts", params={"limit": 1}, headers=user.headers)).headers[
        "x-next-cursor"
    ]
    response = await client.get(
        f"/posts/{post['id']}/comments",
        params={"cursor": feed_cursor, "sort": "new"},
        headers=user.headers,
    )
    assert response.status_code == 400


async def test_tree_nesting_is_bounded_and_flat_pages_page_replies(client, new_user):
    user = await new_user(client)
    post = await make_post(client, user)
    top = await comment(client, user, post["id"], "top")
    children = [
        await comment(client, user, post["id"], f"r{i}", parent_id=top["id"]) for i in range(5)
    ]
    grandchild = await comment(client, user, post["id"], "gc", parent_id=children[4]["id"])
    great = await comment(client, user, post["id"], "ggc", parent_id=grandchild["id"])

    url = f"/posts/{post['id']}/comments"
    tree = (await client.get(url, params={"sort": "new"}, headers=user.headers)).json()
    [only] = tree
    assert only["reply_count"] == 5
    # Three replies by default, newest first, two levels down.
    assert [r["id"] for r in only["replies"]] == [
        children[4]["id"],
        children[3]["id"],
        children[2]["id"],
    ]
    assert [r["id"] for r in only["replies"][0]["replies"]] == [grandchild["id"]]
    assert only["replies"][0]["replies"][0]["replies"] == []
    assert only["replies"][0]["replies"][0]["reply_count"] == 1

    deeper = (
        await client.get(
            url, params={"sort": "new", "depth": 3, "replies": 1}, headers=user.headers
        )
    ).json()
    assert deeper[0]["replies"][0]["replies"][0]["replies"][0]["id"] == great["id"]
    assert len(deeper[0]["replies"]) == 1
    flat_only = (await client.get(url, params={"depth": 0}, headers=user.headers)).json()
    assert flat_only[0]["replies"] == []

    seen: list[int] = []
    params: dict[str, Any] = {"parent_id": top["id"], "sort": "new", "limit": 2}
    while True:
        page = await client.get(url, params=params, headers=user.headers)
        assert page.status_code == 200
        assert all(c["replies"] == [] and c["parent_id"] == top["id"] for c in page.json())
        seen += [c["id"] for c in page.json()]
        if "x-next-cursor" not in page.headers:
            break
        params["cursor"] = page.headers["x-next-cursor"]
    assert seen == [c["id"] for c in reversed(children)]

    for bad in ({"depth": 6}, {"replies": 21}, {"limit": 0}, {"parent_id": 0}):
        assert (await client.get(url, params=bad, headers=user.headers)).status_code == 422


async def test_a_parent_of_another_post_is_404_for_flat_pages(client, new_user):
    user = await new_user(client)
    post, other = await make_post(client, user), await make_post(client, user)
    elsewhere = await comment(client, user, other["id"])
    response = await client.get(
        f"/posts/{post['id']}/comments", params={"parent_id": elsewhere["id"]}, headers=user.headers
    )
    assert response.status_code == 404
    assert response.json()["code"] == "COMMENT_NOT_FOUND"


async def test_deleting_keeps_the_thread(client, new_user):
    author, replier = await new_user(client), await new_user(client)
    post = await make_post(client, author)
    top = await comment(client, author, post["id"], "original")
    reply = await comment(client, replier, post["id"], "answer", parent_id=top["id"])
    await client.patch(f"/comments/{top['id']}", json={"body": "edited"}, headers=author.headers)

    assert (
        await client.delete(f"/comments/{top['id']}", headers=author.headers)
    ).status_code == 204
    placeholder = (await client.get(f"/comments/{top['id']}", headers=replier.headers)).json()
    assert placeholder["deleted"] is True
    assert placeholder["body"] is None
    assert placeholder["author"] is None
    assert placeholder["reply_count"] == 1
    thread = (await client.get(f"/posts/{post['id']}/comments", headers=replier.headers)).json()
    assert [r["id"] for r in thread[0]["replies"]] == [reply["id"]]
    revisions = await client.get(f"/comments/{top['id']}/revisions", headers=replier.headers)
    assert revisions.json() == []  # the old bodies went with it
    assert await counts(client, post["id"]) == {"comment_count": 1, "rows": 2}
    # A placeholder cannot be edited, voted on or deleted again.
    for method, url in [
        ("PATCH", f"/comments/{top['id']}"),
        ("DELETE", f"/comments/{top['id']}"),
        ("PUT", f"/comments/{top['id']}/vote"),
    ]:
        body = {"body": "x"} if method == "PATCH" else None
        response = await client.request(method, url, json=body, headers=author.headers)
        assert response.status_code == 404

    # The last reply gone, the placeholder has nothing left to hold: it goes too.
    assert (
        await client.delete(f"/comments/{reply['id']}", headers=replier.headers)
    ).status_code == 204
    assert (await client.get(f"/comments/{top['id']}", headers=author.headers)).status_code == 404
    assert await counts(client, post["id"]) == {"comment_count": 0, "rows": 0}


async def test_deleting_a_leaf_removes_it(client, new_user):
    user = await new_user(client)
    post = await make_post(client, user)
    top = await comment(client, user, post["id"])
    reply = await comment(client, user, post["id"], parent_id=top["id"])
    assert (
        await client.delete(f"/comments/{reply['id']}", headers=user.headers)
    ).status_code == 204
    assert (await client.get(f"/comments/{reply['id']}", headers=user.headers)).status_code == 404
    again = await client.get(f"/comments/{top['id']}", headers=user.headers)
    assert again.json()["reply_count"] == 0
    assert await counts(client, post["id"]) == {"comment_count": 1, "rows": 1}


async def test_deleting_a_post_removes_its_comments(client, new_user):
    author, other = await new_user(client), await new_user(client)
    post = await make_post(client, author)
    top = await comment(client, other, post["id"])
    reply = await comment(client, author, post["id"], parent_id=top["id"])
    await client.put(f"/comments/{reply['id']}/vote", headers=other.headers)
    await client.patch(f"/comments/{top['id']}", json={"body": "v2"}, headers=other.headers)
    assert (await client.delete(f"/posts/{post['id']}", headers=author.headers)).status_code == 204
    async with client.kit.db.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Comment)) == 0
        assert await session.scalar(select(func.count()).select_from(CommentRevision)) == 0
    assert (await client.get(f"/comments/{top['id']}", headers=other.headers)).status_code == 404


async def test_only_the_author_may_change_a_comment(client, new_user):
    author, other = await new_user(client), await new_user(client)
    post = await make_post(client, other)  # the post's owner is not the comment's author
    mine = await comment(client, author, post["id"])
    for method, body in (("PATCH", {"body": "hijacked"}), ("DELETE", None)):
        refused = await client.request(
            method, f"/comments/{mine['id']}", json=body, headers=other.headers
        )
        assert refused.status_code == 403
        assert refused.json()["code"] == "NOT_COMMENT_AUTHOR"
    fetched = (await client.get(f"/comments/{mine['id']}", headers=other.headers)).json()
    assert fetched["body"] == "A comment"


class Moderators:
    """The post's owner moderates: they may delete (not edit) any comment on their posts."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, str]] = []

    @hookimpl
    async def can_modify_comment(self, comment: Comment, user: User, action: str) -> bool | None:
        self.asked.append((comment.id, action))
        if action == "delete" and user.username.startswith("mod_"):
            return True
        return None


async def test_can_modify_comment_hook_overrides_the_default(make_client, new_user):
    moderators = Moderators()
    client = await make_client(plugins=[moderators])
    author = await new_user(client)
    moderator = await new_user(client, username="mod_ann")
    post = await make_post(client, author)
    target = await comment(client, author, post["id"])
    edit = await client.patch(
        f"/comments/{target['id']}", json={"body": "x"}, headers=moderator.headers
    )
    assert edit.status_code == 403  # the hook deferred; the default said no
    removed = await client.delete(f"/comments/{target['id']}", headers=moderator.headers)
    assert removed.status_code == 204
    assert moderators.asked == [(target["id"], "update"), (target["id"], "delete")]


async def test_edits_keep_revisions(client, new_user):
    author, reader = await new_user(client), await new_user(client)
    post = await make_post(client, author)
    created = await comment(client, author, post["id"], "v1")
    url = f"/comments/{created['id']}"
    for body in ("v2", "v3", "v4"):
        edited = await client.patch(url, json={"body": body}, headers=author.headers)
        assert edited.status_code == 200
        assert edited.json()["body"] == body
        assert edited.json()["edited_at"] is not None
        assert edited.json()["author"] == {"id": author.id, "username": author.username}
    same = await client.patch(url, json={"body": "v4"}, headers=author.headers)
    assert same.status_code == 200  # no change: no revision

    first = await client.get(f"{url}/revisions", params={"limit": 2}, headers=reader.headers)
    assert [r["body"] for r in first.json()] == ["v3", "v2"]
    assert set(first.json()[0]) == {"id", "comment_id", "body", "created_at"}
    rest = await client.get(
        f"{url}/revisions",
        params={"limit": 2, "cursor": first.headers["x-next-cursor"]},
        headers=reader.headers,
    )
    assert [r["body"] for r in rest.json()] == ["v1"]
    assert "x-next-cursor" not in rest.headers
    # An edit's time is the revision's: when that version was replaced.
    assert (
        first.json()[0]["created_at"]
        == (await client.get(url, headers=reader.headers)).json()["edited_at"]
    )
    extra = await client.patch(url, json={"body": "v5", "author_id": 1}, headers=author.headers)
    assert extra.status_code == 422


async def test_revisions_for_the_author_only(make_client, new_user):
    client = await make_client(revisions_visible_to="author")
    author, reader = await new_user(client), await new_user(client)
    post = await make_post(client, reader)
    created = await comment(client, author, post["id"], "v1")
    await client.patch(f"/comments/{created['id']}", json={"body": "v2"}, headers=author.headers)
    url = f"/comments/{created['id']}/revisions"
    assert (await client.get(url, headers=reader.headers)).status_code == 404
    mine = await client.get(url, headers=author.headers)
    assert [r["body"] for r in mine.json()] == ["v1"]


async def test_public_reads_let_anonymous_clients_read_comments(make_client, new_user):
    client = await make_client(public_reads=True)
    user = await new_user(client)
    post = await make_post(client, user)
    created = await comment(client, user, post["id"])
    assert (await client.get(f"/posts/{post['id']}/comments")).status_code == 200
    assert (await client.get(f"/comments/{created['id']}")).status_code == 200
    refused = await client.post(f"/posts/{post['id']}/comments", json={"body": "anon"})
    assert refused.status_code == 401


async def test_comment_creation_is_rate_limited(make_client, new_user):
    client = await make_client(rate_limit_comment_create="2/hour")
    user = await new_user(client)
    post = await make_post(client, user)
    url = f"/posts/{post['id']}/comments"
    statuses = [
        (await client.post(url, json={"body": "x"}, headers=user.headers)).status_code
        for _ in range(3)
    ]
    assert statuses == [201, 201, 429]


class Rules:
    """Refuses links in comments, and stamps bodies."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    @hookimpl
    def validate_comment(
        self,
        data: dict[str, Any],
        user: User,
        post: Post,
        parent: Comment | None,
        existing: Comment | None,
    ) -> None:
        self.seen.append(
            (
                "validate",
                (post.id, parent.id if parent else None, existing.id if existing else None),
            )
        )
        if "http://" in data["body"]:
            raise PostKitError("No links", status_code=422, code="NO_LINKS")

    @hookimpl
    def before_comment_save(self, comment: Comment, user: User) -> None:
        comment.body = f"{comment.body} [by {user.username}]"

    @hookimpl
    async def after_comment_create(self, comment: Comment, user: User) -> None:
        self.seen.append(("created", comment.id))

    @hookimpl
    def after_comment_update(self, comment: Comment, user: User, changes: dict[str, Any]) -> None:
        self.seen.append(("updated", (comment.id, changes["body"])))

    @hookimpl
    def after_comment_delete(self, comment: Comment, user: User) -> None:
        self.seen.append(("deleted", comment.id))


async def test_comment_hooks(make_client, new_user):
    rules = Rules()
    client = await make_client(plugins=[rules])
    user = await new_user(client)
    post = await make_post(client, user)
    refused = await client.post(
        f"/posts/{post['id']}/comments", json={"body": "see http://x"}, headers=user.headers
    )
    assert refused.status_code == 422
    assert refused.json() == {"detail": "No links", "code": "NO_LINKS"}
    top = await comment(client, user, post["id"], "hello")
    assert top["body"] == f"hello [by {user.username}]"
    reply = await comment(client, user, post["id"], "hi", parent_id=top["id"])
    edited = await client.patch(
        f"/comments/{reply['id']}", json={"body": "yo"}, headers=user.headers
    )
    assert edited.json()["body"] == f"yo [by {user.username}]"
    await client.delete(f"/comments/{reply['id']}", headers=user.headers)
    assert rules.seen == [
        ("validate", (post["id"], None, None)),
        ("validate", (post["id"], None, None)),
        ("created", top["id"]),
        ("validate", (post["id"], top["id"], None)),
        ("created", reply["id"]),
        ("validate", (post["id"], top["id"], reply["id"])),
        ("updated", (reply["id"], "yo")),
        ("deleted", reply["id"]),
    ]
