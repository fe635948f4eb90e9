"""Fixtures of the reliability suite, and the table it prints at the end of the session.

Each test adds what it measured (a fault or bad input, how many cases, what happened, samples
lost) with the ``tally`` fixture; the table printed under "reliability measurements" is what
``docs/RELIABILITY.md`` reports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

_TALLY: list[tuple[str, int, str, int]] = []


@pytest.fixture
def tally() -> Callable[[str, int, str, int], None]:
    """``tally(fault, cases, outcome, samples_lost)`` records one row of the reliability table."""

    def add(fault: str, cases: int, outcome: str, lost: int) -> None:
        _TALLY.append((fault, cases, outcome, lost))

    return add


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _TALLY:
        return
    terminalreporter.section("reliability measurements")
    terminalreporter.write_line("| fault or bad input | cases | what happened | samples lost |")
    terminalreporter.write_line("|---|---:|---|---:|")
    for fault, cases, outcome, lost in _TALLY:
        terminalreporter.write_line(f"| {fault} | {cases} | {outcome} | {lost} |")
