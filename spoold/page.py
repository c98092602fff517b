"""GET /: the live dashboard, three files shipped in the package (spoold/static/), no build
step and nothing fetched from elsewhere. The page holds no data: its script polls the API
(with the bearer token where one is set), so the files themselves need no token."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

PAGE = "dashboard.html"
# The files GET /static/<name> serves, with their types; any other name is a 404.
ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
HTML = "text/html; charset=utf-8"
# Only this daemon's own files and API; no inline script or style, no frames, no plug-ins.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
HEADERS = {"Content-Security-Policy": CSP, "Referrer-Policy": "no-referrer"}


@cache
def static_file(name: str) -> bytes:
    """A file of spoold/static/, read once per process."""
    return (files("spoold") / "static" / name).read_bytes()
