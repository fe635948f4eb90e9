"""Counting answers: the first number given, on the count questions alone."""

from __future__ import annotations

import pytest
from vila2_counting_specialist.scoring import count_in, score, summarise


@pytest.mark.parametrize(("text", "count"), [
    ("3", 3), ("There are three objects.", 3), ("Two.", 2), ("no squares", 0), ("many", None), ("", None)])
def test_count_in_reads_digits_and_number_words(text: str, count: int | None) -> None:
    assert count_in(text) == count


def test_only_count_questions_are_scored() -> None:
    assert score("three", "3", {"id": "a"}) == {"accuracy": 1.0, "counted": 1.0}
    assert score("4", "3", {"id": "a"}) == {"accuracy": 0.0, "counted": 1.0}
    assert score("red", "red", {"id": "a"}) == {"accuracy": 0.0, "counted": 0.0}


def test_summarise_gives_the_accuracy_over_count_questions() -> None:
    assert summarise({"accuracy": 0.125, "counted": 0.25}) == {"accuracy": 0.5}
    with pytest.raises(ValueError, match="no count question"):
        summarise({"accuracy": 0.0, "counted": 0.0})
