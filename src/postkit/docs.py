"""Swagger UI served from the app itself, so ``/docs`` works without internet access.

FastAPI's own ``/docs`` page loads Swagger UI's script and stylesheet from a CDN: behind a
firewall, on a plane or on an intranet the page stays blank. ``serve_offline_docs(app)`` serves
the same page from files installed with the app (the ``openapi-ui-bundles`` package, in
postkit's ``server`` extra).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.routing import Route

__all__ = ["serve_offline_docs"]

MISSING_BUNDLE = (
    "postkit.docs.serve_offline_docs needs the openapi-ui-bundles package, which postkit's "
    '`server` extra installs: pip install "fastapi-postkit[server]"'
)


def serve_offline_docs(
    app: FastAPI, *, path: str = "/docs", static_path: str = "/static/swagger-ui"
) -> None:
    """Serve Swagger UI at ``path`` with its assets from ``static_path``, no CDN involved.

    ::

        app = FastAPI(lifespan=kit.lifespan)
        serve_offline_docs(app)

    FastAPI's own Swagger UI page (``docs_url``, the CDN one) is replaced, wherever it was;
    ReDoc (``redoc_url``) is left alone: pass ``redoc_url=None`` to FastAPI to drop it too. The
    page follows the app's ``root_path`` behind a proxy, its ``swagger_ui_parameters`` and
    ``swagger_ui_init_oauth``, and the OAuth2 redirect page is at ``{path}/oauth2-redirect``.
    Call it before mounting anything of your own at a prefix of ``static_path``.

    :raises ImportError: openapi-ui-bundles is not installed (the message names the extra).
    :raises ValueError: the app has no OpenAPI schema (``openapi_url=None``).
    """
    try:
        from openapi_ui_bundles import swagger_ui
    except ImportError as exc:
        raise ImportError(MISSING_BUNDLE) from exc
    openapi_url = app.openapi_url
    if openapi_url is None:
        raise ValueError("serve_offline_docs: the app has no OpenAPI schema (openapi_url=None)")
    path = "/" + path.strip("/")
    static_path = "/" + static_path.strip("/")
    redirect_path = f"{path.rstrip('/')}/oauth2-redirect"
    _drop_cdn_swagger_ui(app)

    app.mount(static_path, StaticFiles(directory=swagger_ui.static_path), name="swagger-ui")

    @app.get(path, include_in_schema=False)
    async def swagger_ui_page(request: Request) -> HTMLResponse:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        assets = f"{root}{static_path}"
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon-32x32.png",
            oauth2_redirect_url=f"{root}{redirect_path}",
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    @app.get(redirect_path, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()


def _drop_cdn_swagger_ui(app: FastAPI) -> None:
    """Remove the Swagger UI routes FastAPI added at construction (``docs_url``)."""
    if app.docs_url is None:
        return
    cdn_paths = {app.docs_url}
    if app.swagger_ui_oauth2_redirect_url:
        cdn_paths.add(app.swagger_ui_oauth2_redirect_url)
    app.router.routes[:] = [
        route
        for route in app.router.routes
        if not (isinstance(route, Route) and route.path in cdn_paths)
    ]
    app.docs_url = None
    app.openapi_schema = None
