"""The experiment report over records written with their experiment tags: figures against
numpy, intervals against scipy and statsmodels at the corrected level, what is counted
apart, feedback joins, the sentences, the router method and the CLI."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.proportion import confint_proportions_2indep

from conftest import new_store_url
from llmroute import AsyncRouter, ConfigError, ExperimentReport, TokenUsage
from llmroute.cli import main
from llmroute.experiments import Comparison, sticky_digest
from llmroute.observe import Feedback, RequestRecord, SqliteStore, open_store

NAME = "haiku-vs-mini"
START = 1_760_000_000.0
#: Per variant: error rate, median latency (s), cost per request (USD), thumbs-up rate,
#: mean rating.
TRUTH = {
    "control": (0.03, 0.80, 0.0020, 0.60, 3.9),
    "candidate": (0.03, 0.64, 0.0015, 0.66, 3.9),
    "terse": (0.08, 0.80, 0.0020, 0.60, 3.6),
}


def record(i: int, variant: str, **changes: Any) -> RequestRecord:
    values: dict[str, Any] = {
        "request_id": f"lr-{i:08d}", "operation": "chat", "started_at": START + i,
        "request_model": "chat", "route": "chat", "status": "ok", "experiment": NAME,
        "variant": variant, "assignment": "sticky",
    }  # fmt: skip
    values.update(changes)
    return RequestRecord(**values)


class World:
    """A seeded experiment: 3 variants, about 2,000 compared requests each, feedback on
    some, plus requests counted apart; `values` keeps what the report should compare."""

    def __init__(self, url: str, seed: int = 5) -> None:
        rng = random.Random(seed)
        self.url = url
        self.store = open_store(url)
        self.values: dict[str, dict[str, list[float]]] = {
            v: {"latency": [], "ttft": [], "cost": [], "tokens": [], "errors": [],
                "thumbs_up": [], "rating": []}
            for v in TRUTH
        }  # fmt: skip
        records, feedback = [], []
        for i in range(6_300):
            variant = list(TRUTH)[i % 3]
            error_rate, latency, cost, thumbs, rating = TRUTH[variant]
            failed = rng.random() < error_rate
            row = record(
                i, variant,
                status="error" if failed else "ok",
                latency_s=latency * rng.lognormvariate(0, 0.5),
                ttft_s=latency / 4 * rng.lognormvariate(0, 0.3) if i % 2 else None,
                stream=bool(i % 2),
                usage=TokenUsage(200 + rng.randint(0, 50), 80 + rng.randint(0, 40)),
                cost_usd=cost * rng.lognormvariate(0, 0.4) if i % 50 else None,
                assignment="unkeyed" if i % 10 == 0 else "sticky",
                sticky_key=sticky_digest(NAME, f"user-{i % 900}") if i % 10 else None,
            )  # fmt: skip
            records.append(row)
            kept = self.values[variant]
            kept["errors"].append(float(failed))
            if not failed:
                kept["latency"].append(row.latency_s or 0.0)
                if row.ttft_s is not None:
                    kept["ttft"].append(row.ttft_s)
            if row.cost_usd is not None:
                kept["cost"].append(row.cost_usd)
            assert row.usage is not None
            kept["tokens"].append(row.usage.input + row.usage.output)
            if i % 3 != 1 or rng.random() < 0.5:
                first = rng.random() < 0.5  # given once, then changed: the latest counts
                thumb = rng.random() < thumbs
                if first:
                    feedback.append((row.request_id, "thumbs_up", not thumb, START + 7_000 + i))
                feedback.append((row.request_id, "thumbs_up", thumb, START + 9_000 + i))
                kept["thumbs_up"].append(float(thumb))
            if rng.random() < 0.3:
                value = min(5.0, max(1.0, rng.gauss(rating, 1.0)))
                feedback.append((row.request_id, "rating", value, START + 9_500 + i))
                kept["rating"].append(value)
        # counted apart: forced, shadow copies, failovers outside the variant
        records += [record(10_000 + i, "candidate", assignment="forced") for i in range(7)]
        records += [
            record(20_000 + i, "candidate", assignment="shadow", latency_s=0.5, cost_usd=0.001,
                   properties={"shadow_of": f"lr-{i:08d}"})
            for i in range(11)
        ]  # fmt: skip
        records += [
            record(30_000 + i, "terse", off_variant=True, latency_s=9.0, cost_usd=0.05)
            for i in range(5)
        ]
        records.append(record(40_000, "candidate", experiment="another"))
        self.store.write(records)
        for n, (request_id, name, value, at) in enumerate(sorted(feedback, key=lambda f: f[3])):
            kind = "boolean" if isinstance(value, bool) else "number"
            given = Feedback(f"fb-{n}", name, float(value), kind, at, request_id=request_id)
            assert self.store.add_feedback(given)
        self.store.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> World:
    """The seeded experiment in SQLite, then in PostgreSQL: the report's tests run over both
    against the same figures."""
    return World(new_store_url(request, request.param, tmp_path_factory.mktemp("report")))


def report_of(world: World, **options: Any) -> ExperimentReport:
    from llmroute.experiments.report import query_report

    return query_report(world.store, NAME, **options)


@pytest.fixture(scope="module")
def report(world: World) -> ExperimentReport:
    """The whole experiment's report (made once: its bootstraps take a second or so)."""
    return report_of(world)


def comparison(report: ExperimentReport, variant: str, metric: str) -> Comparison:
    (found,) = [c for c in report.comparisons if c.variant == variant and c.metric == metric]
    return found


# ---------------------------------------------------------------- figures


def test_each_variants_figures(world: World, report: ExperimentReport) -> None:
    assert [v.variant for v in report.variants] == ["control", "candidate", "terse"]
    for figures in report.variants:
        kept = world.values[figures.variant]
        assert figures.requests == len(kept["errors"]) == 2_100
        assert figures.errors == sum(kept["errors"])
        assert figures.error_rate == pytest.approx(np.mean(kept["errors"]))
        assert figures.latency_p50 == pytest.approx(np.percentile(kept["latency"], 50))
        assert figures.latency_p95 == pytest.approx(np.percentile(kept["latency"], 95))
        assert figures.ttft_p50 == pytest.approx(np.percentile(kept["ttft"], 50))
        assert figures.cost_per_request == pytest.approx(np.mean(kept["cost"]))
        assert figures.cost_unknown == 2_100 - len(kept["cost"])
        assert figures.input_tokens + figures.output_tokens == pytest.approx(  # type: ignore[operator]
            np.mean(kept["tokens"])
        )
        metrics = {m.name: m for m in figures.feedback}
        assert metrics["thumbs_up"].kind == "boolean" and metrics["rating"].kind == "number"
        assert metrics["thumbs_up"].n == len(kept["thumbs_up"])
        assert metrics["thumbs_up"].mean == pytest.approx(np.mean(kept["thumbs_up"]))
        assert metrics["rating"].mean == pytest.approx(np.mean(kept["rating"]))
        assert figures.unkeyed == 210


def test_forced_shadow_and_off_variant_requests_are_counted_apart(
    world: World, report: ExperimentReport
) -> None:
    by_name = {v.variant: v for v in report.variants}
    assert (by_name["candidate"].forced, by_name["candidate"].shadow) == (7, 11)
    assert by_name["terse"].off_variant == 5 and by_name["terse"].requests == 2_100
    (shadow,) = report.shadows
    assert (shadow.variant, shadow.requests, shadow.latency_p50) == ("candidate", 11, 0.5)
    included = report_of(world, include_off_variant=True)
    terse = {v.variant: v for v in included.variants}["terse"]
    assert (terse.requests, terse.off_variant, included.include_off_variant) == (2_105, 5, True)
    assert terse.latency_p95 is not None and terse.latency_p95 > by_name["terse"].latency_p95  # type: ignore[operator]


def test_the_window_selects_requests_by_start(world: World) -> None:
    report = report_of(world, since=START + 3_000, until=START + 3_300)
    assert sum(v.requests for v in report.variants) == 300
    assert (report.since, report.until) == (START + 3_000, START + 3_300)


# ---------------------------------------------------------------- intervals


def test_the_intervals_match_scipy_and_statsmodels_at_the_corrected_level(
    world: World, report: ExperimentReport
) -> None:
    assert report.confidence == 0.95
    level = report.interval_confidence
    assert level == pytest.approx(0.975)  # two candidates: Bonferroni
    control = world.values["control"]
    for variant in ("candidate", "terse"):
        kept = world.values[variant]
        for metric, name in (("error_rate", "errors"), ("thumbs_up", "thumbs_up")):
            got = comparison(report, variant, metric)
            a, b = kept[name], control[name]
            want = confint_proportions_2indep(
                sum(a), len(a), sum(b), len(b), method="newcomb", alpha=1 - level
            )
            assert got.method == "newcombe" and got.interval is not None
            assert (got.interval.low, got.interval.high) == pytest.approx(want, rel=1e-9)
            assert (got.control_n, got.candidate_n) == (len(b), len(a))
        rating = comparison(report, variant, "rating")
        want = scipy_stats.ttest_ind(
            kept["rating"], control["rating"], equal_var=False
        ).confidence_interval(level)
        assert rating.method == "welch" and rating.interval is not None
        assert (rating.interval.low, rating.interval.high) == pytest.approx(
            (want.low, want.high), rel=1e-9
        )
        cost = comparison(report, variant, "cost_per_request")
        a, b = np.array(control["cost"]), np.array(kept["cost"])
        ua, ub = a.var(ddof=1) / (len(a) * a.mean() ** 2), b.var(ddof=1) / (len(b) * b.mean() ** 2)
        df = (ua + ub) ** 2 / (ua**2 / (len(a) - 1) + ub**2 / (len(b) - 1))
        half = scipy_stats.t.ppf(1 - (1 - level) / 2, df) * math.sqrt(ua + ub)
        ratio = b.mean() / a.mean()
        assert cost.interval is not None and cost.method == "delta_log_ratio"
        assert (cost.interval.low, cost.interval.estimate, cost.interval.high) == pytest.approx(
            (ratio * math.exp(-half), ratio, ratio * math.exp(half)), rel=1e-9
        )
        latency = comparison(report, variant, "latency_p50")
        want = scipy_stats.bootstrap(
            (control["latency"], kept["latency"]),
            lambda x, y, axis: np.median(y, axis=axis) / np.median(x, axis=axis),
            confidence_level=level,
            method="percentile",
            n_resamples=5_000,
            vectorized=True,
            rng=np.random.default_rng(1),
        ).confidence_interval
        assert latency.interval is not None
        width = want.high - want.low
        assert abs(latency.interval.low - want.low) < 0.06 * width
        assert abs(latency.interval.high - want.high) < 0.06 * width


def test_what_differs_is_detected_and_what_does_not_is_not(
    world: World, report: ExperimentReport
) -> None:

    def detected(variant: str, metric: str) -> bool:
        interval = comparison(report, variant, metric).interval
        assert interval is not None
        return interval.detected

    assert detected("candidate", "cost_per_request") and detected("candidate", "latency_p50")
    assert detected("terse", "error_rate") and detected("terse", "rating")
    assert not detected("candidate", "error_rate") and not detected("terse", "cost_per_request")
    assert not detected("candidate", "rating") and not detected("terse", "latency_p50")
    cost = comparison(report, "candidate", "cost_per_request").interval
    assert cost is not None and cost.high < 1.0


# ---------------------------------------------------------------- sentences


def test_the_sentences_say_what_the_intervals_say(world: World, report: ExperimentReport) -> None:
    cost = comparison(report, "candidate", "cost_per_request")
    assert cost.interval is not None
    less = round((1 - cost.interval.estimate) * 100)
    assert cost.sentence.startswith(f"candidate costs {less}% less per request ($0.00")
    assert "; 97.5% CI " in cost.sentence and cost.sentence.endswith("%)")
    assert cost.more_requests is None
    latency = comparison(report, "candidate", "latency_p50")
    assert latency.sentence.startswith("candidate answers with a ")
    assert "lower median latency" in latency.sentence
    errors = comparison(report, "terse", "error_rate")
    assert errors.sentence.startswith("terse's error rate is ")
    assert " points higher (" in errors.sentence
    flat = comparison(report, "candidate", "rating")
    assert flat.sentence.startswith(
        f"candidate shows no detectable difference in rating at n = {flat.candidate_n:,} vs "
        f"{flat.control_n:,} (97.5% CI -"
    )
    assert flat.more_requests is not None and flat.more_requests > 0
    assert flat.sentence.endswith(
        f"; {flat.more_requests:,} more requests per variant would detect a difference of "
        f"{abs(flat.interval.estimate):.2g}"  # type: ignore[union-attr]
    )
    assert report.sentences == [c.sentence for c in report.comparisons]
    assert len(report.sentences) == 2 * 7  # error rate, latency, TTFT, cost, tokens, 2 metrics


def test_the_projection_of_more_requests_detects_the_difference(report: ExperimentReport) -> None:
    """The 'more requests would detect it' figure, checked by simulation: at that size,
    experiments with the observed rates detect the difference in about 80% of runs."""
    flat = comparison(report, "candidate", "error_rate")
    assert flat.interval is not None and not flat.interval.detected
    assert flat.more_requests is not None
    n = min(flat.control_n, flat.candidate_n) + flat.more_requests
    rates = (flat.control_value, flat.candidate_value)
    rng = np.random.default_rng(4)
    from llmroute.experiments.stats import newcombe_interval

    hits = 0
    for _ in range(400):
        a, b = (int(rng.binomial(n, p)) for p in rates)  # type: ignore[arg-type]
        found = newcombe_interval((a, n), (b, n), report.interval_confidence)
        hits += found is not None and found.detected
    assert 0.72 < hits / 400 < 0.88


def test_too_little_data_says_so_and_no_control_compares_nothing(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "small.db")
    store.write([record(1, "control", latency_s=0.5, cost_usd=0.01), record(2, "b")])
    from llmroute.experiments.report import query_report

    report = query_report(store, NAME)
    cost = comparison(report, "b", "cost_per_request")
    assert cost.interval is None and cost.more_requests is None
    assert cost.sentence == (
        "b cannot be compared with control on cost per request yet (n = 0 vs 1: too few "
        "values, or none that vary)"
    )
    lonely = SqliteStore(tmp_path / "lonely.db")
    lonely.write([record(5, "a"), record(6, "b")])
    assert query_report(lonely, NAME).comparisons == ()
    with pytest.raises(ConfigError, match="no llmroute store"):
        query_report(SqliteStore(tmp_path / "missing.db"), NAME)
    with pytest.raises(ConfigError, match=r"logging\.store"):
        query_report(None, NAME)


def test_feedback_per_sticky_key_counts_for_the_keys_one_variant(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "keys.db")
    keys = {f"user-{i}": sticky_digest(NAME, f"user-{i}") for i in range(4)}
    store.write(
        [record(1, "control", sticky_key=keys["user-0"]),
         record(2, "control", sticky_key=keys["user-0"]),
         record(3, "candidate", sticky_key=keys["user-1"]),
         record(4, "candidate", sticky_key=keys["user-2"]),
         # weights moved this key between variants: it counts for neither
         record(5, "control", sticky_key=keys["user-3"]),
         record(6, "candidate", sticky_key=keys["user-3"])]
    )  # fmt: skip
    for n, (user, value) in enumerate(
        [("user-0", 1.0), ("user-1", 0.0), ("user-1", 1.0), ("user-2", 1.0), ("user-3", 0.0)]
    ):
        assert store.add_feedback(
            Feedback(f"fb-{n}", "converted", value, "boolean", START + n, experiment=NAME,
                     sticky_key=keys[user])
        )  # fmt: skip
    from llmroute.experiments.report import query_report

    report = query_report(store, NAME)
    figures = {v.variant: v.feedback for v in report.variants}
    (control,) = figures["control"]
    (candidate,) = figures["candidate"]
    assert (control.per, control.n, control.mean) == ("sticky_key", 1, 1.0)
    assert (candidate.n, candidate.mean) == (2, 1.0)  # user-1's latest value counts
    assert candidate.label == "converted (per sticky key)"
    assert comparison(report, "candidate", "converted (per sticky key)").method == "newcombe"


# ---------------------------------------------------------------- the router and the CLI


@pytest.mark.anyio
async def test_the_router_reports_after_flushing(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    store = SqliteStore(path)
    store.write([record(i, ("control", "candidate")[i % 2], latency_s=0.1 + i / 100,
                        cost_usd=0.001 * (1 + i % 3)) for i in range(40)])  # fmt: skip
    store.close()
    logging = {"store": f"sqlite:///{path}"}
    async with AsyncRouter(
        {"providers": {"m": {"type": "mock"}}, "routes": {"chat": {"targets": ["m/echo"]}},
         "logging": logging}
    ) as router:  # fmt: skip
        answer = await router.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "Hi"}]
        )
        report = await router.experiment_report(NAME, since="2025-01-01")
        assert sum(v.requests for v in report.variants) == 40
        # the router's own request was flushed to the store first, and feedback joins it
        await router.feedback(answer.llmroute.request_id, "thumbs_up", True)
    async with AsyncRouter({}) as bare:
        with pytest.raises(ConfigError, match=r"logging\.store"):
            await bare.experiment_report(NAME)


def strict_json(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise AssertionError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_the_cli_prints_the_report(
    world: World, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store = world.url
    assert main(["experiments", "report", NAME, "--store", store, "--json"]) == 0
    data = strict_json(capsys.readouterr().out)
    assert [v["variant"] for v in data["variants"]] == ["control", "candidate", "terse"]
    assert data["interval_confidence"] == pytest.approx(0.975)
    assert len(data["sentences"]) == len(data["comparisons"]) == 14
    cost = next(
        c for c in data["comparisons"]
        if c["variant"] == "candidate" and c["metric"] == "cost_per_request"
    )  # fmt: skip
    assert cost["interval"]["kind"] == "ratio" and cost["interval"]["high"] < 1

    args = ["experiments", "report", NAME, "--store", world.url, "--format", "plain"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Experiment {NAME}: variants\n")
    for title in ("Feedback: mean (n)", "Counted apart", "Shadow copies (not compared)",
                  "Against control", "97.5% CI"):  # fmt: skip
        assert title in out
    assert "candidate costs " in out and "% less per request" in out
    assert "Bonferroni" in out
    assert main([*args[:-1], "table"]) == 0
    assert "Against control" in capsys.readouterr().out
    assert main([*args, "--until", "2000-01-01"]) == 0
    assert "Nothing to compare" in capsys.readouterr().out
    assert main(["experiments", "report", NAME, "--store", str(tmp_path / "none.db")]) == 1
    assert "no llmroute store" in capsys.readouterr().err
    assert main(["experiments", "report", NAME, "--since", "soon"]) == 1
    assert "expected a time" in capsys.readouterr().err
