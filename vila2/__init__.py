"""vila2: make vision-language models better by improving their own training data.

Plugins write::

    import vila2

    @vila2.hookimpl
    def register_filters(register):
        register(vila2.Filter("no_urls", check=lambda sample, text: "http" not in text))

Nothing heavy (torch, transformers) is imported here, so ``vila2 --help`` stays fast.
"""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

PROJECT = "vila2"
hookimpl = pluggy.HookimplMarker(PROJECT)
hookspec = pluggy.HookspecMarker(PROJECT)

from vila2.components import (  # noqa: E402
    Captioner,
    ComponentError,
    EvalResult,
    Evaluator,
    Filter,
    Specialist,
)

__all__ = [
    "PROJECT",
    "Captioner",
    "ComponentError",
    "EvalResult",
    "Evaluator",
    "Filter",
    "Specialist",
    "__version__",
    "hookimpl",
    "hookspec",
]
