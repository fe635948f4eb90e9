"""The errors a user can fix. Every one derives from :class:`Vila2Error`, so the command line
catches that one class and prints its message — which names the file, key, sample, step or
plugin — as a single line. Each also keeps the built-in base it had (``ValueError`` for bad
values, ``RuntimeError`` for failures), so ``except ValueError`` in user code still works.
"""

from __future__ import annotations


class Vila2Error(Exception):
    """Base of every error a user can fix; the message says what and where."""


class ComponentError(Vila2Error, ValueError):
    """A component is malformed, or collides with another one."""


class PluginError(Vila2Error, RuntimeError):
    """A plugin could not be loaded or used; the message names the plugin."""


class StoreError(Vila2Error, RuntimeError):
    """A dataset is missing, malformed or used against its rules; the message names the file."""


class BadImage(Vila2Error, ValueError):
    """Image bytes that cannot be stored; ``reason`` is a short stable label, ``detail`` says more."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class MixtureError(Vila2Error, ValueError):
    """A mixture entry or one of its samples is malformed; the message names it."""


class EncodingError(Vila2Error, ValueError):
    """A training example cannot be encoded; the message names the sample."""


class TrainError(Vila2Error, RuntimeError):
    """A training run cannot start or continue; the message says why and where."""


class CaptionError(Vila2Error, RuntimeError):
    """A captioner or filter failed on a sample; the message names the plugin and the sample."""


class FilterError(Vila2Error, RuntimeError):
    """A filter failed on a caption, or a stored score is missing; the message names both."""


class RecipeError(Vila2Error, ValueError):
    """A recipe cannot be read or is invalid; the message names the file and the key."""


class StepChanged(Vila2Error, RuntimeError):
    """An existing run was made with different inputs for a step."""


class PipelineError(Vila2Error, RuntimeError):
    """A step failed; the message names the step."""
