"""The comments page's sample (docs/examples/comments_client.py) runs against both databases
and does what the page says."""

from __future__ import annotations

from typing import Any

from tests.support.api import make_post
from tests.support.examples import load_example


async def test_the_discussion_sample(make_client: Any, new_user: Any) -> None:
    client = await make_client()
    author, replier = await new_user(client), await new_user(client)
    post = await make_post(client, author)
    base = client.http

    class As:
        """The kit's client, with one user's token on every request."""

        def __init__(self, headers: dict[str, str]) -> None:
            self.headers = headers

        def __getattr__(self, method: str) -> Any:
            async def call(url: str, **kwargs: Any) -> Any:
                return await getattr(base, method)(url, headers=self.headers, **kwargs)

            return call

    result = await load_example("comments_client").discuss(
        As(author.headers), As(replier.headers), post["id"]
    )
    [question] = result["thread"]
    assert question["body"] == "What do you think?"
    assert question["score"] == 1
    assert [r["body"] for r in question["replies"]] == ["Looks good"]
    assert question["replies"][0]["author"]["username"] == replier.username
    assert [r["body"] for r in result["replies"]] == ["Looks good"]
    assert result["edited"]["body"] == "Thoughts?"
    assert result["edited"]["edited_at"] is not None
    assert [r["body"] for r in result["history"]] == ["What do you think?"]
    placeholder = result["placeholder"]
    assert (placeholder["deleted"], placeholder["body"], placeholder["author"]) == (
        True,
        None,
        None,
    )
    assert placeholder["reply_count"] == 1
    fetched = (await client.get(f"/posts/{post['id']}", headers=author.headers)).json()
    assert fetched["comment_count"] == 1
