"""Faults: SIGKILL at many points of a run, a full disk, truncated checkpoints — then a rerun.

Every interrupted command is rerun as it was typed; what it finally leaves (results, caption
layers, model weights, per-sample evaluations) must equal what an uninterrupted run leaves, and
nothing a kill cut short may ever be loaded.
"""

from __future__ import annotations

import hashlib
import json
import signal
from pathlib import Path
from typing import Any

import pytest

from reliability.harness import quick_recipe, vila2, write_recipe

# (step, kill point, n): the process dies at the n-th such point inside the step (faults.py)
KILLS = [
    ("world", "commit", 3),  # writing the embedded world: an image shard cut to half
    ("round0.train", "backward", 2),  # training, half-way
    ("round0.train", "save", 1),  # saving the trained model: model.safetensors cut to half
    ("round0.eval.vqa", "generate", 1),  # evaluating
    ("round1.caption", "generate", 2),  # recaptioning, half of the images done
]
#: caps every file of the run below the size of a model, so saving one fails as on a full disk
SMALL_DISK = 1 << 20


def _sha(file: Path) -> str:
    return hashlib.sha256(file.read_bytes()).hexdigest()


def _outputs(run: Path) -> dict[str, Any]:
    """Everything a run produced that must not depend on interruptions."""
    from vila2.data import Dataset

    results = json.loads((run / "results.json").read_text())
    results.pop("run_dir", None)
    ds = Dataset.open(run / "pretrain" / "dataset")
    layers = {name: [(r["id"], r["text"], r["kept"], r["scores"]) for r in ds.layer(name).iter_rows()]
              for name in ds.layers()}
    return {
        "results": results,
        "images": [s["id"] for s in ds.iter_samples()],
        "layers": layers,
        "weights": {str(p.relative_to(run)): _sha(p) for p in sorted(run.rglob("*.safetensors"))},
        "evals": {str(p.relative_to(run)): p.read_text() for p in sorted(run.rglob("*.jsonl"))
                  if "eval" in p.parts},
    }


def _lost(reference: dict[str, Any], resumed: dict[str, Any]) -> int:
    """Samples (images or layer rows) of the uninterrupted run missing after the interruptions."""
    lost = len(set(reference["images"]) - set(resumed["images"]))
    for name, rows in reference["layers"].items():
        have = {r[0] for r in resumed["layers"].get(name, [])}
        lost += len({r[0] for r in rows} - have)
    return lost


def _run(recipe: Path, out: Path, **kwargs: Any) -> Any:
    return vila2(["run", str(recipe), "--out", str(out)], recipe.parent, **kwargs)


@pytest.mark.slow
def test_killed_and_disk_full_runs_resume_to_the_uninterrupted_result(
    tiny_model: Path, tmp_path: Path, tally: Any
) -> None:
    recipe = write_recipe(tmp_path, quick_recipe(tiny_model))
    clean = _run(recipe, tmp_path / "clean")
    assert clean.returncode == 0, clean.stderr[-3000:]
    reference = _outputs(tmp_path / "clean")

    run = tmp_path / "run"
    for step, point, n in KILLS:
        killed = _run(recipe, run, fault=f"{step}:{point}:{n}")
        assert killed.returncode == -signal.SIGKILL, (
            f"the fault {step}:{point}:{n} never fired (exit {killed.returncode}):\n{killed.stderr[-3000:]}")
        assert not (run / "steps" / f"{step}.json").exists(), f"{step} was marked done, yet killed"
        if point == "commit":  # the kill left a half-written shard behind: the rerun must redo it
            assert any(".tmp-" in p.name for p in run.rglob("*"))
        if point == "save":  # the kill left a truncated model behind: the rerun must not load it
            cut = next((run / "round0" / "train").rglob("model.safetensors"))
            assert cut.stat().st_size < (tiny_model / "model.safetensors").stat().st_size
    full = _run(recipe, run, max_file_bytes=SMALL_DISK)
    assert full.returncode == 1, f"exit {full.returncode}:\n{full.stderr[-3000:]}"
    assert "Traceback" not in full.stderr, full.stderr[-3000:]
    assert "Error:" in full.stderr and "space" in full.stderr, full.stderr[-3000:]
    assert not (run / "steps" / "round1.train.json").exists()

    final = _run(recipe, run)
    assert final.returncode == 0, final.stderr[-3000:]

    resumed = _outputs(run)
    lost = _lost(reference, resumed)
    assert lost == 0
    assert resumed == reference
    # nothing of the killed attempts is left behind
    assert not [p for p in run.rglob("*") if ".tmp-" in p.name]
    tally("SIGKILL in a `vila2 run` (world writing, training, model save, evaluation, recaptioning)",
          len(KILLS), "rerun resumed; results, layers, weights, eval samples equal", lost)
    tally("disk full while saving a model (RLIMIT_FSIZE: EFBIG)", 1,
          "one-line error, no traceback; rerun resumed", lost)


@pytest.mark.slow
def test_killed_training_step_resumes_from_its_last_checkpoint(
    tiny_model: Path, tmp_path: Path, tally: Any
) -> None:
    """A `vila2 run` killed mid-training resumes that step from its checkpoint, not from step 0,
    and ends with the weights of an uninterrupted run."""
    settings = {"training": {"batch_size": 8, "max_length": 96, "lr": 2.0e-3, "save_every": 2,
                             "stages": [{"name": "sft", "data": ["captions", "sft"], "steps": 6}]},
                "self_augment": {"rounds": 0}, "evaluators": [{"name": "vqa", "limit": 2}]}
    recipe = write_recipe(tmp_path, quick_recipe(tiny_model, **settings))
    clean = _run(recipe, tmp_path / "clean")
    assert clean.returncode == 0, clean.stderr[-3000:]
    killed = _run(recipe, tmp_path / "run", fault="round0.train:backward:5")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    resumed = _run(recipe, tmp_path / "run")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming at step 4" in resumed.stdout + resumed.stderr
    weights = sorted((tmp_path / "clean" / "round0" / "train").rglob("model.safetensors"))
    assert weights
    for file in weights:
        assert _sha(file) == _sha(tmp_path / "run" / file.relative_to(tmp_path / "clean"))
    tally("SIGKILL mid-training in a `vila2 run`", 1, "the step resumed at its checkpoint (step 4 of 6); "
          "weights equal", 0)


@pytest.mark.slow
def test_half_written_training_checkpoint_is_never_loaded(
    tiny_model: Path, tiny_world: Path, tmp_path: Path, tally: Any
) -> None:
    import torch
    import yaml
    from safetensors.torch import load_file

    from vila2.training.trainer import TrainConfig, train

    settings = {"model": str(tiny_model), "max_steps": 6, "save_every": 2, "batch_size": 4, "max_length": 96,
                "mixture": [{"dataset": str(tiny_world / "sft"), "layers": ["conversations"],
                             "template": "conversation"}]}
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({**settings, "out": str(tmp_path / "run")}))
    # killed while the step-4 checkpoint is written: its weights cut short, no completion record
    killed = vila2(["train", str(config)], tmp_path, fault="*:checkpoint:2")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    checkpoints = tmp_path / "run" / "training" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-2", "step-4"]

    resumed = vila2(["train", str(config)], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming at step 2" in resumed.stdout + resumed.stderr
    straight = train(TrainConfig.parse({**settings, "out": str(tmp_path / "straight")}))
    ours, theirs = load_file(tmp_path / "run" / "model.safetensors"), load_file(straight / "model.safetensors")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    tally("SIGKILL while a training checkpoint is written (weights cut short)", 1,
          "the half checkpoint is ignored; resumed from the last whole one; weights equal", 0)


def _corpus(folder: Path, count: int = 30) -> Path:
    """A WebDataset tar: 10 one-colour images (small shards), then noise images (large ones)."""
    import io
    import tarfile

    import numpy as np
    from PIL import Image

    folder.mkdir()
    with tarfile.open(folder / "00000.tar", "w") as tar:
        for i in range(count):
            pixels = np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8)
            image = Image.new("RGB", (64, 64), (i, 0, 0)) if i < 10 else Image.fromarray(pixels)
            data = io.BytesIO()
            image.save(data, format="PNG")
            for name, payload in ((f"s{i:03d}.png", data.getvalue()), (f"s{i:03d}.txt", f"sample {i}".encode())):
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return folder


def test_full_disk_during_ingest_is_one_error_then_resumes(tmp_path: Path, tally: Any) -> None:
    from vila2.data import Dataset, ingest

    src = _corpus(tmp_path / "src")
    out = tmp_path / "out"
    args = ["ingest", str(src), "--out", str(out), "--shard-size", "10", "--quiet"]
    full = vila2(args, tmp_path, max_file_bytes=64 << 10, inject=False)
    assert full.returncode == 1, full.stderr[-3000:]
    assert "Traceback" not in full.stderr and "no space left" in full.stderr, full.stderr[-3000:]
    assert len(Dataset.open(out).shards()) == 1  # the small first shard was committed

    again = vila2(args, tmp_path, inject=False)
    assert again.returncode == 0, again.stderr[-3000:]
    clean = ingest(src, tmp_path / "clean", shard_size=10, progress=False)
    ours, theirs = Dataset.open(out), Dataset.open(tmp_path / "clean")
    assert [(s["id"], s["image"]) for s in ours.iter_samples()] == [(s["id"], s["image"]) for s in theirs.iter_samples()]
    assert ours.layer("original").texts() == theirs.layer("original").texts()
    lost = clean.kept - ours.num_samples
    assert lost == 0
    tally("disk full during ingest (RLIMIT_FSIZE: EFBIG on an image shard)", 1,
          "one-line error, no traceback; rerun resumed after the committed shard", lost)


def test_truncated_weights_are_named_never_loaded(tiny_model: Path, tmp_path: Path, tally: Any) -> None:
    import shutil

    from vila2.models.checkpoint import load

    cases = 0
    for cut in (8, 1000, (tiny_model / "model.safetensors").stat().st_size - 1):
        folder = tmp_path / f"cut-{cut}"
        shutil.copytree(tiny_model, folder)
        with open(folder / "model.safetensors", "r+b") as weights:
            weights.truncate(cut)
        with pytest.raises(ValueError, match=r"model\.safetensors is truncated or corrupt"):
            load(folder)
        cases += 1
    tally("model.safetensors cut short (8 bytes, 1 kB, one byte short)", cases,
          "refused naming the file, before any weight is read", 0)


def test_every_kind_of_full_disk_is_recognised() -> None:
    """ENOSPC (a real one, from /dev/full), EDQUOT, EFBIG, and libraries that only say it in words."""
    import errno

    from vila2.cli import no_space

    with pytest.raises(OSError) as full, open("/dev/full", "wb") as device:
        device.write(b"x")
        device.flush()
    assert no_space(full.value) == "No space left on device"
    caused = RuntimeError("saving the model failed")
    caused.__cause__ = full.value
    assert no_space(caused) == "No space left on device"
    assert no_space(OSError(errno.EDQUOT, "Disk quota exceeded", "/data/x")) == "Disk quota exceeded writing /data/x"
    rust = Exception("Error while serializing: I/O error: File too large (os error 27)")
    assert no_space(rust) == str(rust)
    assert no_space(OSError(errno.ENOENT, "No such file or directory")) is None
    assert no_space(ValueError("os error 28 is mentioned, not raised")) is None
