"""OCR answers: exact match and ANLS."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vila2_ocr_specialist.scoring import anls, levenshtein, normalise, score


def test_normalise_strips_quotes_case_and_trailing_punctuation() -> None:
    assert normalise(' "SALE". ') == "sale"
    assert normalise("Open\n  Late") == "open late"


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [("", "", 0), ("abc", "", 3), ("kitten", "sitting", 3), ("taxi", "taxi", 0), ("cafe", "cafes", 1)],
)
def test_levenshtein(a: str, b: str, distance: int) -> None:
    assert levenshtein(a, b) == distance
    assert levenshtein(b, a) == distance


def test_anls_gives_partial_credit_only_to_near_misses() -> None:
    assert anls("STOP", "stop") == 1.0
    assert anls("stp", "stop") == pytest.approx(0.75)
    assert anls("zoo", "stop") == 0.0  # distance 1.0 >= 0.5
    assert anls("", "") == 1.0


@settings(derandomize=True, deadline=None)
@given(st.text(max_size=12), st.text(max_size=12))
def test_anls_is_a_bounded_similarity(a: str, b: str) -> None:
    value = anls(a, b)
    assert 0.0 <= value <= 1.0
    assert value == anls(b, a)
    if normalise(a) == normalise(b):
        assert value == 1.0


def test_score_reports_exact_match_and_anls() -> None:
    assert score('The word is "exit"', "exit", {"id": "s"})["exact_match"] == 0.0
    assert score("Exit.", "exit", {"id": "s"}) == {"exact_match": 1.0, "anls": 1.0}
    near = score("exlt", "exit", {"id": "s"})
    assert near["exact_match"] == 0.0
    assert near["anls"] == pytest.approx(0.75)
