"""The OCR specialist for vila2: reading and describing the text in images.

Installed, it registers (through the ``vila2`` entry point):

* the ``ocr`` specialist: fine-tuned (LoRA) from the self-augmented model on OCR question–answer
  data (OCR-VQA / TextCaps style), it recaptions the pretraining images by recognising and
  describing their text;
* the ``ocr`` evaluator: exact match and ANLS on the OCR benchmark.
"""

from __future__ import annotations

import vila2
from vila2_ocr_specialist.prompts import LORA, PROMPTS, QUESTIONS
from vila2_ocr_specialist.scoring import score
from vila2_ocr_specialist.training_data import DOMAIN, prepare_data

__version__ = "0.1.0"

KIT = vila2.DomainSpecialist(
    DOMAIN, "Recognises and describes the text in images.", prepare_data, PROMPTS,
    questions=QUESTIONS, lora=LORA, score=score, primary="exact_match",
    max_new_tokens=24,  # OCR answers here are a word or a short line of text
    evaluator_description="OCR exact match and ANLS.",
)
register_specialists, register_evaluators = KIT.hookimpls()
