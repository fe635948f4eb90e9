"""Sentence pieces and pooling: pure Python, no model."""

from __future__ import annotations

import pytest
from vila2_clipscore.segments import pool, segments, sentences, windows


def test_sentences_split_after_end_punctuation() -> None:
    text = "There are two objects in the image.  A small red circle on the left! Is it? yes"
    assert sentences(text) == ["There are two objects in the image.", "A small red circle on the left!",
                               "Is it?", "yes"]
    assert sentences("   ") == []


def test_a_sentence_too_long_for_the_encoder_is_cut_into_overlapping_windows() -> None:
    words = [f"w{i}" for i in range(30)]

    def fits(text: str) -> bool:
        return len(text.split()) <= 10

    parts = windows(words, fits, overlap=3)
    assert all(fits(p) for p in parts)
    assert parts[0].split() == words[:10] and parts[1].split()[:3] == words[7:10]
    assert parts[-1].split()[-1] == "w29"  # every word is seen
    pieces = segments("Short one. " + " ".join(words) + ".", fits)
    assert pieces[0] == "Short one." and len(pieces) == 1 + len(windows([*words[:-1], "w29."], fits))


def test_pooling() -> None:
    assert pool([0.2, 0.4, 0.9], "mean") == pytest.approx(0.5)
    assert pool([0.2, 0.4, 0.9], "min") == pytest.approx(0.2)
    with pytest.raises(ValueError, match="pool must be one of"):
        pool([0.1], "max")
    with pytest.raises(ValueError, match="no words"):
        pool([], "mean")
