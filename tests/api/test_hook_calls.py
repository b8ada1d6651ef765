"""Hooks go through pluggy's own call loop: wrappers (where postkit allows them), tracing and
hook-call monitoring see postkit's calls; after hooks survive failing implementations; first
answers and refusals keep their meaning with sync and async plugins. Through HTTP, on SQLite and
PostgreSQL."""

from __future__ import annotations

import gc
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pluggy
import pytest

from postkit import Post, PostRejected, hookimpl
from tests.support.api import make_post


@contextmanager
def no_unawaited_coroutines() -> Iterator[None]:
    """Fail if a coroutine was left to be garbage-collected unawaited inside the block."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
        gc.collect()
    unawaited = [str(w.message) for w in caught if "never awaited" in str(w.message)]
    assert unawaited == []


# --- Wrappers -----------------------------------------------------------------------------------


class DoublesWeights:
    """A new-style pluggy wrapper: receives the list of answers and returns a changed list."""

    @hookimpl(wrapper=True)
    def vote_weight(self) -> Any:
        weights = yield
        return [weight * 2 for weight in weights]


class TriplesWeightsOldStyle:
    """An old-style ``hookwrapper``: changes the result through pluggy's ``Result``."""

    @hookimpl(hookwrapper=True)
    def vote_weight(self) -> Any:
        outcome = yield
        outcome.force_result([weight * 3 for weight in outcome.get_result()])


class PlainWeight:
    def __init__(self, weight: int | None) -> None:
        self.weight = weight

    @hookimpl
    def vote_weight(self) -> int | None:
        return self.weight


async def test_a_wrapper_on_vote_weight_changes_what_the_vote_counts(make_client, new_user):
    client = await make_client(plugins=[DoublesWeights()])
    author, voter = await new_user(client), await new_user(client)
    post = await make_post(client, author)
    voted = await client.put(f"/posts/{post['id']}/vote", headers=voter.headers)
    assert voted.status_code == 201, voted.text
    assert voted.json()["votes"] == 2  # the built-in weight 1, doubled by the wrapper
    fetched = await client.get(f"/posts/{post['id']}", headers=author.headers)
    assert fetched.json()["votes"] == 2
    removed = await client.delete(f"/posts/{post['id']}/vote", headers=voter.headers)
    assert removed.status_code == 204
    fetched = await client.get(f"/posts/{post['id']}", headers=author.headers)
    assert fetched.json()["votes"] == 0  # the removal takes back the doubled weight


async def test_wrappers_see_every_plain_answer_in_order(make_client, new_user):
    client = await make_client(plugins=[TriplesWeightsOldStyle(), PlainWeight(5)])
    author, voter = await new_user(client), await new_user(client)
    post = await make_post(client, author)
    voted = await client.post(
        "/vote", json={"post_id": post["id"], "dir": 1}, headers=voter.headers
    )
    assert voted.status_code == 201, voted.text
    assert voted.json()["votes"] == 15  # [5, 1] tripled to [15, 3]: the first answer wins


class AsyncWeight:
    @hookimpl
    async def vote_weight(self) -> int:
        return 4


class WrapsAfterCreate:
    @hookimpl(wrapper=True)
    def after_post_create(self) -> Any:
        return (yield)


async def test_a_wrapper_on_a_hook_with_an_async_implementation_is_refused_at_construction(
    make_client,
):
    with pytest.raises(pluggy.PluginValidationError) as refused:
        await make_client(plugins=[DoublesWeights(), AsyncWeight()])
    message = str(refused.value)
    assert "hook wrapper vote_weight of plugin 'DoublesWeights'" in message
    assert "plugin 'AsyncWeight' implements vote_weight with 'async def'" in message
    assert isinstance(refused.value.plugin, DoublesWeights)


async def test_a_wrapper_on_an_after_hook_is_refused_at_construction(make_client):
    with pytest.raises(pluggy.PluginValidationError, match="after_post_create is an 'after' hook"):
        await make_client(plugins=[WrapsAfterCreate()])


# --- Tracing and monitoring ---------------------------------------------------------------------


async def test_hookcall_monitoring_sees_postkits_calls(make_client, new_user):
    client = await make_client()
    user = await new_user(client)
    before: list[str] = []
    after: list[tuple[str, Any]] = []

    def record_before(hook_name: str, hook_impls: Any, kwargs: dict[str, Any]) -> None:
        before.append(hook_name)

    def record_after(outcome: Any, hook_name: str, hook_impls: Any, kwargs: Any) -> None:
        after.append((hook_name, outcome.get_result()))

    undo = client.kit.plugin_manager.add_hookcall_monitoring(record_before, record_after)
    try:
        await make_post(client, user, title="watched")
    finally:
        undo()
    assert [name for name in before if name != "post_query_filters"] == [
        "validate_post",
        "before_post_save",
        # A new post is ranked as it is created: once per stored rank.
        "rank_score",
        "rank_score",
        "rank_score",
        "after_post_create",
    ]
    assert ("validate_post", []) in after
    # Monitoring stopped: nothing more is recorded.
    await make_post(client, user)
    assert before.count("validate_post") == 1


async def test_pluggy_tracing_sees_postkits_calls(make_client, new_user):
    client = await make_client()
    author, voter = await new_user(client), await new_user(client)
    post = await make_post(client, author)
    lines: list[str] = []
    manager = client.kit.plugin_manager
    manager.trace.root.setwriter(lines.append)
    undo = manager.enable_tracing()
    try:
        voted = await client.put(f"/posts/{post['id']}/vote", headers=voter.headers)
    finally:
        undo()
    assert voted.status_code == 201
    traced = "".join(lines)
    for hook in ("validate_vote", "vote_weight", "after_vote"):
        assert hook in traced
    assert "finish vote_weight --> [1]" in traced


# --- After hooks --------------------------------------------------------------------------------


class Records:
    def __init__(self, name: str, seen: list[str]) -> None:
        self.name, self.seen = name, seen


class AsyncRecords(Records):
    @hookimpl
    async def after_post_create(self, post: Post) -> None:
        self.seen.append(self.name)


class SyncRecords(Records):
    @hookimpl
    def after_post_create(self, post: Post) -> None:
        self.seen.append(self.name)


class SyncFails:
    @hookimpl
    def after_post_create(self) -> None:
        raise RuntimeError("sync after hook bug")


class AsyncFails:
    @hookimpl
    async def after_post_create(self) -> None:
        raise RuntimeError("async after hook bug")


async def test_after_hooks_keep_running_when_an_implementation_fails(make_client, new_user, caplog):
    seen: list[str] = []
    plugins = [
        AsyncRecords("a", seen),
        SyncFails(),
        AsyncRecords("b", seen),
        AsyncFails(),
        SyncRecords("c", seen),
    ]
    client = await make_client(plugins=plugins)
    user = await new_user(client)
    with no_unawaited_coroutines(), caplog.at_level(logging.ERROR, logger="postkit"):
        created = await client.post(
            "/posts", json={"title": "t", "content": "c"}, headers=user.headers
        )
    assert created.status_code == 201
    # Every implementation ran once, including the async one called before the sync failure.
    assert sorted(seen) == ["a", "b", "c"]
    assert "plugin 'SyncFails' failed in hook after_post_create" in caplog.text
    assert "sync after hook bug" in caplog.text
    assert "plugin 'AsyncFails' failed in hook after_post_create" in caplog.text
    assert "async after hook bug" in caplog.text


async def test_each_after_hook_implementation_is_its_own_pluggy_call(make_client, new_user):
    seen: list[str] = []
    client = await make_client(plugins=[SyncFails(), SyncRecords("after", seen)])
    user = await new_user(client)
    calls: list[list[str]] = []

    def record(hook_name: str, hook_impls: Any, kwargs: Any) -> None:
        if hook_name == "after_post_create":
            calls.append([type(impl.plugin).__name__ for impl in reversed(hook_impls)])

    undo = client.kit.plugin_manager.add_hookcall_monitoring(record, lambda *args: None)
    try:
        await make_post(client, user)
    finally:
        undo()
    assert seen == ["after"]
    assert calls == [["SyncFails"], ["SyncRecords"]]


# --- First answers and refusals -----------------------------------------------------------------


class AsyncWeightSpy:
    def __init__(self, weight: int | None) -> None:
        self.weight, self.awaited = weight, False

    @hookimpl
    async def vote_weight(self) -> int | None:
        self.awaited = True
        return self.weight


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ((None, 5, 7), 5),  # async defers, the sync answer wins over a later async one
        ((7, 5), 7),  # an async answer wins over a later sync one
        ((None, None), 1),  # everyone defers: the built-in default
    ],
)
async def test_the_first_answer_wins_with_sync_and_async_plugins(
    make_client, new_user, weights, expected
):
    plugins = [
        AsyncWeightSpy(weight) if index % 2 == 0 else PlainWeight(weight)
        for index, weight in enumerate(weights)
    ]
    client = await make_client(plugins=plugins)
    author, voter = await new_user(client), await new_user(client)
    post = await make_post(client, author)
    with no_unawaited_coroutines():
        voted = await client.put(f"/posts/{post['id']}/vote", headers=voter.headers)
    assert voted.status_code == 201, voted.text
    assert voted.json()["votes"] == expected
    if weights == (None, 5, 7):
        last = plugins[2]
        assert isinstance(last, AsyncWeightSpy)
        assert last.awaited is False  # after the winner: closed, never run


class AsyncValidatorSpy:
    def __init__(self) -> None:
        self.awaited = False

    @hookimpl
    async def validate_post(self) -> None:
        self.awaited = True


class RefusesEverything:
    @hookimpl
    def validate_post(self) -> None:
        raise PostRejected("not today", code="NOT_TODAY")


async def test_a_sync_refusal_after_an_async_implementation_refuses_without_running_it(
    make_client, new_user
):
    spy = AsyncValidatorSpy()
    client = await make_client(plugins=[spy, RefusesEverything()])
    user = await new_user(client)
    # pluggy's loop ends at the refusal; the async implementation's coroutine is closed unrun.
    with no_unawaited_coroutines():
        refused = await client.post(
            "/posts", json={"title": "t", "content": "c"}, headers=user.headers
        )
    assert refused.status_code == 422
    assert refused.json() == {"detail": "not today", "code": "NOT_TODAY"}
    assert spy.awaited is False


class BrokenWeight:
    @hookimpl
    def vote_weight(self) -> int:
        raise RuntimeError("weights are hard")


async def test_an_unexpected_error_is_logged_with_its_plugin_and_answers_500(
    make_client, new_user, caplog
):
    spy = AsyncWeightSpy(3)
    client = await make_client(plugins=[spy, BrokenWeight()], raise_app_exceptions=False)
    author, voter = await new_user(client), await new_user(client)
    post = await make_post(client, author)
    with no_unawaited_coroutines(), caplog.at_level(logging.ERROR, logger="postkit"):
        voted = await client.put(f"/posts/{post['id']}/vote", headers=voter.headers)
    assert voted.status_code == 500
    assert "a plugin failed in hook vote_weight" in caplog.text
    assert "BrokenWeight" not in caplog.messages[-1]  # the traceback, not the message, names it
    assert "in vote_weight" in caplog.text
    assert "weights are hard" in caplog.text
    assert spy.awaited is False
    # The vote was not counted.
    fetched = await client.get(f"/posts/{post['id']}", headers=author.headers)
    assert fetched.json()["votes"] == 0
