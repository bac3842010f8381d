"""The ``llmroute`` command: ``check`` a config, print its ``schema``, ``serve``, ``stats``,
``dashboard``, ``experiments report``.

``serve`` runs the HTTP gateway (`llmroute.server`, the ``server`` extra,
imported only then). Rich (the ``cli`` extra) is imported only when a table
is drawn.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import AsyncRouter, Config, ConfigError, LLMRouteError, __version__
from ._config_load import providers_from_env
from ._views import ProviderView, RouteView
from .providers import PRESETS

__all__ = ["main"]

_Table = tuple[str, list[str], list[list[str]]]  # title, headers, rows (a cell may span lines)

# ---------------------------------------------------------------- output


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f} ms"


def _print_error(exc: LLMRouteError, source: str = "") -> None:
    """The error's message, then where it is (no traceback)."""
    message = str(exc)
    path = exc.path if isinstance(exc, ConfigError) else ""
    if path:
        message = message.removeprefix(f"{path}: ")
    if source and source not in message:
        message = f"{source}: {message}"
    print(f"error: {message}", file=sys.stderr)
    if path:
        print(f"  at: {path}", file=sys.stderr)


def _render_plain(table: _Table) -> None:
    title, headers, rows = table
    grid = [[cell.split("\n") for cell in row] for row in [headers, *rows]]
    widths = [max(len(line) for row in grid for line in row[i]) for i in range(len(headers))]
    print(title)
    for number, row in enumerate(grid):
        for i in range(max(len(cell) for cell in row)):
            parts = [
                (cell[i] if i < len(cell) else "").ljust(w)
                for cell, w in zip(row, widths, strict=True)
            ]
            print("  " + "  ".join(parts).rstrip())
        if number == 0:
            print("  " + "  ".join("-" * w for w in widths))
    print()


def _render_rich(table: _Table) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    title, headers, rows = table
    drawn = Table(title=title, title_justify="left")
    for header in headers:
        drawn.add_column(header, overflow="fold")  # never hide a URL behind "…"
    for row in rows:
        drawn.add_row(*(Text(cell) for cell in row))  # Text: no markup in names
    Console().print(drawn)


def _use_rich(choice: str) -> bool:
    if choice == "plain" or importlib.util.find_spec("rich") is None:
        return False
    return choice == "table" or sys.stdout.isatty()


# ---------------------------------------------------------------- check


def _base_url(provider_type: str, base_url: str | None) -> str:
    if provider_type == "mock":
        return "(simulated)"
    return base_url or "-"


def _key_status(provider: ProviderView) -> str:
    """Whether a key is configured; never the key itself."""
    if provider.type == "mock":
        return "-"
    if provider.has_key:
        return "set"
    preset = PRESETS.get(provider.type)
    return "not needed" if preset is not None and preset.key_env is None else "missing"


def _route_row(name: str, route: RouteView, providers: dict[str, ProviderView]) -> list[str]:
    retry = route.retry
    delays = _seconds(retry.initial)
    if retry.backoff == "exponential":
        delays += f"..{_seconds(retry.max_delay)}"
    targets = [
        f"{t.key}  [{t.provider_type}] {_base_url(t.provider_type, providers[t.provider].base_url)}"
        for t in route.targets
    ]
    fallbacks = ", ".join(route.fallbacks) or "-"
    return [
        name, route.strategy, _seconds(route.timeout),
        f"{retry.attempts} rounds, {retry.backoff} {delays}", "\n".join(targets), fallbacks,
    ]  # fmt: skip


def _check(path: str, output_format: str) -> int:
    try:
        router = AsyncRouter.from_file(path)
    except ConfigError as exc:
        _print_error(exc, path)
        return 1
    known = router.providers()
    configured = router.routes()
    from_env = providers_from_env()
    routes: _Table = (
        "Routes",
        ["route", "strategy", "timeout", "retry", "targets", "fallbacks"],
        [_route_row(name, route, known) for name, route in configured.items()],
    )
    providers: _Table = (
        "Providers",
        ["provider", "type", "base URL", "API key", "source"],
        [
            [name, p.type, _base_url(p.type, p.base_url), _key_status(p),
             "config" if name in router.config.providers
             else "environment" if name in from_env else "implicit"]
            for name, p in known.items()
        ],
    )  # fmt: skip
    render = _render_rich if _use_rich(output_format) else _render_plain
    for table in (routes, providers):
        render(table)
    print(f"{path}: OK ({len(configured)} routes, {len(known)} providers)")
    return 0


# ---------------------------------------------------------------- schema


def _schema(output: str | None) -> int:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    text = json.dumps({**schema, **Config.model_json_schema()}, indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        Path(output).write_text(text, encoding="utf-8")
        print(f"wrote the configuration schema to {output}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- serve


def _serve(args: argparse.Namespace) -> int:
    from .server.run import start

    try:
        return start(
            config=args.config, host=args.host, port=args.port, workers=args.workers,
            allow_unauthenticated=args.allow_unauthenticated,
            allow_per_worker_limits=args.allow_per_worker_limits, access_log=args.access_log,
        )  # fmt: skip
    except ConfigError as exc:
        _print_error(exc, args.config or "")
        return 1


def _new_key(name: str) -> int:
    from .server.keys import hash_key, new_key

    key = new_key()
    print(f"key (give it to the client; it is not stored anywhere): {key}")
    print("config (llmroute.yaml):")
    print(f'  server:\n    keys:\n      - {{name: {name}, key: "{hash_key(key)}"}}')
    return 0


# ---------------------------------------------------------------- stats


def _stats(args: argparse.Namespace) -> int:
    from .observe import make_filters, query_stats
    from .observe.report import report_json, report_tables
    from .observe.sinks import open_store

    try:
        if args.store_option is not None and args.store not in ("llmroute.db", args.store_option):
            raise ConfigError("give the store once: as an argument or with --store")
        store = open_store(args.store_option or args.store)
        filters = make_filters(since=args.since, until=args.until, where=args.where)
        report = query_stats(store, by=args.by, filters=filters)
    except ConfigError as exc:
        _print_error(exc)
        return 1
    return _show(args, lambda: report_json(report), lambda: report_tables(report))


def _show(
    args: argparse.Namespace,
    as_json: Callable[[], str],
    tables: Callable[[], list[_Table]],
    lines: Sequence[str] = (),
) -> int:
    """Print a report as JSON (``--json``), or as tables then `lines`."""
    if args.json:
        print(as_json())
        return 0
    render = _render_rich if _use_rich(args.format) else _render_plain
    for table in tables():
        render(table)
    for line in lines:
        print(line)
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from .dashboard.app import run

    try:
        return run(args.store, host=args.host, port=args.port, open_page=args.open)
    except ConfigError as exc:
        _print_error(exc)
        return 1


# ---------------------------------------------------------------- experiments


def _experiment_report(args: argparse.Namespace) -> int:
    from .experiments.report import query_report
    from .experiments.tables import report_json, report_lines, report_tables
    from .observe.sinks import open_store

    try:
        report = query_report(
            open_store(args.store), args.name, since=args.since, until=args.until,
            include_off_variant=args.include_off_variant,
        )  # fmt: skip
    except ConfigError as exc:
        _print_error(exc)
        return 1
    return _show(
        args, lambda: report_json(report), lambda: report_tables(report), report_lines(report)
    )


def _add_experiments(commands: Any) -> None:
    experiments = commands.add_parser("experiments", help="experiments: their reports")
    actions = experiments.add_subparsers(dest="action", required=True, metavar="ACTION")
    report = actions.add_parser(
        "report", help="an experiment's variants, and each candidate against control"
    )
    report.add_argument("name", help="the experiment's name")
    report.add_argument(
        "--store", default="llmroute.db",
        help="the log store: a path, a sqlite:/// or a postgresql:// URL (default: ./llmroute.db)",
    )  # fmt: skip
    report.add_argument("--since", help="start: ISO date/time, Unix seconds, or ago (24h, 7d)")
    report.add_argument("--until", help="end (exclusive), in the same forms")
    report.add_argument(
        "--include-off-variant", action="store_true",
        help="compare requests that failed over to a target outside their variant too",
    )  # fmt: skip
    report.add_argument("--json", action="store_true", help="print the report as JSON")
    report.add_argument(
        "--format", choices=("auto", "table", "plain"), default="auto",
        help="table needs rich; auto draws tables on a terminal, plain text otherwise",
    )  # fmt: skip


# ---------------------------------------------------------------- entry point


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmroute", description="An in-process LLM gateway.")
    parser.add_argument("--version", action="version", version=f"llmroute {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser("check", help="validate a config file and show what it resolves to")
    check.add_argument("file", help="a .yaml, .yml, .toml or .json config file")
    check.add_argument(
        "--format", choices=("auto", "table", "plain"), default="auto",
        help="table needs rich; auto draws tables on a terminal, plain text otherwise",
    )  # fmt: skip
    schema = commands.add_parser("schema", help="print the JSON Schema of the config file")
    schema.add_argument("--output", "-o", metavar="FILE", help="write it to FILE instead")
    serve = commands.add_parser("serve", help="run the OpenAI-compatible HTTP gateway")
    serve.add_argument(
        "--config", metavar="FILE",
        help="config file (default: ./llmroute.yaml, else providers from the environment, "
        "else an offline demo)",
    )  # fmt: skip
    serve.add_argument("--host", help="address to listen on (default: server.host, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default: server.port, 8080)")
    serve.add_argument("--workers", type=int, help="worker processes (default: server.workers, 1)")
    serve.add_argument(
        "--allow-unauthenticated", action="store_true",
        help="listen on a non-loopback address although no gateway keys are configured",
    )  # fmt: skip
    serve.add_argument(
        "--allow-per-worker-limits", action="store_true",
        help="with several workers, enforce in-memory rate limits and budgets per worker",
    )  # fmt: skip
    serve.add_argument("--access-log", action="store_true", help="log one line per request")
    key = commands.add_parser(
        "new-key", help="make a gateway key and the config line holding its hash"
    )
    key.add_argument("--name", default="my-client", help="the key's name in the config")
    stats = commands.add_parser("stats", help="request analytics from a log store")
    stats.add_argument(
        "store", nargs="?", default="llmroute.db",
        help="the store: a path, a sqlite:/// or a postgresql:// URL (default: ./llmroute.db)",
    )  # fmt: skip
    stats.add_argument(
        "--store", dest="store_option", metavar="STORE",
        help="the store, as an option (as for the dashboard and experiment reports)",
    )  # fmt: skip
    stats.add_argument(
        "--by", action="append", default=[], metavar="KEY",
        help="group by provider, model, target, route, user, key, team, session, status, "
        "error_type, cache, property.NAME, hour or day (repeat for several)",
    )  # fmt: skip
    stats.add_argument("--since", help="start: ISO date/time, Unix seconds, or ago (24h, 7d)")
    stats.add_argument("--until", help="end (exclusive), in the same forms")
    stats.add_argument(
        "--where", action="append", default=[], metavar="KEY=VALUE",
        help="filter: provider=, model=, route=, user=, key=, team=, status=, property.NAME=... "
        "(repeatable)",
    )  # fmt: skip
    stats.add_argument("--json", action="store_true", help="print the report as JSON")
    stats.add_argument(
        "--format", choices=("auto", "table", "plain"), default="auto",
        help="table needs rich; auto draws tables on a terminal, plain text otherwise",
    )  # fmt: skip
    dashboard = commands.add_parser(
        "dashboard", help="serve the dashboard page over a log store, read-only"
    )
    dashboard.add_argument(
        "--store", default="llmroute.db",
        help="the store: a path, a sqlite:/// or a postgresql:// URL (default: ./llmroute.db)",
    )  # fmt: skip
    dashboard.add_argument(
        "--host", default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1; any other lets others read the log)",
    )  # fmt: skip
    dashboard.add_argument("--port", type=int, default=8081, help="port (default: 8081)")
    dashboard.add_argument("--open", action="store_true", help="open the page in a browser")
    _add_experiments(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``llmroute`` command with `argv` (default: ``sys.argv[1:]``); return its exit code."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors: return, don't exit
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    if args.command == "check":
        return _check(args.file, args.format)
    if args.command == "schema":
        return _schema(args.output)
    if args.command == "stats":
        return _stats(args)
    if args.command == "new-key":
        return _new_key(args.name)
    if args.command == "dashboard":
        return _dashboard(args)
    if args.command == "experiments":
        return _experiment_report(args)
    return _serve(args)


if __name__ == "__main__":
    sys.exit(main())
