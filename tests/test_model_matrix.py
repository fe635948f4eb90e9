"""The architecture matrix: every tiny preset family through the whole path a user takes.

One test per (family, step); built models, trained folders and adapters are shared across steps
through session-scoped caches, so each family is built once. The steps:

* ``load``     — the folder opens with the stock ``AutoModelForImageTextToText`` + ``AutoProcessor``
                 and with ``vila2.models.checkpoint.load``, as the family's own classes;
* ``chat``     — the family's chat template puts the image in the family's own place, and the
                 processor expands it to the family's image tokens;
* ``batch``    — batched recaption (``Generator``) equals one-at-a-time;
* ``train``    — full training steps with ``vila2.training.trainer.train``: the loss falls, and an
                 answer token never sees the tokens after it (no future leaks through the mask);
* ``lora``     — LoRA on every role the family has (language, projector, vision), merged: the merged
                 folder gives the logits of base + adapter;
* ``lm-eval``  — ``vila2 eval --backend lm-eval`` drives the folder through lm-eval's stock
                 ``hf-multimodal`` model on 2 MMMU questions of the world;
* ``vlmeval``  — ``vila2 eval --backend vlmeval`` (VLMEvalKit in a child process) on the same.

With ``VILA2_MATRIX_OUT=FILE`` the outcome of every step (and the error of a failed one) is
written to FILE as JSON; ``benchmarks/model_matrix.py`` turns that into docs/MODELS.md.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vila2.models.presets import PRESETS

FAMILIES = list(PRESETS)
STEPS = ("load", "chat", "batch", "train", "lora", "lm-eval", "vlmeval")

#: (preset, step) -> why it fails: known limitations, each checked to still fail (strict xfail)
KNOWN_FAILURES: dict[tuple[str, str], str] = {}

_RESULTS: dict[tuple[str, str], dict[str, Any]] = {}
_CACHE: dict[tuple[str, str], Any] = {}


@contextlib.contextmanager
def step(preset: str, name: str) -> Iterator[None]:
    """Record the outcome of one step (and the first line of its error) for the matrix."""
    started, cpu = time.perf_counter(), _cpu_seconds()

    def timing() -> dict[str, float]:
        return {"seconds": round(time.perf_counter() - started, 2), "cpu": round(_cpu_seconds() - cpu, 2)}

    try:
        yield
    except BaseException as exc:
        message = str(exc).strip().splitlines()
        _RESULTS[(preset, name)] = {"ok": False, "error": f"{type(exc).__name__}: {message[0] if message else ''}"[:400],
                                    **timing()}
        raise
    _RESULTS[(preset, name)] = {"ok": True, **timing()}


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (VLMEvalKit's runs in one)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.fixture(scope="session", autouse=True)
def _write_matrix() -> Iterator[None]:
    yield
    out = os.environ.get("VILA2_MATRIX_OUT")
    if not out or not _RESULTS:
        return
    import transformers

    rows = [{"preset": p, "family": PRESETS[p].family, "step": s, "known": KNOWN_FAILURES.get((p, s)), **r}
            for (p, s), r in sorted(_RESULTS.items(), key=lambda kv: (FAMILIES.index(kv[0][0]), STEPS.index(kv[0][1])))]
    Path(out).write_text(json.dumps({"transformers": transformers.__version__, "steps": list(STEPS),
                                     "presets": {p: PRESETS[p].family for p in FAMILIES}, "results": rows}, indent=2))


def _cell(preset: str, name: str) -> Any:
    """A ``pytest.param`` for one (preset, step), xfail (strict) when the step is a known failure."""
    reason = KNOWN_FAILURES.get((preset, name))
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(preset, marks=marks, id=preset)


def cells(name: str) -> list[Any]:
    return [_cell(p, name) for p in FAMILIES]


# ----------------------------------------------------------------------------------------- shared
def _cached(key: tuple[str, str], make: Any) -> Any:
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


@pytest.fixture(scope="session")
def matrix_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("matrix")


@pytest.fixture(scope="session")
def texts(tiny_world: Path) -> list[str]:
    from vila2.world import world_texts

    return list(world_texts(tiny_world))


def built(preset: str, root: Path, texts: list[str]) -> Path:
    """The preset's folder, built once per session."""
    from vila2.models.presets import build

    return _cached((preset, "folder"), lambda: build(preset, root / preset / "model", texts=texts, seed=0))


def loaded(preset: str, root: Path, texts: list[str]) -> tuple[Any, Any]:
    """``vila2.models.checkpoint.load`` of the preset's folder, once per session."""
    from vila2.models.checkpoint import load

    return _cached((preset, "loaded"), lambda: load(built(preset, root, texts)))


def _images(world: Path, n: int) -> list[Any]:
    """``n`` world images, two of them resized to other shapes (tiling and aspect-ratio paths)."""
    from vila2.data import Dataset

    ds = Dataset.open(world / "bench" / "caption")
    images = [ds.load_image(s) for _, s in zip(range(n), ds.iter_samples(), strict=False)]
    return [img.resize((80, 48)) if i % 3 == 1 else img.resize((48, 72)) if i % 3 == 2 else img
            for i, img in enumerate(images)]


def image_token_id(config: Any) -> int:
    for key in ("image_token_id", "image_token_index"):
        value = getattr(config, key, None)
        if value is not None:
            return int(value)
    raise AssertionError(f"{type(config).__name__} names no image token")


# ------------------------------------------------------------------------------------------ steps
@pytest.mark.parametrize("preset", cells("load"))
def test_load(preset: str, matrix_root: Path, texts: list[str]) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    with step(preset, "load"):
        folder = built(preset, matrix_root, texts)
        assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.bin"))
        model = AutoModelForImageTextToText.from_pretrained(folder)
        processor = AutoProcessor.from_pretrained(folder)
        assert model.config.model_type == PRESETS[preset].family
        ours, our_processor = loaded(preset, matrix_root, texts)
        assert type(ours) is type(model) and type(our_processor) is type(processor)
        assert sum(p.numel() for p in model.parameters()) < 2_000_000  # tiny


@pytest.mark.parametrize("preset", cells("chat"))
def test_chat(preset: str, matrix_root: Path, texts: list[str], tiny_world: Path) -> None:
    from vila2.models.checkpoint import chat_prompt

    with step(preset, "chat"):
        model, processor = loaded(preset, matrix_root, texts)
        tokens = PRESETS[preset].tokens
        marker = tokens.get("boi") or tokens.get("context_image") or tokens["image"]
        text = chat_prompt(processor, "<image>\nDescribe the image in detail.")
        # the image sits where the family's template puts it, before the question, once
        assert text.count(marker) == 1 and text.index(marker) < text.index("Describe the image")
        inputs = processor(images=[_images(tiny_world, 1)], text=[text], return_tensors="pt")
        ids = inputs["input_ids"][0].tolist()
        image_id = image_token_id(model.config)
        assert image_id in ids
        question = processor.tokenizer("Describe", add_special_tokens=False)["input_ids"][0]
        assert ids.index(image_id) < ids.index(question)
        answer = chat_prompt(processor, "Describe.", answer="A red circle.")
        assert answer.startswith(chat_prompt(processor, "Describe.")) and "A red circle." in answer


@pytest.mark.parametrize("preset", cells("batch"))
def test_batch(preset: str, matrix_root: Path, texts: list[str], tiny_world: Path) -> None:
    from vila2.models.generation import Generator

    with step(preset, "batch"):
        pair = loaded(preset, matrix_root, texts)
        images = _images(tiny_world, 4)
        prompts = ["Describe the image in detail.", "What is shown?", "Describe the image in detail.",
                   "Where is the red circle in the picture?"]
        # a random model repeats one token, often a special or a single-byte one that decodes to
        # nothing visible: keep those out, so the answers are words that can differ
        tokenizer = pair[1].tokenizer
        blank = [i for i in range(len(tokenizer)) if not tokenizer.decode([i], skip_special_tokens=True).strip()]
        settings = {"max_new_tokens": 6, "suppress_tokens": blank}
        batched = Generator(pair, batch_size=4, **settings)(images, prompts)
        single = Generator(pair, batch_size=1, **settings)(images, prompts)
        assert batched == single
        assert all(batched), batched


def _mixture(world: Path, name: str) -> list[dict[str, Any]]:
    return [{"dataset": str(world / name), "layers": ["conversations"], "template": "conversation"}]


def trained(preset: str, root: Path, texts: list[str], world: Path) -> Path:
    from vila2.training.trainer import train

    def run() -> Path:
        return train({"model": str(built(preset, root, texts)), "out": str(root / preset / "train"),
                      "mixture": _mixture(world, "sft"), "max_steps": 8, "batch_size": 4, "lr": 3e-3,
                      "warmup_ratio": 0.0, "log_every": 1, "save_every": 0, "max_length": 200})

    return _cached((preset, "trained"), run)


def _future_leaks(model: Any, processor: Any, world: Path) -> float:
    """How much the logits before the last answer token change when that token changes."""
    import torch

    from vila2.data.mixture import build_examples
    from vila2.training.collate import ExampleEncoder, collate

    example = build_examples(_mixture(world, "sft"), seed=0)[0]
    batch = collate([ExampleEncoder(processor, 200)(example)], pad_token_id=0)
    batch.pop("labels")
    answer = (torch.as_tensor(ExampleEncoder(processor, 200)(example)["labels"]) != -100).nonzero()
    last = int(answer[-1])
    changed = {k: (v.clone() if hasattr(v, "clone") else v) for k, v in batch.items()}
    # another plain word (not a special or image token, which would change the image layout)
    words = [processor.tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in (" red", " blue")]
    changed["input_ids"][0, last] = words[0] if int(batch["input_ids"][0, last]) != words[0] else words[1]
    model.eval()
    with torch.no_grad():
        a = model(**batch, use_cache=False).logits[0, :last]
        b = model(**changed, use_cache=False).logits[0, :last]
    return float((a - b).abs().max())


@pytest.mark.parametrize("preset", cells("train"))
def test_train(preset: str, matrix_root: Path, texts: list[str], tiny_world: Path) -> None:
    from vila2.models.checkpoint import load

    with step(preset, "train"):
        out = trained(preset, matrix_root, texts, tiny_world)
        losses = [json.loads(line)["loss"] for line in (out / "training" / "log.jsonl").read_text().splitlines()]
        assert len(losses) == 8
        assert sum(losses[-2:]) / 2 < losses[0] - 0.3, f"the loss did not fall: {losses}"
        model, processor = load(out)
        leak = _future_leaks(model, processor, tiny_world)
        assert leak < 1e-4, f"training attends to later tokens: logits move by {leak:.3g} when a later token changes"


def roles_of(preset: str) -> list[str]:
    """Every LoRA role the family has as linear layers."""
    from vila2.models.lora import role_patterns

    return [role for role, pattern in role_patterns(PRESETS[preset].family).items() if pattern is not None]


def adapted(preset: str, root: Path, texts: list[str], world: Path) -> Path:
    from vila2.training.trainer import finetune_lora

    def run() -> Path:
        return finetune_lora(built(preset, root, texts), world / "spatial", root / preset / "lora",
                             {"r": 4, "max_steps": 2, "batch_size": 4, "lr": 1e-2, "max_length": 200,
                              "targets": roles_of(preset)})

    return _cached((preset, "adapter"), run)


@pytest.mark.parametrize("preset", cells("lora"))
def test_lora(preset: str, matrix_root: Path, texts: list[str], tiny_world: Path) -> None:
    import re

    import torch
    from PIL import Image
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText

    from vila2.models.checkpoint import chat_prompt, load, save
    from vila2.models.lora import recorded_targets, role_patterns

    with step(preset, "lora"):
        adapter = adapted(preset, matrix_root, texts, tiny_world)
        roles = roles_of(preset)
        record = recorded_targets(adapter)
        assert record is not None and record["targets"] == roles and record["model_type"] == PRESETS[preset].family
        keys = list(load_file(str(adapter / "adapter_model.safetensors")))
        patterns = role_patterns(PRESETS[preset].family)
        for role in roles:  # every role got adapters, and they trained
            hits = [k for k in keys if re.fullmatch(str(patterns[role]), k.split(".lora_")[0])]
            assert hits, f"no adapter weight for role {role!r}"
        with_adapter, processor = load(adapter)
        merged, _ = load(adapter, merge=True)
        folder = save(merged, processor, matrix_root / preset / "merged")
        reloaded = AutoModelForImageTextToText.from_pretrained(folder)
        base, _ = loaded(preset, matrix_root, texts)
        inputs = processor(images=[[Image.new("RGB", (64, 64), "blue")]],
                           text=[chat_prompt(processor, "Where is the circle?")], return_tensors="pt")
        with torch.no_grad():
            a, b, c = (m(**inputs).logits for m in (with_adapter, reloaded, base))
        assert torch.allclose(a, b, atol=1e-4), f"merged differs from base + adapter by {(a - b).abs().max():.3g}"
        assert not torch.allclose(a, c, atol=1e-4)


def _eval(preset: str, backend: str, root: Path, texts: list[str], world: Path, settings: list[str]) -> dict[str, Any]:
    import vila2_evals.plugin

    from vila2.cli import main
    from vila2.plugins import Host, set_host

    out = root / preset / f"{backend}.json"
    host = Host(entry_points=False, builtins=True)
    host.register(vila2_evals.plugin, name="evals")
    previous = set_host(host)
    try:
        main(["eval", "--model", str(built(preset, root, texts)), "--benchmark", "mmmu", "--backend", backend,
              "--world", str(world), "--limit", "2", "--out", str(out), *[a for s in settings for a in ("--set", s)]])
    except SystemExit as exc:
        raise AssertionError(f"vila2 eval --backend {backend} exited with {exc.code}") from exc
    finally:
        set_host(previous)
    return json.loads(out.read_text())


needs_evals = pytest.mark.skipif(importlib.util.find_spec("vila2_evals") is None, reason="vila2-evals is not installed")


@needs_evals
@pytest.mark.parametrize("preset", cells("lm-eval"))
def test_lm_eval(preset: str, matrix_root: Path, texts: list[str], tiny_world: Path) -> None:
    with step(preset, "lm-eval"):
        result = _eval(preset, "lm-eval", matrix_root, texts, tiny_world, ["max_gen_toks=4", "batch_size=2"])
        assert result["n"] == 2 and result["details"]["lm_eval_model"] == "hf-multimodal"


@needs_evals
@pytest.mark.skipif(importlib.util.find_spec("vlmeval") is None, reason="VLMEvalKit is not installed")
@pytest.mark.parametrize("preset", cells("vlmeval"))
def test_vlmeval(preset: str, matrix_root: Path, texts: list[str], tiny_world: Path) -> None:
    with step(preset, "vlmeval"):
        result = _eval(preset, "vlmeval", matrix_root, texts, tiny_world, ["max_new_tokens=4"])
        assert result["n"] == 2 and result["backend"] == "vlmeval"
