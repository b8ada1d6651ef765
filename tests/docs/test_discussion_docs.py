"""The down-votes, ranked feeds and edit history samples of docs/posts-and-votes.md
(docs/examples/discussion_client.py) run, against both databases."""

from __future__ import annotations

from tests.support.api import make_post
from tests.support.examples import load_example


async def test_vote_both_ways(client, new_user):
    sample = load_example("discussion_client")
    author, voter = await new_user(client), await new_user(client)
    post = await make_post(client, author)
    answers = await sample.vote_both_ways(client, post["id"], voter.headers)
    counters = [
        (a["status"], a.get("dir"), a.get("score"), a.get("upvotes"), a.get("downvotes"))
        for a in answers
    ]
    assert counters == [
        (201, -1, -1, 0, 1),
        (201, 1, 1, 1, 0),
        (409, None, None, None, None),
        (201, 0, 0, 0, 0),
    ]
    assert answers[2]["code"] == "ALREADY_VOTED"


async def test_ranked_feed(client, new_user):
    sample = load_example("discussion_client")
    author, fan, critic = await new_user(client), await new_user(client), await new_user(client)
    liked, split, plain = [(await make_post(client, author))["id"] for _ in range(3)]
    await client.put(f"/posts/{liked}/vote", headers=fan.headers)
    await client.put(f"/posts/{liked}/vote", headers=critic.headers)
    await client.put(f"/posts/{split}/vote", headers=fan.headers)
    await client.put(f"/posts/{split}/vote", json={"dir": -1}, headers=critic.headers)
    headers = author.headers
    assert await sample.ranked_feed(client, headers, "top") == [liked, plain, split]
    assert await sample.ranked_feed(client, headers, "top", t="day") == [liked, plain, split]
    assert await sample.ranked_feed(client, headers, "best") == [liked, split, plain]
    assert await sample.ranked_feed(client, headers, "controversial") == [split, plain, liked]
    assert await sample.ranked_feed(client, headers, "hot") == [liked, plain, split]


async def test_edit_and_list_history(client, new_user):
    sample = load_example("discussion_client")
    author = await new_user(client)
    post = await make_post(client, author, title="First title", content="Draft")
    edited, revisions = await sample.edit_and_list_history(client, post["id"], author.headers)
    assert (edited["title"], edited["content"]) == ("Second title", "Better")
    assert edited["edited_at"] is not None
    assert [(r["title"], r["content"]) for r in revisions] == [
        ("Second title", "Draft"),
        ("First title", "Draft"),
    ]
