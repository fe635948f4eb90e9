"""vila2-clipscore: CLIP/SigLIP image–caption agreement for vila2, sentence by sentence.

Installed, it registers (through the ``vila2`` entry point):

* the filters ``clipscore`` (mean over a caption's sentences) and ``clipscore_min`` (its worst
  sentence), whose scores are stored in the caption layer (:mod:`vila2_clipscore.filters`);
* the evaluator ``clipscore`` for the benchmark ``clipscore``: a model's detailed captions of the
  caption benchmark's images, scored with CLIP (:mod:`vila2_clipscore.evaluator`);
* the command ``vila2 clipscore`` with ``train`` (a small CLIP trained on the embedded world)
  and ``score`` (an existing caption layer scored in batches) (:mod:`vila2_clipscore.cli`).

Nothing heavy is imported here: torch and transformers load when a score is first needed.
"""

from __future__ import annotations

from typing import Any

import vila2

__version__ = "0.1.0"


@vila2.hookimpl
def register_filters(register: Any) -> None:
    """The ``clipscore`` and ``clipscore_min`` filters."""
    from vila2_clipscore.filters import FILTERS

    for component in FILTERS:
        register(component)


@vila2.hookimpl
def register_evaluators(register: Any) -> None:
    """The ``clipscore`` evaluator."""
    from vila2_clipscore.evaluator import EVALUATOR

    register(EVALUATOR)


@vila2.hookimpl
def register_commands(cli: Any) -> None:
    """``vila2 clipscore train`` and ``vila2 clipscore score``."""
    from vila2_clipscore.cli import register

    register(cli)
