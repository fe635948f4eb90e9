"""The VLMEvalKit child process: ``python -m vila2_evals.vlmeval_worker JOB.json``.

``JOB.json`` (written by :mod:`vila2_evals.vlmeval_backend`) holds ``model``, ``dataset`` (a
VLMEvalKit dataset name whose TSV is in ``$LMUData``), ``mmmu_local`` (true for a local MMMU TSV:
VLMEvalKit's MMMU class, without its download check), ``work_dir``, ``limit``, ``max_new_tokens``,
``device``, ``dtype``, ``vlmeval_model`` (null for vila2's adapter) and ``out``. VLMEvalKit generates, then scores with ``exact_matching`` (no
judge model); ``out`` receives ``{"records": [...], "table": [...]}``: one record per sample
(``index``, ``id``, ``subject``, ``question_type``, ``response``, ``answer``, ``correct``, ``log``)
and VLMEvalKit's own accuracy table.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

MODEL_NAME = "vila2"


def _text(value: Any) -> str:
    """A cell as text: VLMEvalKit's xlsx round trip turns an empty answer into NaN."""
    return "" if value is None or value != value else str(value)


def _records(frame: Any) -> list[dict[str, Any]]:
    records = []
    for row in frame.to_dict("records"):
        records.append({
            "index": int(row["index"]),
            "id": str(row.get("id", row["index"])),
            "subject": str(row.get("category", "all")),
            "question_type": str(row.get("question_type", "multiple-choice")),
            "response": _text(row["prediction"]),
            "answer": _text(row["answer"]),
            "correct": bool(row["hit"]),
            "log": _text(row.get("log")),
        })
    return records


def build_model(job: dict[str, Any]) -> Any:
    """The model to run: vila2's adapter, a VLMEvalKit model by name, or ``module:Class``."""
    spec = job.get("vlmeval_model")
    if spec is None:
        from vila2_evals.vlmeval_model import Vila2VLM

        return Vila2VLM(job["model"], max_new_tokens=job["max_new_tokens"], device=job["device"],
                        dtype=job["dtype"])
    if ":" in spec:
        module, name = spec.split(":", 1)
        return getattr(importlib.import_module(module), name)(job["model"])
    from vlmeval.config import supported_VLM

    if spec not in supported_VLM:
        raise SystemExit(f"VLMEvalKit has no model named {spec!r}")
    return supported_VLM[spec]()


def main(job_file: str) -> None:
    from vlmeval.dataset import build_dataset
    from vlmeval.dataset.image_mcq import MMMUDataset
    from vlmeval.inference import infer_data_job
    from vlmeval.smp import get_intermediate_file_path, get_pred_file_path, load

    job = json.loads(Path(job_file).read_text())
    name = job["dataset"]
    dataset = MMMUDataset(dataset=name) if job["mmmu_local"] else build_dataset(name)
    if dataset is None:
        raise SystemExit(f"VLMEvalKit cannot build dataset {name!r} (is {name}.tsv in $LMUData?)")
    model = build_model(job)
    work_dir = job["work_dir"]
    infer_data_job(model, work_dir=work_dir, model_name=MODEL_NAME, dataset=dataset, limit=job["limit"])
    predictions = get_pred_file_path(work_dir, MODEL_NAME, name)
    table = dataset.evaluate(predictions, model="exact_matching", nproc=1)
    scored = load(get_intermediate_file_path(predictions, "_exact_matching_result"))
    out = {"records": _records(scored), "table": json.loads(table.to_json(orient="records"))}
    Path(job["out"]).write_text(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
