"""Errors of the sample store."""

from __future__ import annotations


class StoreError(RuntimeError):
    """A dataset is missing, malformed or used against its rules; the message names the file."""


class BadImage(ValueError):
    """Image bytes that cannot be stored; ``reason`` is a short stable label, ``detail`` says more."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
