"""A fault injector, loaded as a one-file plugin (``vila2 run ... --plugin faults.py``).

``VILA2_FAULT=STEP:POINT:N`` kills the process with SIGKILL at the N-th POINT reached while
the pipeline step STEP runs (``*`` matches any step, or none: a plain ``vila2 train``):

* ``commit``: an atomic store write, with its temporary file cut to half (a half-written shard);
* ``backward``: a training backward pass (a kill in the middle of training);
* ``save``: a model saved with ``save_pretrained``, its ``model.safetensors`` cut to half (a
  truncated checkpoint);
* ``checkpoint``: a training checkpoint (``accelerator.save_state``), its weights cut to half
  and its completion record never written;
* ``generate``: a batched generation call (captioning or evaluation).

Kill points are counted, not timed, so every run of a test dies at the same place. Without
``VILA2_FAULT`` nothing changes, which lets the reference run load this plugin too.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import accelerate
import transformers

import vila2.models.generation
import vila2.pipeline.steps
from vila2.data import atomic

SPEC = os.environ.get("VILA2_FAULT", "")
_state: dict[str, Any] = {"step": None, "count": 0}


def _due(point: str) -> bool:
    """Whether this call to ``point`` is the one the fault names."""
    if not SPEC:
        return False
    step, where, n = SPEC.split(":")
    if where != point or step not in ("*", _state["step"]):
        return False
    _state["count"] += 1
    return _state["count"] == int(n)


def _cut_and_kill(file: Path) -> None:
    """What a kill in the middle of writing ``file`` leaves: its first half, then nothing."""
    os.truncate(file, file.stat().st_size // 2)
    os.kill(os.getpid(), signal.SIGKILL)


def _wrap(owner: Any, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    setattr(owner, name, make(getattr(owner, name)))


def _step_run(original: Callable[..., Any]) -> Callable[..., Any]:
    def run(self: Any, step: str, inputs: Any, fn: Callable[[Path], Any], **kwargs: Any) -> Any:
        def traced(out: Path) -> Any:
            _state["step"] = step
            try:
                return fn(out)
            finally:
                _state["step"] = None

        return original(self, step, inputs, traced, **kwargs)

    return run


def _commit(original: Callable[..., Any]) -> Callable[..., Any]:
    def commit(tmp: Path, path: Path) -> None:
        if _due("commit"):
            _cut_and_kill(Path(tmp))
        original(tmp, path)

    return commit


def _backward(original: Callable[..., Any]) -> Callable[..., Any]:
    def backward(self: Any, loss: Any, **kwargs: Any) -> Any:
        if _due("backward"):
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, loss, **kwargs)

    return backward


def _save_pretrained(original: Callable[..., Any]) -> Callable[..., Any]:
    def save_pretrained(self: Any, save_directory: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, save_directory, *args, **kwargs)
        weights = Path(save_directory) / "model.safetensors"
        if weights.is_file() and _due("save"):
            _cut_and_kill(weights)
        return result

    return save_pretrained


def _save_state(original: Callable[..., Any]) -> Callable[..., Any]:
    def save_state(self: Any, output_dir: Any = None, *args: Any, **kwargs: Any) -> Any:
        result = original(self, output_dir, *args, **kwargs)
        if _due("checkpoint"):
            _cut_and_kill(max(Path(output_dir).glob("*.safetensors"), key=lambda p: p.stat().st_size))
        return result

    return save_state


def _generate(original: Callable[..., Any]) -> Callable[..., Any]:
    def call(self: Any, images: Any, prompts: Any) -> Any:
        if _due("generate"):
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, images, prompts)

    return call


_wrap(vila2.pipeline.steps.RunFolder, "run", _step_run)
_wrap(atomic, "commit", _commit)
_wrap(accelerate.Accelerator, "backward", _backward)
_wrap(accelerate.Accelerator, "save_state", _save_state)
_wrap(transformers.PreTrainedModel, "save_pretrained", _save_pretrained)
_wrap(vila2.models.generation.Generator, "__call__", _generate)
