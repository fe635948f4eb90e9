"""Recaption prompt sets, and which prompt each image gets.

VILA² recaptions every image with one of three long prompts drawn at random (docs/METHOD.md); a brief
prompt does not help, but is here to show it. The draw is seeded by the sample id through SHA-256,
not Python's per-process salted ``hash``, so a rerun, a resume or another rank picks the same
prompt for the same image.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

LONG_PROMPTS: tuple[str, ...] = (
    "Describe the image in detail.",
    "Elaborate on the visual and narrative elements of the image in detail.",
    "Describe the image in detail, but only what you can determine confidently from the image. "
    "Do not describe things that may exist but are not clearly visible, and do not guess. "
    "Write flowing sentences, not a list or bullet points. "
    "Use as few aesthetic words (such as beautiful, stunning or vibrant) as possible.",
)

BRIEF_PROMPTS: tuple[str, ...] = ("Provide a brief description of the given image.",)

PROMPT_SETS: dict[str, tuple[str, ...]] = {"long": LONG_PROMPTS, "brief": BRIEF_PROMPTS}


def resolve_prompts(spec: str | Path | Sequence[str]) -> tuple[str, ...]:
    """Turn a recipe's ``prompts`` into the prompts themselves.

    ``spec`` is a set name (``"long"``, ``"brief"``), a text file with one prompt per line (blank
    lines and lines starting with ``#`` are ignored), or a sequence of prompts (a specialist's
    ``prompts``, or a recipe's list).
    """
    if isinstance(spec, str) and spec in PROMPT_SETS:
        return PROMPT_SETS[spec]
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        if not path.is_file():
            raise ValueError(
                f"prompts {str(spec)!r} is neither a prompt set ({', '.join(PROMPT_SETS)}) nor a file"
            )
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise ValueError(f"prompt file {path}: not UTF-8 text ({exc})") from exc
        prompts = tuple(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))
        if not prompts:
            raise ValueError(f"prompt file {path} holds no prompt")
        return prompts
    prompts = tuple(spec)
    if not prompts:
        raise ValueError("the prompt list is empty")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"prompt {i} is not a non-empty string: {prompt!r}")
    return prompts


def prompt_set_name(spec: str | Path | Sequence[str]) -> str:
    """How provenance names a prompt spec: the set name, ``file:PATH``, or ``custom``."""
    if isinstance(spec, str) and spec in PROMPT_SETS:
        return spec
    if isinstance(spec, (str, Path)):
        return f"file:{spec}"
    return "custom"


def choose_prompt(prompts: Sequence[str], sample_id: str, seed: int = 0) -> str:
    """The prompt for ``sample_id``: uniform over ``prompts``, the same in every process and run."""
    if not prompts:
        raise ValueError("no prompts to choose from")
    digest = hashlib.sha256(f"{seed}\x00{sample_id}".encode()).digest()
    return prompts[int.from_bytes(digest[:8], "big") % len(prompts)]


__all__ = ["BRIEF_PROMPTS", "LONG_PROMPTS", "PROMPT_SETS", "choose_prompt", "prompt_set_name", "resolve_prompts"]
