"""The run folder: one sub-folder and one completion marker per step, so a rerun resumes.

A step is a name (``round1.caption``), the inputs it depends on (the recipe parts it reads plus
the fingerprints of the steps whose outputs it uses) and a function that writes into the step's
folder and returns its outputs as JSON. The marker ``steps/<name>.json`` is written (temp +
rename) only after the function returns, so a step killed half-way has no marker and runs again.

On a rerun, a step whose marker holds the same fingerprint is skipped and its recorded outputs are
returned. A marker with another fingerprint means the recipe changed under an existing run: that
is refused with :class:`StepChanged`, naming the key that changed, unless the run was opened with
``rerun_changed=True``. Because a step's inputs include its upstream fingerprints, a change
reruns everything downstream of it and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from vila2.errors import StepChanged

#: a step name: words of letters, digits, '_' or '-', joined by '.' (each word a folder)
_STEP = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")



def fingerprint(inputs: Mapping[str, Any]) -> str:
    """A stable hash of JSON-able inputs (key order does not matter)."""
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically: a reader sees the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [k for k in keys if old.get(k) != new.get(k)]


class RunFolder:
    """Steps, markers and resume for one run folder.

    ``log`` receives one line per step; ``on_step_end(step, outputs)`` is called after each step
    that actually ran (not for steps skipped as already done).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        rerun_changed: bool = False,
        log: Callable[[str], None] = print,
        on_step_end: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        self.rerun_changed = rerun_changed
        self.log = log
        self.on_step_end = on_step_end
        self.fingerprints: dict[str, str] = {}
        self.ran: list[str] = []
        self.root.mkdir(parents=True, exist_ok=True)

    def dir(self, step: str) -> Path:
        """The folder a step writes into: ``round1.caption`` -> ``ROOT/round1/caption``."""
        if not _STEP.fullmatch(step):
            # step names come from recipes and plugins (benchmark names...): never a path
            raise ValueError(f"bad step name {step!r}: letters, digits, '_' and '-', joined by '.'")
        return self.root.joinpath(*step.split("."))

    def marker(self, step: str) -> Path:
        return self.root / "steps" / f"{step}.json"

    def record(self, step: str) -> dict[str, Any] | None:
        """The marker of a finished step, or ``None``."""
        file = self.marker(step)
        if not file.is_file():
            return None
        try:
            return json.loads(file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None  # markers are written by rename, so this is a foreign file: redo the step

    def _finished_records(self) -> list[dict[str, Any]]:
        """The markers of the finished steps, oldest first."""
        folder = self.root / "steps"
        if not folder.is_dir():
            return []
        records = [r for f in folder.glob("*.json") if (r := self.record(f.stem)) is not None]
        return sorted(records, key=lambda r: r.get("finished", 0))

    def finished(self) -> list[str]:
        """Names of the steps with a marker, oldest first."""
        return [r["step"] for r in self._finished_records()]

    def recall_finished(self) -> list[str]:
        """Hold the fingerprints of the finished steps, read from their markers, as the run that
        finished them held them; a tool that adds steps to a finished run (a benchmark's
        ablation) names them as inputs without running the loop again. Returns the steps."""
        records = self._finished_records()
        self.fingerprints.update({r["step"]: r["fingerprint"] for r in records})
        return [r["step"] for r in records]

    def run(
        self,
        step: str,
        inputs: Mapping[str, Any],
        fn: Callable[[Path], dict[str, Any]],
        *,
        resumable: bool = False,
        cleanup: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        """Run ``fn(step_dir) -> outputs`` unless the step already finished with these inputs.

        ``resumable`` steps keep what a killed attempt left in their folder (they resume from
        it); other steps start from an empty folder. ``cleanup`` removes what the step wrote
        outside its folder (e.g. a caption layer in a dataset) before a changed step reruns.
        """
        out = self.dir(step)
        inputs = json.loads(json.dumps(dict(inputs), sort_keys=True, default=str))
        digest = fingerprint(inputs)
        self.fingerprints[step] = digest
        done = self.record(step)
        if done is not None and done.get("fingerprint") == digest:
            self.log(f"  done   {step}")
            return done["outputs"]
        if done is not None:
            changed = _changes(done.get("inputs", {}), inputs)
            if not self.rerun_changed:
                raise StepChanged(
                    f"{self.root} holds a run made with a different recipe: step {step!r} depends on "
                    f"{', '.join(changed) or 'inputs'} which changed. Rerun with --rerun-changed to "
                    "redo the affected steps, or use another --out folder."
                )
            self.log(f"  rerun  {step} ({', '.join(changed)} changed)")
            self.marker(step).unlink()
            if cleanup is not None:
                cleanup()
            shutil.rmtree(out, ignore_errors=True)
        elif out.exists() and not resumable:
            shutil.rmtree(out)  # a killed attempt: this step cannot resume, so it starts over
        out.mkdir(parents=True, exist_ok=True)
        self.log(f"  start  {step}")
        started = time.time()
        try:
            outputs = fn(out)
        except BaseException as exc:
            self.log(f"  failed {step}: {type(exc).__name__}: {exc}".splitlines()[0])
            raise
        seconds = round(time.time() - started, 2)
        write_json(self.marker(step), {
            "step": step, "fingerprint": digest, "inputs": inputs, "outputs": outputs,
            "seconds": seconds, "finished": time.time(),
        })
        self.ran.append(step)
        self.log(f"  ok     {step} ({seconds:.1f} s)")
        if self.on_step_end is not None:
            self.on_step_end(step, outputs)
        return outputs


__all__ = ["RunFolder", "StepChanged", "fingerprint", "write_json"]
