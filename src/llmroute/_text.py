"""Text from outside shown safely: control characters escaped, not interpreted."""

from __future__ import annotations

import re

__all__ = ["printable"]

#: C0 and C1 controls, DEL, and the Unicode line and paragraph separators: what a
#: terminal or a log reader would act on (a newline forges a log line, ESC recolours or
#: moves the cursor).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with each control character written as an escape (``\\x1b``, ``\\x0a``).

    Used for values a client or an upstream chose (model names, users, error
    messages) before they reach a log line or a terminal table.
    """
    return _CONTROL.sub(_escape, text) if _CONTROL.search(text) else text
