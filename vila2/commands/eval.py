"""``vila2 eval``: score a model on one benchmark with whichever plugin's evaluator handles it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from vila2.cli import plugin_option
from vila2.components import EvalResult


def _settings(pairs: tuple[str, ...], world: str | None) -> dict[str, Any]:
    """``--set KEY=VALUE`` pairs (values read as JSON when they parse: 8, true, "x") plus ``world``."""
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--set")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    if world:
        settings["world"] = world
    return settings


def _table(result: EvalResult) -> str:
    """benchmark, metric, value, n: one row per metric, n on the headline row, then the headline
    metric per question kind where the benchmark has kinds."""
    rows = [(result.benchmark, name, f"{value:.4f}", str(result.n) if name == result.primary else "")
            for name, value in result.metrics.items()]
    for kind, group in (result.details or {}).get("by_kind", {}).items():
        if result.primary in group:
            rows.append((result.benchmark, f"{result.primary} [{kind}]", f"{group[result.primary]:.4f}",
                         str(group["n"])))
    header = ("benchmark", "metric", "value", "n")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in [header, *rows]]
    return "\n".join(lines)


@click.command("eval")
@click.option("--model", required=True, help="Model folder (or hub id) to score.")
@click.option("--benchmark", required=True, help="Benchmark name, e.g. mmmu or an lm-eval task.")
@click.option("--backend", default="builtin", show_default=True,
              help="Evaluator back end: builtin, lm-eval, vlmeval or a plugin's own.")
@click.option("--data", type=click.Path(exists=True), help="Local benchmark data (e.g. MMMU Parquet).")
@click.option("--limit", type=click.IntRange(min=1), help="Score only the first N samples.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False),
              help="Write the result as JSON here (per-sample logs go beside it).")
@click.option("--world", type=click.Path(exists=True, file_okay=False),
              help="Embedded world folder, for benchmarks it holds.")
@click.option("--set", "pairs", multiple=True, metavar="KEY=VALUE",
              help="Evaluator setting, e.g. --set batch_size=16 (repeatable).")
@plugin_option
def command(model: str, benchmark: str, backend: str, data: str | None, limit: int | None,
            out_file: str | None, world: str | None, pairs: tuple[str, ...]) -> None:
    """Score MODEL on BENCHMARK; print a table and write JSON.

    The evaluator comes from a plugin: `vila2 plugins --all` lists them.
    """
    from vila2.plugins import get_host

    evaluator = get_host().find_evaluator(benchmark, backend)
    out = Path(out_file) if out_file else None
    out_dir = str(out.with_suffix("")) + ".samples" if out else None
    settings = _settings(pairs, world)
    try:
        result = evaluator.run(model, benchmark, data=data, limit=limit, out_dir=out_dir, settings=settings)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        raise click.ClickException(f"{evaluator.name} ({evaluator.plugin}) on {benchmark!r}: {exc}") from exc
    click.echo(_table(result))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps({"model": model, "evaluator": evaluator.name, **result.to_dict()}, indent=2, default=str))
        tmp.replace(out)
        click.echo(f"wrote {out}")
