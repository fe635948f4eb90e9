"""The recaption engine: layers, provenance, filters, errors, resume after SIGKILL, two ranks."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

import vila2
from vila2.captioning.engine import CaptionError, caption_dataset, summarize
from vila2.captioning.prompts import LONG_PROMPTS, choose_prompt
from vila2.data import Dataset, StoreError
from vila2.plugins import PluginError

TEXTS = ["a red circle left of a blue square", "the text reads open", "a small green cube"] * 20
FILTERS = ["repeated_sentence", {"name": "word_count", "min": 2}, "exact_duplicate", "garbage"]

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run faster on one thread


def png(width: int, height: int, rng: random.Random) -> bytes:
    image = Image.new("RGB", (width, height), tuple(rng.randrange(256) for _ in range(3)))
    x, y = rng.randrange(width // 2), rng.randrange(height // 2)
    ImageDraw.Draw(image).rectangle([x, y, x + width // 3, y + height // 3],
                                    fill=tuple(rng.randrange(256) for _ in range(3)))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def make_dataset(path: Path, n: int = 24, shard_size: int = 6, *, small: set[int] = frozenset(),
                 broken: set[int] = frozenset(), copies: dict[int, int] | None = None) -> Dataset:
    """``n`` 64x64 images (32x32 for indices in ``small``; undecodable bytes for ``broken``;
    image ``j``'s bytes again for each ``i: j`` in ``copies``)."""
    rng = random.Random(0)
    ds = Dataset.create(path)
    written: list[bytes] = []
    with ds.writer(shard_size=shard_size, source="test") as writer:
        for i in range(n):
            side = 32 if i in small else 64
            data = b"not an image" if i in broken else png(side, side, rng)
            data = written[(copies or {})[i]] if i in (copies or {}) else data
            written.append(data)
            writer.add(f"img{i:03d}", data, side, side)
    return ds


ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vila2.models.presets import build

    return build("llava-tiny", tmp_path_factory.mktemp("cap") / "llava-tiny", texts=TEXTS, seed=0)


@pytest.fixture(scope="module")
def settings(model_dir: Path) -> dict:
    """Keep the random model off its special tokens so captions are not empty."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return {"suppress_tokens": [i for i, t in tokenizer.added_tokens_decoder.items()
                                if t.special and i != tokenizer.eos_token_id]}


def rows(ds: Dataset, layer: str) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "shard"} for row in ds.layer(layer).iter_rows()]


# ------------------------------------------------------------------ with a fake captioner
class ColourCaptioner:
    """Captions an image by its top-left colour; fails on 32x32 images; counts its loads."""

    loads = 0

    @vila2.hookimpl
    def register_captioners(self, register):
        def load(model, settings):
            ColourCaptioner.loads += 1

            def caption(images, prompts):
                if any(image.size == (32, 32) for image in images):
                    raise RuntimeError("cannot caption small images")
                return [f"A patch of colour {image.getpixel((0, 0))}." for image in images]

            return caption

        register(vila2.Captioner("colour", load=load))
        register(vila2.Captioner("wrong-count", load=lambda model, settings: lambda images, prompts: ["x"]))

        def broken(images, prompts):
            raise TypeError("generate() got an unexpected keyword argument 'temprature'")

        register(vila2.Captioner("broken", load=lambda model, settings: broken))


@pytest.fixture
def colour(plugin_registered) -> str:
    ColourCaptioner.loads = 0
    return plugin_registered(ColourCaptioner(), name="colour-plugin")


def test_layer_rows_provenance_and_summary(tmp_path, colour) -> None:
    # img003 repeats img001 in the same shard; img007 repeats it in the next shard
    ds = make_dataset(tmp_path / "ds", n=14, shard_size=5, copies={3: 1, 7: 1})
    summary = caption_dataset(ds, model=None, layer="recap", captioner="colour", filters=FILTERS,
                              round=1, batch_size=2, progress=False)
    assert summary.complete and summary.total == summary.captioned == summary.new == 14
    assert summary.shards_done == summary.shards_total == 3
    info = ds.layer("recap").info
    assert info["producer"] == "colour-plugin:colour"
    assert info["round"] == 1 and info["prompt_set"] == "long"
    assert info["settings"]["prompts"] == list(LONG_PROMPTS)
    assert info["settings"]["filters"][1] == {"name": "word_count", "min": 2}
    got = rows(ds, "recap")
    assert [r["id"] for r in got] == [f"img{i:03d}" for i in range(14)]
    for row in got:
        assert row["prompt"] == choose_prompt(LONG_PROMPTS, row["id"])
        assert row["text"].startswith("A patch of colour (")
        assert set(row["scores"]) == {"repeated_sentence", "word_count", "exact_duplicate", "garbage"}
        assert row["kept"] is (row["scores"]["exact_duplicate"] == 0)
    assert [r["id"] for r in got if not r["kept"]] == ["img003"]  # duplicates count within a shard
    assert got[7]["text"] == got[1]["text"] and got[7]["kept"]
    assert summary.kept == 13 and summary.filtered == {"exact_duplicate": 1}
    kept_words = [len(r["text"].split()) for r in got if r["kept"]]
    assert summary.mean_words == pytest.approx(sum(kept_words) / len(kept_words))
    assert "captioned  14 of 14" in str(summary)
    # a rerun finds nothing to do and loads no model
    again = caption_dataset(ds, model=None, layer="recap", captioner="colour", filters=FILTERS,
                            round=1, batch_size=2, progress=False)
    assert ColourCaptioner.loads == 1 and again.new == 0 and again.complete
    with pytest.raises(StoreError, match="other provenance"):
        caption_dataset(ds, model=None, layer="recap", captioner="colour", round=2, progress=False)


def test_specialist_prompts_and_prompt_files(tmp_path, colour) -> None:
    ds = make_dataset(tmp_path / "ds", n=6, shard_size=6)
    spatial = ("Describe the image in detail, with a focus on spatial relations.", "Where is each object?")
    caption_dataset(ds, model=None, layer="spatial", captioner="colour", prompts=spatial, progress=False)
    assert {r["prompt"] for r in rows(ds, "spatial")} <= set(spatial)
    assert ds.layer("spatial").info["prompt_set"] == "custom"
    file = tmp_path / "prompts.txt"
    file.write_text("Read the text in the image.\n")
    caption_dataset(ds, model=None, layer="ocr", captioner="colour", prompts=str(file), progress=False)
    assert {r["prompt"] for r in rows(ds, "ocr")} == {"Read the text in the image."}


def test_a_specialist_check_rejects_answers_and_records_them(tmp_path, colour) -> None:
    """``check_answer`` turns a specialist's unusable answers into rejected rows of its layer
    (counted in the summary under the filter's name), after ``clean_answer`` rewrote them."""
    def red(text: str) -> int:  # "A patch of colour (r, g, b)" -> r
        return int(text.split("(")[1].split(",")[0])

    spec = vila2.Specialist("patches", prepare_data=lambda source, world, out: out, prompts=("Describe.",),
                            clean_answer=lambda text: text.rstrip("."),
                            check_answer=lambda text: red(text) < 128)
    ds = make_dataset(tmp_path / "ds", n=8, shard_size=8)
    summary = caption_dataset(ds, model=None, layer="spec", captioner="colour", prompts=spec.prompts,
                              filters=[spec.clean_filter()], progress=False)
    got = rows(ds, "spec")
    rejected = [r for r in got if not r["kept"]]
    assert 0 < len(rejected) < len(got) and all(red(r["text"]) >= 128 for r in rejected)
    assert all(not r["text"].endswith(".") for r in got)
    assert summary.filtered == {"patches-clean": len(rejected)}
    assert vila2.Specialist("plain", prepare_data=spec.prepare_data, prompts=spec.prompts).clean_filter() is None
    # a check that fails names the filter, the specialist's plugin and the sample
    broken = dataclasses.replace(spec, check_answer=lambda text: 1 / 0, plugin="patches-plugin")
    failed = caption_dataset(ds, model=None, layer="broken", captioner="colour", prompts=spec.prompts,
                             filters=[broken.clean_filter()], progress=False)
    assert failed.errors == 8 and failed.kept == 0
    assert failed.error_examples["img000"].startswith(
        "filter 'patches-clean' (plugin 'patches-plugin') failed on sample 'img000': ZeroDivisionError")


def test_failing_samples_are_skipped_and_named(tmp_path, colour) -> None:
    ds = make_dataset(tmp_path / "ds", n=12, shard_size=4, small={5}, broken={9})
    summary = caption_dataset(ds, model=None, layer="recap", captioner="colour", batch_size=2,
                              progress=False)
    assert summary.complete and summary.total == 12 and summary.captioned == 10
    errors = summary.error_examples
    assert summary.errors == 2 and set(errors) == {"img005", "img009"}
    assert "'colour' (plugin 'colour-plugin') failed on sample 'img005'" in errors["img005"]
    assert "cannot caption small images" in errors["img005"]
    assert "img009" in errors["img009"] and "does not decode" in errors["img009"]
    assert "errors     2 (first: img005" in str(summary)
    by_id = {r["id"]: r for r in rows(ds, "recap")}
    assert by_id["img005"]["kept"] is False and by_id["img005"]["text"] == ""
    assert by_id["img005"]["meta"]["error"] == errors["img005"]
    # the failing sample's chunk-mates were still captioned, one at a time
    assert by_id["img004"]["kept"] and by_id["img006"]["kept"]


def test_stop_on_error_keeps_finished_shards(tmp_path, colour) -> None:
    ds = make_dataset(tmp_path / "ds", n=12, shard_size=4, small={5})
    with pytest.raises(CaptionError, match=r"plugin 'colour-plugin'.*'img005'.*shard 00001"):
        caption_dataset(ds, model=None, layer="recap", captioner="colour", on_error="stop", progress=False)
    layer = ds.layer("recap")
    assert layer.done_shards() == ["00000"] and not layer.is_complete()


class DiceCaptioner:
    """Samples its captions from torch's RNG; fails on images whose top-left pixel is
    ``fail_on``."""

    fail_on: tuple | None = None

    @vila2.hookimpl
    def register_captioners(self, register):
        def load(model, settings):
            import torch

            def caption(images, prompts):
                if any(image.getpixel((0, 0)) == DiceCaptioner.fail_on for image in images):
                    raise RuntimeError("interrupted")
                return [f"dice {torch.randint(0, 10**6, ()).item()}" for _ in images]

            return caption

        register(vila2.Captioner("dice", load=load))


def test_sampled_captions_are_the_same_after_a_resume(tmp_path, plugin_registered) -> None:
    plugin_registered(DiceCaptioner(), name="dice-plugin")
    ds = make_dataset(tmp_path / "ds", n=12, shard_size=4)
    DiceCaptioner.fail_on = None
    caption_dataset(ds, model=None, layer="whole", captioner="dice", progress=False)
    DiceCaptioner.fail_on = ds.load_image(next(ds.iter_samples(shards=["00001"]))).getpixel((0, 0))
    with pytest.raises(CaptionError, match="interrupted"):
        caption_dataset(ds, model=None, layer="resumed", captioner="dice", on_error="stop", progress=False)
    assert ds.layer("resumed").done_shards() == ["00000"]
    DiceCaptioner.fail_on = None
    import torch

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    caption_dataset(ds, model=None, layer="resumed", captioner="dice", on_error="stop", progress=False)
    assert rows(ds, "resumed") == rows(ds, "whole")
    assert torch.equal(torch.rand(3), expected)  # the caller's random stream is untouched
    assert len({r["text"] for r in rows(ds, "whole")}) > 6  # really random


def test_a_broken_captioner_contract_stops_the_run(tmp_path, colour) -> None:
    ds = make_dataset(tmp_path / "ds", n=4, shard_size=4)
    with pytest.raises(PluginError, match=r"'wrong-count'.*one string per image"):
        caption_dataset(ds, model=None, layer="recap", captioner="wrong-count", progress=False)


def test_a_captioner_failing_on_every_sample_stops_even_when_skipping(tmp_path, colour) -> None:
    ds = make_dataset(tmp_path / "ds", n=4, shard_size=4)
    with pytest.raises(CaptionError, match=r"'broken'.*failed on all 4 images.*'img000'.*temprature"):
        caption_dataset(ds, model=None, layer="recap", captioner="broken", progress=False)
    assert ds.layer("recap").done_shards() == []


def test_bad_arguments_are_named(tmp_path, colour) -> None:
    ds = make_dataset(tmp_path / "ds", n=2, shard_size=2)
    with pytest.raises(PluginError, match="no captioner named 'selff'"):
        caption_dataset(ds, model=None, layer="x", captioner="selff")
    with pytest.raises(ValueError, match="on_error"):
        caption_dataset(ds, model=None, layer="x", on_error="ignore")
    with pytest.raises(ValueError, match="neither a prompt set"):
        caption_dataset(ds, model=None, layer="x", captioner="colour", prompts="longg")
    with pytest.raises(CaptionError, match=r"'self'.*needs a model folder"):
        caption_dataset(ds, model=None, layer="x", progress=False)
    assert ds.layers() == []  # a captioner that cannot load leaves no layer to delete


# ------------------------------------------------------------------ executors
class ReverseExecutor:
    """Executors that run a job's shards last to first, a freshly loaded captioner for each
    (as if every shard went to another worker), or break the executor contract."""

    runs = 0

    @vila2.hookimpl
    def register_executors(self, register):
        from vila2.components import Executor

        def run(job, settings):
            ReverseExecutor.runs += 1
            shards = job.pending()
            return sum(job.caption_shard(shard, job.load()) for shard in reversed(shards)), 0.5

        register(Executor("reverse", run=run, settings={"workers": 1}))
        register(Executor("forgetful", run=lambda job, settings: None))


def test_an_executor_plugin_writes_the_layer_one_process_writes(tmp_path, colour, plugin_registered) -> None:
    from vila2.captioning.engine import DEFAULT_EXECUTOR

    plugin_registered(DiceCaptioner(), name="dice-plugin")
    plugin_registered(ReverseExecutor(), name="reverse-plugin")
    DiceCaptioner.fail_on = None
    assert DEFAULT_EXECUTOR == "local" and vila2.plugins.get_host().get("executor", "local").in_process
    ds = make_dataset(tmp_path / "ds", n=14, shard_size=4, small={5})
    for layer, executor in (("one", "local"), ("reversed", "reverse")):
        caption_dataset(ds, model=None, layer=layer, captioner="colour", filters=FILTERS, batch_size=2,
                        progress=False, executor=executor)
        caption_dataset(ds, model=None, layer=f"dice-{layer}", captioner="dice", progress=False,
                        executor=executor, executor_settings={"workers": 3} if executor == "reverse" else None)
    assert rows(ds, "reversed") == rows(ds, "one") and rows(ds, "dice-reversed") == rows(ds, "dice-one")
    info = {k: v for k, v in ds.layer("reversed").info.items() if k not in ("name", "created")}
    assert info == {k: v for k, v in ds.layer("one").info.items() if k not in ("name", "created")}
    # an executor-loaded captioner is not loaded in this process: a new layer costs one load per shard
    ColourCaptioner.loads = 0
    summary = caption_dataset(ds, model=None, layer="again", captioner="colour", progress=False,
                              executor="reverse")
    assert ColourCaptioner.loads == 4 and summary.new == 13 and summary.seconds == 0.5
    runs = ReverseExecutor.runs
    assert caption_dataset(ds, model=None, layer="again", captioner="colour", progress=False,
                           executor="reverse").new == 0
    assert ReverseExecutor.runs == runs + 1 and ColourCaptioner.loads == 4  # nothing pending: no load


def test_executor_names_settings_and_contract_are_checked(tmp_path, colour, plugin_registered) -> None:
    plugin_registered(ReverseExecutor(), name="reverse-plugin")
    ds = make_dataset(tmp_path / "ds", n=4, shard_size=4)
    with pytest.raises(PluginError, match=r"no executor named 'revers'.*Did you mean 'reverse'"):
        caption_dataset(ds, model=None, layer="x", captioner="colour", executor="revers")
    with pytest.raises(ValueError, match=r"executor 'reverse' \(plugin 'reverse-plugin'\) has no setting "
                                         r"threads; its settings: workers"):
        caption_dataset(ds, model=None, layer="x", captioner="colour", executor="reverse",
                        executor_settings={"threads": 2})
    assert ds.layers() == []
    with pytest.raises(PluginError, match=r"executor 'forgetful'.*returned None.*\(samples captioned, seconds\)"):
        caption_dataset(ds, model=None, layer="x", captioner="colour", executor="forgetful", progress=False)


def test_cli_passes_the_executor_and_its_address(tmp_path) -> None:
    ds = make_dataset(tmp_path / "ds", n=2, shard_size=2)
    base = [sys.executable, "-m", "vila2", "caption", str(ds.path), "--layer", "x", "--captioner", "self"]
    result = subprocess.run([*base, "--address", "127.0.0.1:6379", "--executor-set", "actors=2"],
                            capture_output=True, text=True, timeout=300, env=ONE_THREAD)
    assert result.returncode != 0
    assert "executor 'local'" in result.stderr and "no setting actors, address" in result.stderr
    result = subprocess.run([*base, "--executor", "ray"], capture_output=True, text=True, timeout=300,
                            env={**ONE_THREAD, "VILA2_LOAD_PLUGINS": ""})
    assert result.returncode != 0 and "no executor named 'ray'" in result.stderr


# ------------------------------------------------------------------ with the tiny model
def cli_args(ds: Path, model: Path, layer: str, settings: dict) -> list[str]:
    return ["caption", str(ds), "--model", str(model), "--layer", layer, "--batch-size", "3",
            "--max-new-tokens", "12", "--filter", "repeated_sentence", "--filter", "word_count:min=2",
            "--filter", "exact_duplicate",
            "--set", f"suppress_tokens={json.dumps(settings['suppress_tokens'])}"]


def reference(ds: Dataset, model: Path, layer: str, settings: dict) -> None:
    """The uninterrupted single-process run the CLI runs must reproduce."""
    caption_dataset(ds, model=model, layer=layer, batch_size=3, max_new_tokens=12, filters=FILTERS[:3],
                    settings=settings, progress=False)


@pytest.mark.slow
def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path, model_dir, settings, fresh_host) -> None:
    ds = make_dataset(tmp_path / "ds", n=36, shard_size=6)
    reference(ds, model_dir, "whole", settings)
    process = subprocess.Popen([sys.executable, "-m", "vila2", *cli_args(ds.path, model_dir, "resumed", settings)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ONE_THREAD)
    markers = ds.path / "layers" / "resumed"
    deadline = time.monotonic() + 240
    while not list(markers.glob("*.done")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = len(list(markers.glob("*.done")))
    assert 1 <= done_before < 6, process.stderr.read().decode()[-2000:]

    summary = caption_dataset(
        ds, model=model_dir, layer="resumed", batch_size=3, max_new_tokens=12, filters=FILTERS[:3],
        settings=settings, progress=False)
    assert summary.complete
    assert summary.new == 36 - 6 * done_before  # finished shards were not captioned again
    resumed = rows(ds, "resumed")
    assert [r["id"] for r in resumed] == [i for shard in ds.shards() for i in ds.shard_ids(shard)]
    assert len({r["id"] for r in resumed}) == 36
    assert resumed == rows(ds, "whole")
    assert any(r["text"] for r in resumed)
    assert not list(markers.glob("*.tmp*"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_processes_write_the_layer_one_process_writes(tmp_path, model_dir, settings, fresh_host) -> None:
    ds = make_dataset(tmp_path / "ds", n=18, shard_size=6)
    reference(ds, model_dir, "one", settings)
    # accelerate's --cpu launcher starts several processes only through MPI; its torchrun launcher
    # (--multi_gpu) starts two real processes, which use gloo when no GPU is visible.
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                  "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                  "--main_process_port", str(free_port())]
    result = subprocess.run([*accelerate, "-m", "vila2", *cli_args(ds.path, model_dir, "two", settings)],
                            capture_output=True, text=True, timeout=600,
                            env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[rank 0 of 2]" in result.stderr  # two processes really shared the work
    assert result.stdout.count("layer 'two'") == 1  # only the main process reports
    assert "captioned  18 of 18" in result.stdout
    assert ds.layer("two").is_complete()
    assert rows(ds, "two") == rows(ds, "one")
    summary = summarize(ds, "two")
    assert summary.total == 18 and summary.complete


SHOUTING_SPECIALIST = """
import vila2


@vila2.hookimpl
def register_specialists(register):
    register(vila2.Specialist("shout", prepare_data=lambda source, world, out: out, prompts=("Describe.",),
                              clean_answer=lambda text: text.upper()))
"""


@pytest.mark.slow
def test_a_specialist_layer_on_two_ranks_equals_one_process(tmp_path, model_dir, settings, fresh_host) -> None:
    """A run's recaption on ``processes: 2`` (``vila2.pipeline.launch``): each rank builds the
    specialist's clean-up filter itself, by name, from the plugin file the run loaded."""
    from vila2.pipeline.launch import launch

    plugin = tmp_path / "shout.py"
    plugin.write_text(SHOUTING_SPECIALIST)
    fresh_host.load_file(plugin)
    ds = make_dataset(tmp_path / "ds", n=12, shard_size=3)
    job = {"dataset": str(ds.path), "model": str(model_dir), "prompts": ["Describe."], "filters": [],
           "batch_size": 3, "max_new_tokens": 12, "settings": settings, "progress": False}
    caption_dataset(**{**job, "layer": "one", "filters": [fresh_host.specialists()["shout"].clean_filter()]})
    launch("caption", {**job, "layer": "two", "clean_with": "shout"}, processes=2, folder=tmp_path / "step",
           threads=1, plugin_files=[str(plugin)])
    assert rows(ds, "two") == rows(ds, "one")
    assert any(row["text"] for row in rows(ds, "two"))
    assert all(row["text"] == row["text"].upper() for row in rows(ds, "two"))
    assert ds.layer("two").info["settings"]["filters"] == ds.layer("one").info["settings"]["filters"]
    ranks = [json.loads((tmp_path / "step" / f"caption-summary.rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["new"] for r in ranks] == [6, 6]


def test_cli_reports_errors_a_user_can_fix(tmp_path, model_dir) -> None:
    ds = make_dataset(tmp_path / "ds", n=2, shard_size=2)
    result = subprocess.run([sys.executable, "-m", "vila2", "caption", str(ds.path), "--model", str(model_dir),
                             "--layer", "x", "--filter", "word_count:mn=3"],
                            capture_output=True, text=True, timeout=300, env=ONE_THREAD)
    assert result.returncode != 0
    assert "filter 'word_count'" in result.stderr and "no setting mn" in result.stderr
