"""The dashboard: a web page and a JSON API over the request log and the live router.

``llmroute serve`` serves it at ``/dashboard`` (and the API under ``/api/``),
for keys marked ``admin: true`` (loopback clients when no key is configured);
``llmroute dashboard`` serves it alone, read-only, over a store file an
in-process router writes. The page is static HTML, CSS and JavaScript shipped
in the package (``static/``): no CDN, no network; it draws its charts as
inline SVG. See docs/dashboard.md.
"""

from __future__ import annotations

__all__: list[str] = []
