"""Plugin manager construction, entry-point discovery and the awaiting hook runner."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pluggy

from postkit import hookspecs
from postkit.errors import PostKitError
from postkit.hookspecs import PROJECT_NAME, hookimpl

if TYPE_CHECKING:
    from postkit.models import Post, User

__all__ = ["DefaultRules", "HookRunner", "build_plugin_manager"]

logger = logging.getLogger("postkit")


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
    order given: with ``plugins=[a, b]``, ``a`` is called before ``b``.
    """
    manager = pluggy.PluginManager(PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    manager.register(DefaultRules(), name="postkit.defaults")
    if discover:
        manager.load_setuptools_entrypoints(PROJECT_NAME)
    # pluggy calls the most recently registered plugin first: register in reverse.
    for plugin in reversed(list(plugins)):
        manager.register(plugin)
    return manager


async def _resolve(value: Any) -> Any:
    while inspect.isawaitable(value):
        value = await value
    return value


class HookRunner:
    """Calls hooks on a plugin manager and awaits what implementations return.

    pluggy itself cannot await, so each implementation is called through pluggy (keeping its
    ordering and argument selection) and its answer awaited here.
    """

    def __init__(self, manager: pluggy.PluginManager) -> None:
        self.manager = manager

    def _implementations(self, name: str) -> list[pluggy.HookImpl]:
        caller: pluggy.HookCaller = getattr(self.manager.hook, name)
        # pluggy stores implementations in call order reversed: last registered is called first.
        return list(reversed(caller.get_hookimpls()))

    async def _call_one(self, impl: pluggy.HookImpl, name: str, kwargs: dict[str, Any]) -> Any:
        args = {arg: kwargs[arg] for arg in impl.argnames if arg in kwargs}
        try:
            return await _resolve(impl.function(**args))
        except PostKitError:
            raise
        except Exception:
            logger.exception("postkit: plugin %r failed in hook %s", impl.plugin_name, name)
            raise

    async def call(self, name: str, **kwargs: Any) -> list[Any]:
        """Run every implementation of ``name`` in order; return their non-``None`` answers."""
        results = []
        for impl in self._implementations(name):
            result = await self._call_one(impl, name, kwargs)
            if result is not None:
                results.append(result)
        return results

    async def first(self, name: str, **kwargs: Any) -> Any:
        """Run implementations of ``name`` in order until one answers something other than None."""
        for impl in self._implementations(name):
            result = await self._call_one(impl, name, kwargs)
            if result is not None:
                return result
        return None

    async def notify(self, name: str, **kwargs: Any) -> None:
        """Run an "after" hook: every implementation runs, and failures are logged, not raised."""
        for impl in self._implementations(name):
            args = {arg: kwargs[arg] for arg in impl.argnames if arg in kwargs}
            try:
                await _resolve(impl.function(**args))
            except Exception:
                logger.exception("postkit: plugin %r failed in hook %s", impl.plugin_name, name)

    def has_implementations(self, name: str) -> bool:
        """Whether any registered plugin implements ``name`` (to skip work nobody asked for)."""
        return bool(self._implementations(name))

    def describe(self) -> list[tuple[str, list[str]]]:
        """Every registered plugin's name with the hooks it implements (for ``postkit plugins``)."""
        described = []
        for plugin in self.manager.get_plugins():
            name = self.manager.get_name(plugin) or repr(plugin)
            hooks = sorted(caller.name for caller in self.manager.get_hookcallers(plugin) or [])
            described.append((name, hooks))
        return sorted(described)
