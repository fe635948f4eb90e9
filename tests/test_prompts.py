"""Prompt sets and the per-sample prompt draw."""

from __future__ import annotations

import collections
import os
import subprocess
import sys

import pytest

from vila2.captioning.prompts import (
    BRIEF_PROMPTS,
    LONG_PROMPTS,
    choose_prompt,
    prompt_set_name,
    resolve_prompts,
)


def test_long_set_holds_the_three_recaption_prompts() -> None:
    assert len(LONG_PROMPTS) == 3
    assert LONG_PROMPTS[0] == "Describe the image in detail."
    assert LONG_PROMPTS[1] == "Elaborate on the visual and narrative elements of the image in detail."
    careful = LONG_PROMPTS[2].lower()
    assert "confidently" in careful and "list" in careful and "aesthetic" in careful


def test_resolve_names_lists_and_files(tmp_path) -> None:
    assert resolve_prompts("long") == LONG_PROMPTS
    assert resolve_prompts("brief") == BRIEF_PROMPTS
    assert resolve_prompts(["Count the objects.", "Read the text."]) == ("Count the objects.", "Read the text.")
    file = tmp_path / "prompts.txt"
    file.write_text("# spatial prompts\nWhere is the cube?\n\n  Which object is closest?  \n")
    assert resolve_prompts(str(file)) == ("Where is the cube?", "Which object is closest?")
    assert prompt_set_name("long") == "long"
    assert prompt_set_name(str(file)) == f"file:{file}"
    assert prompt_set_name(("a",)) == "custom"


@pytest.mark.parametrize("spec", ["lon", [], ["ok", ""], ["ok", 3]])
def test_resolve_refuses_bad_specs(spec) -> None:
    with pytest.raises(ValueError):
        resolve_prompts(spec)


def test_resolve_refuses_an_empty_or_binary_file(tmp_path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    with pytest.raises(ValueError, match="holds no prompt"):
        resolve_prompts(str(empty))
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ValueError, match="not UTF-8"):
        resolve_prompts(str(binary))


def test_choice_is_spread_over_the_set_and_depends_on_seed() -> None:
    ids = [f"img-{i}" for i in range(3000)]
    counts = collections.Counter(choose_prompt(LONG_PROMPTS, i) for i in ids)
    assert set(counts) == set(LONG_PROMPTS)
    assert min(counts.values()) > 900  # about 1000 each
    assert [choose_prompt(LONG_PROMPTS, i) for i in ids] == [choose_prompt(LONG_PROMPTS, i) for i in ids]
    reseeded = [choose_prompt(LONG_PROMPTS, i, seed=1) for i in ids]
    assert reseeded != [choose_prompt(LONG_PROMPTS, i) for i in ids]


def test_choice_is_the_same_in_another_process_with_another_hash_seed() -> None:
    code = (
        "from vila2.captioning.prompts import LONG_PROMPTS, choose_prompt;"
        "print([LONG_PROMPTS.index(choose_prompt(LONG_PROMPTS, f'id{i}')) for i in range(50)])"
    )
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        for seed in ("1", "2")
    ]
    here = str([LONG_PROMPTS.index(choose_prompt(LONG_PROMPTS, f"id{i}")) for i in range(50)])
    assert runs[0].strip() == runs[1].strip() == here


def test_choice_needs_prompts() -> None:
    with pytest.raises(ValueError):
        choose_prompt((), "x")
