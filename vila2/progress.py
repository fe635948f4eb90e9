"""Progress bars that suit where they are written.

On a terminal a tqdm bar redraws in place several times a second, with its rate and ETA. Written
to a log file or a pipe, each redraw is a frame of its own: a 1,200-step training stage left about
2,400 of them. :func:`progress_bar` is tqdm with one change: when its stream is not a terminal it
redraws every :data:`LOG_INTERVAL` seconds. Every bar of vila2 and its first-party plugins is made
here, so library calls (a user's script whose stderr goes to a log) behave like the CLI does.

A ``TQDM_MININTERVAL`` in the environment, or a ``mininterval`` passed in, wins: tqdm reads the
variable itself, and the CLI (``vila2.cli.quiet_progress_in_logs``) sets it for child processes
and third-party bars.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import IO, Any

#: seconds between redraws of a bar written to a file or a pipe
LOG_INTERVAL = 5.0


def writes_to_terminal(stream: IO[str] | None) -> bool:
    """Whether ``stream`` (``None``: stderr, tqdm's default) is a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def bar_settings(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` for tqdm, with ``mininterval`` set to :data:`LOG_INTERVAL` where the bar goes to
    a log and neither the caller nor ``TQDM_MININTERVAL`` chose one."""
    if "mininterval" in kwargs or "TQDM_MININTERVAL" in os.environ:
        return kwargs
    if writes_to_terminal(kwargs.get("file")):
        return kwargs
    return {**kwargs, "mininterval": LOG_INTERVAL}


def progress_bar(iterable: Iterable[Any] | None = None, **kwargs: Any) -> Any:
    """A ``tqdm.auto.tqdm`` bar (same arguments) that writes a line every few seconds into a log
    instead of a frame per update (see the module docstring)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, **bar_settings(kwargs))


__all__ = ["LOG_INTERVAL", "bar_settings", "progress_bar", "writes_to_terminal"]
