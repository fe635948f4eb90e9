"""The two trackers, behind one small interface: MLflow (``MlflowClient``) and Weights & Biases.

Each backend opens one run when a ``vila2 run`` logs its first event and closes it at the end.
A backend never raises into the pipeline: :class:`Guarded` turns its first failure into one
line on stderr, naming the tracker and what it was doing, and turns the tracker off for the rest
of that run.
"""

from __future__ import annotations

import netrc
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

#: MLflow experiment, W&B project, unless MLFLOW_EXPERIMENT_NAME / WANDB_PROJECT say otherwise
DEFAULT_PROJECT = "vila2"
_PARAM_LIMIT = 6000  # MLflow's limit on a parameter value (characters)


class Backend(Protocol):
    """What the hooks call; every method may raise (the caller guards it)."""

    name: str

    def start(self, run_dir: Path, run_name: str, recipe: Mapping[str, Any], params: Mapping[str, str]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...

    def log_table(self, key: str, columns: list[str], rows: list[list[Any]], markdown: str) -> None: ...

    def log_files(self, files: Iterable[tuple[Path, str]]) -> None: ...

    def finish(self, ok: bool) -> None: ...


class Guarded:
    """A backend whose first failure is reported once and switches it off."""

    def __init__(self, backend: Backend, report: Callable[[str], None] | None = None) -> None:
        self.backend = backend
        self.failed: str | None = None
        self.report = report or (lambda line: print(line, file=sys.stderr, flush=True))

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        if self.failed is not None:
            return
        try:
            fn(*args, **kwargs)
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            message = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            self.failed = message
            self.report(f"vila2-tracking: {self.backend.name} failed while {what} ({message}); "
                        f"{self.backend.name} logging is off for the rest of this run — the run goes on")


# ---------------------------------------------------------------- MLflow
def mlflow_uri(run_dir: Path) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else a file store in the run folder (``RUN/mlruns``)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or (run_dir / "mlruns").resolve().as_uri()


class MlflowBackend:
    """Logs through ``mlflow.tracking.MlflowClient`` (no global active run is touched)."""

    name = "MLflow"

    def __init__(self) -> None:
        self.client: Any = None
        self.run_id: str | None = None
        self.uri: str | None = None

    def start(self, run_dir: Path, run_name: str, recipe: Mapping[str, Any], params: Mapping[str, str]) -> None:
        self.uri = mlflow_uri(run_dir)
        if self.uri.startswith("file:") or "://" not in self.uri:
            # MLflow 3 keeps its file store in maintenance mode and refuses it unless asked
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=self.uri)
        experiment_name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_PROJECT
        experiment = self.client.get_experiment_by_name(experiment_name)
        experiment_id = (experiment.experiment_id if experiment is not None
                         else self.client.create_experiment(experiment_name))
        run = self.client.create_run(experiment_id, run_name=run_name,
                                     tags={"vila2.run_dir": str(run_dir), "vila2.recipe": run_name})
        self.run_id = run.info.run_id
        items = [Param(k[:250], str(v)[:_PARAM_LIMIT]) for k, v in sorted(params.items())]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start:start + 100])
        recipe_file = run_dir / "recipe.json"
        if recipe_file.is_file():
            self.client.log_artifact(self.run_id, str(recipe_file))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        for start in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[start:start + 1000])

    def log_table(self, key: str, columns: list[str], rows: list[list[Any]], markdown: str) -> None:
        self.client.log_dict(self.run_id, {"columns": columns, "data": rows}, f"{key}.json")
        self.client.log_text(self.run_id, markdown, f"{key}.md")

    def log_files(self, files: Iterable[tuple[Path, str]]) -> None:
        for path, folder in files:
            self.client.log_artifact(self.run_id, str(path), folder or None)

    def finish(self, ok: bool) -> None:
        if self.client is not None and self.run_id is not None:
            self.client.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")
            self.run_id = None


# ---------------------------------------------------------------- Weights & Biases
def wandb_mode() -> str:
    """``WANDB_MODE`` when set; else online with credentials (``WANDB_API_KEY`` or a
    ``wandb login`` in ~/.netrc), offline without (nothing is asked for, nothing hangs)."""
    mode = os.environ.get("WANDB_MODE")
    if mode:
        return mode
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    host = (os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").split("://")[-1].split("/")[0]
    try:
        if netrc.netrc().authenticators(host):
            return "online"
    except (OSError, netrc.NetrcParseError):
        pass
    return "offline"


class UnwritableFolder(OSError):
    """The folder a tracker was told to write to cannot be written."""


def check_writable(folder: Path) -> None:
    """Create ``folder`` if needed and write (then remove) a file in it; raise
    :class:`UnwritableFolder` naming the folder when that fails.

    A real write rather than ``os.access``: permission bits do not stop root, and a path under a
    regular file, a read-only mount or a full disk only show when something is written.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".vila2-tracking-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UnwritableFolder(f"cannot write to {folder}: {reason}") from None


class WandbBackend:
    """Logs through ``wandb.init`` / ``run.log``; the run's files go to ``WANDB_DIR`` or the
    run folder (``RUN/wandb``)."""

    name = "W&B"

    def __init__(self) -> None:
        self.run: Any = None
        self.run_dir: Path | None = None
        self._prefixes: set[str] = set()

    def start(self, run_dir: Path, run_name: str, recipe: Mapping[str, Any], params: Mapping[str, str]) -> None:
        import wandb

        self.run_dir = run_dir
        folder = os.environ.get("WANDB_DIR") or str(run_dir)
        # wandb.init, given a folder it cannot write, quietly writes to a temporary one instead
        # (lost when the machine cleans it): check first, so that the failure is named (once, by
        # Guarded) and W&B is switched off for this run, as a failing MLflow store is
        check_writable(Path(folder) / "wandb")
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT, name=run_name,
            config=dict(recipe), dir=folder, mode=wandb_mode(),  # type: ignore[arg-type]
            job_type="vila2-run", tags=["vila2"], reinit="create_new",
            settings=wandb.Settings(console="off", silent=True),
        )
        self.run.define_metric("round/index")
        self.run.define_metric("round/*", step_metric="round/index")

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.run.log(dict(metrics))

    def log_curve(self, prefix: str, axis: str, rows: Iterable[tuple[int, Mapping[str, float]]]) -> None:
        """A curve against its own x axis (``prefix/axis``), e.g. a training loss by step."""
        if prefix not in self._prefixes:
            self.run.define_metric(f"{prefix}/{axis}")
            self.run.define_metric(f"{prefix}/*", step_metric=f"{prefix}/{axis}")
            self._prefixes.add(prefix)
        for x, values in rows:
            self.run.log({f"{prefix}/{axis}": x, **{f"{prefix}/{k}": v for k, v in values.items()}})

    def log_table(self, key: str, columns: list[str], rows: list[list[Any]], markdown: str) -> None:
        import wandb

        self.run.log({key: wandb.Table(columns=columns, data=rows)})

    def log_files(self, files: Iterable[tuple[Path, str]]) -> None:
        import wandb

        images: dict[str, Any] = {}
        for path, folder in files:
            if path.suffix.lower() == ".png":
                images[f"{folder or 'files'}/{path.stem}"] = wandb.Image(str(path))
            else:
                # the run's files folder is uploaded when it syncs (offline: by `wandb sync`)
                target = Path(self.run.dir) / folder / path.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
        if images:
            self.run.log(images)

    def finish(self, ok: bool) -> None:
        if self.run is not None:
            run, self.run = self.run, None
            run.finish(exit_code=0 if ok else 1)


BACKENDS: dict[str, Callable[[], Backend]] = {"mlflow": MlflowBackend, "wandb": WandbBackend}


def chosen() -> list[str]:
    """The trackers ``VILA2_TRACKING`` names (default: ``mlflow,wandb``; ``none`` for none)."""
    value = os.environ.get("VILA2_TRACKING")
    if value is None:
        return list(BACKENDS)
    names = [part.strip().lower() for part in value.split(",") if part.strip()]
    unknown = [n for n in names if n not in BACKENDS and n != "none"]
    if unknown:
        print(f"vila2-tracking: VILA2_TRACKING names unknown tracker(s) {', '.join(unknown)}; "
              f"known: {', '.join(BACKENDS)}", file=sys.stderr)
    return [n for n in names if n in BACKENDS]
