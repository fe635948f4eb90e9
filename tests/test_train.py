"""vila2.training.trainer: stages, loss on answers only, every tiny architecture, resume, CLI."""

from __future__ import annotations

import itertools
import json
import math
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


def test_per_token_tensors_are_extended_and_padded() -> None:
    import torch

    from vila2.training.collate import Encoded, ExampleEncoder, collate

    first = {"input_ids": torch.arange(3)[None], "pixel_values": torch.zeros(1, 3, 2, 2),
             "cross_attention_mask": torch.tensor([[[0, 0]], [[1, 0]], [[1, 1]]])[None]}
    keys = set(ExampleEncoder.token_keys(first))
    assert keys == {"input_ids", "cross_attention_mask"}  # by shape (1, tokens, ...), and not pixels
    mask = ExampleEncoder.extend("cross_attention_mask", first["cross_attention_mask"][0], 5)
    assert mask.tolist() == [[[0, 0]], [[1, 0]], [[1, 1]], [[1, 1]], [[1, 1]]]  # the last prompt row
    # token_type_ids 0 over the whole first prompt are segment ids (PaliGemma): the rest is 1
    assert ExampleEncoder.extend("token_type_ids", torch.zeros(3, dtype=torch.long), 5).tolist() == [0, 0, 0, 1, 1]
    # ...but where they mark image tokens (Gemma 3) the appended text is type 0, as are mm types
    assert ExampleEncoder.extend("token_type_ids", torch.tensor([0, 1, 0]), 5).tolist() == [0, 1, 0, 0, 0]
    assert ExampleEncoder.extend("mm_token_type_ids", torch.tensor([1, 1, 0]), 4).tolist() == [1, 1, 0, 0]
    features = []
    for length, tiles in ((5, 2), (3, 3)):
        feature = Encoded(input_ids=torch.ones(length, dtype=torch.long), labels=torch.ones(length, dtype=torch.long),
                          attention_mask=torch.ones(length, dtype=torch.long), extra_mask=torch.ones(length, 1, tiles),
                          pixel_values=torch.zeros(1, 3, 2, 2))
        feature.token_keys = frozenset({"extra_mask"})
        features.append(feature)
    batch = collate(features, pad_token_id=7)
    assert batch["extra_mask"].shape == (2, 5, 1, 3) and batch["pixel_values"].shape == (2, 3, 2, 2)
    assert batch["extra_mask"][0, :, :, 2].sum() == 0 and batch["extra_mask"][1, 3:].sum() == 0
    assert batch["input_ids"][1].tolist() == [1, 1, 1, 7, 7] and batch["labels"][1, 3:].tolist() == [-100, -100]


@pytest.mark.parametrize("preset", ["paligemma2-tiny", "mllama-tiny"])
def test_multi_turn_answers_see_no_later_token(preset: str, tiny_world: Path, tmp_path: Path) -> None:
    """A token of the first answer changes no logit before it (PaliGemma: the later prompts are
    suffix, not prefix; Mllama: the cross-attention mask covers every token), and a padded batch
    of two runs."""
    import torch

    from vila2.data.mixture import build_examples
    from vila2.models.checkpoint import load
    from vila2.models.presets import build
    from vila2.training.collate import ExampleEncoder, collate
    from vila2.world import world_texts

    model, processor = load(build(preset, tmp_path / preset, texts=world_texts(tiny_world), seed=0))
    model.eval()
    examples = build_examples(_sft(tiny_world), seed=0)
    chosen = [next(e for e in examples if len(e["conversations"]) >= 4),
              next(e for e in examples if len(e["conversations"]) == 2)]
    encoder = ExampleEncoder(processor, 400)
    features = [encoder(e) for e in chosen]
    with torch.no_grad():
        assert torch.isfinite(model(**collate(features, processor.tokenizer.pad_token_id)).loss)
    one = collate(features[:1], processor.tokenizer.pad_token_id)
    labels = one.pop("labels")[0]
    first_answer = int((labels != -100).nonzero()[0]) + 1  # a token the first answer predicts
    assert (labels[first_answer + 1:] != -100).any()  # later turns follow it
    changed = {k: v.clone() for k, v in one.items()}
    words = [processor.tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in (" red", " blue")]
    changed["input_ids"][0, first_answer] = words[int(one["input_ids"][0, first_answer]) == words[0]]
    with torch.no_grad():
        a = model(**one, use_cache=False).logits[0, :first_answer]
        b = model(**changed, use_cache=False).logits[0, :first_answer]
    assert float((a - b).abs().max()) < 1e-5


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


def test_projector_and_vision_take_their_own_learning_rates(tiny_model: Path, tmp_path: Path) -> None:
    from vila2.models.checkpoint import load
    from vila2.training.stages import part_of
    from vila2.training.trainer import _optimizer

    model, _ = load(tiny_model)
    model.requires_grad_(True)
    names = {id(p): part_of(n) for n, p in model.named_parameters()}

    def rates(**values) -> dict[str, set[float]]:
        config = TrainConfig.parse({"model": str(tiny_model), "out": str(tmp_path), "lr": 1e-3,
                                    "mixture": [{"dataset": str(tmp_path), "layers": ["alt"]}], **values})
        out: dict[str, set[float]] = {}
        for group in _optimizer(model, config).param_groups:
            for param in group["params"]:
                out.setdefault(names[id(param)], set()).add(group["lr"])
        return out

    assert rates() == {"language": {1e-3}, "projector": {1e-3}, "vision": {1e-3}}
    assert len(_optimizer(model, TrainConfig.parse({"model": "m", "out": "o", "mixture": [{"dataset": "d", "layers": ["alt"]}]})
                          ).param_groups) == 2  # one rate: the layout of earlier checkpoints
    assert rates(projector_lr=5e-3) == {"language": {1e-3}, "projector": {5e-3}, "vision": {1e-3}}
    assert rates(projector_lr=5e-3, vision_lr=1e-4) == {"language": {1e-3}, "projector": {5e-3},
                                                        "vision": {1e-4}}


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


def test_answer_loss_weights_tokens_conversations_or_their_square_roots() -> None:
    import torch
    from transformers.loss.loss_utils import ForCausalLMLoss

    from vila2.training.trainer import answer_loss

    torch.manual_seed(0)
    logits, labels = torch.randn(3, 9, 11), torch.randint(0, 11, (3, 9))
    labels[0, :7] = -100  # two answer tokens (each predicted from the token before)
    labels[1, :2] = -100  # seven
    labels[2, :] = -100   # none: a row with no answer adds nothing
    answer = labels[:, 1:] != -100
    total = [torch.nn.functional.cross_entropy(logits[i, :-1][answer[i]], labels[i, 1:][answer[i]],
                                               reduction="sum") for i in (0, 1)]
    assert answer.sum(dim=1).tolist() == [2, 7, 0]
    assert torch.allclose(answer_loss(logits, labels, "token"), ForCausalLMLoss(logits, labels, 11))
    assert torch.allclose(answer_loss(logits, labels, "sample"), (total[0] / 2 + total[1] / 7) / 2)
    assert torch.allclose(answer_loss(logits, labels, "square"),
                          (total[0] / 2 ** 0.5 + total[1] / 7 ** 0.5) / (2 ** 0.5 + 7 ** 0.5))


def test_logits_at_answer_positions_only_give_the_same_loss_and_gradients(tiny_model: Path,
                                                                          tiny_world: Path) -> None:
    import torch

    from vila2.data.mixture import build_examples
    from vila2.models.checkpoint import load
    from vila2.training.collate import ExampleEncoder, collate
    from vila2.training.trainer import answer_positions, keeps_logits, training_loss

    model, processor = load(str(tiny_model), dtype=torch.float32)
    encoder = ExampleEncoder(processor, 160)
    examples = build_examples(_sft(tiny_world) + _alt(tiny_world), seed=0)
    # conversations of different lengths in one batch: padded rows, answers at different places
    batch = collate([encoder(e) for e in examples[:3] + examples[-3:]], pad_token_id=0)
    positions = answer_positions(batch["labels"])
    assert keeps_logits(model) and 0 < len(positions) < batch["labels"].shape[1] - 1
    for weighting in ("token", "sample", "square"):
        losses, grads = [], []
        for answers_only in (False, True):
            model.zero_grad()
            loss = training_loss(model, batch, weighting, answers_only=answers_only)
            loss.backward()
            losses.append(loss.detach())
            grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
        assert torch.allclose(losses[0], losses[1], atol=1e-6), weighting
        assert torch.allclose(grads[0], grads[1], atol=1e-6), weighting
    with torch.no_grad():  # and the full-logit path is what the model itself computes
        assert torch.allclose(training_loss(model, batch, "token", answers_only=False),
                              model(**batch, use_cache=False).loss, atol=1e-6)


def test_encoded_examples_are_kept_for_the_next_epoch_within_their_budget(tiny_model: Path,
                                                                          tiny_world: Path) -> None:
    import torch

    from vila2.data.mixture import build_examples
    from vila2.models.checkpoint import load
    from vila2.training.collate import EncodedExamples, ExampleEncoder

    _, processor = load(str(tiny_model))
    calls: list[str] = []

    class Counting(ExampleEncoder):
        def __call__(self, example):
            calls.append(example["id"])
            return super().__call__(example)

    examples = build_examples(_alt(tiny_world), seed=0)[:4]
    cached = EncodedExamples(examples, Counting(processor, 64), cache_bytes=2**30)
    first = [cached[i] for i in range(4)]
    again = [cached[i] for i in range(4)]
    assert len(calls) == 4 and all(a is b for a, b in zip(first, again, strict=True))
    fresh = ExampleEncoder(processor, 64)(examples[2])  # a kept example is what encoding gives
    assert first[2].token_keys == fresh.token_keys
    assert all(torch.equal(first[2][k], fresh[k]) for k in fresh)
    size = sum(v.numel() * v.element_size() for v in fresh.values())
    small = EncodedExamples(examples, Counting(processor, 64), cache_bytes=size + size // 2)
    calls.clear()
    for _ in range(2):
        [small[i] for i in range(4)]
    assert len(calls) == 7 and small.cached_bytes <= size + size // 2  # one kept, the budget holds
    none = EncodedExamples(examples, Counting(processor, 64))
    calls.clear()
    none[0], none[0]
    assert len(calls) == 2 and none.cached_bytes == 0


def test_kept_encodings_train_the_same_weights(tiny_model: Path, tiny_world: Path, tmp_path: Path) -> None:
    import torch

    from vila2.data.mixture import build_examples

    # 8 steps of 8 over a twentieth of the tiny world's alt-text: every example is seen more than once
    mixture = [{**_alt(tiny_world)[0], "weight": 0.05}]
    assert len(build_examples(mixture, seed=0)) * 1.5 < 8 * 8
    config = _config(tiny_model, tmp_path / "kept", tiny_world, max_steps=8, mixture=mixture,
                     max_length=64, save_every=0)
    kept = _weights(train(config))
    encoded = _weights(train(config.model_copy(update={"out": str(tmp_path / "encoded"), "cache_mb": 0})))
    assert "cache_mb" not in config.fingerprint()
    assert kept.keys() == encoded.keys() and all(torch.equal(kept[k], encoded[k]) for k in kept)


def test_a_loss_weighting_trains_and_older_runs_keep_their_fingerprint(tiny_model: Path, tiny_world: Path,
                                                                       tmp_path: Path) -> None:
    config = _config(tiny_model, tmp_path / "run", tiny_world, max_steps=2, mixture=_alt(tiny_world),
                     batch_size=4, max_length=64, loss_weighting="square")
    out = train(config)
    assert json.loads((out / "training" / "config.json").read_text())["loss_weighting"] == "square"
    assert all(math.isfinite(loss) for loss in _losses(out))
    # the default is left out of the fingerprint: a folder trained before the setting existed resumes
    assert "loss_weighting" not in config.model_copy(update={"loss_weighting": "token"}).fingerprint()
    with pytest.raises(TrainError, match=r"differing: loss_weighting\)"):
        train(config.model_copy(update={"loss_weighting": "sample"}))


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
