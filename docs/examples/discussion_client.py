"""Down-votes, ranked feeds and edit history from a client's side, with httpx.

``http`` is an ``httpx.AsyncClient`` pointed at the API; ``alice`` and ``bob`` are the
``Authorization`` headers of two logged-in users.
"""

from __future__ import annotations

from typing import Any

import httpx


async def vote_both_ways(
    http: httpx.AsyncClient, post_id: int, voter: dict[str, str]
) -> list[dict[str, Any]]:
    """Down-vote, switch to an up-vote, then take it back; the answers in order."""
    url = f"/posts/{post_id}/vote"
    down = await http.put(url, json={"dir": -1}, headers=voter)  # 201: cast
    up = await http.put(url, headers=voter)  # no body means dir 1: 201, switched
    same = await http.post("/vote", json={"post_id": post_id, "dir": 1}, headers=voter)  # 409
    gone = await http.post("/vote", json={"post_id": post_id, "dir": 0}, headers=voter)  # 201
    return [r.json() | {"status": r.status_code} for r in (down, up, same, gone)]


async def ranked_feed(
    http: httpx.AsyncClient, headers: dict[str, str], sort: str, **params: Any
) -> list[int]:
    """Every post id of a ranked feed, following the cursors page by page."""
    ids: list[int] = []
    query: dict[str, Any] = {"sort": sort, "limit": 2, **params}
    while True:
        page = await http.get("/posts", params=query, headers=headers)
        page.raise_for_status()
        ids += [post["id"] for post in page.json()]
        cursor = page.headers.get("X-Next-Cursor")
        if cursor is None:
            return ids
        query["cursor"] = cursor  # same sort (and t): a cursor of another sort answers 400


async def edit_and_list_history(
    http: httpx.AsyncClient, post_id: int, author: dict[str, str]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Edit a post twice; return it and its previous versions, newest first."""
    await http.patch(f"/posts/{post_id}", json={"title": "Second title"}, headers=author)
    edited = await http.patch(f"/posts/{post_id}", json={"content": "Better"}, headers=author)
    revisions = await http.get(f"/posts/{post_id}/revisions", headers=author)
    return edited.json(), revisions.json()
