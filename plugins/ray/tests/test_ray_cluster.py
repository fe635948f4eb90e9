"""vila2-ray on a real local Ray cluster (``ray start --head`` on 127.0.0.1, 2 CPUs): the layer
equals a single-process run's, errors read as without Ray, and a SIGKILLed driver's rerun
captions every sample exactly once.

Every Ray driver here is a ``vila2 caption`` child process, as a user runs it, never pytest
itself: a Ray driver whose connection to the cluster breaks may end its own process
(``_exit``), which in pytest would end the whole test session with nothing reported."""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import vila2_ray
from PIL import Image, ImageDraw

from vila2.captioning.engine import CaptionError, caption_dataset
from vila2.data import Dataset

FILTERS = ["repeated_sentence", {"name": "word_count", "min": 2}, "exact_duplicate"]
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]  # as each 1-CPU actor runs


# ------------------------------------------------------------------ data and a fake captioner
def png(side: int, rng: random.Random) -> bytes:
    image = Image.new("RGB", (side, side), tuple(rng.randrange(256) for _ in range(3)))
    ImageDraw.Draw(image).rectangle([4, 4, side // 2, side // 2], fill=tuple(rng.randrange(256) for _ in range(3)))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def make_dataset(path: Path, n: int, shard_size: int, *, small: frozenset[int] = frozenset()) -> Dataset:
    """``n`` 64x64 images (32x32 for the indices in ``small``) in shards of ``shard_size``."""
    rng = random.Random(0)
    ds = Dataset.create(path)
    with ds.writer(shard_size=shard_size, source="test") as writer:
        for i in range(n):
            side = 32 if i in small else 64
            writer.add(f"img{i:03d}", png(side, rng), side, side)
    return ds


def world_dataset(path: Path, world: Path, n: int, shard_size: int) -> Dataset:
    """The first ``n`` pretraining images of the tiny world, in shards of ``shard_size``."""
    ds = Dataset.create(path)
    with ds.writer(shard_size=shard_size, source="tiny world pretrain") as writer:
        for _, sample in zip(range(n), Dataset.open(world / "pretrain").iter_samples(), strict=False):
            writer.add(sample["id"], sample["image"], sample["width"], sample["height"])
    return ds


def rows(ds: Dataset, layer: str) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "shard"} for row in Dataset.open(ds.path).layer(layer).iter_rows()]


def provenance(ds: Dataset, layer: str) -> dict:
    return {k: v for k, v in Dataset.open(ds.path).layer(layer).info.items() if k not in ("name", "created")}


COLOUR_PLUGIN = """
import vila2


@vila2.hookimpl
def register_captioners(register):
    def load(model, settings):
        def caption(images, prompts):
            if any(image.size == (32, 32) for image in images):
                raise RuntimeError("cannot caption small images")
            return [f"A patch of colour {image.getpixel((0, 0))}." for image in images]

        return caption

    register(vila2.Captioner("colour", load=load))
"""


# ------------------------------------------------------------------ the cluster
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ray_cli() -> str:
    found = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    assert found, "the ray command is missing: pip install -e plugins/ray"
    return found


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A one-node Ray cluster of 2 CPUs on 127.0.0.1, started (and ended) by this test module
    only: its processes share one session, ended by id."""
    import psutil

    temp = tempfile.mkdtemp(prefix="vr", dir="/tmp")  # short: Ray's socket paths have a limit
    port = free_port()
    # Ray turns token authentication on by itself when a token file from an earlier cluster lies
    # in ~/.ray, and then the head and this driver disagree on the token. This cluster listens on
    # 127.0.0.1 only: authentication is set off explicitly, for the head and every driver.
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = ONE_THREAD["RAY_AUTH_MODE"] = "disabled"
    log = Path(temp) / "start.log"
    with log.open("w") as out:
        head = subprocess.Popen(
            [_ray_cli(), "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
             "--num-cpus=2", "--num-gpus=0", "--object-store-memory=100000000", "--include-dashboard=false",
             "--disable-usage-stats", f"--temp-dir={temp}"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=ONE_THREAD)
    try:
        deadline = time.monotonic() + 180
        while "Ray runtime started" not in log.read_text():
            assert head.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        # workers run in their own process groups, in the session this fixture started
        for process in psutil.process_iter():
            try:
                if os.getsid(process.pid) == head.pid and process.status() != psutil.STATUS_ZOMBIE:
                    process.kill()
            except (ProcessLookupError, psutil.Error):
                pass
        shutil.rmtree(temp, ignore_errors=True)
        ONE_THREAD.pop("RAY_AUTH_MODE", None)
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved


@pytest.fixture(scope="module")
def settings(tiny_model: Path) -> dict:
    """Keep the random model off its special tokens so captions are not empty."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    return {"suppress_tokens": [i for i, t in tokenizer.added_tokens_decoder.items()
                                if t.special and i != tokenizer.eos_token_id]}


@pytest.fixture
def ray_host(fresh_host, plugin_registered):
    plugin_registered(vila2_ray)
    return fresh_host


def caption(ds: Dataset, model: Path, layer: str, settings: dict, **more) -> object:
    """Caption in this process (the reference runs: no Ray)."""
    return caption_dataset(ds, model=model, layer=layer, batch_size=3, max_new_tokens=12, filters=FILTERS,
                           settings=settings, progress=False, **more)


def cli(ds: Dataset, layer: str, *args: str, model: Path | None = None, settings: dict | None = None,
        ray: str | None = None) -> list[str]:
    """The ``vila2 caption`` command line for ``layer`` (through the cluster at ``ray`` when given),
    with the same batch size, filters and settings as :func:`caption`."""
    command = [sys.executable, "-m", "vila2", "caption", str(ds.path), "--layer", layer, *args]
    if model is not None:
        command += ["--model", str(model), "--batch-size", "3", "--max-new-tokens", "12",
                    "--filter", "repeated_sentence", "--filter", "word_count:min=2", "--filter", "exact_duplicate"]
    if settings:
        command += ["--set", f"suppress_tokens={json.dumps(settings['suppress_tokens'])}"]
    if ray is not None:
        command += ["--executor", "ray", "--address", ray]
    return command


def run(command: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False,
                          env={**ONE_THREAD, "VILA2_LOAD_PLUGINS": "vila2_ray", **env})


def succeeded(command: list[str]) -> dict:
    """Run ``command`` (with ``--json``) and return its summary; fail with its stderr otherwise."""
    done = run([*command, "--json"])
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The one ``Error: ...`` line a failed command printed."""
    assert done.returncode != 0, done.stdout[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, done.stderr[-3000:]
    return lines[0]


# ------------------------------------------------------------------ the tests
def test_the_ray_layer_equals_a_single_process_run(tmp_path, tiny_world, tiny_model, settings, cluster,
                                                    ray_host) -> None:
    ds = world_dataset(tmp_path / "ds", tiny_world, n=24, shard_size=6)
    caption(ds, tiny_model, "one", settings)
    summary = succeeded(cli(ds, "ray", "--executor-set", "actors=2", model=tiny_model, settings=settings,
                            ray=cluster))
    assert summary["complete"] and summary["new"] == summary["captioned"] == 24
    assert rows(ds, "ray") == rows(ds, "one")
    assert any(row["text"] for row in rows(ds, "ray"))
    assert provenance(ds, "ray") == provenance(ds, "one")  # the executor is not provenance
    layer = ds.path / "layers" / "ray"
    assert sorted(p.name for p in layer.glob("*.done")) == [f"{i:05d}.done" for i in range(4)]
    for marker in layer.glob("*.done"):
        assert json.loads(marker.read_text())["rows"] == 6
    assert not list(layer.glob("*.tmp*"))
    # a rerun finds nothing to do and starts no actor
    again = caption(ds, tiny_model, "ray", settings, executor="ray", executor_settings={"address": "nowhere:1"})
    assert again.new == 0 and again.complete


def test_errors_read_as_without_ray(tmp_path, cluster, ray_host) -> None:
    # a captioner from a one-file plugin (--plugin FILE): no actor can import it, so its code
    # travels with the job; it captions by the top-left colour and fails on 32x32 images
    plugin = tmp_path / "colour.py"
    plugin.write_text(COLOUR_PLUGIN)
    name = ray_host.load_file(plugin)
    ds = make_dataset(tmp_path / "ds", n=12, shard_size=4, small=frozenset({5}))
    with pytest.raises(CaptionError) as local:
        caption_dataset(ds, model=None, layer="one", captioner="colour", on_error="stop", progress=False)
    colour = ["--captioner", "colour", "--plugin", str(plugin)]
    assert error_line(run(cli(ds, "one-cli", *colour, "--on-error", "stop"))) == f"Error: {local.value}"
    remote = error_line(run(cli(ds, "ray", *colour, "--on-error", "stop", "--executor-set", "actors=2",
                                ray=cluster)))
    assert remote == f"Error: {local.value}"
    assert f"'colour' (plugin {name!r}) failed on sample 'img005'" in remote
    assert "00001" not in Dataset.open(ds.path).layer("ray").done_shards()
    # skipping: the failing sample is recorded in its row, as in one process
    caption_dataset(ds, model=None, layer="skip-one", captioner="colour", progress=False)
    succeeded(cli(ds, "skip-ray", *colour, ray=cluster))
    assert rows(ds, "skip-ray") == rows(ds, "skip-one")
    assert "cannot caption small images" in next(r for r in rows(ds, "skip-ray") if r["id"] == "img005")["meta"]["error"]


IDLE = """
import sys, time
import ray

ray.init(address=sys.argv[1], logging_level="WARNING")
cpus, deadline, free_since = ray.cluster_resources()["CPU"], time.monotonic() + 120, None
while time.monotonic() < deadline:
    if ray.available_resources().get("CPU", 0) >= cpus:
        free_since = free_since or time.monotonic()
        if time.monotonic() - free_since >= 2.0:
            sys.exit(0)
    else:
        free_since = None
    time.sleep(0.2)
sys.exit("the killed driver's actors never went away")
"""


def wait_idle(cluster: str) -> None:
    """Wait until every CPU of the cluster has been free for 2 s: the killed driver's actors are
    gone and can write nothing more."""
    done = run([sys.executable, "-c", IDLE, cluster])
    assert done.returncode == 0, done.stderr[-3000:]


def test_sigkill_of_the_driver_then_a_rerun_captions_every_sample_once(
        tmp_path, tiny_world, tiny_model, settings, cluster, ray_host) -> None:
    ds = world_dataset(tmp_path / "ds", tiny_world, n=36, shard_size=6)
    caption(ds, tiny_model, "whole", settings)
    command = cli(ds, "resumed", "--executor-set", "actors=2", model=tiny_model, settings=settings, ray=cluster)
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env={**ONE_THREAD, "VILA2_LOAD_PLUGINS": "vila2_ray"})
    markers = ds.path / "layers" / "resumed"
    deadline = time.monotonic() + 300
    while not list(markers.glob("*.done")) and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    stderr = driver.stderr.read().decode()[-3000:]

    wait_idle(cluster)
    done_before = len(list(markers.glob("*.done")))
    assert 1 <= done_before < 6, stderr
    summary = succeeded(command)
    assert summary["complete"]
    assert summary["new"] == 36 - 6 * done_before  # finished shards were not captioned again
    resumed = rows(ds, "resumed")
    assert [r["id"] for r in resumed] == [i for shard in ds.shards() for i in ds.shard_ids(shard)]
    assert len({r["id"] for r in resumed}) == 36
    assert resumed == rows(ds, "whole")
    assert provenance(ds, "resumed") == provenance(ds, "whole")
    assert not list(markers.glob("*.tmp*"))
