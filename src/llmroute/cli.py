"""The ``llmroute`` command: ``check`` a config, print its ``schema``, ``serve``, ``stats``.

The HTTP gateway is not built yet, so ``serve`` runs the library quickstart:
one chat request and one streamed request through a router, showing what
llmroute did. Rich (the ``cli`` extra) is imported only when a table is drawn.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from . import AsyncRouter, Config, ConfigError, LLMRouteError, RouteInfo, __version__
from ._catalog import Provider, Route
from ._config_load import providers_from_env
from .providers import PRESETS

__all__ = ["main"]

_Table = tuple[str, list[str], list[list[str]]]  # title, headers, rows (a cell may span lines)

#: Files `serve` looks for in the current folder, in this order.
_QUICKSTART_FILES = ("llmroute.yaml", "llmroute.yml", "llmroute.toml", "llmroute.json")
#: A small model per service for the quickstart's requests when keys are found (``--model`` overrides).
_QUICKSTART_MODELS = {
    "openai": "gpt-4o-mini", "groq": "llama-3.1-8b-instant", "mistral": "mistral-small-latest",
    "deepseek": "deepseek-chat", "openrouter": "openai/gpt-4o-mini",
}  # fmt: skip
#: The offline demo: a primary that fails its first answer, and a healthy fallback.
_DEMO_CONFIG: dict[str, Any] = {
    "providers": {
        "flaky": {"type": "mock", "script": [503], "latency": "30ms", "chunk_delay": "10ms",
                  "text": "Hello from flaky, the primary, which has recovered."},
        "steady": {"type": "mock", "latency": "80ms", "chunk_delay": "10ms",
                   "text": "Hello from steady, the fallback."},
    },
    "routes": {"demo": {"targets": ["flaky/demo-model", "steady/demo-model"], "timeout": "10s"}},
}  # fmt: skip
_PROMPT = "Say hello in one short sentence."


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


def _base_url(provider: Provider) -> str:
    if provider.type == "mock":
        return "(simulated)"
    return str(getattr(provider.adapter, "base_url", "-"))


def _key_status(provider: Provider) -> str:
    """Whether a key is configured; never the key itself."""
    if provider.type == "mock":
        return "-"
    if getattr(provider.adapter.config, "api_key", None) is not None:
        return "set"
    preset = PRESETS.get(provider.type)
    return "not needed" if preset is not None and preset.key_env is None else "missing"


def _route_row(name: str, route: Route) -> list[str]:
    retry = route.retry
    delays = _seconds(retry.initial)
    if retry.backoff == "exponential":
        delays += f"..{_seconds(retry.max_delay)}"
    targets = [f"{t.key}  [{t.provider.type}] {_base_url(t.provider)}" for t in route.targets]
    fallbacks = ", ".join(f.name or "?" for f in route.fallbacks) or "-"
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
    catalog = router._catalog
    from_env = providers_from_env()
    routes: _Table = (
        "Routes",
        ["route", "strategy", "timeout", "retry", "targets", "fallbacks"],
        [_route_row(name, route) for name, route in catalog.routes.items()],
    )
    providers: _Table = (
        "Providers",
        ["provider", "type", "base URL", "API key", "source"],
        [
            [name, p.type, _base_url(p), _key_status(p),
             "config" if name in router.config.providers
             else "environment" if name in from_env else "implicit"]
            for name, p in catalog.providers.items()
        ],
    )  # fmt: skip
    render = _render_rich if _use_rich(output_format) else _render_plain
    for table in (routes, providers):
        render(table)
    print(f"{path}: OK ({len(catalog.routes)} routes, {len(catalog.providers)} providers)")
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


# ---------------------------------------------------------------- serve (quickstart)


def _config_path(args: argparse.Namespace) -> Path | None:
    """``--config``, else the first of `_QUICKSTART_FILES` in the current folder."""
    if args.config:
        return Path(args.config)
    return next((Path(n) for n in _QUICKSTART_FILES if Path(n).is_file()), None)


def _quickstart_router(args: argparse.Namespace) -> tuple[AsyncRouter, str]:
    """The router and `model=` to use: a config file, the environment's keys, or the demo."""
    reason = "--demo was given"
    if not args.demo:
        path = _config_path(args)
        if path is not None:
            router = AsyncRouter.from_file(path)
            model = args.model or next(iter(router._catalog.routes), None)
            if model is None:
                raise ConfigError(f"{path} has no routes; pass --model provider/model")
            print(f"Using {path}; sending to {model!r}.")
            return router, model
        if args.model:
            print(f"Using the providers found in the environment; sending to {args.model!r}.")
            return AsyncRouter(), args.model
        keys = providers_from_env()
        targets = [f"{n}/{_QUICKSTART_MODELS[n]}" for n in keys if n in _QUICKSTART_MODELS]
        if targets:
            print(f"Using the providers found in the environment: route 'quickstart' = {targets}.")
            return AsyncRouter({"routes": {"quickstart": {"targets": targets}}}), "quickstart"
        reason = "no llmroute.yaml here and no provider keys in the environment"
        if keys:
            reason = f"no llmroute.yaml here, and for {', '.join(keys)} pass --model provider/model"
    print(
        f"DEMO ({reason}): this runs offline over the built-in simulated 'mock' provider.\n"
        "Route 'demo' lists two targets: flaky/demo-model fails its first answer with HTTP 503,\n"
        "steady/demo-model is healthy. Watch the first request fail over, and the second find\n"
        "the primary recovered."
    )
    return AsyncRouter(_DEMO_CONFIG), "demo"


def _print_info(answer: str | None, info: RouteInfo) -> None:
    if answer is not None:
        print(f"  answer:    {answer}")
    print(f"  served by: {info.target} (provider {info.provider})")
    first_token = f", first token {_ms(info.ttft_s)}" if info.stream else ""
    print(f"  latency:   {_ms(info.latency_s)}{first_token}")
    print(f"  attempts:  {len(info.attempts)}")
    for number, attempt in enumerate(info.attempts, 1):
        status = attempt.status if attempt.status is not None else "-"
        error = f"  {attempt.error_type}: {attempt.error}" if attempt.error_type else ""
        print(f"    {number}. {attempt.target:<24} {attempt.kind:<8} {attempt.outcome:<6} "
              f"{status:<4} {_ms(attempt.latency_s):>9}{error}")  # fmt: skip
    if len(info.attempts) > 1:
        print(f"  -> failed over to {info.target} after {len(info.attempts) - 1} failed attempt(s)")


async def _quickstart(args: argparse.Namespace) -> None:
    router, model = _quickstart_router(args)
    messages = [{"role": "user", "content": args.prompt}]
    async with router:
        print(f"\n1. chat.completions.create(model={model!r})")
        reply = await router.chat.completions.create(model=model, messages=messages)
        _print_info(reply.choices[0].message.content, reply.llmroute)
        print(f"\n2. chat.completions.create(model={model!r}, stream=True)")
        stream = await router.chat.completions.create(model=model, messages=messages, stream=True)
        print("  answer:    ", end="", flush=True)
        async with stream:
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    print(chunk.choices[0].delta.content, end="", flush=True)
        print()
        _print_info(None, stream.llmroute)


def _serve(args: argparse.Namespace) -> int:
    notice = "The llmroute HTTP gateway is not built yet"
    print(f"{notice}; `llmroute serve` runs the library quickstart instead.\n")
    try:
        asyncio.run(_quickstart(args))
    except LLMRouteError as exc:
        source = "" if args.demo else _config_path(args)
        _print_error(exc, str(source or ""))
        return 1
    print(f"\n{notice}: use llmroute as a library (llmroute.Router / AsyncRouter) meanwhile.")
    return 0


# ---------------------------------------------------------------- stats


def _stats(args: argparse.Namespace) -> int:
    from .observe import SqliteStore, make_filters, query_stats
    from .observe.report import report_json, report_tables, store_path

    try:
        store = SqliteStore(store_path(args.store))
        filters = make_filters(since=args.since, until=args.until, where=args.where)
        report = query_stats(store, by=args.by, filters=filters)
    except ConfigError as exc:
        _print_error(exc)
        return 1
    if args.json:
        print(report_json(report))
        return 0
    render = _render_rich if _use_rich(args.format) else _render_plain
    for table in report_tables(report):
        render(table)
    return 0


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
    serve = commands.add_parser(
        "serve", help="run the library quickstart (the HTTP gateway is not built yet)"
    )
    serve.add_argument("--config", metavar="FILE", help="config file (default: ./llmroute.yaml)")
    serve.add_argument("--model", help="the route or provider/model to send to")
    serve.add_argument("--prompt", default=_PROMPT, help="the user message to send")
    serve.add_argument("--demo", action="store_true", help="run the offline demo even with keys")
    stats = commands.add_parser("stats", help="request analytics from a log store")
    stats.add_argument(
        "store", nargs="?", default="llmroute.db",
        help="the store: a path or sqlite:/// URL (default: ./llmroute.db)",
    )  # fmt: skip
    stats.add_argument(
        "--by", action="append", default=[], metavar="KEY",
        help="group by provider, model, target, route, user, session, status, error_type, "
        "cache, property.NAME, hour or day (repeat for several)",
    )  # fmt: skip
    stats.add_argument("--since", help="start: ISO date/time, Unix seconds, or ago (24h, 7d)")
    stats.add_argument("--until", help="end (exclusive), in the same forms")
    stats.add_argument(
        "--where", action="append", default=[], metavar="KEY=VALUE",
        help="filter: provider=, model=, route=, user=, status=, property.NAME=... (repeatable)",
    )  # fmt: skip
    stats.add_argument("--json", action="store_true", help="print the report as JSON")
    stats.add_argument(
        "--format", choices=("auto", "table", "plain"), default="auto",
        help="table needs rich; auto draws tables on a terminal, plain text otherwise",
    )  # fmt: skip
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
    return _serve(args)


if __name__ == "__main__":
    sys.exit(main())
