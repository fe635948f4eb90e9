"""The grounding specialist end to end on the tiny world: fine-tune, recaption (its answers
cleaned to canonical boxes, as the pipeline does), evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import vila2_grounding_specialist as plugin

import vila2
from vila2.captioning.engine import caption_dataset
from vila2.data import Dataset


@pytest.mark.slow
def test_finetune_recaption_and_evaluate(fresh_host, plugin_registered, tiny_world: Path,
                                         tiny_model: Path, few_images: Path, tmp_path: Path) -> None:
    plugin_registered(plugin)
    spec = fresh_host.get("specialist", "grounding")
    data = spec.prepare_data(None, str(tiny_world), str(tmp_path))
    model = fresh_host.hook.finetune_specialist(
        specialist=spec, base_model=str(tiny_model), data=data, out_dir=str(tmp_path / "model"),
        settings={"max_steps": 2, "batch_size": 4, "seed": 0})
    config = json.loads((Path(model) / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"]) == (spec.lora["r"], spec.lora["alpha"])

    clean = vila2.Filter("grounding-clean", clean=spec.clean_answer)
    caption_dataset(few_images, model=model, layer="spec-grounding", prompts=spec.prompts,
                    filters=[clean], batch_size=8, max_new_tokens=12, progress=False)
    rows = list(Dataset.open(few_images).layer("spec-grounding").iter_rows())
    assert len(rows) == 8
    assert {row["prompt"] for row in rows} == set(spec.prompts)
    assert all(spec.clean_answer(row["text"]) == row["text"] for row in rows)

    result = fresh_host.find_evaluator("grounding").run(
        model, "grounding", settings={"world": str(tiny_world), "batch_size": 8}, limit=8)
    assert result.n == 8 and 0.0 <= result.score <= 1.0
