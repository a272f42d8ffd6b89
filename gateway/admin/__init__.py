"""Admin API (``/api/*``, behind ``GATEWAY_ADMIN__API_KEY``) and the ``/admin`` page.

The page is one static HTML file and one script (no build step); it asks for the admin key and
calls the same API with ``Authorization: Bearer <key>``. The page itself holds no data, so it
is served without the key, with a strict Content-Security-Policy.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from gateway.admin.call_routes import router as call_router
from gateway.admin.config_routes import router as config_router
from gateway.admin.live_routes import router as live_router
from gateway.admin.log_routes import router as log_router
from gateway.admin.pipeline_routes import router as pipeline_router

STATIC = Path(__file__).resolve().parent / "static"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; "
    "media-src 'self' blob:; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

page_router = APIRouter(include_in_schema=False)


@page_router.get("/admin")
async def admin_page() -> FileResponse:
    """The admin page."""
    return FileResponse(STATIC / "admin.html", media_type="text/html; charset=utf-8", headers=_HEADERS)


@page_router.get("/admin/")
async def admin_page_slash() -> RedirectResponse:
    """``/admin/`` → ``/admin``."""
    return RedirectResponse("/admin")


@page_router.get("/admin/admin.js")
async def admin_script() -> FileResponse:
    """The page's script."""
    return FileResponse(STATIC / "admin.js", media_type="text/javascript; charset=utf-8", headers=_HEADERS)


routers = [config_router, call_router, live_router, log_router, pipeline_router, page_router]
"""Every router of the admin package, for ``app.include_router``."""
