"""The lm-eval back end: ``lm_eval.simple_evaluate`` on a vila2 model folder.

* Model: lm-eval's own ``hf-multimodal`` when the folder is a stock Hugging Face checkpoint it can
  drive (a config with an image token and a processor with a chat template), otherwise vila2's
  ``vila2`` lm-eval model (:mod:`vila2_evals.lmeval_model`: PEFT adapters, anything
  ``vila2.models.checkpoint.load`` opens). ``settings["lm_eval_model"]`` picks any registered lm-eval model
  (``vllm-vlm``...), ``settings["model_args"]`` adds to its arguments.
* ``mmmu``: lm-eval's MMMU task (its ``_template_yaml``: prompt, images, generation settings and
  ``process_results``) pointed at a local Parquet file in MMMU's schema (``data``, or the world's);
  with neither, the official ``mmmu_val`` group, which reads ``MMMU/MMMU`` from the hub.
* Any other name is an lm-eval task or group, run as lm-eval defines it.

Settings: ``batch_size`` (1), ``device``, ``max_gen_toks`` (overrides the task's),
``apply_chat_template`` (on for lm-eval's models: vila2 models are chat models; the ``vila2``
model applies its own), ``lm_eval_model``, ``model_args``.
The result has overall and per-subject accuracy (MMMU) or the task's metrics, and per-sample logs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vila2 import EvalResult
from vila2_evals import mmmu
from vila2_evals.results import accuracy_result, write_samples

LOCAL_MMMU_TASK = "mmmu_local"
HUB_MMMU_GROUP = "mmmu_val"


def official_mmmu_config() -> dict[str, Any]:
    """lm-eval's MMMU task template, its ``!function`` entries bound to the official utils."""
    import yaml
    from lm_eval.tasks.mmmu import utils

    class Loader(yaml.SafeLoader):
        pass

    def function(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        module, name = str(loader.construct_scalar(node)).rsplit(".", 1)  # type: ignore[arg-type]
        if module != "utils":
            raise ValueError(f"lm-eval's MMMU template refers to {module}.{name}, expected utils.*")
        return getattr(utils, name)

    Loader.add_constructor("!function", function)
    template = Path(utils.__file__).with_name("_template_yaml")
    return yaml.load(template.read_text(), Loader=Loader)


def load_local_mmmu(data_file: str, **_metadata: Any) -> Any:
    """lm-eval ``custom_dataset``: a local MMMU Parquet file as a ``DatasetDict`` with a
    ``validation`` split (images as ``datasets.Image``, so docs hold PIL images as on the hub)."""
    import datasets

    docs = mmmu.read(data_file)
    features = datasets.Features({
        **{key: datasets.Value("string") for key in docs[0] if key not in mmmu.IMAGE_KEYS},
        **{key: datasets.Image() for key in mmmu.IMAGE_KEYS},
    })
    rows = [{k: (v if k in mmmu.IMAGE_KEYS or v is None else str(v)) for k, v in d.items()} for d in docs]
    return datasets.DatasetDict({"validation": datasets.Dataset.from_list(rows, features=features)})


def local_mmmu_task(path: str | Path) -> dict[str, Any]:
    """The task config that runs lm-eval's MMMU on a local Parquet file."""
    mmmu.read(path, limit=1)  # fail before lm-eval starts, with the file named
    config = official_mmmu_config()
    config.pop("dataset_path", None)
    config.update(task=LOCAL_MMMU_TASK, custom_dataset=load_local_mmmu,
                  dataset_kwargs={"data_file": str(path)})
    return config


def hf_multimodal_can_drive(model: str) -> bool:
    """True for a stock checkpoint folder that lm-eval's ``hf-multimodal`` drives unaided."""
    folder = Path(model)
    if not folder.is_dir():
        return True  # a hub id: hf-multimodal loads it as it is
    config_file = folder / "config.json"
    if not config_file.is_file():
        return False  # e.g. a PEFT adapter folder
    config = json.loads(config_file.read_text())
    has_image_token = any(k in config for k in ("image_token_id", "image_token_index"))
    has_template = any((folder / f).is_file() for f in ("chat_template.jinja", "chat_template.json"))
    return has_image_token and has_template


def _model_args(model: str, kind: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    args: dict[str, Any] = {"pretrained": model}
    if kind == "hf-multimodal":
        # lm-eval would otherwise pick float16 on CPU; keep the checkpoint's own dtype
        args["dtype"] = settings.get("dtype", "auto")
    elif kind == "vila2" and settings.get("dtype"):
        args["dtype"] = settings["dtype"]
    args.update(settings.get("model_args", {}))
    return args


def _records(samples: Mapping[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    records = []
    for task, rows in sorted(samples.items()):
        for row in rows:
            doc = row["doc"]
            record: dict[str, Any] = {"task": task, "doc_id": row["doc_id"]}
            if "id" in doc and "question_type" in doc:  # an MMMU doc
                record.update(id=doc["id"], subject=mmmu.subject(doc), question_type=doc["question_type"],
                              answer=doc["answer"], correct=bool(row.get("acc")))
            record["response"] = (row.get("filtered_resps") or [""])[0]
            record["prompt"] = row["arguments"][0][0]
            record.update({m: row[m] for m in row.get("metrics", []) if m in row})
            records.append(record)
    return records


def _task(benchmark: str, data: str | None, settings: Mapping[str, Any]) -> tuple[str | dict[str, Any], str | None]:
    """What lm-eval runs for ``benchmark``, and the local file it reads (if any)."""
    if benchmark != "mmmu":
        if data:
            raise ValueError(f"--data is only read for mmmu; lm-eval task {benchmark!r} brings its own data")
        return benchmark, None
    local = data or (str(mmmu.world_file(settings)) if settings.get("world") else None)
    if local:
        return local_mmmu_task(local), local
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise mmmu.MMMUDataError("MMMU from the hub (MMMU/MMMU) needs hub access, but HF_HUB_OFFLINE=1: "
                                 "pass --data PATH (a local Parquet file in MMMU's schema)")
    return HUB_MMMU_GROUP, None


def _task_manager(task: str | dict[str, Any]) -> Any:
    """A task index holding only what ``task`` needs: lm-eval's whole catalogue takes seconds to scan."""
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks.mmmu import utils

    if isinstance(task, dict):
        return TaskManager(include_defaults=False)
    if task == HUB_MMMU_GROUP:
        return TaskManager(include_defaults=False, include_path=str(Path(utils.__file__).parent))
    return TaskManager()


def run(model: str, benchmark: str, *, data: str | None = None, limit: int | None = None,
        out_dir: str | None = None, settings: Mapping[str, Any] | None = None) -> EvalResult:
    """Score ``model`` on ``benchmark`` with lm-eval (see the module docstring)."""
    import lm_eval
    import torch

    from vila2_evals import lmeval_model  # noqa: F401  (registers the "vila2" lm-eval model)

    settings = dict(settings or {})
    task, local = _task(benchmark, data, settings)
    kind = settings.get("lm_eval_model") or ("hf-multimodal" if hf_multimodal_can_drive(model) else "vila2")
    output = lm_eval.simple_evaluate(
        model=kind,
        model_args=_model_args(model, kind, settings),
        tasks=[task],
        task_manager=_task_manager(task),
        limit=limit,
        batch_size=int(settings.get("batch_size", 1)),
        device=settings.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"),
        # the vila2 model lays prompts out in its own chat template; the others get lm-eval's
        apply_chat_template=bool(settings.get("apply_chat_template", kind != "vila2")),
        gen_kwargs={"max_gen_toks": int(settings["max_gen_toks"])} if "max_gen_toks" in settings else None,
        log_samples=True,
        bootstrap_iters=0,
    )
    if output is None:  # a non-zero rank under a distributed launch
        raise RuntimeError("lm-eval returned no results on this process (rank > 0)")
    records = _records(output["samples"])
    details = {"lm_eval_model": kind, "tasks": sorted(output["results"]), "data": local}
    if benchmark == "mmmu":
        return accuracy_result(benchmark, records, backend="lm-eval", out_dir=out_dir, details=details)
    metrics = _task_metrics(output["results"], benchmark)
    return EvalResult(benchmark=benchmark, metrics=metrics, primary=next(iter(metrics)), n=len(records),
                      backend="lm-eval", samples_path=write_samples(records, out_dir, f"{benchmark}.lm-eval"),
                      details=details)


def _task_metrics(results: Mapping[str, Mapping[str, Any]], benchmark: str) -> dict[str, float]:
    """``{"<metric>,<filter>": value}`` of the named task or group, then ``task/<metric>`` of the rest."""
    metrics: dict[str, float] = {}
    names = [benchmark, *sorted(t for t in results if t != benchmark)]
    for name in names:
        for key, value in results.get(name, {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and "_stderr" not in key:
                metrics[key if name == benchmark else f"{name}/{key}"] = float(value)
    if not metrics:
        raise RuntimeError(f"lm-eval reported no numeric metric for {benchmark!r}")
    return metrics
