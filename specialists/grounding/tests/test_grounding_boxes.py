"""Box parsing through formatting noise, the canonical form, and IoU."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vila2_grounding_specialist.boxes import (
    BoxError,
    canonicalise,
    clean_answer,
    format_box,
    iou,
    parse_box,
    to_grid,
    well_formed,
)

BOX = (120, 340, 560, 780)


@pytest.mark.parametrize(
    "text",
    [
        "[120,340,560,780]",
        "[120, 340, 560, 780]",
        "( 120 , 340 , 560 , 780 )",
        "120 340 560 780",
        "120, 340, 560, 780",
        "the red circle is at [120.2, 339.6, 560, 780.4].",
        "(120,340),(560,780)",
        "[560,780,120,340]",  # corners swapped
        "[0.1201, 0.3403, 0.5606, 0.7808]",  # normalised to 0–1
        "red circle [120,340,560,780] and blue square [0,0,10,10]",  # the first box wins
        "3 objects; the red circle: [120;340;560;780]",
    ],
)
def test_noisy_boxes_parse_to_the_grid(text: str) -> None:
    assert parse_box(text) == BOX


@pytest.mark.parametrize("text", ["", "no box here", "[1, 2, 3]", "1 red circle 2 3 4"])
def test_text_without_a_box_parses_to_none(text: str) -> None:
    assert parse_box(text) is None


def test_out_of_range_values_clip_unless_strict() -> None:
    assert to_grid(["-5", "0", "1200", "999"]) == (0, 0, 999, 999)
    with pytest.raises(BoxError, match="outside the 0–999 grid"):
        to_grid(["10", "20", "1200", "480"], strict=True)


def test_canonicalise_rewrites_bracketed_boxes_only() -> None:
    text = "a red circle at ( 0.5 , 0.5, 1.0,1.0 ) left of 2 squares [10 20 30 40]"
    assert canonicalise(text) == "a red circle at [500,500,999,999] left of 2 squares [10,20,30,40]"
    assert canonicalise("page 1 2 3 4") == "page 1 2 3 4"


def test_an_answer_cut_off_inside_a_box_keeps_its_finished_sentences() -> None:
    cut = "A large orange square (0.2, 0.1, 0.4, 0.3). A small green triangle [131,9,9"
    assert clean_answer(cut) == "A large orange square [200,100,400,300]."
    assert clean_answer("A small green triangle [131,9,9") == ""
    assert clean_answer("A red circle [1,2,3,4]. Done") == "A red circle [1,2,3,4]. Done"


@pytest.mark.parametrize(("text", "usable"), [
    ("A red circle [100,200,300,400]. The word \"cat\" [10,20,30,40].", True),
    ("A red circle [100,200,300,400]. A blue cross [2,8,736,849,819].", False),  # five numbers
    ("A red circle [9,9,236,9].", False),  # no area
    ("A red circle [100,200,300,400]. A blue cross [131,9,9,8", False),  # cut off
    ("A red circle at the top left.", False),  # no box at all
    ("", False),
])
def test_well_formed_answers_only_are_training_data(text: str, usable: bool) -> None:
    assert well_formed(text) is usable


def test_iou() -> None:
    assert iou(BOX, BOX) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert iou((5, 5, 5, 5), (5, 5, 5, 5)) == 0.0


grid = st.integers(min_value=0, max_value=999)


@settings(derandomize=True, deadline=None)
@given(grid, grid, grid, grid, st.sampled_from(["[{},{},{},{}]", "({}, {}, {}, {})", "{} {} {} {}",
                                                "({},{}),({},{})"]))
def test_format_then_parse_round_trips(x0: int, y0: int, x1: int, y1: int, template: str) -> None:
    box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    assert parse_box(template.format(*box)) == box
    assert parse_box(format_box(box)) == box
    assert canonicalise(format_box(box)) == format_box(box)
