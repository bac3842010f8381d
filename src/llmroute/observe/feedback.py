"""The record of one feedback given on a request, or on an experiment's sticky key.

Feedback is a named metric (``thumbs_up``, ``rating``) with a boolean or
numeric value, given after the answer: by the application's code, or by its
users through the gateway's ``POST /v1/feedback``. The log store keeps each
one as given (`Feedback`); the experiment report joins it to the requests it
is about (see docs/experiments.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["ExperimentStop", "Feedback", "FeedbackKind"]

#: A boolean value is stored as 1.0 or 0.0, and compared as a proportion; a number is
#: compared as a mean.
FeedbackKind = Literal["boolean", "number"]


@dataclass(frozen=True, slots=True)
class Feedback:
    """One feedback, as stored.

    Attributes:
        feedback_id: its id (``fb-`` and 24 hex digits).
        name: the metric (``thumbs_up``).
        value: the value; a boolean as 1.0 or 0.0.
        kind: ``boolean`` or ``number``.
        created_at: when it was given (Unix seconds).
        request_id: the request it is about, for feedback per request.
        experiment, sticky_key: for feedback per sticky key, the experiment and
            the digest of the key (`llmroute.experiments.sticky_digest`), never
            the key itself.
        comment: free text that came with it.
        key: the name of the gateway key that gave it (None in process).
    """

    feedback_id: str
    name: str
    value: float
    kind: FeedbackKind
    created_at: float
    request_id: str | None = None
    experiment: str | None = None
    sticky_key: str | None = None
    comment: str | None = None
    key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The feedback as JSON-ready data (a boolean's value as true or false)."""
        data = asdict(self)
        if self.kind == "boolean":
            data["value"] = bool(self.value)
        return data


@dataclass(frozen=True, slots=True)
class ExperimentStop:
    """An adaptive experiment that stopped with a winner, as stored.

    Attributes:
        experiment: the experiment's name.
        winner: the variant everyone gets from then on.
        stopped_at: when it stopped (Unix seconds).
        probability: the winner's posterior probability of being the best.
        metric: the feedback metric it was decided on.
        samples: the feedback values each variant had then, by variant.
    """

    experiment: str
    winner: str
    stopped_at: float
    probability: float
    metric: str
    samples: dict[str, int]
