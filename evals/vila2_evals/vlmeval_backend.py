"""The VLMEvalKit back end: MMMU and image MCQ sets from local TSV files, scored by exact matching.

VLMEvalKit runs in a child process (:mod:`vila2_evals.vlmeval_worker`), because importing it turns
off TLS certificate checks for the whole process. Local data is staged in a data root
(``$LMUData``) inside the run's folder; a dataset VLMEvalKit downloads goes to the user's
``$LMUData`` when that is set (else to the run's folder).

* ``mmmu``: a local Parquet file in MMMU's schema (``data``, or the world's) is written as a
  VLMEvalKit MMMU TSV and run through VLMEvalKit's MMMU class (``<image k>`` interleaving, open
  questions scored as VLMEvalKit does); a ``.tsv`` ``data`` is used as it is; with neither,
  VLMEvalKit's ``MMMU_DEV_VAL`` (downloaded by VLMEvalKit).
* any other name: a VLMEvalKit dataset; ``data`` is its TSV (VLMEvalKit's columns: ``index``,
  ``question``, ``A``, ``B``.., ``answer``, ``image``...), else VLMEvalKit downloads it.

Settings: ``max_new_tokens`` (32), ``device``, ``dtype``; ``vlmeval_model`` runs another model
instead of vila2's adapter: a VLMEvalKit model name (``supported_VLM``) or ``module:Class`` (a
``BaseModel`` subclass built with the ``model`` argument).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vila2 import EvalResult
from vila2_evals import mmmu
from vila2_evals.results import accuracy_result

LOCAL_MMMU = "MMMU_vila2"  # has "MMMU" in it: VLMEvalKit's MMMU scoring keys on the name
OFFICIAL_MMMU = "MMMU_DEV_VAL"
LMU_DATA = "LMUData"  # VLMEvalKit's data root variable, spelt as VLMEvalKit reads it
INSTALL_HINT = "pip install 'vila2-evals[vlmeval]'"


def _stage(benchmark: str, data: str | None, settings: Mapping[str, Any], root: Path) -> tuple[str, bool]:
    """Put the benchmark's TSV under ``root`` (``$LMUData``); return ``(dataset name, mmmu_local)``."""
    if benchmark == "mmmu":
        local = data or (str(mmmu.world_file(settings)) if settings.get("world") else None)
        if local is None:
            return OFFICIAL_MMMU, False
        if local.endswith(".tsv"):
            shutil.copyfile(local, root / f"{LOCAL_MMMU}.tsv")
        else:
            from vila2_evals.vlmeval_tsv import write_mmmu_tsv

            write_mmmu_tsv(mmmu.read(local), root / f"{LOCAL_MMMU}.tsv")
        return LOCAL_MMMU, True
    if data:
        source = Path(data)
        if not source.is_file():
            raise FileNotFoundError(f"VLMEvalKit TSV {data} does not exist")
        with source.open(encoding="utf-8") as f:
            header = f.readline().replace('"', "").strip().split("\t")
        missing = [c for c in ("index", "question", "answer") if c not in header]
        if missing:
            raise ValueError(f"{data}: not a VLMEvalKit TSV, missing column(s) {', '.join(missing)}")
        shutil.copyfile(source, root / f"{benchmark}.tsv")
    return benchmark, False


def run(model: str, benchmark: str, *, data: str | None = None, limit: int | None = None,
        out_dir: str | None = None, settings: Mapping[str, Any] | None = None) -> EvalResult:
    """Score ``model`` on ``benchmark`` with VLMEvalKit in a child process."""
    if importlib.util.find_spec("vlmeval") is None:
        raise RuntimeError(f"VLMEvalKit is not installed; {INSTALL_HINT}")
    settings = dict(settings or {})
    with tempfile.TemporaryDirectory(prefix="vila2-vlmeval-") as scratch:
        work = Path(out_dir) / "vlmeval" if out_dir else Path(scratch)
        local = data or (benchmark == "mmmu" and settings.get("world"))
        # VLMEvalKit's own downloads go to the user's $LMUData when set (they are large); local
        # files are staged in the run's folder
        shared, staged = os.environ.get(LMU_DATA), work / "LMUData"
        root = Path(shared) if shared and not local else staged
        # VLMEvalKit reuses any predictions, scores and decoded images it finds: start clean
        for stale in (work / "run", staged):
            shutil.rmtree(stale, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
        name, mmmu_local = _stage(benchmark, data, settings, root)
        job = {
            "model": str(Path(model).resolve()) if Path(model).exists() else model,
            "dataset": name, "mmmu_local": mmmu_local, "work_dir": str(work / "run"), "limit": limit,
            "max_new_tokens": int(settings.get("max_new_tokens", 32)),
            "device": settings.get("device"), "dtype": settings.get("dtype"),
            "vlmeval_model": settings.get("vlmeval_model"),
            "out": str(work / "records.json"),
        }
        Path(job["work_dir"]).mkdir(parents=True, exist_ok=True)
        (work / "job.json").write_text(json.dumps(job))
        env = {**os.environ, LMU_DATA: str(root)}
        proc = subprocess.run([sys.executable, "-m", "vila2_evals.vlmeval_worker", str(work / "job.json")],
                              env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-25:])
            raise RuntimeError(f"VLMEvalKit failed on {name!r} (exit {proc.returncode}):\n{tail}")
        out = json.loads(Path(job["out"]).read_text())
    return accuracy_result(benchmark, out["records"], backend="vlmeval", out_dir=out_dir,
                           details={"vlmeval_dataset": name, "vlmeval_table": out["table"]})
