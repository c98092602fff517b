"""What a web page in the user's browser may do with the API (SPEC section 6).

CORS is opt-in (http.corsOrigins): without it a page on another site cannot read
any answer. A page can still *send* simple requests without asking (a form, a
fetch without a type); api.py refuses a state change whose type is not JSON, or
whose Origin is neither allowed nor the API's own. And while the API listens on
loopback, a Host that is not a loopback name is refused: that is a DNS rebinding
attack, a page whose own name was made to resolve to 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import re

PORT_RE = re.compile(r"^:[0-9]{1,5}$")
PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "600",
}


class Cors:
    """The CORS headers an answer carries, for the origins configured."""

    def __init__(self, origins: tuple[str, ...]) -> None:
        self.any = origins == ("*",)
        self.origins = frozenset(origins)

    def allows(self, origin: str) -> bool:
        """Whether pages from `origin` (an Origin header) may use the API."""
        return self.any or origin.strip().lower() in self.origins

    def headers(self, origin: str | None) -> dict[str, str]:
        """For a request from `origin` (its Origin header; None if it sent none)."""
        if self.any:
            return {"Access-Control-Allow-Origin": "*", **PREFLIGHT_HEADERS}
        if not self.origins:
            return {}
        if origin is not None and self.allows(origin):
            return {"Access-Control-Allow-Origin": origin.strip(), "Vary": "Origin",
                    **PREFLIGHT_HEADERS}  # fmt: skip
        return {"Vary": "Origin"}  # a cache must not hand this answer to a listed origin


def is_loopback(host: str) -> bool:
    """Whether a listen address (http.host) or a Host name is this machine's loopback."""
    name = host.strip().lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def loopback_host_header(value: str) -> bool:
    """A Host header's value (name or address, maybe a port) names loopback:
    localhost, 127.x.x.x, [::1], with or without :port."""
    text = value.strip()
    if text.startswith("["):
        name, bracket, port = text[1:].partition("]")
        return bool(bracket) and (not port or bool(PORT_RE.match(port))) and is_loopback(name)
    name, colon, port = text.partition(":")
    if colon and ":" in port:
        return False  # an IPv6 address without brackets is not a Host
    return (not colon or bool(PORT_RE.match(colon + port))) and is_loopback(name)


def same_origin(origin: str, host: str | None) -> bool:
    """Whether a page's Origin is the API itself (the status page at /): its host and port
    are the request's Host."""
    scheme, sep, netloc = origin.strip().lower().partition("://")
    return (
        bool(sep)
        and scheme in ("http", "https")
        and host is not None
        and (netloc == host.strip().lower())
    )
