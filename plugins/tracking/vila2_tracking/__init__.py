"""vila2-tracking: every ``vila2 run`` logged to MLflow and Weights & Biases.

Installed, it implements three observer hooks, and nothing else:

* ``on_step_end``: each finished step's numbers (duration, eval metrics, caption statistics,
  training summary) under ``<step>/...``, and a training step's loss curve;
* ``on_round_end``: each round's scores, ``round/<benchmark>/score`` (and every metric), by round;
* ``on_run_end``: the final table, its numbers (``final/<model>/<benchmark>``), ``report.md``,
  ``results.json`` and the plots; then the run is closed.

One tracker run per ``vila2 run``, named after the recipe, with the recipe as parameters.
MLflow logs to ``MLFLOW_TRACKING_URI``, else to a file store in the run folder (``RUN/mlruns``);
W&B follows ``WANDB_MODE`` (offline when no credentials are found) and writes under
``WANDB_DIR`` or the run folder. ``VILA2_TRACKING=mlflow`` (or ``wandb``, or ``none``) chooses.
A tracker that fails is named once on stderr and switched off; the run goes on.
"""

from __future__ import annotations

from typing import Any

import vila2

__version__ = "0.1.0"


def _guard(fn: Any) -> None:
    # the last line of defence: an observer never breaks the run it observes
    try:
        fn()
    except Exception as exc:  # pragma: no cover - every backend call is guarded already
        import sys

        print(f"vila2-tracking: {type(exc).__name__}: {exc} — the run goes on", file=sys.stderr)


@vila2.hookimpl
def on_step_end(step: str, run_dir: str, outputs: dict[str, Any]) -> None:
    """Log a finished step's numbers."""
    from vila2_tracking.tracker import tracked

    def go() -> None:
        run = tracked(run_dir)
        if run is not None:
            run.step_ended(step, outputs)

    _guard(go)


@vila2.hookimpl
def on_round_end(round: int, model: str, results: dict[str, Any], run_dir: str) -> None:
    """Log a round's scores."""
    from vila2_tracking.tracker import tracked

    def go() -> None:
        run = tracked(run_dir)
        if run is not None:
            run.round_ended(round, model, results)

    _guard(go)


@vila2.hookimpl
def on_run_end(run_dir: str, report: dict[str, Any]) -> None:
    """Log the final table, report.md, results.json and the plots; close the run."""
    from vila2_tracking.tracker import finished, tracked

    def go() -> None:
        run = tracked(run_dir)
        if run is not None:
            run.run_ended(report)
            finished(run_dir)

    _guard(go)
