"""What is worth logging from a finished step, a round, a run: numbers read from the files the
pipeline wrote (step markers, ``result.json``, ``caption_stats.json``, training logs)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

_KEY = re.compile(r"[^A-Za-z0-9_\-./ ]+")


def clean_key(key: str) -> str:
    """A metric name both MLflow and W&B accept (letters, digits, ``_ - . /`` and spaces)."""
    return _KEY.sub("_", key).strip("/") or "_"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def flatten_numbers(data: Any, prefix: str = "", depth: int = 4) -> dict[str, float]:
    """Every finite number in nested dicts, with dotted keys (lists and strings are skipped)."""
    out: dict[str, float] = {}
    if isinstance(data, Mapping) and depth > 0:
        for key, value in data.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            number = _number(value)
            if number is not None:
                out[name] = number
            elif isinstance(value, Mapping):
                out.update(flatten_numbers(value, name, depth - 1))
    return out


def flatten_params(data: Any, prefix: str = "") -> dict[str, str]:
    """A recipe as flat ``key.sub -> value`` parameters (lists as JSON)."""
    out: dict[str, str] = {}
    if isinstance(data, Mapping):
        for key, value in data.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, Mapping) and value:
                out.update(flatten_params(value, name))
            else:
                out[name] = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return out


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def step_metrics(run_dir: str | Path, step: str, outputs: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of one finished step: its duration, numeric outputs, and the numbers in the
    JSON files and trained-model summaries its outputs point at. Keys have no step prefix."""
    root = Path(run_dir)
    metrics: dict[str, float] = {}
    marker = _read_json(root / "steps" / f"{step}.json")
    if isinstance(marker, Mapping) and _number(marker.get("seconds")) is not None:
        metrics["seconds"] = float(marker["seconds"])
    for key, value in outputs.items():
        number = _number(value)
        if number is not None:
            metrics[key] = number
            continue
        if not isinstance(value, str):
            continue
        path = root / value
        if path.is_file() and path.suffix == ".json":
            data = _read_json(path)
            if isinstance(data, Mapping) and "metrics" in data and "primary" in data:  # EvalResult
                metrics.update(flatten_numbers(data["metrics"]))
                if _number(data.get("n")) is not None:
                    metrics["n"] = float(data["n"])
                primary = data["metrics"].get(data["primary"])
                if _number(primary) is not None:
                    metrics["score"] = float(primary)
            else:
                metrics.update(flatten_numbers(data))
        elif path.is_dir():
            for done in sorted(path.rglob("training/done.json"))[:8]:
                stage = done.parent.parent.name
                prefix = "train" if done.parent.parent == path else f"train.{stage}"
                metrics.update(flatten_numbers(_read_json(done), prefix))
    return metrics


def training_curve(run_dir: str | Path, outputs: Mapping[str, Any]) -> Iterator[tuple[int, dict[str, float]]]:
    """``(training step, {loss, lr...})`` rows of the trainer's ``training/log.jsonl`` files
    under the folders a step's outputs name (stages one after the other)."""
    root = Path(run_dir)
    offset = 0
    for value in outputs.values():
        if not isinstance(value, str) or not (root / value).is_dir():
            continue
        for log in sorted((root / value).rglob("training/log.jsonl"))[:8]:
            last = 0
            try:
                lines = log.read_text(encoding="utf-8").splitlines()
            except OSError:
                continue
            for line in lines:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                step = row.get("step")
                if not isinstance(step, int):
                    continue
                numbers = {k: v for k, v in flatten_numbers(row).items() if k != "step"}
                last = max(last, step)
                yield offset + step, numbers
            offset += last


def round_metrics(results: Mapping[str, Any]) -> dict[str, float]:
    """``{bench/score: primary score, bench/metric: value}`` of a round's results (no key is
    also a prefix of another: MLflow's file store keeps each metric in a file of that path)."""
    out: dict[str, float] = {}
    for bench, result in results.items():
        if not isinstance(result, Mapping):
            continue
        metrics = result.get("metrics") or {}
        for name, value in flatten_numbers(metrics).items():
            out[f"{bench}/{name}"] = value
        primary = metrics.get(result.get("primary")) if isinstance(metrics, Mapping) else None
        if _number(primary) is not None:
            out[f"{bench}/score"] = float(primary)
    return out


def final_table(report: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The run's table (one row per trained model) as columns and rows, as in ``report.md``."""
    benchmarks = [str(b) for b in report.get("benchmarks", [])]
    columns = ["model", "kind", "caption_words", *benchmarks, "hallucination"]
    rows: list[list[Any]] = []
    for row in report.get("rows", []):
        words = row.get("caption_words") or {}
        halluc = row.get("hallucination") or {}
        scores = row.get("scores") or {}
        rows.append([
            row.get("name"), row.get("kind"), words.get("value"),
            *[(scores.get(b) or {}).get("score") for b in benchmarks], halluc.get("value"),
        ])
    return columns, rows


def final_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """``final/<model>/<benchmark>`` for every cell of the table that holds a number."""
    columns, rows = final_table(report)
    out: dict[str, float] = {}
    for row in rows:
        for column, value in zip(columns[2:], row[2:], strict=True):
            if _number(value) is not None:
                out[clean_key(f"final/{row[0]}/{column}")] = float(value)
    return out


def markdown(columns: list[str], rows: list[list[Any]]) -> str:
    """The table as Markdown."""
    def cell(value: Any) -> str:
        return "–" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
