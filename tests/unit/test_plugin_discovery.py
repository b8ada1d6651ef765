"""Entry-point discovery: a small plugin "installed" into a temporary site directory (a
``.dist-info`` with an ``entry_points.txt`` in the ``postkit`` group) is loaded by a kit when
``discover_plugins`` is on, and ignored when it is off."""

from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from postkit import PostKit
from postkit.plugins import HookRunner, build_plugin_manager

PLUGIN_SOURCE = '''\
"""A plugin shipped as an installed distribution."""

from postkit import hookimpl


@hookimpl
def extra_post_fields():
    return {"discovered": True}


@hookimpl
async def validate_post(data):
    if data.get("title") == "refused by an installed plugin":
        from postkit import PostRejected

        raise PostRejected("installed plugin says no", code="INSTALLED_NO")
'''


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Install a distribution with a ``postkit`` entry point; yield the entry point's name."""
    suffix = uuid.uuid4().hex[:8]
    module = f"postkit_discovered_{suffix}"
    entry_point = f"discovered-{suffix}"
    site = tmp_path / "site-packages"
    site.mkdir()
    (site / f"{module}.py").write_text(PLUGIN_SOURCE)
    dist_info = site / f"postkit_discovered_{suffix}-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: postkit-discovered-{suffix}\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(f"[postkit]\n{entry_point} = {module}\n")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    yield entry_point
    sys.modules.pop(module, None)
    importlib.invalidate_caches()


def test_plugin_manager_loads_the_entry_point_only_when_asked(installed_plugin):
    discovered = dict(HookRunner(build_plugin_manager(discover=True)).describe())
    assert discovered[installed_plugin] == ["extra_post_fields", "validate_post"]
    assert "postkit.defaults" in discovered
    undiscovered = dict(HookRunner(build_plugin_manager(discover=False)).describe())
    assert installed_plugin not in undiscovered
    assert "postkit.defaults" in undiscovered


async def test_a_kit_with_discovery_uses_the_installed_plugin(
    installed_plugin, make_client, new_user
):
    client = await make_client(discover_plugins=True)
    assert installed_plugin in dict(client.kit.hooks.describe())
    user = await new_user(client)
    created = await client.post(
        "/posts", json={"title": "hello", "content": "c"}, headers=user.headers
    )
    assert created.status_code == 201
    assert created.json()["extra"] == {"discovered": True}
    refused = await client.post(
        "/posts",
        json={"title": "refused by an installed plugin", "content": "c"},
        headers=user.headers,
    )
    assert refused.status_code == 422
    assert refused.json() == {"detail": "installed plugin says no", "code": "INSTALLED_NO"}


async def test_a_kit_without_discovery_ignores_it(
    installed_plugin, make_client, new_user, settings_factory
):
    client = await make_client(discover_plugins=False)
    assert installed_plugin not in dict(client.kit.hooks.describe())
    user = await new_user(client)
    created = await client.post(
        "/posts",
        json={"title": "refused by an installed plugin", "content": "c"},
        headers=user.headers,
    )
    assert created.status_code == 201
    assert created.json()["extra"] == {}
    # The setting's default is on: a kit built without saying so discovers the plugin.
    settings = settings_factory()
    kit = PostKit(settings.model_copy(update={"discover_plugins": True}))
    try:
        assert installed_plugin in dict(kit.hooks.describe())
    finally:
        await kit.db.dispose()
