"""The demo's starting point: the stand-in for the pretrained LLM + SigLIP a real VILA² run
downloads, built once from world data of its own and shipped as ``vila2/recipes/world-start``.

It is the ``llava-tiny`` preset (8-px patches) on the pretrained tower ``world-tower`` (frozen),
its projector and decoder trained on the SFT set of a world of its own seed
(:data:`START_WORLD_SEED`): general VQA conversations, each with a "describe in detail" turn,
and that world's detailed-caption seed. It never sees a scene of any other world, so no
pretraining image, SFT or domain image or benchmark of the world a recipe runs on (checked
like the tower's split, :func:`check_start_disjoint`). ``start.json`` records what it saw, how
it was trained and whether it looks at the image (VQA of its own world with right and with
shuffled images).

Built by ``vila2 preset start --out DIR``; a recipe names it with
``model: {checkpoint: world-start}``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vila2.training.tower import TOWER_WORLD_SEED, check_scenes_disjoint
from vila2.world.scene import scene_seed

#: the world the starting point learns from: a seed of its own, never a recipe's
START_WORLD_SEED = 0x57A7
INFO = "start.json"


@dataclass(frozen=True)
class StartSettings:
    """How the starting point is built: the defaults are the shipped ``world-start``;
    :meth:`short` is a seconds-long one for tests."""

    preset: str = "llava-tiny"
    patch_size: int = 8
    world_size: str = "demo"
    # 2,000 steps, not 800: the longer-trained decoder answers its own world's VQA as well (77.2)
    # but binds a place to the object it is asked about (a *where* question's heads weigh that
    # object's cells 4.6 and 6.0 times the others', against 1.6 and 2.3), and its round-1 recaptions reach
    # twice the alt-text's recall (benchmarks/RESULTS.md, "Binding a place to an object")
    steps: int = 2000
    batch_size: int = 16
    lr: float = 2e-3
    warmup_ratio: float = 0.05
    max_length: int = 256
    seed: int = 0
    check_questions: int = 500
    # the projector's own learning rate (None: ``lr``). A quarter of the decoder's keeps the
    # position of each object cell that the tower passes on (a linear probe reads its row 97 %
    # right, 74 % at ``lr``) and the start answers its own world's VQA better (77.2 against
    # 72.6; benchmarks/RESULTS.md, "The projector's learning rate")
    projector_lr: float | None = 5e-4

    @classmethod
    def short(cls) -> StartSettings:
        return cls(world_size="tiny", steps=4, batch_size=4, max_length=160, check_questions=8)


def check_start_disjoint(world_seed: int, size: str | int = "default") -> None:
    """Raise unless the starting point's world shares no scene with world ``world_seed``.

    Its world's SFT split (``sft`` and its seed, which are ``pretrain`` scenes of its own world)
    is compared with every scene the other world can use, benchmarks with room to spare.
    """
    if world_seed in (START_WORLD_SEED, TOWER_WORLD_SEED):
        raise ValueError(f"world seed {world_seed} is the starting point's or the tower's own; choose another")
    from vila2.world.sizes import resolve_size

    own = resolve_size(StartSettings().world_size)
    mine = {scene_seed(START_WORLD_SEED, split, i) for split, n in (("sft", own.sft), ("pretrain", own.pretrain))
            for i in range(n)}
    check_scenes_disjoint(mine, world_seed, size, "the starting point")


def build_start(out: str | Path, tower: str | Path, settings: StartSettings | None = None) -> Path:
    """Build the starting point into ``out`` (a model folder with ``start.json``); return ``out``.

    An ``out`` already holding a starting point built with the same settings and tower is
    returned as it is.
    """
    from vila2.data.atomic import sha256_file, write_json
    from vila2.evaluate import evaluate_conversations
    from vila2.training.tower import INFO as TOWER_INFO
    from vila2.training.tower import WEIGHTS, build_with_tower
    from vila2.training.trainer import train
    from vila2.world import world_texts, write_world
    from vila2.world.scoring import vqa_score

    settings = settings or StartSettings()
    out, tower = Path(out), Path(tower)
    if not (tower / WEIGHTS).is_file() or not (tower / TOWER_INFO).is_file():
        raise ValueError(f"{tower} holds no pretrained tower ({WEIGHTS} + {TOWER_INFO}); "
                         "build one with `vila2 preset tower --out DIR`")
    split = json.loads((tower / TOWER_INFO).read_text(encoding="utf-8")).get("split", {})
    wanted = {"settings": asdict(settings), "world_seed": START_WORLD_SEED,
              "tower_sha256": sha256_file(tower / WEIGHTS)}
    info_path = out / INFO
    if info_path.is_file():
        info = json.loads(info_path.read_text(encoding="utf-8"))
        if all(info.get(k) == v for k, v in wanted.items()):
            return out
        raise ValueError(f"{out} holds a starting point built with other settings; choose another folder")
    if out.is_dir() and any(out.iterdir()):  # never replace what a user keeps there
        raise ValueError(f"{out} holds files but no starting point ({INFO}); choose a new or empty folder")
    # the world recipes run on (its default size holds the demo and tiny worlds' scenes too)
    disjoint_from = {"world_seed": 0, "size": "default"}
    check_start_disjoint(**disjoint_from)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vila2-start-") as tmp:
        world = write_world(Path(tmp) / "world", seed=START_WORLD_SEED, size=settings.world_size)
        base = build_with_tower(settings.preset, Path(tmp) / "base", tower, texts=list(world_texts(world)),
                                seed=settings.seed, patch_size=settings.patch_size)
        trained = train({
            "model": str(base), "out": str(Path(tmp) / "start"), "stage": "sft", "max_steps": settings.steps,
            "mixture": [{"dataset": str(world / "sft"), "layers": ["described"], "template": "conversation"}],
            "batch_size": settings.batch_size, "lr": settings.lr, "projector_lr": settings.projector_lr,
            "warmup_ratio": settings.warmup_ratio,
            "max_length": settings.max_length, "seed": settings.seed, "train_vision": False, "save_every": 0,
        })
        check = evaluate_conversations(str(trained), world / "bench" / "vqa", vqa_score, benchmark="vqa",
                                       limit=settings.check_questions, max_new_tokens=8, shuffled=True,
                                       answer_loss=True)
        training = json.loads((trained / "training" / "done.json").read_text(encoding="utf-8"))
        # a folder beside ``out`` renamed into place once whole: a killed build leaves no
        # half-written starting point, only this folder, which the next build replaces
        staging = out.with_name(f".{out.name}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(trained, staging, ignore=shutil.ignore_patterns("training"))
    metrics = check.metrics
    info = {
        **wanted,
        "disjoint_from": disjoint_from,
        "what_it_saw": (f"the SFT set of world {START_WORLD_SEED} (size {settings.world_size}): general VQA "
                        "conversations each with a description turn (layer `described`) and that world's "
                        "detailed-caption seed; the tower saw world images of its own split "
                        f"(split {split.get('name')!r} of world {split.get('world_seed')})"),
        "training": {"steps": settings.steps, "seconds": training.get("seconds"),
                     "samples_per_second": training.get("samples_per_second")},
        "image_dependence": {
            "questions": check.n, "vqa": metrics["accuracy"], "vqa_shuffled": metrics["accuracy_shuffled"],
            "answer_loss": metrics["answer_loss"], "answer_loss_shuffled": metrics["answer_loss_shuffled"],
            "loss_gap": metrics["loss_gap"],
            "data": f"bench/vqa of world {START_WORLD_SEED}",
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(staging / INFO, info)
    if out.is_dir():
        out.rmdir()  # empty: checked before training
    staging.replace(out)
    return out


def start_info(folder: str | Path) -> dict[str, Any]:
    """``start.json`` of a starting point folder."""
    return json.loads((Path(folder) / INFO).read_text(encoding="utf-8"))


__all__ = ["INFO", "START_WORLD_SEED", "StartSettings", "build_start", "check_start_disjoint", "start_info"]
