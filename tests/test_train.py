"""vila2.training.trainer: stages, loss on answers only, every tiny architecture, resume, CLI."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from vila2.training.trainer import TrainConfig, TrainError, train


def _sft(world: Path) -> list[dict]:
    return [{"dataset": str(world / "sft"), "layers": ["conversations"], "template": "conversation"}]


def _alt(world: Path) -> list[dict]:
    return [{"dataset": str(world / "pretrain"), "layers": ["alt"], "template": "concat"}]


def _config(model: Path, out: Path, world: Path, **overrides) -> TrainConfig:
    values = {"model": str(model), "out": str(out), "mixture": _sft(world), "max_steps": 6,
              "batch_size": 8, "lr": 3e-3, "max_length": 160, "log_every": 1, "seed": 0}
    return TrainConfig.parse({**values, **overrides})


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def _losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "training" / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def arch_models(tmp_path_factory: pytest.TempPathFactory, tiny_world: Path, tiny_model: Path) -> dict[str, Path]:
    from vila2.models.presets import build
    from vila2.world import world_texts

    root = tmp_path_factory.mktemp("arch")
    texts = list(world_texts(tiny_world))
    models = {name: build(name, root / name, texts=texts, seed=0) for name in ("qwen2vl-tiny", "idefics3-tiny")}
    return {"llava-tiny": tiny_model, **models}


def test_labels_cover_answers_only(tiny_model: Path, tiny_world: Path) -> None:
    from vila2.data.mixture import build_examples
    from vila2.models.checkpoint import load
    from vila2.training.collate import IGNORE_INDEX, ExampleEncoder, collate

    _, processor = load(tiny_model)
    tokenizer = processor.tokenizer
    examples = build_examples(_sft(tiny_world))[:3]
    encoder = ExampleEncoder(processor, 400)
    features = [encoder(e) for e in examples]
    for example, feature in zip(examples, features, strict=True):
        ids, labels = feature["input_ids"], feature["labels"]
        supervised = labels != IGNORE_INDEX
        answers = [t["value"] for t in example["conversations"][1::2]]
        assert tokenizer.decode(ids[supervised]) == "".join(a + "</s>" for a in answers)
        assert not supervised[ids == tokenizer.convert_tokens_to_ids("<image>")].any()
        assert (ids == tokenizer.convert_tokens_to_ids("<image>")).sum() == 16
    estimates = encoder.lengths(examples)
    assert all(abs(e - len(f["input_ids"])) <= 3 for e, f in zip(estimates, features, strict=True)), estimates
    batch = collate(features, tokenizer.pad_token_id)
    pads = batch["attention_mask"] == 0
    assert pads.any()  # lengths differ
    assert (batch["labels"][pads] == IGNORE_INDEX).all()
    assert (batch["input_ids"][pads] == tokenizer.pad_token_id).all()
    assert batch["pixel_values"].shape[0] == 3


def test_prompt_longer_than_max_length_is_named(tiny_model: Path, tiny_world: Path) -> None:
    from vila2.data.mixture import build_examples
    from vila2.models.checkpoint import load
    from vila2.training.collate import EncodingError, ExampleEncoder

    _, processor = load(tiny_model)
    example = build_examples(_sft(tiny_world))[0]
    with pytest.raises(EncodingError, match=f"sample {example['id']!r}.*max_length=12"):
        ExampleEncoder(processor, 12)(example)


@pytest.mark.parametrize("arch", ["llava-tiny", "qwen2vl-tiny", "idefics3-tiny"])
def test_each_architecture_learns_and_round_trips(arch: str, arch_models: dict[str, Path], tiny_world: Path,
                                                  tmp_path: Path) -> None:
    import torch

    from vila2.models.checkpoint import chat_prompt, load
    from vila2.training.stages import part_of

    start = arch_models[arch]
    out = train(_config(start, tmp_path / "out", tiny_world, max_steps=8))
    losses = _losses(out)
    assert len(losses) == 8
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2 - 0.5, losses
    before, after = _weights(start), _weights(out)
    changed = {part_of(k) for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"projector", "language"}  # sft keeps the vision tower frozen
    model, processor = load(out)
    from PIL import Image

    inputs = processor(images=[Image.new("RGB", (64, 64), "red")],
                       text=[chat_prompt(processor, "Describe the image.")], return_tensors="pt")
    generated = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert generated.shape[1] > inputs["input_ids"].shape[1]
    done = json.loads((out / "training" / "done.json").read_text())
    assert done["steps"] == 8 and done["samples_per_second"] > 0


def test_cosine_schedule_warms_up_then_decays_to_zero() -> None:
    import torch

    from vila2.training.trainer import cosine_schedule

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = cosine_schedule(optimizer, warmup=2, total=10)
    rates = []
    for _ in range(10):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert rates[0] < rates[1] < rates[2] == 1.0
    assert all(a > b for a, b in itertools.pairwise(rates[2:]))
    assert scheduler.get_last_lr()[0] == 0.0


def test_align_trains_only_the_projector(tiny_model: Path, tiny_world: Path, tmp_path: Path) -> None:
    import torch

    from vila2.training.stages import part_of

    out = train(_config(tiny_model, tmp_path / "align", tiny_world, stage="align", max_steps=2,
                        mixture=_alt(tiny_world), batch_size=4, max_length=64))
    before, after = _weights(tiny_model), _weights(out)
    changed = {part_of(k) for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"projector"}


def test_resume_continues_the_same_run(tiny_model: Path, tiny_world: Path, tmp_path: Path) -> None:
    import torch

    short = {"mixture": _alt(tiny_world), "batch_size": 4, "max_steps": 4, "save_every": 2, "max_length": 64}
    straight = train(_config(tiny_model, tmp_path / "straight", tiny_world, **short))

    class Killed(Exception):
        pass

    def kill(step: int, loss: float) -> None:
        if step == 3:
            raise Killed

    config = _config(tiny_model, tmp_path / "resumed", tiny_world, **short)
    with pytest.raises(Killed):
        train(config, on_step=kill)
    assert (tmp_path / "resumed" / "training" / "checkpoints" / "step-2").is_dir()
    assert not (tmp_path / "resumed" / "model.safetensors").exists()
    # a checkpoint whose save was killed half-way has no vila2_state.json: it is ignored
    (tmp_path / "resumed" / "training" / "checkpoints" / "step-3").mkdir()
    resumed = train(config)
    a, b = _weights(straight), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _losses(resumed) == _losses(straight)  # the killed run's step-3 line was rewritten
    assert not (resumed / "training" / "checkpoints").exists()  # cleaned up after the final save


def test_finished_run_is_kept_and_other_settings_refused(tiny_model: Path, tiny_world: Path,
                                                          tmp_path: Path) -> None:
    config = _config(tiny_model, tmp_path / "run", tiny_world, max_steps=1, mixture=_alt(tiny_world),
                     batch_size=4, max_length=64)
    out = train(config)
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert train(config.model_copy(update={"log_every": 5})) == out  # cosmetic change: still done
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(TrainError, match=r"other settings \(differing: lr\)"):
        train(config.model_copy(update={"lr": 1e-4}))


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(TrainError, match=r"cfg.yaml: stage: .*'align', 'pretrain' or 'sft'"):
        TrainConfig.parse({"model": "m", "out": "o", "stage": "warmup",
                           "mixture": [{"dataset": "d", "layers": ["a"]}]}, "cfg.yaml")
    with pytest.raises(TrainError, match=r"mixture.0.template"):
        TrainConfig.parse({"model": "m", "out": "o", "mixture": [{"dataset": "d", "layers": ["a"], "template": "x"}]})
    with pytest.raises(TrainError, match=r"batchsize: Extra inputs"):
        TrainConfig.parse({"model": "m", "out": "o", "batchsize": 3, "mixture": [{"dataset": "d", "layers": ["a"]}]})


def test_cli_trains_from_yaml(tiny_model: Path, tiny_world: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from vila2.cli import main

    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({
        "model": str(tiny_model), "out": str(tmp_path / "ignored"), "stage": "pretrain",
        "mixture": [{"dataset": str(tiny_world / "pretrain"), "layers": ["alt"], "template": "concat"}],
        "batch_size": 8, "max_length": 96,
    }))
    main(["train", str(config), "--out", str(tmp_path / "cli"), "--max-steps", "2"])
    assert "model saved to" in capsys.readouterr().out
    assert (tmp_path / "cli" / "model.safetensors").is_file()
    assert not (tmp_path / "ignored").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(SystemExit):
        main(["train", str(bad)])
    assert "expected a mapping" in capsys.readouterr().err
