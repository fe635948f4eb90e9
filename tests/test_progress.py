"""Progress bars: a line every few seconds into a log, tqdm's own redraws on a terminal."""

from __future__ import annotations

import io
import time

import pytest

from vila2.progress import LOG_INTERVAL, bar_settings, progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _no_env_interval(monkeypatch):
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)


def test_a_bar_written_to_a_log_is_a_few_frames_not_one_per_step():
    """2,000 steps over about a second: tqdm's default would redraw ~10 times; a log gets the
    first and the last frame."""
    log = io.StringIO()
    for _ in progress_bar(range(2000), file=log):
        time.sleep(0.0005)
    frames = log.getvalue().count("\r")
    assert 1 <= frames <= 3, frames
    assert "2000/2000" in log.getvalue()


def test_a_bar_on_a_terminal_keeps_tqdms_redraws():
    assert "mininterval" not in bar_settings({"file": _Terminal()})
    assert bar_settings({"file": io.StringIO()})["mininterval"] == LOG_INTERVAL


def test_the_callers_interval_and_the_environment_win(monkeypatch):
    assert bar_settings({"file": io.StringIO(), "mininterval": 0.5})["mininterval"] == 0.5
    monkeypatch.setenv("TQDM_MININTERVAL", "1")
    assert "mininterval" not in bar_settings({"file": io.StringIO()})


def test_a_closed_stream_counts_as_a_log():
    stream = io.StringIO()
    stream.close()
    assert bar_settings({"file": stream})["mininterval"] == LOG_INTERVAL
