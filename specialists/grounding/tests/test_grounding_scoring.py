"""Grounding answers: boxes at IoU >= 0.5, object names by normalised match."""

from __future__ import annotations

import pytest
from vila2_grounding_specialist.scoring import score, summarise


def test_a_noisy_correct_box_scores() -> None:
    metrics = score("It is at (100, 100, 500, 500)", "[100,100,500,500]", {"id": "g1"})
    assert metrics == {"accuracy": 1.0, "box": 1.0, "box_correct": 1.0, "iou": 1.0, "parsed": 1.0}


def test_overlap_below_half_is_wrong() -> None:
    metrics = score("[0,0,100,100]", "[50,0,150,100]", {"id": "g1"})
    assert metrics["accuracy"] == 0.0
    assert metrics["iou"] == pytest.approx(1 / 3)


def test_overlap_of_exactly_half_is_right() -> None:
    assert score("[0,0,100,100]", "[0,0,100,50]", {"id": "g1"})["accuracy"] == 1.0


def test_no_box_in_the_prediction_is_wrong_and_counted() -> None:
    assert score("a red circle", "[0,0,100,100]", {"id": "g1"}) == {
        "accuracy": 0.0, "box": 1.0, "box_correct": 0.0, "iou": 0.0, "parsed": 0.0}


@pytest.mark.parametrize(("prediction", "correct"), [
    ("The red circle.", 1.0), ("red circle", 1.0), ("blue circle", 0.0), ("[0,0,10,10]", 0.0)])
def test_object_name_answers_match_after_normalisation(prediction: str, correct: float) -> None:
    assert score(prediction, "red circle", {"id": "g2"}) == {
        "accuracy": correct, "box": 0.0, "box_correct": 0.0, "iou": 0.0, "parsed": 0.0}


def test_an_empty_reference_names_the_sample() -> None:
    with pytest.raises(ValueError, match="sample 'g7'"):
        score("[0,0,1,1]", " ", {"id": "g7"})


def test_summarise_gives_rates_over_each_kind_of_question() -> None:
    samples = [
        score("[0,0,100,100]", "[0,0,100,100]", {"id": "a"}),  # box, right
        score("no idea", "[0,0,100,100]", {"id": "b"}),  # box, no box given
        score("red circle", "red circle", {"id": "c"}),  # name, right
        score("blue circle", "red circle", {"id": "d"}),  # name, wrong
    ]
    means = {k: sum(s[k] for s in samples) / len(samples) for k in samples[0]}
    assert summarise(means) == pytest.approx({
        "accuracy": 0.5, "box_accuracy": 0.5, "iou": 0.5, "parse_rate": 0.5, "name_accuracy": 0.5})


def test_summarise_leaves_out_rates_over_no_question() -> None:
    only_boxes = score("[0,0,100,100]", "[0,0,100,100]", {"id": "a"})
    assert set(summarise(only_boxes)) == {"accuracy", "box_accuracy", "iou", "parse_rate"}
    only_names = score("red circle", "red circle", {"id": "c"})
    assert summarise(only_names) == {"accuracy": 1.0, "name_accuracy": 1.0}
