"""The OCR specialist for vila2: reading and describing the text in images.

Installed, it registers (through the ``vila2`` entry point):

* the ``ocr`` specialist: fine-tuned (LoRA) from the self-augmented model on OCR question–answer
  data (OCR-VQA / TextCaps style), it recaptions the pretraining images by recognising and
  describing their text;
* the ``ocr`` evaluator: exact match and ANLS on the OCR benchmark.
"""

from __future__ import annotations

from typing import Any

import vila2
from vila2_ocr_specialist.evaluator import evaluate
from vila2_ocr_specialist.prompts import LORA, PROMPTS, QUESTIONS
from vila2_ocr_specialist.training_data import DOMAIN, prepare_data

__version__ = "0.1.0"
PIP_NAME = "vila2-ocr-specialist"


@vila2.hookimpl
def register_specialists(register: Any) -> None:
    register(vila2.Specialist(
        name=DOMAIN,
        prepare_data=prepare_data,
        prompts=PROMPTS,
        questions=QUESTIONS,
        description="Recognises and describes the text in images.",
        lora=LORA,
        evaluator=DOMAIN,
        settings={"pip": PIP_NAME},
    ))


@vila2.hookimpl
def register_evaluators(register: Any) -> None:
    register(vila2.Evaluator(
        name=DOMAIN,
        run=evaluate,
        benchmarks=(DOMAIN,),
        backend="builtin",
        description="OCR exact match and ANLS.",
    ))
