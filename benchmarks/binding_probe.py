"""Can the decoder tell where the object a question names lies? (benchmarks/RESULTS.md, "Binding a place
to an object")

    python benchmarks/binding_probe.py MODEL [--steps 400] [--orders before after] [--out FILE]
    python benchmarks/binding_probe.py --captions DATASET LAYER [--world-seed 0]

Three measurements on world scenes of splits of their own (no training set or benchmark holds
them), for a ``llava-tiny`` model folder on the world's tower (the shipped starting point, a
round's model):

1. **Is the place there?** A linear probe reads each object's region (the 9 places of *where*
   questions) from the mean of the projected tokens of the cells it covers.
2. **Does the decoder look at the object asked about?** At the answer position of "What color
   is the {shape}?" and "Where is the {color} {shape} in the image?", the share of each head's
   attention on the asked object's cells and on the other objects' cells.
3. **Can it learn to say the place?** The projector and decoder (tower frozen, AdamW, the
   recipe's rates) fine-tuned on nothing but *where* questions, with the image before the
   question (LLaVA's layout, which vila2 trains and evaluates with) and after it; accuracy on
   held-out scenes, by which of the 9 places has the lowest answer loss (chance 11 %).

``--captions DATASET LAYER`` instead reads a run's recaptions of world pretraining images (e.g.
``vila2-demo/pretrain/dataset recap-r1``): how often a caption lists one object twice among the
description's object sentences (``A small red circle at the top left.``), and its object recall
by how many objects the scene holds.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

SPLIT = "binding-probe"


def _grid(model: Any) -> int:
    """Image tokens per side: the tower's image size over its patch size."""
    vision = model.config.vision_config
    return vision.image_size // vision.patch_size


def _cells(box: tuple[int, int, int, int], grid: int) -> list[int]:
    """The ``grid`` × ``grid`` cells whose centre lies in ``box`` (0–999 units)."""
    unit = 1000 / grid
    return [r * grid + c for r in range(grid) for c in range(grid)
            if box[0] <= (c + 0.5) * unit < box[2] and box[1] <= (r + 0.5) * unit < box[3]]


def _scenes(world_seed: int, part: str, n: int) -> list[Any]:
    from vila2.world.scene import sample_scene, scene_seed

    return [sample_scene(scene_seed(world_seed, f"{SPLIT}-{part}", i), word_rate=0.0) for i in range(n)]


def region_probe(model: Any, processor: Any, world_seed: int, images: int = 1500) -> float:
    """Accuracy (%) of a linear probe for an object's region from its cells' mean projected token."""
    import torch

    from vila2.world.render import render
    from vila2.world.scene import region

    grid = _grid(model)
    places: list[str] = []

    def data(part: str, n: int) -> tuple[Any, Any]:
        xs, ys = [], []
        for scene in _scenes(world_seed, part, n):
            pixels = processor.image_processor(images=[render(scene)], return_tensors="pt")["pixel_values"]
            with torch.no_grad():  # the image tokens exactly as the decoder receives them
                tokens = model.model.get_image_features(pixel_values=pixels)
                tokens = (tokens.pooler_output if hasattr(tokens, "pooler_output") else tokens)[0]
            for obj in scene.objects:
                cells = _cells(obj.box, grid)
                if cells:
                    where = region(obj.box)
                    if where not in places:
                        places.append(where)
                    xs.append(tokens[cells].mean(0))
                    ys.append(places.index(where))
        return torch.stack(xs), torch.tensor(ys)

    x_train, y_train = data("probe-train", images)
    x_test, y_test = data("probe-test", images // 5)
    mean, sd = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mean) / sd, (x_test - mean) / sd
    torch.manual_seed(0)
    head = torch.nn.Linear(x_train.shape[1], len(places))
    optimiser = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(800):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(head(x_train), y_train).backward()
        optimiser.step()
    with torch.no_grad():
        return 100 * float((head(x_test).argmax(1) == y_test).float().mean())


def _messages(question: str, order: str, answer: str | None = None) -> list[dict[str, Any]]:
    content = [{"type": "image"}, {"type": "text", "text": question}]
    messages = [{"role": "user", "content": content if order == "before" else content[::-1]}]
    if answer is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages


def attention_share(model_dir: Path, world_seed: int, questions: int = 150) -> dict[str, Any]:
    """Per question kind, layer and head: mean attention share at the answer position on the image,
    the asked object's cells and the other objects' cells, and the per-cell ratio of the two,
    over ``questions`` scenes holding two objects or more."""
    import torch

    from vila2.models.checkpoint import load
    from vila2.world.conversations import SHORT
    from vila2.world.render import render

    model, processor = load(model_dir, attn_implementation="eager")
    model.eval()
    image_token, grid = model.config.image_token_index, _grid(model)
    rng = random.Random(0)
    sums: dict[str, Any] = {}
    scenes = [s for s in _scenes(world_seed, "attention", 2 * questions) if len(s.objects) >= 2][:questions]
    for scene in scenes:
        obj = rng.choice(scene.objects)
        asked = _cells(obj.box, grid)
        others = [c for o in scene.objects if o is not obj for c in _cells(o.box, grid)]
        for kind, question in (("color", f"What color is the {obj.shape}?"),
                               ("where", f"Where is the {obj.name} in the image?")):
            prompt = processor.apply_chat_template(_messages(f"{question}\n{SHORT}", "before"), add_generation_prompt=True)
            batch = processor(images=[render(scene)], text=[prompt], return_tensors="pt")
            with torch.no_grad():
                attentions = model(**batch, output_attentions=True).attentions
            image = (batch["input_ids"][0] == image_token).nonzero()[:, 0]
            rows = torch.stack([a[0, :, -1] for a in attentions])  # layers x heads x tokens
            on_asked, on_others = rows[..., image[asked]].sum(-1), rows[..., image[others]].sum(-1)
            share = torch.stack([rows[..., image].sum(-1), on_asked, on_others,
                                 on_asked / len(asked), on_others / len(others)], -1)
            total = sums.setdefault(kind, [torch.zeros_like(share), 0])
            total[0] += share
            total[1] += 1
    shares = {kind: [[{"image": float(h[0] / n), "asked": float(h[1] / n), "others": float(h[2] / n),
                     # attention per cell on the asked object over that on the others (ratio of
                     # the means): 1 when the head does not tell the asked object from the others
                     "per_cell_ratio": float(h[3] / h[4].clamp(min=1e-12))} for h in layer]
                   for layer in total]
            for kind, (total, n) in sums.items()}
    return {"scenes": len(scenes), **shares}


def where_finetune(model_dir: Path, world_seed: int, order: str, steps: int, *, lr: float = 2e-3,
                   projector_lr: float = 5e-4, train_size: int = 4000, test_size: int = 300,
                   every: int = 100) -> list[dict[str, float]]:
    """Fine-tune on *where* questions only (image ``before`` or ``after`` the question); held-out
    accuracy every ``every`` steps."""
    import torch
    import torch.nn.functional as F

    from vila2.models.checkpoint import load
    from vila2.world.conversations import SHORT
    from vila2.world.render import render
    from vila2.world.scene import region

    torch.manual_seed(0)
    model, processor = load(model_dir)
    pad = processor.tokenizer.pad_token_id

    def encode(image: Any, question: str, answer: str) -> dict[str, Any]:
        prompt = processor.apply_chat_template(_messages(question, order), add_generation_prompt=True)
        full = processor.apply_chat_template(_messages(question, order, answer))
        out = processor(images=[image], text=[full], return_tensors="pt", add_special_tokens=False)
        start = processor(images=[image], text=[prompt], return_tensors="pt",
                          add_special_tokens=False)["input_ids"].shape[1]
        out["labels"] = out["input_ids"].clone()
        out["labels"][:, :start] = -100
        return out

    def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
        length = max(x["input_ids"].shape[1] for x in items)
        padded = {key: torch.cat([F.pad(x[key], (0, length - x[key].shape[1]), value=value) for x in items])
                  for key, value in (("input_ids", pad), ("attention_mask", 0), ("labels", -100))}
        return {**padded, "pixel_values": torch.cat([x["pixel_values"] for x in items])}

    def questions(part: str, n: int) -> list[tuple[Any, str, str]]:
        rng = random.Random(part)
        out = []
        for scene in _scenes(world_seed, part, n):
            obj = rng.choice(scene.objects)
            out.append((render(scene), f"Where is the {obj.name} in the image?\n{SHORT}", region(obj.box)))
        return out

    train, test = questions("train", train_size), questions("test", test_size)
    places = sorted({answer for _, _, answer in train})

    def accuracy() -> float:
        model.eval()
        right = 0
        with torch.inference_mode():
            for image, question, answer in test:
                batch = collate([encode(image, question, p) for p in places])
                labels = batch.pop("labels")[:, 1:]
                logits = model(**batch).logits[:, :-1]
                nll = F.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0), reduction="none")
                right += places[int((nll * (labels != -100)).sum(1).argmin())] == answer
        model.train()
        return 100 * right / len(test)

    for p in model.model.vision_tower.parameters():
        p.requires_grad_(False)
    projector = list(model.model.multi_modal_projector.parameters())
    rest = [p for n, p in model.named_parameters() if p.requires_grad and "multi_modal_projector" not in n]
    optimiser = torch.optim.AdamW([{"params": rest, "lr": lr}, {"params": projector, "lr": projector_lr}],
                                  weight_decay=0.0)
    curve = [{"step": 0, "accuracy": accuracy()}]
    rng = random.Random(0)
    started = time.perf_counter()
    for step in range(1, steps + 1):
        loss = model(**collate([encode(*q) for q in rng.sample(train, 16)])).loss
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
        if step % every == 0 or step == steps:
            curve.append({"step": step, "loss": loss.item(), "accuracy": accuracy()})
            print(f"  {order}: step {step} accuracy {curve[-1]['accuracy']:.1f} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
    return curve


def repeated_objects(dataset: Path, layer: str, world_seed: int) -> dict[str, Any]:
    """How a layer's captions of world pretraining images list the objects: the share naming one
    object in two object sentences, the share listing fewer distinct objects than the scene
    holds, and object recall per object count."""
    import re

    from vila2.data import Dataset
    from vila2.world.quality import pretrain_scene
    from vila2.world.scoring import mentions, object_recall

    sentence = re.compile(r"\bA (?:small|large) (\w+ \w+) (?:at|in|on) the")  # captions.describe's form
    texts = Dataset.open(dataset).layer(layer).texts()
    twice = fewer = 0
    recall: dict[int, list[float]] = {}
    for sample_id, text in texts.items():
        scene = pretrain_scene(world_seed, sample_id)
        if scene is None:
            raise SystemExit(f"{dataset}: sample {sample_id!r} is not a pretraining image of world {world_seed}")
        named = sentence.findall(text)
        twice += len(named) != len(set(named))
        fewer += len(set(named)) < len(scene.objects)
        recall.setdefault(len(scene.objects), []).append(object_recall(mentions(text), scene))
    n = max(1, len(texts))
    return {"captions": len(texts), "names_an_object_twice": 100 * twice / n,
            "lists_fewer_objects_than_the_scene": 100 * fewer / n,
            "recall_by_objects": {k: {"captions": len(v), "recall": 100 * sum(v) / len(v)}
                                  for k, v in sorted(recall.items())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, nargs="?")
    parser.add_argument("--captions", nargs=2, metavar=("DATASET", "LAYER"),
                        help="measure how a layer's captions list the objects, instead of a model")
    parser.add_argument("--world-seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--orders", nargs="*", default=["before", "after"], choices=["before", "after"])
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    if args.captions:
        if args.model is not None:
            parser.error("give a MODEL or --captions DATASET LAYER, not both")
        listed = repeated_objects(Path(args.captions[0]), args.captions[1], args.world_seed)
        print(json.dumps(listed, indent=1))
        if args.out:
            args.out.write_text(json.dumps(listed, indent=1))
        return
    if args.model is None:
        parser.error("give a MODEL, or --captions DATASET LAYER")

    import torch

    from vila2.models.checkpoint import load

    torch.set_num_threads(1)  # tiny layers: one thread is fastest, and leaves the other core alone
    model, processor = load(args.model)
    result: dict[str, Any] = {"model": str(args.model), "region_probe": region_probe(model, processor, args.world_seed)}
    print(f"region of an object from its cells' projected tokens (linear probe): {result['region_probe']:.1f} %")
    result["attention"] = attention_share(args.model, args.world_seed)
    print("| question | layer | head | image | asked object | other objects | per cell, asked / other |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for kind, layers in result["attention"].items():
        if kind == "scenes":
            continue
        for li, heads in enumerate(layers):
            for hi, h in enumerate(heads):
                print(f"| {kind} | {li} | {hi} | {h['image']:.2f} | {h['asked']:.2f} | {h['others']:.2f} "
                      f"| {h['per_cell_ratio']:.2f} |")
    result["where_finetune"] = {order: where_finetune(args.model, args.world_seed, order, args.steps)
                                for order in args.orders}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
