"""postkit.docs.serve_offline_docs: Swagger UI from installed files, no CDN, through HTTP."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from postkit import PostKit, PostKitSettings
from postkit.docs import serve_offline_docs
from tests.support.api import TEST_SECRET
from tests.support.examples import load_example


def postkit_app(**fastapi_options: object) -> FastAPI:
    """An app with postkit's router (nothing here touches the database)."""
    kit = PostKit(
        PostKitSettings(  # type: ignore[call-arg]
            _env_file=None,
            database_url="sqlite+aiosqlite:///:memory:",
            secret_key=TEST_SECRET,
            discover_plugins=False,
        )
    )
    app = FastAPI(title="host", **fastapi_options)  # type: ignore[arg-type]
    app.include_router(kit.router)
    return app


def http(app: FastAPI, root_path: str = "") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, root_path=root_path)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def references(page: str) -> list[str]:
    """Every URL the page loads or links to (attributes and the script's string literals)."""
    found = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page)
    found += re.findall(r"""url: '([^']+)'""", page)
    found += re.findall(r"""oauth2RedirectUrl: window\.location\.origin \+ '([^']+)'""", page)
    return found


async def test_docs_and_their_assets_are_served_locally() -> None:
    app = postkit_app()
    serve_offline_docs(app)
    async with http(app) as client:
        page = await client.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert not re.search(r"https?://", page.text), "the page names an external URL"
        urls = references(page.text)
        assert "/openapi.json" in urls
        assert "/docs/oauth2-redirect" in urls
        assets = [url for url in urls if url.startswith("/static/swagger-ui/")]
        assert len(assets) == 3, urls  # the script, the stylesheet and the icon
        for url in urls:
            assert (await client.get(url)).status_code == 200, url
        script = await client.get("/static/swagger-ui/swagger-ui-bundle.js")
        assert "SwaggerUIBundle" in script.text
        schema = (await client.get("/openapi.json")).json()
    assert "/login" in schema["paths"]
    assert not any(path.startswith(("/docs", "/static")) for path in schema["paths"])


async def test_fastapis_cdn_page_is_replaced() -> None:
    app = postkit_app()  # FastAPI serves its CDN page at /docs by default
    serve_offline_docs(app)
    assert [getattr(route, "path", None) for route in app.routes].count("/docs") == 1  # type: ignore[attr-defined]
    async with http(app) as client:
        page = (await client.get("/docs")).text
        redirect = await client.get("/docs/oauth2-redirect")
    assert "cdn.jsdelivr.net" not in page
    assert "/static/swagger-ui/swagger-ui-bundle.js" in page
    assert redirect.status_code == 200
    assert "oauth2" in redirect.text


async def test_another_path_and_a_proxy_prefix() -> None:
    app = postkit_app()
    serve_offline_docs(app, path="/api-docs/", static_path="/api-docs/assets")
    # Served under /social (uvicorn --root-path /social): the ASGI path keeps the prefix.
    async with http(app, root_path="/social") as client:
        page = await client.get("/social/api-docs")
        assert page.status_code == 200
        assert (await client.get("/social/docs")).status_code == 404  # FastAPI's page is gone
        urls = references(page.text)
        assert "/social/openapi.json" in urls
        assert "/social/api-docs/oauth2-redirect" in urls
        assert "/social/api-docs/assets/swagger-ui.css" in urls
        for url in urls:
            assert (await client.get(url)).status_code == 200, url
        css = await client.get("/social/api-docs/assets/swagger-ui.css")
    assert ".swagger-ui" in css.text


async def test_swagger_ui_parameters_are_kept() -> None:
    app = postkit_app(swagger_ui_parameters={"deepLinking": False, "docExpansion": "none"})
    serve_offline_docs(app)
    async with http(app) as client:
        page = (await client.get("/docs")).text
    assert '"docExpansion": "none"' in page
    assert '"deepLinking": false' in page


def test_without_the_bundle_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openapi_ui_bundles", None)  # as if not installed
    app = postkit_app()
    with pytest.raises(ImportError, match=r'pip install "fastapi-postkit\[server\]"'):
        serve_offline_docs(app)
    assert "/docs" in [getattr(route, "path", None) for route in app.routes]  # type: ignore[attr-defined]


def test_an_app_without_a_schema_is_refused() -> None:
    with pytest.raises(ValueError, match="no OpenAPI schema"):
        serve_offline_docs(FastAPI(openapi_url=None))


async def test_the_getting_started_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the sample's SQLite file would go here (it is never opened)
    app = load_example("offline_docs_app").app
    async with http(app) as client:
        page = await client.get("/docs")
        assert page.status_code == 200
        assert not re.search(r"https?://", page.text)
        for url in references(page.text):
            assert (await client.get(url)).status_code == 200, url
        assert (await client.get("/redoc")).status_code == 404
