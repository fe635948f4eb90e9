"""Every example recipe's documented commands run on tiny data, so an example cannot go stale.

The commands are read from the recipe's own comment lines (``#   vila2 ...``); source paths that
point at a user's data (``/data/...``) are replaced by tiny stand-ins of the same format, the
training run is asked only to ``--check`` everything it would read, and ``accelerate launch -m
vila2`` runs as ``python -m vila2``.
"""

from __future__ import annotations

import io
import json
import shlex
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples" / "recipes").glob("*.yaml"))


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (seed * 40 % 256, 80, 160)).save(buffer, "PNG")
    return buffer.getvalue()


def _webdataset(folder: Path) -> Path:
    """Tars as img2dataset writes them: NNNNN.jpg/png + NNNNN.txt."""
    folder.mkdir(parents=True)
    with tarfile.open(folder / "00000.tar", "w") as tar:
        for i in range(4):
            for name, data in ((f"{i:05d}.png", _png(i)), (f"{i:05d}.txt", f"a photo number {i}".encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return folder


def _llava(file: Path) -> Path:
    """A LLaVA JSON file with its images folder beside it."""
    (file.parent / "images").mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(4):
        (file.parent / "images" / f"{i}.png").write_bytes(_png(i))
        entries.append({"id": f"q{i}", "image": f"images/{i}.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat is on the left?"}, {"from": "gpt", "value": "a cube"}]})
    file.write_text(json.dumps(entries))
    return file


def _commands(recipe: Path) -> list[list[str]]:
    lines = [line[1:].strip() for line in recipe.read_text().splitlines() if line.startswith("#   ")]
    commands = []
    for line in lines:
        words = shlex.split(line.split("#")[0])
        if words[:3] == ["accelerate", "launch", "-m"]:
            words = words[3:]
        if words and words[0] == "vila2":
            commands.append(words[1:])
    return commands


@pytest.mark.parametrize("recipe", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_recipe_commands_run(recipe: Path, tmp_path: Path, tiny_model: Path, tiny_world: Path) -> None:
    commands = _commands(recipe)
    assert commands, f"{recipe.name} documents no vila2 command"
    # the recipe's paths are relative to its file: lay it out as in the repository
    (tmp_path / "examples" / "recipes").mkdir(parents=True)
    shutil.copy(recipe, tmp_path / "examples" / "recipes" / recipe.name)
    shutil.copytree(tiny_model, tmp_path / "checkpoints" / "llava-1.5-7b-hf")
    (tmp_path / "data" / "mmmu").mkdir(parents=True)
    shutil.copy(next((tiny_world / "bench" / "mmmu").rglob("*.parquet")), tmp_path / "data" / "mmmu" / "validation.parquet")
    _llava(tmp_path / "data" / "spatial" / "spatial_qa.json")
    shutil.copy(tmp_path / "data" / "spatial" / "spatial_qa.json", tmp_path / "data" / "spatial_qa.json")
    stand_ins = {"/data/coyo-shards": _webdataset(tmp_path / "user" / "coyo-shards"),
                 "/data/llava_v1_5_mix665k.json": _llava(tmp_path / "user" / "sft" / "mix.json")}
    ran = []
    for words in commands:
        words = [str(stand_ins.get(w, w)) for w in words]
        if words[0] == "run":
            words.append("--check")
        result = subprocess.run([sys.executable, "-m", "vila2", *words], cwd=tmp_path, capture_output=True,
                                text=True, timeout=300, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
        assert result.returncode == 0, f"vila2 {' '.join(words)}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        ran.append(words[0])
    assert "run" in ran
