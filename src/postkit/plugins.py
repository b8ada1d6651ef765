"""Plugin manager construction, entry-point discovery, and the hook runner.

:class:`HookRunner` calls every hook through pluggy's own call loop (``manager.hook.<name>``), so
pluggy's tracing, hook-call monitoring and (where postkit allows them) hook wrappers see every
call; it then awaits the answers that are awaitable, since pluggy cannot.
"""

from __future__ import annotations

import inspect
import logging
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pluggy

from postkit import hookspecs, ranking
from postkit.errors import PostKitError
from postkit.hookspecs import PROJECT_NAME, hookimpl

if TYPE_CHECKING:
    from datetime import datetime

    from postkit.models import Comment, Post, User

__all__ = [
    "DefaultRules",
    "HookRunner",
    "build_plugin_manager",
    "check_wrappers",
    "default_email",
    "default_rank",
]

logger = logging.getLogger("postkit")

AFTER_HOOK_PREFIX = "after_"
"""Hooks named so are notifications (:meth:`HookRunner.notify`): no answers, failures logged."""


class DefaultRules:
    """postkit's built-in behaviour, registered last so any host plugin answers first."""

    @hookimpl(trylast=True)
    def can_modify_post(self, post: Post, user: User, action: str) -> bool:
        return post.owner_id == user.id

    @hookimpl(trylast=True)
    def vote_weight(self, post: Post, user: User, direction: int) -> int:
        return 1

    @hookimpl(trylast=True)
    def can_modify_comment(self, comment: Comment, user: User, action: str) -> bool:
        return comment.author_id is not None and comment.author_id == user.id

    @hookimpl(trylast=True)
    def comment_vote_weight(self, comment: Comment, user: User, direction: int) -> int:
        return 1

    @hookimpl(trylast=True)
    def rank_score(
        self, rank: str, score: int, upvotes: int, downvotes: int, created_at: datetime
    ) -> float:
        return default_rank(
            rank, score=score, upvotes=upvotes, downvotes=downvotes, created_at=created_at
        )

    @hookimpl(trylast=True)
    def render_email(self, kind: str, user: User, link: str | None, to: str) -> tuple[str, str]:
        return default_email(kind, user=user, link=link, to=to)


_DEFAULT_EMAILS: dict[str, tuple[str, str]] = {
    "password_reset": (
        "Reset your password",
        "Someone asked to reset the password of the account {username}.\n\n"
        "To choose a new password, open this link:\n\n{link}\n\n"
        "If it was not you, ignore this message: your password stays as it is.",
    ),
    "verify_email": (
        "Verify your email address",
        "To confirm that {to} is the address of the account {username}, open this link:\n\n"
        "{link}\n\nIf you did not create this account, ignore this message.",
    ),
    "confirm_email_change": (
        "Confirm your new email address",
        "The account {username} asked to use {to} as its email address from now on.\n\n"
        "To confirm the change, open this link:\n\n{link}\n\n"
        "If it was not you, ignore this message: nothing changes.",
    ),
    "email_change_notice": (
        "Your email address is being changed",
        "Someone signed in as {username} asked to change the account's email address from "
        "{to} to another one. The change happens only if the new address confirms it.\n\n"
        "If it was not you, reset your password now: that also cancels the change.",
    ),
}


def default_rank(
    rank: str, *, score: int, upvotes: int, downvotes: int, created_at: datetime
) -> float:
    """postkit's own ranking score ``rank`` (see ``rank_score`` and :mod:`postkit.ranking`)."""
    if rank == "hot":
        return ranking.hot(score, created_at)
    if rank == "best":
        return ranking.best(upvotes, downvotes)
    if rank == "controversial":
        return ranking.controversial(upvotes, downvotes)
    raise ValueError(f"unknown rank {rank!r}")


def default_email(kind: str, *, user: User, link: str | None, to: str) -> tuple[str, str]:
    """postkit's plain-text ``(subject, body)`` for a mail of ``kind`` (see ``render_email``)."""
    subject, body = _DEFAULT_EMAILS[kind]
    return subject, body.format(username=user.username, link=link or "", to=to)


def build_plugin_manager(
    plugins: Iterable[object] = (), *, discover: bool = True
) -> pluggy.PluginManager:
    """A fresh plugin manager: postkit's specs, its defaults, entry points, then ``plugins``.

    Plugins passed in code are registered last, so they run first among equals, and in the
    order given: with ``plugins=[a, b]``, ``a`` is called before ``b``. Hook wrappers postkit
    cannot honour are refused here (see :func:`check_wrappers`).
    """
    manager = pluggy.PluginManager(PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    manager.register(DefaultRules(), name="postkit.defaults")
    if discover:
        manager.load_setuptools_entrypoints(PROJECT_NAME)
    # pluggy calls the most recently registered plugin first: register in reverse.
    for plugin in reversed(list(plugins)):
        manager.register(plugin)
    check_wrappers(manager)
    return manager


def check_wrappers(manager: pluggy.PluginManager) -> None:
    """Refuse, naming the plugin and the hook, every hook wrapper postkit cannot honour.

    Wrappers (``@hookimpl(wrapper=True)`` and old-style ``hookwrapper=True``) run inside pluggy's
    call loop, which cannot await. So a wrapper is refused on a hook that has an ``async def``
    implementation (it would receive an unawaited coroutine instead of that answer), and on the
    "after" hooks, whose implementations postkit runs to the end even when one fails (a wrapper
    would see only part of the call, or hide the failure). Raises
    :class:`pluggy.PluginValidationError`, so a kit with such a plugin is never built.
    """
    callers: dict[str, Any] = vars(manager.hook)
    for name, caller in sorted(callers.items()):
        if not isinstance(caller, pluggy.HookCaller):
            continue
        in_call_order = list(reversed(caller.get_hookimpls()))
        wrappers = [impl for impl in in_call_order if impl.wrapper or impl.hookwrapper]
        if not wrappers:
            continue
        wrapper = wrappers[0]
        refused = f"postkit cannot use the hook wrapper {name} of plugin {_label(wrapper)}"
        if name.startswith(AFTER_HOOK_PREFIX):
            raise pluggy.PluginValidationError(
                wrapper.plugin,
                f"{refused}: {name} is an 'after' hook, whose implementations all run even when "
                f"one fails; implement {name} as a plain (non-wrapper) hook instead",
            )
        coroutines = [
            impl
            for impl in in_call_order
            if not (impl.wrapper or impl.hookwrapper) and inspect.iscoroutinefunction(impl.function)
        ]
        if coroutines:
            raise pluggy.PluginValidationError(
                wrapper.plugin,
                f"{refused}: plugin {_label(coroutines[0])} implements {name} with "
                f"'async def', and a wrapper would receive an unawaited coroutine instead of "
                f"its answer; wrappers need every implementation of {name} to be a plain function",
            )


async def _resolve(answer: Any) -> Any:
    while inspect.isawaitable(answer):
        answer = await answer
    return answer


def _discard(answers: Iterable[object]) -> None:
    """Close the coroutines among ``answers`` that will never be awaited (no "never awaited")."""
    for answer in answers:
        if inspect.iscoroutine(answer):
            answer.close()


def _answers_before(error: BaseException) -> list[object]:
    """The answers pluggy's call loop had collected when ``error`` ended it.

    pluggy drops them when an implementation raises; among them may be coroutines of ``async``
    implementations called earlier in the loop, which are then closed rather than left to warn
    "never awaited". pluggy has no API for them: its loop keeps them in its local list
    ``results``, reachable from the traceback. Should a pluggy release stop doing so, this finds
    nothing and the only loss is that warning (tests/api/test_hook_calls.py notices).
    """
    traceback = error.__traceback__
    while traceback is not None:
        frame = traceback.tb_frame
        if str(frame.f_globals.get("__name__", "")).startswith("pluggy."):
            results = frame.f_locals.get("results")
            if isinstance(results, list):
                return list(results)
        traceback = traceback.tb_next
    return []


def _label(impl: pluggy.HookImpl) -> str:
    """A plugin as people know it: its class (or module) and the name it is registered under.

    pluggy names a plugin object registered without a name by its ``id()``, which helps nobody.
    """
    plugin = impl.plugin
    kind = str(getattr(plugin, "__name__", None) or type(plugin).__qualname__)
    if impl.plugin_name in (kind, str(id(plugin))):
        return repr(kind)
    return f"{impl.plugin_name!r} ({kind})"


def _log_failure(name: str, impl: pluggy.HookImpl | None) -> None:
    who = f"plugin {_label(impl)}" if impl is not None else "a plugin"
    logger.exception("postkit: %s failed in hook %s", who, name)


class HookRunner:
    """Calls hooks through pluggy's call loop and awaits what implementations return.

    ``call`` and ``first`` make one call of ``manager.hook.<name>(**kwargs)``: pluggy calls every
    implementation in order and collects the answers that are not ``None``; the runner then
    awaits, in the same order, each answer that needs it. ``notify`` calls each implementation
    of an "after" hook through pluggy on its own, so one that fails never keeps the others from
    running.
    """

    def __init__(self, manager: pluggy.PluginManager) -> None:
        self.manager = manager

    def _caller(self, name: str) -> pluggy.HookCaller:
        caller: pluggy.HookCaller = getattr(self.manager.hook, name)
        return caller

    async def _answers(self, name: str, kwargs: dict[str, Any], *, first: bool) -> list[Any]:
        try:
            pending = self._caller(name)(**kwargs)
        except Exception as error:
            _discard(_answers_before(error))
            if not isinstance(error, PostKitError):  # a refusal is answered, not logged
                _log_failure(name, None)  # a plain implementation: the traceback names it
            raise
        if not isinstance(pending, list):
            raise TypeError(
                f"hook {name} answered {pending!r} instead of a list of answers: a hook "
                f"wrapper on {name} must return the list it received (changed or not)"
            )
        answers: list[Any] = []
        waiting = deque(pending)
        try:
            while waiting:
                try:
                    answer = await _resolve(waiting.popleft())
                except PostKitError:
                    raise
                except Exception:
                    _log_failure(name, None)
                    raise
                if answer is not None:
                    answers.append(answer)
                    if first:
                        break
        finally:
            _discard(waiting)
        return answers

    async def call(self, name: str, **kwargs: Any) -> list[Any]:
        """Run every implementation of ``name`` in order; return their non-``None`` answers.

        A plain implementation that raises (a refusal or a bug) ends pluggy's loop there: the
        ``async`` implementations it had already called never run (their coroutines are
        closed).
        """
        return await self._answers(name, kwargs, first=False)

    async def first(self, name: str, **kwargs: Any) -> Any:
        """The first answer of ``name``'s implementations, in order, that is not ``None``.

        pluggy has already run every plain implementation; answers after the first are ignored,
        and the coroutines of ``async`` implementations after it are closed, never run.
        """
        answers = await self._answers(name, kwargs, first=True)
        return answers[0] if answers else None

    async def notify(self, name: str, **kwargs: Any) -> None:
        """Run an "after" hook: every implementation runs, and failures are logged, not raised.

        With more than one implementation, each is called through pluggy on its own (a
        :meth:`~pluggy.PluginManager.subset_hook_caller` holding just that plugin), so tracing
        and monitoring see one call per implementation.
        """
        caller = self._caller(name)
        implementations = list(reversed(caller.get_hookimpls()))
        if len(implementations) <= 1:
            await self._notify_one(
                name, caller, kwargs, implementations[0] if implementations else None
            )
            return
        plugins = [impl.plugin for impl in implementations]
        try:
            singles = [
                self.manager.subset_hook_caller(
                    name, remove_plugins=[plugin for plugin in plugins if plugin is not impl.plugin]
                )
                for impl in implementations
            ]
        except TypeError:
            # An unhashable plugin (pluggy keeps the plugins to leave out in a set): one call
            # of them all, which a failing plain implementation ends.
            await self._notify_one(name, caller, kwargs, None)
            return
        for single, impl in zip(singles, implementations, strict=True):
            await self._notify_one(name, single, kwargs, impl)

    async def _notify_one(
        self,
        name: str,
        caller: pluggy.HookCaller,
        kwargs: dict[str, Any],
        impl: pluggy.HookImpl | None,
    ) -> None:
        try:
            for answer in caller(**kwargs):
                await _resolve(answer)
        except Exception:
            _log_failure(name, impl)

    def has_implementations(self, name: str) -> bool:
        """Whether any registered plugin implements ``name`` (to skip work nobody asked for)."""
        return bool(self._caller(name).get_hookimpls())

    def describe(self) -> list[tuple[str, list[str]]]:
        """Every registered plugin's name with the hooks it implements (for ``postkit plugins``)."""
        described = []
        for plugin in self.manager.get_plugins():
            name = self.manager.get_name(plugin) or repr(plugin)
            hooks = sorted(caller.name for caller in self.manager.get_hookcallers(plugin) or [])
            described.append((name, hooks))
        return sorted(described)
