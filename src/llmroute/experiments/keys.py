"""The digest under which an experiment's sticky key is recorded.

Records keep a digest of the sticky key (a user, a session, a gateway key),
never the key itself, so that feedback given per sticky key can join the
requests made under it. The digest is salted by the experiment's name: the
same user has unrelated digests in two experiments.
"""

from __future__ import annotations

from hashlib import blake2b

__all__ = ["sticky_digest"]


def sticky_digest(experiment: str, key: str) -> str:
    """The recorded digest of `key` as the sticky key of `experiment` (16 hex digits)."""
    return blake2b(f"{experiment}\x00{key}".encode(), digest_size=8).hexdigest()
