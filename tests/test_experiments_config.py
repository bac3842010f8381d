"""The `experiments` and `prompts` sections: what is accepted, and what is refused with its
path."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from llmroute import ConfigError
from llmroute._config_load import load_config
from llmroute.experiments.adaptive import AdaptiveSettings


def config(experiment: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    spec = {
        "route": "chat",
        "variants": {"control": {"weight": 50}, "candidate": {"weight": 50}},
        **(experiment or {}),
    }
    return {
        "providers": {"m": {"type": "mock"}},
        "routes": {"chat": {"targets": ["m/a"]}, "other": {"targets": ["m/o"]}},
        "experiments": {"e": spec},
        **top,
    }


def variants(**more: dict[str, Any]) -> dict[str, Any]:
    return {"variants": {"control": {"weight": 1}, **more}}


def refused(document: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(document, env={})
    return caught.value


def test_the_issue_example_is_accepted() -> None:
    loaded = load_config(
        config(
            {
                "sticky_by": "user",
                "variants": {
                    "control": {"weight": 50},
                    "candidate": {
                        "weight": 50,
                        "targets": ["m/haiku"],
                        "params": {"temperature": 0.2},
                    },
                    "terse": {"weight": 0, "system": "Answer in one sentence."},
                },
                "shadow": {"variant": "candidate", "fraction": 0.1},
                "mode": "fixed",
                "metric": "thumbs_up",
                "starts": date(2026, 12, 1),
                "ends": "2026-12-31",
            }
        ),
        env={},
    )
    experiment = loaded.experiments["e"]
    assert experiment.variants["candidate"].targets[0].key == "m/haiku"  # type: ignore[index]
    assert experiment.window == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),  # an `ends` date includes its day
    )


@pytest.mark.parametrize(
    ("experiment", "path", "words"),
    [
        (variants(), "experiments.e.variants", "at least 2"),
        ({"variants": {"a": {"weight": 1}, "b": {"weight": 1}}}, "experiments.e", "'control'"),
        (variants(x={"weight": 0}) | {"variants": {"control": {"weight": 0}, "x": {"weight": 0}}},
         "experiments.e", "every variant has weight 0"),
        ({"variants": {"control": {"weight": 1, "system": "x"}, "b": {"weight": 1}}},
         "experiments.e", "takes only a weight"),
        (variants(b={"weight": 1, "targets": ["m/x"], "route": "other"}),
         "experiments.e.variants.b", "not both"),
        (variants(b={"weight": 1, "system": "x", "prompt": "p"}),
         "experiments.e.variants.b", "not both"),
        (variants(b={"weight": 1, "system_mode": "prepend"}),
         "experiments.e.variants.b", "system_mode applies"),
        (variants(b={"weight": -1}), "experiments.e.variants.b.weight", "greater than or equal"),
        (variants(b={"weight": 1, "params": {"messages": []}}),
         "experiments.e.variants.b.params", "cannot set messages"),
        (variants(b={"weight": 1, "params": {"top_p": 3}}),
         "experiments.e.variants.b.params", "top_p"),
        (variants(b={"weight": 1, "params": {}}), "experiments.e.variants.b.params", "empty"),
        (variants(b={"weight": 1, "targets": ["nope"]}),
         "experiments.e.variants.b.targets.0", "provider/model"),
        (variants(**{"b=c": {"weight": 1}}), "experiments.e.variants", "variant name 'b=c'"),
        (variants(b={"weight": 1}) | {"shadow": {"variant": "zz", "fraction": 0.1}},
         "experiments.e", "not a variant"),
        (variants(b={"weight": 1}) | {"shadow": {"variant": "control", "fraction": 0.1}},
         "experiments.e", "cannot be 'control'"),
        (variants(b={"weight": 1}) | {"shadow": {"variant": "b", "fraction": 0}},
         "experiments.e.shadow.fraction", "greater than 0"),
        (variants(b={"weight": 1}) | {"sticky_by": "ip"}, "experiments.e.sticky_by", "'user'"),
        (variants(b={"weight": 1}) | {"stop_at": 0.9}, "experiments.e",
         "stop_at applies to `mode: adaptive` only"),
        (variants(b={"weight": 1}) | {"min_samples": 10, "refresh": 5}, "experiments.e",
         "min_samples, refresh apply to `mode: adaptive` only"),
        (variants(b={"weight": 1}) | {"mode": "adaptive", "metric": "m", "refresh": 0},
         "experiments.e.refresh", "greater than 0"),
        (variants(b={"weight": 1}) | {"mode": "adaptive"}, "experiments.e", "needs `metric`"),
        (variants(b={"weight": 0}) | {"mode": "adaptive", "metric": "m"}, "experiments.e",
         "at least two variants with a weight above 0"),
        (variants(b={"weight": 1}) | {"goal": "minimize"}, "experiments.e",
         "goal applies to `mode: adaptive` only"),
        (variants(b={"weight": 1}) | {"mode": "adaptive", "metric": "m", "goal": "less"},
         "experiments.e.goal", "'maximize' or 'minimize'"),
        (variants(b={"weight": 1}, c={"weight": 1}) | {"mode": "adaptive", "metric": "m",
                                                        "floor": 0.4},
         "experiments.e", "leaves nothing to adapt"),
        (variants(b={"weight": 1}) | {"starts": "2026-12-02", "ends": "2026-12-01"},
         "experiments.e", "after `starts`"),
        (variants(b={"weight": 1}) | {"ends": "soon"}, "experiments.e.ends", "date"),
    ],
)  # fmt: skip
def test_bad_experiments_are_refused_with_their_path(
    experiment: dict[str, Any], path: str, words: str
) -> None:
    error = refused(config(experiment))
    assert error.path is not None and error.path.startswith(path), (error.path, str(error))
    assert words in str(error)


@pytest.mark.parametrize(
    ("experiment", "path", "words"),
    [
        ({"route": "nope"}, "experiments.e.route", "unknown route 'nope'; routes: chat, other"),
        (variants(b={"weight": 1, "route": "zz"}), "experiments.e.variants.b.route",
         "unknown route 'zz'"),
        (variants(b={"weight": 1, "route": "chat"}), "experiments.e.variants.b.route",
         "that is 'control'"),
        (variants(b={"weight": 1, "prompt": "missing"}), "experiments.e.variants.b.prompt",
         "unknown prompt 'missing'"),
        (variants(b={"weight": 1}) | {"mode": "adaptive", "metric": "thumbs_up"},
         "experiments.e.mode", "reads its metric's feedback from the log store, and this "
         "configuration has none: set `logging.store`"),
    ],
)  # fmt: skip
def test_references_are_checked(experiment: dict[str, Any], path: str, words: str) -> None:
    error = refused(config(experiment))
    assert (error.path, words in str(error)) == (path, True), str(error)


def test_adaptive_mode_is_accepted_with_a_log_store() -> None:
    adaptive = variants(b={"weight": 1}) | {
        "mode": "adaptive", "metric": "thumbs_up", "stop_at": 0.99, "floor": 0.1,
        "min_samples": 50, "refresh": 2, "goal": "minimize",
    }  # fmt: skip
    loaded = load_config(config(adaptive, logging={"store": "sqlite:///x.db"}), env={})
    spec = loaded.experiments["e"]
    assert (spec.mode, spec.metric, spec.stop_at, spec.floor, spec.min_samples, spec.refresh) == (
        "adaptive", "thumbs_up", 0.99, 0.1, 50, 2.0,
    )  # fmt: skip
    assert AdaptiveSettings.of("thumbs_up", spec).minimize is True
    error = refused(config(adaptive, logging={"store": None}))
    assert error.path == "experiments.e.mode" and "set `logging.store`" in str(error)


def test_one_experiment_per_route() -> None:
    document = config()
    document["experiments"]["f"] = document["experiments"]["e"]
    error = refused(document)
    assert error.path == "experiments.f.route"
    assert "already has experiment 'e'" in str(error)


def test_experiment_names_are_checked() -> None:
    document = config()
    document["experiments"]["bad name"] = document["experiments"].pop("e")
    assert refused(document).path == "experiments.bad name"


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("Hello {Name}", "lowercase name"),
        ("Hello {name:>10}", "no format specs"),
        ("Hello {name!r}", "lowercase name"),
        ("Hello {0}", "lowercase name"),
        ("Hello {user.name}", "lowercase name"),
        ("Hello {name", "invalid template"),
        ("", "at least 1 character"),
    ],
)
def test_bad_templates_are_refused(template: str, words: str) -> None:
    error = refused(config(prompts={"p": template}))
    assert error.path == "prompts.p"
    assert words in str(error)


def test_templates_take_literal_braces() -> None:
    loaded = load_config(config(prompts={"p": 'Reply as JSON: {{"tone": "{tone}"}}'}), env={})
    assert loaded.prompts["p"].startswith("Reply")


def test_the_schema_describes_the_sections() -> None:
    from llmroute import Config

    schema = Config.model_json_schema()
    assert {"experiments", "prompts"} <= set(schema["properties"])
    assert "ExperimentConfig" in schema["$defs"]
