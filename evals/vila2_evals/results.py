"""From per-sample records to a :class:`vila2.EvalResult`: overall and per-subject accuracy.

Every back end ends here, so ``vila2 eval`` prints the same table whichever one scored the model.
A record is a dict with at least ``correct`` (bool) and ``subject`` (str).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vila2 import EvalResult


def accuracy_metrics(records: Sequence[Mapping[str, Any]]) -> tuple[dict[str, float], dict[str, int]]:
    """``({"accuracy": ..., "accuracy/<subject>": ...}, {subject: n})``."""
    if not records:
        raise ValueError("no samples were scored")
    by_subject: dict[str, list[bool]] = defaultdict(list)
    for record in records:
        by_subject[str(record["subject"])].append(bool(record["correct"]))
    metrics = {"accuracy": sum(bool(r["correct"]) for r in records) / len(records)}
    for name in sorted(by_subject):
        hits = by_subject[name]
        metrics[f"accuracy/{name}"] = sum(hits) / len(hits)
    return metrics, {name: len(hits) for name, hits in sorted(by_subject.items())}


def write_samples(records: Sequence[Mapping[str, Any]], out_dir: str | Path | None, name: str) -> str | None:
    """Write one JSON line per sample to ``out_dir/name.samples.jsonl``; return the path."""
    if out_dir is None:
        return None
    path = Path(out_dir) / f"{name}.samples.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    tmp.replace(path)
    return str(path)


def accuracy_result(
    benchmark: str,
    records: Sequence[Mapping[str, Any]],
    *,
    backend: str,
    out_dir: str | Path | None,
    details: Mapping[str, Any] | None = None,
) -> EvalResult:
    """The :class:`EvalResult` of a run whose samples are ``records`` (logged to ``out_dir``)."""
    metrics, sizes = accuracy_metrics(records)
    return EvalResult(
        benchmark=benchmark,
        metrics=metrics,
        primary="accuracy",
        n=len(records),
        backend=backend,
        samples_path=write_samples(records, out_dir, f"{benchmark}.{backend}"),
        details={"subjects": sizes, **(details or {})},
    )
