"""Tiny presets: ordinary HF folders that load, chat, batch and generate like real checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TEXTS = [
    "a small red circle on the left of a large blue square",
    "the green triangle is above the yellow star",
    "The word \"map\" is written at the top left.",
    "Describe the image in detail.",
] * 5


@pytest.fixture(scope="module")
def presets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from vila2.models.presets import PRESETS, build

    root = tmp_path_factory.mktemp("presets")
    return {name: build(name, root / name, texts=TEXTS, seed=0) for name in PRESETS}


def _image(color: tuple[int, int, int], size: tuple[int, int] = (64, 64)):
    from PIL import Image

    return Image.new("RGB", size, color)


@pytest.mark.parametrize("name", ["llava-tiny", "qwen2vl-tiny", "idefics3-tiny"])
def test_preset_is_a_standard_hf_folder(presets: dict[str, Path], name: str) -> None:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = presets[name]
    assert (folder / "model.safetensors").is_file()
    assert not list(folder.glob("*.bin"))
    model = AutoModelForImageTextToText.from_pretrained(folder)
    processor = AutoProcessor.from_pretrained(folder)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the image."}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    assert "Describe the image." in prompt
    # different image sizes and prompt lengths in one padded batch
    batch = processor(images=[_image((255, 0, 0)), _image((0, 0, 255), (80, 48))],
                      text=[prompt, prompt.replace("Describe", "Please describe")],
                      padding=True, return_tensors="pt")
    image_id = model.config.image_token_id
    counts = (batch["input_ids"] == image_id).sum(dim=1).tolist()
    # a 64x64 image is 16 tokens; Qwen2-VL keeps the aspect ratio of the 80x48 one (more tokens)
    assert counts[0] == 16 and (counts[1] == 16 or (name == "qwen2vl-tiny" and counts[1] > 0))
    assert batch["input_ids"].shape[1] < 64  # 16 image tokens + a short prompt
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=4, do_sample=False)
    assert out.shape[0] == 2 and batch["input_ids"].shape[1] < out.shape[1] <= batch["input_ids"].shape[1] + 4
    texts = processor.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


def test_preset_is_tiny_and_tokenizer_learned_the_texts(presets: dict[str, Path]) -> None:
    from vila2.models.checkpoint import load

    model, processor = load(presets["llava-tiny"])
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    tokenizer = processor.tokenizer
    # frequent words are single tokens; special tokens stay atomic
    assert len(tokenizer(" triangle", add_special_tokens=False)["input_ids"]) == 1
    assert tokenizer.convert_tokens_to_ids("<image>") == model.config.image_token_id
    assert tokenizer.decode(tokenizer("a red circle", add_special_tokens=False)["input_ids"]) == "a red circle"


def test_same_seed_same_model_other_seed_other_weights(tmp_path: Path, presets: dict[str, Path]) -> None:
    from vila2.models.checkpoint import model_hash
    from vila2.models.presets import build

    again = build("llava-tiny", tmp_path / "again", texts=TEXTS, seed=0)
    other = build("llava-tiny", tmp_path / "other", texts=TEXTS, seed=1)
    assert model_hash(again) == model_hash(presets["llava-tiny"])
    assert model_hash(other) != model_hash(again)


def test_size_overrides(tmp_path: Path) -> None:
    from transformers import AutoConfig

    from vila2.models.presets import build

    folder = build("llava-tiny", tmp_path / "m", texts=TEXTS, hidden_size=64, num_layers=1, num_heads=2,
                   num_kv_heads=2, vision_layers=1)
    config = AutoConfig.from_pretrained(folder)
    assert (config.text_config.hidden_size, config.text_config.num_hidden_layers) == (64, 1)
    assert config.vision_config.num_hidden_layers == 1


def test_bad_requests_are_named(tmp_path: Path) -> None:
    from vila2.models.presets import build

    with pytest.raises(ValueError, match="unknown preset 'llava-huge'"):
        build("llava-huge", tmp_path / "a", texts=TEXTS)
    with pytest.raises(ValueError, match="hiden_size"):
        build("llava-tiny", tmp_path / "b", texts=TEXTS, hiden_size=8)
    with pytest.raises(ValueError, match="texts is empty"):
        build("llava-tiny", tmp_path / "c", texts=[])
    with pytest.raises(ValueError, match="multiple of patch_size"):
        build("llava-tiny", tmp_path / "d", texts=TEXTS, patch_size=10)


def test_every_family_is_listed_and_builds_from_the_command_line(tmp_path: Path, capsys) -> None:
    from transformers import AutoConfig

    from vila2.cli import main
    from vila2.models.presets import PRESETS

    main(["preset", "list", "--json"])
    listed = json.loads(capsys.readouterr().out)
    assert [p["name"] for p in listed] == list(PRESETS) and len(listed) >= 10
    assert len({p["family"] for p in listed}) == len(listed)  # one preset per family
    main(["preset", "build", "gemma3-tiny", "--out", str(tmp_path / "g"), "--set", "num_layers=1",
          "--set", "hidden_size=64"])
    assert "gemma3-tiny (gemma3) saved to" in capsys.readouterr().out
    config = AutoConfig.from_pretrained(tmp_path / "g")
    assert config.model_type == "gemma3" and config.text_config.num_hidden_layers == 1
    with pytest.raises(SystemExit):
        main(["preset", "build", "gemma9-tiny", "--out", str(tmp_path / "x")])
    assert "unknown preset 'gemma9-tiny'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["preset", "build", "llava-tiny", "--out", str(tmp_path / "y"), "--set", "hiden_size=8"])
    assert "hiden_size" in capsys.readouterr().err
