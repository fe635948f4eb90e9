"""How prompts with ``<image>`` markers are laid out for a model."""

from __future__ import annotations

import pytest
from vila2_evals.answerer import fits_generator, interleaved_messages


@pytest.mark.parametrize(("n_images", "prompt", "fits"), [
    (1, "What is this?", True),
    (1, "<image>\nWhat is this?", True),
    (1, "What is this? <image>", True),
    (1, "Look at <image> and answer.", False),
    (2, "<image> <image> Same?", False),
    (0, "No image here.", False),
])
def test_only_template_placed_single_images_use_the_generator(n_images, prompt, fits):
    assert fits_generator([object()] * n_images, prompt) is fits


def test_images_sit_at_their_markers():
    messages = interleaved_messages(["a", "b", "c"], "Compare <image> with <image>.\n(A) <image>")
    assert messages == [{"role": "user", "content": [
        {"type": "text", "text": "Compare "}, {"type": "image"},
        {"type": "text", "text": " with "}, {"type": "image"},
        {"type": "text", "text": ".\n(A) "}, {"type": "image"},
    ]}]


def test_unmarked_images_go_first():
    content = interleaved_messages(["a", "b"], "Which is red? <image>")[0]["content"]
    assert content == [{"type": "image"}, {"type": "text", "text": "Which is red? "}, {"type": "image"}]


def test_more_markers_than_images_is_an_error():
    with pytest.raises(ValueError, match="2 <image> markers but only 1 images"):
        interleaved_messages(["a"], "<image> and <image>")


@pytest.mark.slow
def test_a_real_model_gets_every_image_in_order(tiny_model):
    """Pixel tensors reach ``generate`` in prompt order, with one image span per marker, batched."""
    from PIL import Image
    from vila2_evals.answerer import Answerer

    colours = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
    square = {name: Image.new("RGB", (64, 64), rgb) for name, rgb in colours.items()}
    requests = [
        ([square["green"], square["red"]], "Compare <image> with <image>."),
        ([square["blue"], square["red"], square["green"]], "(A) <image> (B) <image> (C) <image>"),
        ([square["red"]], "Is <image> red?"),
    ]
    answerer = Answerer(str(tiny_model), batch_size=4)
    calls = []
    generate = answerer.model.generate

    def spy(**inputs):
        calls.append(inputs)
        return generate(**inputs)

    answerer.model.generate = spy
    assert len(answerer(requests, max_new_tokens=2)) == 3
    (inputs,) = calls  # one batch
    config = answerer.model.config
    image_token = getattr(config, "image_token_id", None) or config.image_token_index
    spans = (inputs["input_ids"] == image_token).sum(dim=1).tolist()
    per_image = min(spans)  # the one-image request
    # rows are ordered by length in the batch; match them by their image counts
    assert sorted(spans) == sorted(per_image * len(imgs) for imgs, _ in requests)
    dominant = inputs["pixel_values"].mean(dim=(2, 3)).argmax(dim=1).tolist()
    order = {"red": 0, "green": 1, "blue": 2}
    expected = {tuple(order[n] for n in names) for names in (("green", "red"), ("blue", "red", "green"), ("red",))}
    got, start = set(), 0
    for count in [s // per_image for s in spans]:
        got.add(tuple(dominant[start:start + count]))
        start += count
    assert got == expected
