"""Building AWS event-stream frames in tests (the encoder botocore does not ship)."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

_STRING = 7


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One binary frame: prelude (lengths and CRC), string headers, payload, message CRC."""
    encoded = b""
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        encoded += struct.pack("!B", len(raw_name)) + raw_name
        encoded += struct.pack("!BH", _STRING, len(raw_value)) + raw_value
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack("!II", total, len(encoded))
    prelude += struct.pack("!I", zlib.crc32(prelude))
    message = prelude + encoded + payload
    return message + struct.pack("!I", zlib.crc32(message))


def event_frame(event: str, payload: dict[str, Any]) -> bytes:
    """A ConverseStream event frame."""
    headers = {":event-type": event, ":content-type": "application/json", ":message-type": "event"}
    return frame(headers, json.dumps(payload).encode())


def exception_frame(kind: str, payload: dict[str, Any]) -> bytes:
    """An in-stream exception frame (``throttlingException``...)."""
    headers = {":exception-type": kind, ":content-type": "application/json",
               ":message-type": "exception"}  # fmt: skip
    return frame(headers, json.dumps(payload).encode())


def frames_from(path: Path) -> list[bytes]:
    """The frames of a fixture: one JSON line per event (``event`` or ``exception``, ``payload``)."""
    frames = []
    for line in path.read_text().splitlines():
        item = json.loads(line)
        if "exception" in item:
            frames.append(exception_frame(item["exception"], item["payload"]))
        else:
            frames.append(event_frame(item["event"], item["payload"]))
    return frames
