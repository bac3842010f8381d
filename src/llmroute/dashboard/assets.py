"""The page's files (``static/``), as HTTP answers: content type, body and safety headers."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

__all__ = ["PAGE_HEADERS", "asset"]

#: The files under ``/dashboard/`` and their content types (``/dashboard`` is the page).
_FILES = {
    "index.html": b"text/html; charset=utf-8",
    "dashboard.css": b"text/css; charset=utf-8",
    "dashboard.js": b"text/javascript; charset=utf-8",
}
#: Headers of every dashboard answer: only this origin's scripts, styles and API; no
#: framing, no sniffing, no referrer.
PAGE_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-cache"),
]


def asset(path: str) -> tuple[bytes, bytes] | None:
    """The content type and bytes of a ``/dashboard...`` path; None when there is no such file."""
    name = path.removeprefix("/dashboard").strip("/") or "index.html"
    content_type = _FILES.get(name)
    if content_type is None:
        return None
    return content_type, _read(name)


@cache
def _read(name: str) -> bytes:
    return (files("llmroute.dashboard") / "static" / name).read_bytes()
