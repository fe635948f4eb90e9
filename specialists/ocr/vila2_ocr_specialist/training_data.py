"""The OCR specialist's training data: a dataset folder with a ``conversations`` layer.

``source`` (a recipe's ``data.specialists.ocr``) is one of:

* a vila2 dataset folder, used as it is;
* LLaVA conversation JSON / JSONL (images relative to its folder) — OCR-VQA or TextCaps-style
  question–answer data, as LLaVA's training mix ships it — or a folder holding one such file and
  its images: ingested into ``out_dir`` by the store's ingest, which checks every image and
  records what it skips in ``rejects.jsonl``;
* ``None``: the embedded world's OCR set, ``<world>/ocr``.
"""

from __future__ import annotations

DOMAIN = "ocr"


def prepare_data(source: str | None, world: str | None, out_dir: str) -> str:
    """The dataset folder the ocr specialist is fine-tuned on (see the module docstring)."""
    from vila2.data.conversation_sets import prepare_conversations

    return prepare_conversations(DOMAIN, source, world, out_dir)
