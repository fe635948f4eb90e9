"""One tracked ``vila2 run``: opened on its first event, closed at its end (or at exit)."""

from __future__ import annotations

import atexit
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vila2_tracking import metrics as m
from vila2_tracking.backends import BACKENDS, Guarded, chosen


class TrackedRun:
    """The trackers of one run folder; every call is guarded (see :class:`Guarded`)."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir).resolve()
        self.recipe = _read_recipe(self.run_dir)
        self.name = str(self.recipe.get("name") or self.run_dir.name)
        self.trackers = [Guarded(BACKENDS[name]()) for name in chosen()]
        self.steps = 0
        self.open = True
        params = m.flatten_params(self.recipe)
        for tracker in self.trackers:
            tracker.call("starting the run", tracker.backend.start, self.run_dir, self.name,
                         self.recipe, params)

    def _each(self, what: str, method: str, *args: Any, **kwargs: Any) -> None:
        for tracker in self.trackers:
            fn = getattr(tracker.backend, method, None)
            if fn is not None:
                tracker.call(what, fn, *args, **kwargs)

    def step_ended(self, step: str, outputs: Mapping[str, Any]) -> None:
        """A finished step: its duration and numbers under ``<step>/``, and a training step's
        loss curve (W&B against its own step axis, MLflow as a metric history)."""
        self.steps += 1
        numbers = m.step_metrics(self.run_dir, step, outputs)
        logged = {m.clean_key(f"{step}/{k}"): v for k, v in numbers.items()}
        logged["steps_finished"] = float(self.steps)
        self._each(f"logging step {step!r}", "log_metrics", logged, step=self.steps)
        curve = list(m.training_curve(self.run_dir, outputs))
        if curve:
            prefix = m.clean_key(step)
            for tracker in self.trackers:
                backend = tracker.backend
                if hasattr(backend, "log_curve"):
                    tracker.call(f"logging the curve of {step!r}", backend.log_curve, prefix,
                                 "train_step", curve)
                else:
                    for x, values in curve:
                        tracker.call(f"logging the curve of {step!r}", backend.log_metrics,
                                     {m.clean_key(f"{prefix}/{k}"): v for k, v in values.items()}, step=x)

    def round_ended(self, index: int, model: str, results: Mapping[str, Any]) -> None:
        """A round's scores, ``round/<bench>/score`` and ``round/<bench>/<metric>``, at step = round."""
        scores = {m.clean_key(f"round/{k}"): v for k, v in m.round_metrics(results).items()}
        self._each(f"logging round {index}", "log_metrics", {"round/index": float(index), **scores},
                   step=index)

    def run_ended(self, report: Mapping[str, Any]) -> None:
        """The final table, its numbers, ``report.md``, ``results.json`` and the plots; then close."""
        columns, rows = m.final_table(report)
        self._each("logging the final table", "log_table", "final_table", columns, rows,
                   m.markdown(columns, rows))
        self._each("logging the final scores", "log_metrics", m.final_metrics(report), step=self.steps)
        files = [(self.run_dir / name, "") for name in ("report.md", "results.json", "report.html")
                 if (self.run_dir / name).is_file()]
        files += [(p, "plots") for p in sorted((self.run_dir / "plots").glob("*.png"))]
        self._each("logging report.md, results.json and the plots", "log_files", files)
        self.close(ok=not report.get("errors"))

    def close(self, ok: bool) -> None:
        if self.open:
            self.open = False
            self._each("closing the run", "finish", ok)


def _read_recipe(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((run_dir / "recipe.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


_RUNS: dict[Path, TrackedRun] = {}


def tracked(run_dir: str | os.PathLike[str]) -> TrackedRun | None:
    """The tracked run of ``run_dir`` (opened on first use); ``None`` on ranks other than 0 or
    when no tracker is chosen."""
    if os.environ.get("RANK", "0") not in ("", "0"):
        return None
    key = Path(run_dir).resolve()
    run = _RUNS.get(key)
    if run is None or not run.open:
        if not chosen():
            return None
        if not _RUNS:
            atexit.register(_close_all)
        run = _RUNS[key] = TrackedRun(key)
    return run


def finished(run_dir: str | os.PathLike[str]) -> None:
    """Forget a closed run (a later ``vila2 run`` in this process opens a new one)."""
    _RUNS.pop(Path(run_dir).resolve(), None)


def _close_all() -> None:
    # a run that never reached on_run_end (an error, Ctrl-C) is closed as failed
    for run in list(_RUNS.values()):
        for tracker in run.trackers:
            tracker.report = lambda line: None  # at exit, say nothing more
        run.close(ok=False)
    _RUNS.clear()
