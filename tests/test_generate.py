"""Batched generation with a tiny LLaVA-style model built locally."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from vila2.models.generation import Generator, cut_at_stop, length_buckets

TEXTS = ["a red circle left of a blue square", "the text reads open", "a small green cube"] * 20

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run faster on one thread


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vila2.models.presets import build

    return build("llava-tiny", tmp_path_factory.mktemp("gen") / "llava-tiny", texts=TEXTS, seed=0)


@pytest.fixture(scope="module")
def loaded(model_dir: Path):
    from vila2.models.checkpoint import load

    return load(model_dir)


def images(n: int) -> list[Image.Image]:
    out = []
    for i in range(n):
        image = Image.new("RGB", (64, 64), ((37 * i) % 256, (91 * i) % 256, 128))
        ImageDraw.Draw(image).rectangle([i % 40, 5, i % 40 + 20, 30], fill=(255, 255 - 20 * i % 256, 0))
        out.append(image)
    return out


def no_specials(processor) -> list[int]:
    """Keep a random model off its special tokens, so answers are not empty after decoding."""
    tokenizer = processor.tokenizer
    return [i for i, token in tokenizer.added_tokens_decoder.items()
            if token.special and i != tokenizer.eos_token_id]


def test_helpers() -> None:
    assert cut_at_stop("a cube. USER: next", ["USER:", "###"]) == "a cube. "
    assert cut_at_stop("###a USER:", ["USER:", "###"]) == ""
    assert cut_at_stop("no stop", ["", "x"]) == "no stop"
    assert length_buckets([5, 1, 5, 3, 1], 2) == [[1, 4], [3, 0], [2]]
    assert length_buckets([], 4) == []


def test_batched_answers_match_one_at_a_time_and_keep_order(loaded) -> None:
    _, processor = loaded
    gen = Generator(loaded, batch_size=4, max_new_tokens=12, suppress_tokens=no_specials(processor))
    pics = images(7)
    # prompts of different lengths: the generator sorts them into buckets and must restore order
    prompts = ["Describe the image in detail.", "What colour is it?",
               "Elaborate on the visual and narrative elements of the image in detail."] * 2 + ["Hi?"]
    batched = gen(pics, prompts)
    single = [gen([p], [q])[0] for p, q in zip(pics, prompts, strict=True)]
    assert batched == single
    assert all(batched) and len(set(batched)) > 1


def test_answers_are_only_the_new_tokens(loaded) -> None:
    import torch

    from vila2.models.checkpoint import chat_prompt

    model, processor = loaded
    suppress = no_specials(processor)
    gen = Generator(loaded, batch_size=2, max_new_tokens=10, suppress_tokens=suppress)
    pic, prompt = images(1)[0], "Describe the image in detail."
    inputs = processor(images=[pic], text=[chat_prompt(processor, prompt)], return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=10, do_sample=False, suppress_tokens=suppress)
    expected = processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert gen([pic], [prompt]) == [expected.strip()]
    assert "Describe" not in expected


def test_stop_strings_cut_the_answer(loaded) -> None:
    _, processor = loaded
    suppress = no_specials(processor)
    full = Generator(loaded, max_new_tokens=16, suppress_tokens=suppress)([images(1)[0]], ["Hi?"])[0]
    stop = full.strip()[len(full.strip()) // 2 :][:2]
    cut = Generator(loaded, max_new_tokens=16, stop=[stop], suppress_tokens=suppress)([images(1)[0]], ["Hi?"])[0]
    assert stop not in cut
    assert full.startswith(cut)
    assert len(cut) < len(full)


def test_loads_a_folder_and_samples_when_asked(model_dir: Path) -> None:
    import torch

    gen = Generator(model_dir, batch_size=8, max_new_tokens=8)
    assert gen.padding_side == "left"
    assert gen.tokenizer.pad_token is not None
    greedy = gen(images(3), ["Describe."] * 3)
    assert greedy == gen(images(3), ["Describe."] * 3)
    sampler = Generator(model_dir, max_new_tokens=8, do_sample=True, temperature=1.5, top_p=0.95)
    torch.manual_seed(0)
    first = sampler(images(3), ["Describe."] * 3)
    torch.manual_seed(0)
    assert sampler(images(3), ["Describe."] * 3) == first


def test_bad_arguments(loaded) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        Generator(loaded, batch_size=0)
    with pytest.raises(ValueError, match="2 images but 1 prompts"):
        Generator(loaded)(images(2), ["x"])
    with pytest.raises(FileNotFoundError):
        Generator("/nonexistent/model")
    with pytest.raises(ValueError, match=r"'temprature' \(did you mean 'temperature'\?\)"):
        Generator(loaded, temprature=0.5)
    with pytest.raises(ValueError, match="'custom_generate' is not allowed"):
        Generator(loaded, custom_generate="some/folder")
    with pytest.raises(ValueError, match="'num_return_sequences' is not allowed"):
        Generator(loaded, num_return_sequences=2)


@pytest.mark.parametrize("preset", ["qwen2vl-tiny", "idefics3-tiny"])
def test_other_architectures_batch_like_single_requests(preset, tmp_path) -> None:
    from vila2.models.checkpoint import load
    from vila2.models.presets import build

    model, processor = load(build(preset, tmp_path / preset, texts=TEXTS, seed=0))
    gen = Generator((model, processor), batch_size=3, max_new_tokens=6, suppress_tokens=no_specials(processor))
    pics = images(4)
    prompts = ["Describe the image in detail.", "Hi?", "What colour is the square in this picture?", "Hi?"]
    assert gen(pics, prompts) == [gen([p], [q])[0] for p, q in zip(pics, prompts, strict=True)]
