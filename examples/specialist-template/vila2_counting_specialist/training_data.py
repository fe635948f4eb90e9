"""The counting specialist's training data: a vila2 dataset with a ``conversations`` layer.

Given a ``source`` (a recipe's ``data.specialists.counting``), that dataset is used as it is. On
the embedded world, the counting questions of its general SFT set are picked out into a dataset
of their own, in ``out_dir``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

DOMAIN = "counting"
LAYER = "conversations"
IMAGE = "<image>"


def counting_turns(conversation: list[dict[str, str]]) -> list[dict[str, str]]:
    """The "How many ...?" question–answer pairs of a LLaVA conversation, ``<image>`` first."""
    pairs = [(q["value"].replace(IMAGE, "").strip(), a["value"])
             for q, a in zip(conversation[::2], conversation[1::2], strict=False)
             if "how many" in q["value"].lower()]
    turns = []
    for i, (question, answer) in enumerate(pairs):
        turns.append({"from": "human", "value": f"{IMAGE}\n{question}" if i == 0 else question})
        turns.append({"from": "gpt", "value": answer})
    return turns


def prepare_data(source: str | None, world: str | None, out_dir: str) -> str:
    """The dataset folder the counting specialist is fine-tuned on."""
    from vila2.data import Dataset, StoreError

    if source is not None:
        if LAYER not in Dataset.open(source).layers():
            raise StoreError(f"{source}: the counting specialist needs a {LAYER!r} layer")
        return source
    if world is None:
        raise StoreError("the counting specialist has no training data: give a dataset folder "
                         "as its source, or run on the embedded world")
    out = Path(out_dir) / "counting"
    if (out / "manifest.json").is_file() and Dataset.open(out).layer(LAYER).is_complete():
        return str(out)
    shutil.rmtree(out, ignore_errors=True)  # an unfinished earlier attempt: start again

    sft = Dataset.open(Path(world) / "sft")
    dataset = Dataset.create(out)
    conversations = {}
    with dataset.writer(source="world sft: counting questions") as images:
        for sample in sft.iter_samples(layers=[LAYER]):
            turns = counting_turns(json.loads(sample[LAYER] or "[]"))
            if turns:
                images.add(sample["id"], sample["image"], sample["width"], sample["height"])
                conversations[sample["id"]] = turns
    if not conversations:
        raise StoreError(f"{sft.path}: no counting questions in the {LAYER!r} layer")
    layer = dataset.create_layer(LAYER, "conversation", producer="vila2-counting-specialist")
    for shard in layer.pending_shards():
        layer.write_shard(shard, [{"id": i, "text": json.dumps(conversations[i])}
                                  for i in dataset.shard_ids(shard)])
    return str(out)
