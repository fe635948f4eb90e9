"""What the reliability tests share: a quick recipe, and `vila2` in a subprocess with faults."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from vila2.testing import quick_recipe  # noqa: F401  (the reliability tests take it from here)

FAULTS = Path(__file__).with_name("faults.py")


def write_recipe(folder: Path, recipe: dict[str, Any], name: str = "recipe.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / name
    file.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return file


def vila2(args: Sequence[str], cwd: Path, *, fault: str | None = None, max_file_bytes: int | None = None,
          inject: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``python -m vila2 ARGS`` in the folder ``cwd``, with the fault injector unless
    ``inject`` is false (it imports torch, which commands such as ``ingest`` never need).

    ``fault`` is a ``VILA2_FAULT`` spec (see ``faults.py``). ``max_file_bytes`` caps the size of
    any file the process writes (``RLIMIT_FSIZE``) with SIGXFSZ ignored, so a write past it
    fails with EFBIG, as on a full disk.
    """
    env = {**os.environ, "VILA2_FAULT": fault or ""}

    def limit() -> None:
        if max_file_bytes is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    return subprocess.run(
        [sys.executable, "-m", "vila2", *args, *(["--plugin", str(FAULTS)] if inject else [])],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, preexec_fn=limit,
    )
