"""Untrusted inputs: model folders with code or pickles, hostile tars and sample ids, image
bombs, and recipes that try to run code. Each "marker" file below is what the hostile input
would create if any of its code ran."""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import vila2
from vila2.cli import cli


class _Plant:
    """A pickle that creates ``path`` when it is loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.path, "pickle code ran"))


def hostile_pickle(marker: Path) -> bytes:
    return pickle.dumps({"weight": _Plant(marker)})


def png(width: int = 8, height: int = 8, colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="PNG")
    return out.getvalue()


def png_bomb(side: int = 30_000) -> bytes:
    """A few hundred bytes that announce ``side`` x ``side`` pixels (a decompression bomb)."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (side + 1) * 16)  # only the first rows: the header is what counts
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def _files(root: Path) -> set[Path]:
    """Every file under ``root`` (a hostile input must add none outside its output folder)."""
    return {p for p in root.rglob("*") if p.is_file()}


# ---------------------------------------------------------------------------- remote code
REMOTE_CODE = '''
from pathlib import Path

Path({marker!r}).write_text("remote code ran")

from transformers import LlavaConfig, LlavaForConditionalGeneration


class EvilConfig(LlavaConfig):
    model_type = "evil-vlm"


class EvilModel(LlavaForConditionalGeneration):
    config_class = EvilConfig
'''


def remote_code_model(model: Path, folder: Path, marker: Path) -> Path:
    """A copy of ``model`` whose config asks for its own Python code (``auto_map``)."""
    shutil.copytree(model, folder)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "evil-vlm"
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForImageTextToText": "evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "evil.py").write_text(REMOTE_CODE.format(marker=str(marker)))
    return folder


def test_remote_code_runs_only_when_asked(tiny_model: Path, tmp_path: Path, tally: Any) -> None:
    from vila2.models.checkpoint import load

    marker = tmp_path / "marker"
    folder = remote_code_model(tiny_model, tmp_path / "evil-model", marker)
    with pytest.raises(ValueError, match="trust_remote_code"):
        load(folder)
    assert not marker.exists()

    # asked for explicitly, the folder's code runs (in a child: its module cache is its own)
    script = f"from vila2.models.checkpoint import load; load({str(folder)!r}, trust_remote_code=True)"
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert marker.read_text() == "remote code ran"
    tally("model folder with its own code (auto_map), no trust_remote_code", 1,
          "refused naming trust_remote_code; code ran only with trust_remote_code=True", 0)


def test_a_recipe_cannot_silently_ask_for_remote_code() -> None:
    """``model.trust_remote_code: true`` is refused (not ignored) while `vila2 run` cannot honour it."""
    from vila2.pipeline.recipe import RecipeError, parse_recipe

    recipe = {"data": {"world": {"size": "tiny"}}, "model": {"checkpoint": "m", "trust_remote_code": True},
              "training": {"stages": [{"name": "sft", "data": ["sft"]}]}, "evaluators": ["vqa"]}
    with pytest.raises(RecipeError, match=r"model\.trust_remote_code: .*does not load models that bring"):
        parse_recipe(recipe, source="r.yaml")
    recipe["model"]["trust_remote_code"] = False
    assert parse_recipe(recipe, source="r.yaml").model.trust_remote_code is False


def test_generation_settings_cannot_enable_remote_code(tiny_model: Path, tmp_path: Path, tally: Any) -> None:
    """A recipe's captioner settings reach ``model.generate``; ``custom_generate`` there would
    run a folder's ``custom_generate/generate.py``."""
    from PIL import Image

    from vila2.models.generation import Generator

    marker = tmp_path / "marker"
    (tmp_path / "repo" / "custom_generate").mkdir(parents=True)
    (tmp_path / "repo" / "custom_generate" / "generate.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
        "def generate(model, **kwargs):\n    return None\n")
    with pytest.raises(ValueError, match=r"custom_generate|trust_remote_code"):
        gen = Generator(tiny_model, max_new_tokens=2, custom_generate=str(tmp_path / "repo"),
                        trust_remote_code=True)
        gen([Image.new("RGB", (64, 64))], ["Describe the image."])
    assert not marker.exists()
    tally("generation settings asking for custom_generate + trust_remote_code", 1,
          "refused before any generation; no code ran", 0)


def test_no_code_path_turns_remote_code_on_by_itself() -> None:
    """Every ``trust_remote_code=`` in the package passes on what the caller gave, never ``True``."""
    package = Path(vila2.__file__).parent
    offenders = [f"{p.relative_to(package)}:{n}" for p in package.rglob("*.py")
                 for n, line in enumerate(p.read_text().splitlines(), 1)
                 if re.search(r"trust_remote_code\s*=\s*True", line)]
    assert offenders == []


# ---------------------------------------------------------------------------- pickles
def test_pickled_weights_are_never_unpickled(tiny_model: Path, tmp_path: Path, tally: Any) -> None:
    from vila2.models.checkpoint import load

    marker = tmp_path / "marker"
    only_pickle = tmp_path / "only-pickle"
    shutil.copytree(tiny_model, only_pickle)
    (only_pickle / "model.safetensors").unlink()
    (only_pickle / "pytorch_model.bin").write_bytes(hostile_pickle(marker))
    with pytest.raises(ValueError, match=r"pickled.*pytorch_model\.bin.*allow_pickle=True"):
        load(only_pickle)

    # next to safetensors weights, a pickle is simply never read
    both = tmp_path / "both"
    shutil.copytree(tiny_model, both)
    (both / "pytorch_model.bin").write_bytes(hostile_pickle(marker))
    model, _ = load(both)
    assert model is not None

    # a PEFT adapter with pickled weights only
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tiny_model),
                                                             "peft_type": "LORA"}))
    (adapter / "adapter_model.bin").write_bytes(hostile_pickle(marker))
    with pytest.raises(ValueError, match=r"adapter_model\.safetensors"):
        load(adapter)
    assert not marker.exists()
    # the control: unpickled the ordinary way, the same bytes do run their code
    control = tmp_path / "control"
    pickle.loads(hostile_pickle(control))
    assert control.read_text() == "pickle code ran"
    tally("hostile pickle as model weights / adapter weights (.bin)", 3,
          "refused with a message naming allow_pickle, or never read; no code ran", 0)


def test_training_checkpoints_load_without_running_pickled_code(tmp_path: Path) -> None:
    """Resuming reads accelerate's optimizer/RNG files with torch's weights-only unpickler."""
    from accelerate.utils import load

    marker = tmp_path / "marker"
    planted = tmp_path / "optimizer.bin"
    planted.write_bytes(hostile_pickle(marker))
    with pytest.raises(pickle.UnpicklingError):
        load(planted)
    assert not marker.exists()


def test_package_never_unpickles_or_evaluates() -> None:
    """No call in vila2 unpickles, evaluates text, or reads YAML with the full loader."""
    package = Path(vila2.__file__).parent
    risky = re.compile(r"pickle\.loads?\(|torch\.load\(|weights_only\s*=\s*False|yaml\.(unsafe_)?load\(|"
                       r"yaml\.full_load|(?<![.\w])eval\(|(?<![.\w])exec\(|marshal\.loads?\(")
    offenders = [f"{p.relative_to(package)}:{n}: {line.strip()}" for p in package.rglob("*.py")
                 for n, line in enumerate(p.read_text().splitlines(), 1) if risky.search(line)]
    assert offenders == []


# ---------------------------------------------------------------------------- paths
def _member(tar: tarfile.TarFile, name: str, data: bytes = b"", **fields: Any) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in fields.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if data else None)


def test_tar_members_cannot_write_outside_the_output(tmp_path: Path, tally: Any) -> None:
    from vila2.data import Dataset

    src = tmp_path / "src"
    src.mkdir()
    hostile = ["../escape", "/tmp/vila2-absolute-escape", "a/../../up", "..\\windows", "c:/drive"]
    with tarfile.open(src / "00000.tar", "w") as tar:
        for i in range(3):
            _member(tar, f"good{i}.png", png(colour=(i * 60, 10, 10)))
            _member(tar, f"good{i}.txt", f"a red square {i}".encode())
        for name in hostile:
            _member(tar, f"{name}.png", png())
            _member(tar, f"{name}.txt", b"where am I written?")
        _member(tar, "link.png", type=tarfile.SYMTYPE, linkname="/etc/passwd")
        _member(tar, "hard.png", type=tarfile.LNKTYPE, linkname="good0.png")
        _member(tar, "device.png", type=tarfile.CHRTYPE, devmajor=1, devminor=3)
    before = _files(tmp_path)
    assert not Path("/tmp/vila2-absolute-escape.png").exists()

    out = tmp_path / "work" / "out"
    result = CliRunner().invoke(cli, ["ingest", str(src), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    ds = Dataset.open(out)
    kept = sorted(s["id"] for s in ds.iter_samples())
    assert kept == ["good0", "good1", "good2"]
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    reasons = [r["reason"] for r in rejects]
    assert reasons.count("unsafe member name") == 2 * len(hostile)
    assert reasons.count("not a regular file") == 3
    added = _files(tmp_path) - before
    assert all(p.is_relative_to(out) for p in added), sorted(map(str, added))
    assert not Path("/tmp/vila2-absolute-escape.png").exists()
    tally("tar members named ../x, /abs, a/../../x, x\\y, c:/x; symlink, hard link, device", len(hostile) + 3,
          "each rejected with its reason in rejects.jsonl; nothing written outside --out; good ones kept",
          3 - len(kept))


HOSTILE_IDS = ["../../escape", "/tmp/vila2-id-escape", "a/b/../../../c", "..", ".", ".hidden",
               "x\\..\\..\\y", "nul\x00byte", "ünïcödé/../../z", "a" * 300]


def test_sample_ids_cannot_place_files(tmp_path: Path, tally: Any) -> None:
    from vila2.data import Dataset, export

    images = tmp_path / "src"
    images.mkdir()
    (images / "pic.png").write_bytes(png())
    (tmp_path / "outside.png").write_bytes(png())
    entries = [{"id": ident, "image": "pic.png",
                "conversations": [{"from": "human", "value": "<image>\nWhat is it?"},
                                  {"from": "gpt", "value": f"Sample {i}."}]}
               for i, ident in enumerate(HOSTILE_IDS)]
    entries.append({"id": "reads-outside", "image": "../outside.png", "conversations": entries[0]["conversations"]})
    (images / "data.json").write_text(json.dumps(entries))
    before = _files(tmp_path)

    work = tmp_path / "work"
    out = work / "dataset"
    result = CliRunner().invoke(cli, ["ingest", str(images / "data.json"), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    kept = [s["id"] for s in Dataset.open(out).iter_samples()]
    rejects = {r["id"]: r["reason"] for r in map(json.loads, (out / "rejects.jsonl").read_text().splitlines())}
    assert rejects.get("reads-outside") == "unsafe image path"
    assert set(kept) | set(rejects) == {*HOSTILE_IDS, "reads-outside"}

    exported = work / "export"
    report = export(out, exported, layers=["conversations"], progress=False)
    assert report.examples == len(kept)
    records = json.loads((exported / "data.json").read_text())
    assert sorted(r["id"] for r in records) == sorted(kept)
    for record in records:
        assert (exported / record["image"]).resolve().is_relative_to(exported.resolve())
    added = _files(tmp_path) - before
    assert all(p.is_relative_to(work) for p in added), sorted(map(str, added))
    assert not Path("/tmp/vila2-id-escape").exists()
    tally("sample ids that are paths (../, /abs, \\, NUL, 300 chars) ingested and exported", len(HOSTILE_IDS),
          f"{len(kept)} of {len(HOSTILE_IDS)} kept, exported under safe file names; nothing outside", 0)


FOLDER_NAMES = ["../escaped", "/tmp/vila2-step-escape", "a/../../b", "..", "x\\..\\y", "a..b", "trailing."]


def test_recipe_names_cannot_leave_the_run_folder(tmp_path: Path, tally: Any) -> None:
    """A benchmark name becomes a step, and a step a folder of the run."""
    from vila2.pipeline.recipe import RecipeError, parse_recipe
    from vila2.pipeline.steps import RunFolder

    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    run = RunFolder(tmp_path / "run", log=lambda _: None)
    for name in FOLDER_NAMES:
        recipe = {"data": {"world": {"size": "tiny"}}, "model": {"preset": "llava-tiny"},
                  "training": {"stages": [{"name": "sft", "data": ["sft"]}]},
                  "evaluators": [{"name": name, "backend": "lm-eval"}]}
        with pytest.raises(RecipeError, match=r"evaluators\[0\]\.name"):
            parse_recipe(recipe, source="r.yaml")
        # the run folder refuses such steps too (an absolute name would replace the run's path)
        step = f"round0.eval.{victim if name.startswith('/') else name}"
        with pytest.raises(ValueError, match="step"):
            run.run(step, {}, lambda out: {"wrote": str(out)})
    assert (victim / "keep.txt").read_text() == "mine"
    outside_run = {p for p in tmp_path.rglob("*") if p.is_file() and not p.is_relative_to(tmp_path / "run")}
    assert outside_run == {victim / "keep.txt"}
    tally("benchmark names that are paths or hold an empty part (../x, /abs, a/../../b, .., x\\..\\y, a..b, x.)",
          len(FOLDER_NAMES), "refused by the recipe naming evaluators[0].name, and by the run folder; nothing "
          "outside touched", 0)


def test_component_names_cannot_make_empty_folder_names(fresh_host: Any) -> None:
    """A specialist's name becomes ``specialists/<name>/...``: a name the run folder would refuse
    hours later, after training, is refused when the plugin registers it."""
    from vila2.plugins import PluginError

    class Dotted:
        @vila2.hookimpl
        def register_specialists(self, register: Any) -> None:
            register(vila2.Specialist("ocr..v2", prepare_data=lambda source, world, out: out, prompts=("Read.",)))

    with pytest.raises(PluginError, match=r"dotted.*bad name 'ocr\.\.v2'"):
        fresh_host.register(Dotted(), name="dotted")


# ---------------------------------------------------------------------------- images
def test_image_bombs_are_refused_before_decoding(tmp_path: Path, tally: Any) -> None:
    from vila2.data import BadImage, Dataset
    from vila2.data.image import check_image, open_rgb

    # the bomb's pixel data is mostly missing: had it been decoded, the error would be a
    # truncated image, not its size
    bomb = png_bomb()
    for decode in (check_image, open_rgb):
        with pytest.raises(BadImage, match="image too large"):
            decode(bomb)
    with pytest.raises(BadImage, match="image too large"):
        check_image(png(64, 64), max_pixels=64 * 63)

    src = tmp_path / "src"
    src.mkdir()
    (src / "fine.png").write_bytes(png())
    (src / "fine.txt").write_text("a red square")
    (src / "bomb.png").write_bytes(bomb)
    (src / "bomb.txt").write_text("looks harmless")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["ingest", str(src), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    kept = [s["id"] for s in Dataset.open(out).iter_samples()]
    assert kept == ["fine"]
    assert "image too large" in (out / "rejects.jsonl").read_text()
    tally("decompression bomb (30000x30000 PNG in 1 kB), at ingest and on load", 3,
          "refused as 'image too large' before decoding; the good image kept", 1 - len(kept))


def test_a_bomb_inside_a_dataset_is_one_recorded_caption_error(fresh_host: Any, tmp_path: Path) -> None:
    """Stores written by other tools are not trusted either: loading applies the pixel limit."""
    from vila2.captioning.engine import caption_dataset
    from vila2.data import Dataset

    ds = Dataset.create(tmp_path / "ds")
    with ds.writer(shard_size=10) as writer:
        writer.add("fine", png(), 8, 8)
        writer.add("bomb", png_bomb(), 30_000, 30_000)

    class Plain:
        @vila2.hookimpl
        def register_captioners(self, register: Any) -> None:
            register(vila2.Captioner("plain", load=lambda model, settings: lambda images, prompts:
                                     ["A picture."] * len(images)))

    fresh_host.register(Plain(), name="plain")
    caption_dataset(ds, model=None, layer="caps", captioner="plain", progress=False)
    rows = {row["id"]: row for row in ds.layer("caps").iter_rows()}
    assert rows["fine"]["text"] == "A picture." and "error" not in rows["fine"]["meta"]
    assert "'bomb'" in rows["bomb"]["meta"]["error"] and "image too large" in rows["bomb"]["meta"]["error"]


# ---------------------------------------------------------------------------- recipes
TAGS = [
    "!!python/object/apply:os.system ['touch {marker}']",
    "!!python/object/apply:pathlib.Path.touch [!!python/object/apply:pathlib.Path ['{marker}']]",
    "!!python/name:os.system",
    "!!python/object/new:subprocess.Popen [['touch', '{marker}']]",
    "!!python/module:os",
]


def test_recipe_yaml_tags_never_run_code(tmp_path: Path, tally: Any) -> None:
    from vila2.pipeline.recipe import RecipeError, load_recipe

    marker = tmp_path / "marker"
    base = {"name": "name: x", "seed": "seed: 0", "model": "model: {preset: llava-tiny}",
            "self_augment": "self_augment: {rounds: 1}"}
    cases = 0
    for tag in TAGS:
        for where in base:
            lines = {**base, where: f"{where}: {tag.format(marker=marker)}"}
            recipe = tmp_path / "recipe.yaml"
            recipe.write_text("\n".join([*lines.values(), "data: {world: {size: tiny}}",
                                         "training: {stages: [{name: sft, data: [sft]}]}", "evaluators: [vqa]"]))
            with pytest.raises(RecipeError, match=r"not valid YAML at line \d+"):
                load_recipe(recipe)
            result = CliRunner().invoke(cli, ["run", str(recipe), "--out", str(tmp_path / "run")])
            assert result.exit_code == 1 and "Traceback" not in result.output, result.output
            assert not marker.exists(), (tag, where)
            cases += 1
    tally("recipe YAML tags (!!python/object/apply, /name, /object/new, /module)", cases,
          "refused as not valid YAML (safe_load); no code ran", 0)


def test_recipe_loads_only_the_plugins_it_names(fresh_host: Any, tmp_path: Path) -> None:
    from vila2.pipeline.recipe import parse_recipe
    from vila2.pipeline.run import Run

    marker = tmp_path / "marker"
    (tmp_path / "named.py").write_text("import vila2\n\n@vila2.hookimpl\ndef register_filters(register):\n"
                                       "    register(vila2.Filter('named', check=lambda s, t: True))\n")
    (tmp_path / "bystander.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n")
    recipe = parse_recipe({"plugins": ["named.py"], "data": {"world": {"size": "tiny"}},
                           "model": {"preset": "llava-tiny"},
                           "training": {"stages": [{"name": "sft", "data": ["sft"]}]},
                           "self_augment": {"filters": ["named"]}, "evaluators": ["vqa"]},
                          source="r.yaml", base_dir=tmp_path)
    Run(recipe, tmp_path / "run", log=lambda _: None).check()
    assert "named" in fresh_host.filters()
    assert not marker.exists()
    assert not any(name.endswith("bystander.py") for name in fresh_host.infos)
