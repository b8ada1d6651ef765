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

from postkit import hookspecs
from postkit.errors import PostKitError
from postkit.hookspecs import PROJECT_NAME, hookimpl

if TYPE_CHECKING:
    from postkit.models import Post, User

__all__ = ["DefaultRules", "HookRunner", "build_plugin_manager", "check_wrappers"]

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


async def _resolve(value: Any) -> Any:
    while inspect.isawaitable(value):
        value = await value
    return value


def _discard(answers: Iterable[object]) -> None:
    """Close the coroutines among ``answers`` that will never be awaited (no "never awaited")."""
    for answer in answers:
        if inspect.iscoroutine(answer):
            answer.close()


def _answers_before(error: BaseException) -> list[object]:
    """The answers pluggy's call loop had collected when ``error`` ended it.

    pluggy drops them when an implementation raises; among them may be coroutines of ``async``
    implementations called earlier in the loop, which must still be awaited (after hooks) or
    closed. pluggy's loop keeps them in its local list ``results``, reachable from the traceback
    (tests/test_hook_calls.py fails if a pluggy release stops doing so).
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


def _code_of(function: Any) -> set[Any]:
    codes = {
        getattr(function, "__code__", None),
        getattr(inspect.unwrap(function), "__code__", None),
    }
    codes.discard(None)
    return codes


def _failed_implementation(
    error: BaseException, implementations: list[pluggy.HookImpl]
) -> pluggy.HookImpl | None:
    """The implementation (or wrapper) that raised ``error``, found by its code in the traceback.

    Two implementations can share code (two instances of one plugin class): a method's ``self``
    then tells them apart. ``None`` when no frame of the traceback belongs to an implementation.
    """
    candidates = implementations
    narrowed = False
    traceback = error.__traceback__
    while traceback is not None:
        frame = traceback.tb_frame
        matches = [impl for impl in candidates if frame.f_code in _code_of(impl.function)]
        if len(matches) > 1 and "self" in frame.f_code.co_varnames:
            matches = [impl for impl in matches if frame.f_locals.get("self") is impl.plugin]
        if len(matches) == 1:
            return matches[0]
        if matches:
            candidates, narrowed = matches, True
        traceback = traceback.tb_next
    return candidates[0] if narrowed else None


def _label(impl: pluggy.HookImpl) -> str:
    """A plugin as people know it: its class (or module) and the name it is registered under.

    pluggy names a plugin object registered without a name by its ``id()``, which helps nobody.
    """
    plugin = impl.plugin
    kind = str(getattr(plugin, "__name__", None) or type(plugin).__qualname__)
    if impl.plugin_name in (kind, str(id(plugin))):
        return repr(kind)
    return f"{impl.plugin_name!r} ({kind})"


def _log_failure(error: BaseException, name: str, impl: pluggy.HookImpl | None) -> None:
    plugin = "a plugin" if impl is None else f"plugin {_label(impl)}"
    logger.error("postkit: %s failed in hook %s", plugin, name, exc_info=error)


class HookRunner:
    """Calls hooks through pluggy's call loop and awaits what implementations return.

    Each method makes one call of ``manager.hook.<name>(**kwargs)``: pluggy calls every
    implementation in order (a plain function runs then; an ``async def`` one returns a
    coroutine) and collects the answers that are not ``None``. The runner then awaits, in the
    same order, each answer that is awaitable, and closes the coroutines it has no use for.
    """

    def __init__(self, manager: pluggy.PluginManager) -> None:
        self.manager = manager

    def _caller(self, name: str) -> pluggy.HookCaller:
        caller: pluggy.HookCaller = getattr(self.manager.hook, name)
        return caller

    @staticmethod
    def _in_call_order(caller: pluggy.HookCaller) -> list[pluggy.HookImpl]:
        # pluggy stores implementations in call order reversed: last registered is called first.
        return list(reversed(caller.get_hookimpls()))

    @staticmethod
    def _loop(caller: pluggy.HookCaller, name: str, kwargs: dict[str, Any]) -> list[Any]:
        """One pass of pluggy's call loop: the non-``None`` answers, some of them awaitable."""
        answers = caller(**kwargs)
        if not isinstance(answers, list):
            _discard([answers])
            raise TypeError(
                f"hook {name} answered {answers!r} instead of a list of answers: a hook "
                f"wrapper on {name} must return the list it received (changed or not)"
            )
        return answers

    def _fail(self, error: Exception, name: str, caller: pluggy.HookCaller) -> None:
        """Log an unexpected plugin error (a :class:`PostKitError` is a refusal, not a bug)."""
        if not isinstance(error, PostKitError):
            _log_failure(error, name, _failed_implementation(error, caller.get_hookimpls()))

    async def _answers(self, name: str, kwargs: dict[str, Any], *, first: bool) -> list[Any]:
        caller = self._caller(name)
        try:
            pending = self._loop(caller, name, kwargs)
        except Exception as error:
            _discard(_answers_before(error))
            self._fail(error, name, caller)
            raise
        answers: list[Any] = []
        waiting = deque(pending)
        try:
            while waiting:
                answer = await _resolve(waiting.popleft())
                if answer is not None:
                    answers.append(answer)
                    if first:
                        break
        except Exception as error:
            self._fail(error, name, caller)
            raise
        finally:
            _discard(waiting)
        return answers

    async def call(self, name: str, **kwargs: Any) -> list[Any]:
        """Run every implementation of ``name`` in order; return their non-``None`` answers."""
        return await self._answers(name, kwargs, first=False)

    async def first(self, name: str, **kwargs: Any) -> Any:
        """The first answer of ``name``'s implementations, in order, that is not ``None``.

        pluggy has already called every plain implementation; answers after the first are
        ignored, and the coroutines of ``async`` implementations after it are never awaited.
        """
        answers = await self._answers(name, kwargs, first=True)
        return answers[0] if answers else None

    async def notify(self, name: str, **kwargs: Any) -> None:
        """Run an "after" hook: every implementation runs, and failures are logged, not raised.

        A plain implementation that raises ends pluggy's loop: the runner logs the failure,
        awaits the answers collected before it, then calls the hook again (through pluggy's
        :meth:`~pluggy.PluginManager.subset_hook_caller`) on the implementations that had not
        been called, until all have run. Tracing and monitoring see one call per such pass.
        """
        caller = self._caller(name)
        called: list[object] = []
        while True:
            failed: pluggy.HookImpl | None = None
            try:
                pending = self._loop(caller, name, kwargs)
            except Exception as error:
                pending = _answers_before(error)
                failed = _failed_implementation(error, caller.get_hookimpls())
                _log_failure(error, name, failed)
                if failed is None:  # cannot tell which ran: await what was collected, stop
                    logger.error("postkit: later implementations of %s were not called", name)
            await self._settle(name, caller, pending)
            if failed is None:
                return
            order = self._in_call_order(caller)
            called.extend(impl.plugin for impl in order[: order.index(failed) + 1])
            try:
                caller = self.manager.subset_hook_caller(name, remove_plugins=called)
            except TypeError:  # pluggy keeps the plugins to leave out in a set: unhashable
                logger.exception("postkit: later implementations of %s were not called", name)
                return

    async def _settle(self, name: str, caller: pluggy.HookCaller, pending: list[Any]) -> None:
        """Await every pending answer of an "after" hook, logging each failure."""
        waiting = deque(pending)
        try:
            while waiting:
                try:
                    await _resolve(waiting.popleft())
                except Exception as error:
                    _log_failure(error, name, _failed_implementation(error, caller.get_hookimpls()))
        finally:
            _discard(waiting)

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
