"""vila2.models.checkpoint: load/save any image-text-to-text folder, chat prompts, provenance hashes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

TEXTS = ["a red circle left of a blue square", "a green star above a yellow cross",
         "Describe the image.", "Write a caption for this image."] * 5


@pytest.fixture(scope="module")
def llava(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vila2.models.presets import build

    return build("llava-tiny", tmp_path_factory.mktemp("model") / "llava", texts=TEXTS, seed=0)


def test_load_defaults_cpu_float32_sdpa(llava: Path) -> None:
    import torch

    from vila2.models.checkpoint import load

    model, processor = load(llava)
    assert next(model.parameters()).dtype == torch.float32
    assert model.config._attn_implementation == "sdpa"
    assert processor.tokenizer.pad_token is not None
    eager, _ = load(llava, attn_implementation="eager", dtype="bf16")
    assert eager.config._attn_implementation == "eager"
    assert next(eager.parameters()).dtype == torch.bfloat16


def test_default_attn_implementation_without_gpu() -> None:
    import torch

    from vila2.models.checkpoint import default_attn_implementation

    if not torch.cuda.is_available():
        assert default_attn_implementation(torch.bfloat16) == "sdpa"
    assert default_attn_implementation(torch.float32) == "sdpa"


def test_save_load_round_trip(llava: Path, tmp_path: Path) -> None:
    import torch

    from vila2.models.checkpoint import load, save

    model, processor = load(llava)
    with torch.no_grad():
        model.lm_head.weight.add_(0.5)  # tied to the embeddings: both change
    out = save(model, processor, tmp_path / "copy")
    again, processor2 = load(out)
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert processor2.tokenizer.get_vocab() == processor.tokenizer.get_vocab()
    assert (out / "model.safetensors").is_file()


def test_chat_prompt_uses_the_processor_template(llava: Path) -> None:
    from vila2.models.checkpoint import chat_prompt, load

    _, processor = load(llava)
    prompt = chat_prompt(processor, "<image>\nWhat is this?")
    assert prompt == "<s><|user|><image>\nWhat is this?<|assistant|>"
    assert chat_prompt(processor, "What is this?", "A star.") == "<s><|user|><image>\nWhat is this?<|assistant|>A star.</s>"


def test_pickled_weights_are_refused(llava: Path, tmp_path: Path) -> None:
    from vila2.models.checkpoint import load

    folder = tmp_path / "pickled"
    shutil.copytree(llava, folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(ValueError, match=r"pickled.*pytorch_model\.bin.*allow_pickle=True"):
        load(folder)


def test_missing_and_non_model_folders(llava: Path, tmp_path: Path) -> None:
    from vila2.models.checkpoint import load

    with pytest.raises(FileNotFoundError, match="does not exist"):
        load(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        load(tmp_path)
    with pytest.raises(ValueError, match="unknown dtype"):
        load(llava, dtype="fp8")


def test_model_hash_follows_the_weights_not_the_place(llava: Path, tmp_path: Path) -> None:
    import torch

    from vila2.models.checkpoint import load, model_hash, save

    copy = tmp_path / "copy"
    shutil.copytree(llava, copy)
    assert model_hash(copy) == model_hash(llava)
    model, processor = load(llava)
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    assert model_hash(save(model, processor, tmp_path / "changed")) != model_hash(llava)
    assert len(model_hash("org/some-hub-model")) == 16


def test_adapter_folders_can_be_refused(tmp_path: Path) -> None:
    from vila2.models.checkpoint import load

    (tmp_path / "adapter_config.json").write_text('{"base_model_name_or_path": "x"}')
    with pytest.raises(ValueError, match="adapter folder, but a full model is required"):
        load(tmp_path, adapter_ok=False)
