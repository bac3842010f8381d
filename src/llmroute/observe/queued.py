"""A finished request as the recorder queues it until its batch is written.

Three forms: a record with what the worker still has to add (`Pending`: its
cost, content and spans); and, when the store is all that reads it, its rows
encoded for the store (one `bytes` object, which the garbage collector does not
track), priced at once, or with what prices it when pricing is left to the
worker (`Priced`). `priced_rows` chooses between the last two.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from itertools import repeat
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, cast

from .._types import RouteInfo
from ..pipeline.stage import Ended, Outcome
from .record import RequestRecord, cost_fields, priced, saved_of
from .rows import decode_record, encode_record
from .sqlite_writer import Encoded

if TYPE_CHECKING:
    from .otel import Prepared

__all__ = ["Pending", "Priced", "Queued", "priced_rows", "record_rows", "sort_batch"]

logger = logging.getLogger("llmroute.observe.recorder")

#: A finished request waiting to be written: its record (without cost or content),
#: its routing metadata (which prices it), the request and outcome when content is
#: captured, and what its spans need.
Pending = tuple[RequestRecord, RouteInfo | None, tuple[Any, Outcome] | None, "Prepared | None"]


class Priced(NamedTuple):
    """A request's rows encoded before it was priced: the worker prices it (`pricer`,
    `RouteInfo.pending_cost`), so that pricing (a genai-prices lookup, hundreds of µs for a
    tiered price, its data's loading on first use) stays off the event loop; `unsent`
    and `saved` are `cost_fields`' other arguments."""

    encoded: bytes
    pricer: Callable[[], float | None]
    unsent: bool
    saved: float | None


#: A finished request as queued: for the usual path, or encoded for the store.
Queued = Pending | bytes | Priced
#: What a finished request's rows are written from: its record, or its end.
_Of = TypeVar("_Of", RequestRecord, Ended)


def priced_rows(
    info: RouteInfo,
    sent_nothing: bool,
    rows: Callable[[_Of, float | None, float | None], bytes],
    of: _Of,
    *,
    now: bool,
) -> bytes | Priced:
    """The rows of a finished request (`rows(of, cost, saved)`), priced at once when that is
    quick (priced already, nothing to price, or `now`: the worker has loaded the prices,
    so a price costs microseconds), else with what prices it, for the worker."""
    pricer = info.pending_cost()
    if pricer is None or now:
        return rows(of, *priced(info, sent_nothing))
    return Priced(rows(of, None, None), pricer, sent_nothing, saved_of(info, sent_nothing))


def record_rows(record: RequestRecord, cost: float | None, saved: float | None) -> bytes:
    """`record`'s rows (`encode_record`) with its cost fields set."""
    record.cost_usd, record.saved_usd = cost, saved
    return encode_record(record)


def sort_batch(
    batch: list[Queued], *, for_store: bool
) -> tuple[list[Encoded], list[Pending], int, bool]:
    """A batch taken from the queue, sorted: the requests for the store, encoded and priced
    (a `Priced` one priced now: its cost set as the store decodes it), when the store is
    still all that reads them (`for_store`); the others for the usual path, each encoded
    one decoded (something else reads it now). With how many could not be priced or
    decoded (logged, left out) and whether one was priced here. The usual batch, all
    encoded and priced (checked in C), is the store's as it is."""
    if for_store and all(map(isinstance, batch, repeat(bytes))):
        return cast("list[Encoded]", batch), [], 0, False
    encoded: list[Encoded] = []
    pending: list[Pending] = []
    failed, priced_here = 0, False
    for item in batch:
        one: Encoded
        if isinstance(item, Priced):
            try:  # the store sets the cost columns as it decodes the record
                cost, saved = cost_fields(item.unsent, item.pricer(), item.saved)
                priced_here = True
            except Exception:
                failed += 1
                logger.exception("llmroute recorder: could not price a request")
                continue
            one = (item.encoded, cost, saved)
        elif isinstance(item, bytes):
            one = item
        else:
            pending.append(item)  # a record for the usual path
            continue
        if for_store:
            encoded.append(one)
            continue
        try:  # encoded while the store was all that read it; something else does now
            pending.append((decode_record(one), None, None, None))
        except Exception:
            failed += 1
            logger.exception("llmroute recorder: could not decode a request's record")
    return encoded, pending, failed, priced_here
