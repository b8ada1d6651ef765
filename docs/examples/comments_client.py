"""A discussion through postkit's comment routes: comment, reply, vote, read the thread, edit,
read the edit history, delete.

``api`` is an ``httpx.AsyncClient`` pointed at the app, logged in as the post's author;
``replier`` is logged in as someone else.
"""

from typing import Any

import httpx


async def discuss(api: httpx.AsyncClient, replier: httpx.AsyncClient, post_id: int) -> Any:
    # A top-level comment, and a reply to it (parent_id) from someone else.
    created = await api.post(f"/posts/{post_id}/comments", json={"body": "What do you think?"})
    created.raise_for_status()
    question = created.json()
    answered = await replier.post(
        f"/posts/{post_id}/comments", json={"body": "Looks good", "parent_id": question["id"]}
    )
    answered.raise_for_status()
    answer = answered.json()

    # Votes: up by default, {"dir": -1} for down; PUT again to change your mind.
    (await replier.put(f"/comments/{question['id']}/vote")).raise_for_status()
    (await api.put(f"/comments/{answer['id']}/vote", json={"dir": 1})).raise_for_status()

    # The thread: top-level comments, best first, each with its first replies nested.
    thread = await api.get(f"/posts/{post_id}/comments", params={"sort": "best", "depth": 2})
    thread.raise_for_status()

    # Every page of one comment's direct replies, following X-Next-Cursor.
    replies: list[dict[str, Any]] = []
    params: dict[str, Any] = {"parent_id": question["id"], "limit": 50}
    while True:
        page = await api.get(f"/posts/{post_id}/comments", params=params)
        page.raise_for_status()
        replies += page.json()
        if "X-Next-Cursor" not in page.headers:
            break
        params["cursor"] = page.headers["X-Next-Cursor"]

    # An edit keeps the previous body in the revisions.
    edited = await api.patch(f"/comments/{question['id']}", json={"body": "Thoughts?"})
    edited.raise_for_status()
    history = await api.get(f"/comments/{question['id']}/revisions")
    history.raise_for_status()

    # Deleting a comment with replies leaves a placeholder: the reply stays in the thread.
    (await api.delete(f"/comments/{question['id']}")).raise_for_status()
    placeholder = await api.get(f"/comments/{question['id']}")
    return {
        "thread": thread.json(),
        "replies": replies,
        "edited": edited.json(),
        "history": history.json(),
        "placeholder": placeholder.json(),
    }
