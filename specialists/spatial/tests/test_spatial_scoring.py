"""Spatial answers: normalised match."""

from __future__ import annotations

import pytest
from vila2_spatial_specialist.scoring import matches, normalise, score


def test_normalise_drops_case_punctuation_and_articles() -> None:
    assert normalise("The Red Circle.") == "red circle"
    assert normalise("  Yes!  ") == "yes"
    assert normalise("Two") == "2"


@pytest.mark.parametrize(
    ("prediction", "reference"),
    [
        ("yes", "Yes"),
        ("Yes.", "yes"),
        ("the red circle", "red circle"),
        ("No, it is on the right.", "no"),
        ("Top left.", "top left"),
        ("two", "2"),
    ],
)
def test_correct_answers_match(prediction: str, reference: str) -> None:
    assert matches(prediction, reference)


@pytest.mark.parametrize(
    ("prediction", "reference"),
    [
        ("no", "yes"),
        ("not sure", "no"),  # "no" must be a whole word, not a prefix of "not"
        ("blue circle", "red circle"),
        ("it is left", "left"),  # the answer must come first
        ("top left", "top"),  # a prefix is another answer
        ("left of the blue square", "left"),
        ("", "yes"),
        ("yes", ""),
    ],
)
def test_wrong_answers_do_not_match(prediction: str, reference: str) -> None:
    assert not matches(prediction, reference)


def test_score_is_a_metric_dict() -> None:
    assert score("Yes", "yes", {"id": "a"}) == {"accuracy": 1.0}
    assert score("no", "yes", {"id": "a"}) == {"accuracy": 0.0}
