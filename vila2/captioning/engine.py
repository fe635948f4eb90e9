"""The recaption engine: a captioner writes a new caption layer over a dataset's images.

::

    from vila2.captioning.engine import caption_dataset

    summary = caption_dataset("data/pretrain", model="runs/r0/model", layer="recap-r1", round=1,
                              filters=["repeated_sentence", {"name": "word_count", "min": 8}])
    print(summary)

How it keeps work safe and fast:

* **Per-shard resume.** The layer has one shard per image shard, written atomically with a
  completion marker; a rerun (same provenance) skips finished shards, so after a kill every
  sample is captioned exactly once. Nothing survives a kill but finished shards.
* **Ranks.** Under ``accelerate launch`` rank *r* of *w* takes image shards *r*, *r + w*, ...;
  the layer is complete when every shard is done, whoever wrote it.
* **Same layer however it is split.** Each shard is captioned in the same chunks, with the same
  prompts (drawn by sample id), the same random seed and fresh filter state, so with greedy
  decoding a resumed or multi-rank layer equals a single uninterrupted run's.
* **Batches.** The captioner gets a few batches' worth of images per call, so it can sort them
  by prompt length (see :class:`vila2.models.generation.Generator`); a worker thread decodes the next
  call's images meanwhile.
* **Executors.** Where the shards are captioned is a plugin's choice (``register_executors``):
  the engine resolves everything and creates the layer (with its provenance), then hands the
  executor a picklable :class:`CaptionJob`; each worker loads the captioner once and calls
  :meth:`CaptionJob.caption_shard`, which writes the same shards and markers wherever it runs.
  The built-in ``local`` executor runs them in this process (one rank's share under
  ``accelerate launch``); ``vila2-ray`` runs them on a Ray cluster.
* **Errors.** When a captioner call fails, its images are captioned one by one to find the
  samples at fault. A sample the captioner or a filter fails on is named with the plugin; with
  ``on_error="skip"`` it gets an empty, not-kept row whose ``meta["error"]`` says why, and the
  run goes on; with ``"stop"`` the run stops (finished shards stay). A captioner that fails on
  every image of a call, or breaks its contract (one string per image), stops the run anyway.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vila2.captioning.filters import FilterError, FilterStep, apply_filters, resolve_filters
from vila2.captioning.prompts import choose_prompt, prompt_set_name, resolve_prompts
from vila2.captioning.summary import CaptionSummary, summarize
from vila2.components import Captioner, CaptionFn, Executor, Filter
from vila2.errors import CaptionError, PluginError
from vila2.models.checkpoint import model_hash

#: batches handed to the captioner per call: enough for length bucketing to pay off
BATCHES_PER_CALL = 4
#: failed samples a summary quotes (all of them are in the layer's rows)
ON_ERROR = ("skip", "stop")
#: the executor a caption run uses unless told otherwise (``vila2/default_plugins/executors.py``)
DEFAULT_EXECUTOR = "local"
#: where the executors vila2 knows of come from, for the error that names a missing one
EXECUTOR_PACKAGES = {"ray": "vila2-ray"}



def caption_dataset(
    dataset: Any,
    *,
    model: str | Path | None,
    layer: str,
    captioner: str = "self",
    prompts: str | Path | Sequence[str] = "long",
    filters: Sequence[str | Mapping[str, Any] | Filter] = (),
    round: int | None = None,
    batch_size: int = 32,
    max_new_tokens: int = 128,
    settings: Mapping[str, Any] | None = None,
    on_error: str = "skip",
    seed: int = 0,
    progress: bool = True,
    executor: str = DEFAULT_EXECUTOR,
    executor_settings: Mapping[str, Any] | None = None,
) -> CaptionSummary:
    """Caption every image of ``dataset`` (a folder or :class:`vila2.data.Dataset`) into the
    caption layer ``layer``, resuming it if an earlier run with the same provenance stopped.

    * ``captioner``: a registered captioner's name; ``model`` is the folder it loads.
    * ``prompts``: ``"long"``, ``"brief"``, a prompt file, or a sequence of prompts (a
      specialist's); one is drawn per image from its id and ``seed``.
    * ``filters``: recipe entries (see :func:`resolve_filters`); scores land in the layer.
    * ``settings``: the captioner's settings (``do_sample``, ``temperature``, ``top_p``, ``stop``,
      ``dtype``, ``device``...) on top of ``batch_size`` and ``max_new_tokens``.
    * ``on_error``: ``"skip"`` records a failing sample and goes on; ``"stop"`` raises.
    * ``executor``: a registered executor's name (``local``: this process, or this rank's shards
      under ``accelerate launch``; ``ray`` with ``vila2-ray``); ``executor_settings`` override its
      settings (``{"address": ...}`` for ``ray``). The layer is the same whichever runs it.
    """
    from vila2.data import Dataset
    from vila2.plugins import get_host

    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    ds = dataset if isinstance(dataset, Dataset) else Dataset.open(dataset)
    host = get_host()
    component: Captioner = host.get("captioner", captioner)
    runner = find_executor(executor, host)
    run_settings = executor_settings_for(runner, executor_settings)
    prompt_list = resolve_prompts(prompts)
    steps = resolve_filters(filters, host)
    load_settings = {**component.settings, "batch_size": batch_size, "max_new_tokens": max_new_tokens,
                     **(settings or {})}
    # an in-process executor's new layer loads its captioner first, so a bad model or setting
    # leaves no layer behind; a finished layer's rerun loads nothing
    preload = runner.in_process and layer not in ds.layers()
    caption = load_captioner(component, model, load_settings) if preload else None
    # a local model by its absolute path: a worker elsewhere (another process, a Ray actor) has
    # another working folder
    where = None if model is None else str(Path(model).resolve()) if Path(str(model)).exists() else str(model)
    ds.create_layer(  # the layer and its provenance, or the unfinished one resumed
        layer, "caption",
        producer=f"{component.plugin}:{component.name}",
        model=where,
        model_hash=None if model is None else model_hash(str(model)),
        round=round,
        prompt_set=prompt_set_name(prompts),
        settings={
            # batch size changes speed, not captions; everything else that shapes them is here
            "captioner": {k: v for k, v in load_settings.items() if k != "batch_size"},
            "prompts": list(prompt_list),
            "filters": [step.spec() for step in steps],
            "seed": seed,
        },
    )
    job = CaptionJob(
        dataset=str(Path(ds.path).resolve()), layer=layer, captioner=component, model=where,
        settings=load_settings, prompts=tuple(prompt_list), filters=tuple(steps), seed=seed,
        chunk=batch_size * BATCHES_PER_CALL, on_error=on_error, progress=progress,
        rows={entry["name"]: int(entry["rows"]) for entry in ds.manifest["shards"]}, caption=caption,
    )
    new, seconds = run_executor(runner, job, run_settings)
    return summarize(ds, layer, new=new, seconds=seconds)


def find_executor(name: str, host: Any) -> Executor:
    """The registered executor ``name``; a missing one that a package brings says which."""
    try:
        return host.get("executor", name)
    except PluginError as exc:
        if name in EXECUTOR_PACKAGES:
            raise PluginError(f"{exc} `pip install {EXECUTOR_PACKAGES[name]}` adds it.") from None
        raise


def executor_settings_for(runner: Executor, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The executor's default settings with ``overrides``; a key it does not declare is refused."""
    unknown = sorted(set(overrides or {}) - set(runner.settings))
    if unknown:
        offered = ", ".join(sorted(runner.settings)) or "none"
        raise ValueError(f"executor {runner.name!r} (plugin {runner.plugin!r}) has no setting "
                         f"{', '.join(unknown)}; its settings: {offered}")
    return {**runner.settings, **(overrides or {})}


def run_executor(runner: Executor, job: CaptionJob, settings: Mapping[str, Any]) -> tuple[int, float]:
    """``runner.run(job, settings)``, checked: it must return ``(captioned, seconds)``."""
    out = runner.run(job, settings)
    if (not isinstance(out, tuple) or len(out) != 2 or not isinstance(out[0], int)
            or not isinstance(out[1], (int, float))):
        raise PluginError(f"executor {runner.name!r} (plugin {runner.plugin!r}) returned {out!r}; "
                          "it must return (samples captioned, seconds)")
    return out[0], float(out[1])


@dataclass
class CaptionJob:
    """One caption layer's work, as an executor gets it: everything a worker needs, picklable
    (a worker process or a Ray actor gets a copy; the captioner ``caption`` the engine may have
    loaded in this process stays behind).

    An executor calls :meth:`pending` for the shards to do, gives each worker one captioner from
    :meth:`load`, and has it call :meth:`caption_shard` on each of its shards — in any order, on
    any worker: each shard is captioned alone (own seed, own filter state) and written with its
    completion marker, so the layer equals a single-process run's. :meth:`run_shards` is the
    whole loop in one process.
    """

    dataset: str
    layer: str
    captioner: Captioner
    model: str | None
    settings: Mapping[str, Any]
    prompts: tuple[str, ...]
    filters: tuple[FilterStep, ...]
    seed: int
    chunk: int
    on_error: str
    progress: bool
    rows: Mapping[str, int]
    caption: CaptionFn | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "caption": None}

    def _writer(self) -> Any:
        from vila2.data import Dataset
        from vila2.data.layer import LayerWriter

        return LayerWriter(Dataset.open(self.dataset), self.layer)

    def pending(self, rank: int = 0, world_size: int = 1) -> list[str]:
        """Shards not finished yet (those of ``rank`` when ``world_size`` processes share them)."""
        return self._writer().pending_shards(rank, world_size)

    def samples(self, shards: Sequence[str]) -> int:
        """How many samples ``shards`` hold (for progress bars)."""
        return sum(self.rows[shard] for shard in shards)

    def load(self) -> CaptionFn:
        """The captioner, loaded (the one the engine loaded here, if any): once per worker."""
        return self.caption if self.caption is not None else load_captioner(self.captioner, self.model,
                                                                             self.settings)

    def caption_shard(self, shard: str, caption: CaptionFn, *, pool: ThreadPoolExecutor | None = None,
                      on_chunk: Callable[[int], None] | None = None) -> int:
        """Caption, filter and write one shard (temp file, rename, ``.done`` marker); returns the
        samples captioned without error (0 for a shard another worker finished meanwhile).

        Seeds the random generators from ``(seed, shard)``: the caller restores its own if it
        must (see :meth:`run_shards`). ``pool`` decodes the next chunk's images while this one
        is captioned; ``on_chunk(n)`` is told after each chunk of ``n`` samples."""
        writer = self._writer()
        if (writer.path / f"{shard}.done").exists():
            return 0
        if pool is None:
            with ThreadPoolExecutor(max_workers=1) as own:
                return self.caption_shard(shard, caption, pool=own, on_chunk=on_chunk)
        _seed_shard(self.seed, shard)
        shard_state: dict[str, Any] = {}
        rows: list[dict[str, Any]] = []
        for samples, images, errors in _decoded_chunks(writer.dataset, shard, self.chunk, pool):
            rows += _caption_chunk(samples, images, errors, shard, shard_state, caption, self.captioner,
                                   self.prompts, self.filters, self.seed, self.on_error)
            if on_chunk is not None:
                on_chunk(len(samples))
        writer.write_shard(shard, rows)
        return sum(1 for row in rows if "error" not in row["meta"])

    def run_shards(self, shards: Sequence[str], caption: CaptionFn, *, progress: bool = False,
                   desc: str | None = None) -> tuple[int, float]:
        """Caption ``shards`` one after another in this process, with a progress bar; returns how
        many samples were captioned and the seconds it took. The caller's random streams are
        restored afterwards."""
        import torch

        from vila2.progress import progress_bar

        started = time.perf_counter()
        bar = progress_bar(total=self.samples(shards), unit="img", desc=desc or f"caption {self.layer}",
                           disable=not progress, dynamic_ncols=True)
        new = 0
        python_rng = random.getstate()
        # per-shard seeds must not leak into the caller's random streams; one worker decodes the
        # next chunk's images while the captioner works on this one
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices), ThreadPoolExecutor(max_workers=1) as pool:
            try:
                for shard in shards:
                    new += self.caption_shard(shard, caption, pool=pool, on_chunk=bar.update)
            finally:
                bar.close()
                random.setstate(python_rng)
        return new, time.perf_counter() - started


def load_captioner(component: Captioner, model: str | Path | None, settings: Mapping[str, Any]) -> Any:
    """``component.load(model, settings)``, with a failure naming the captioner and its plugin."""
    try:
        return component.load(None if model is None else str(model), settings)
    except Exception as exc:
        raise CaptionError(
            f"captioner {component.name!r} (plugin {component.plugin!r}) could not load"
            + (f" model {model}" if model is not None else "") + f": {exc}"
        ) from exc


def _decoded_chunks(
    ds: Any, shard: str, size: int, pool: ThreadPoolExecutor
) -> Iterator[tuple[list[dict[str, Any]], dict[int, Any], dict[int, str]]]:
    """``(samples, images, errors)`` per chunk of ``size`` samples of ``shard``, in order; chunk
    *k + 1* is decoded in ``pool`` while the caller works on chunk *k*."""
    samples = ds.iter_samples(shards=[shard])
    ahead = None
    while chunk := list(itertools.islice(samples, size)):
        upcoming = pool.submit(_decode, ds, chunk, shard)
        if ahead is not None:
            yield ahead.result()
        ahead = upcoming
    if ahead is not None:
        yield ahead.result()


def _decode(ds: Any, samples: list[dict[str, Any]], shard: str) -> tuple[list[dict[str, Any]], dict[int, Any], dict[int, str]]:
    images: dict[int, Any] = {}
    errors: dict[int, str] = {}
    for i, sample in enumerate(samples):
        try:
            images[i] = ds.load_image(sample)
        except Exception as exc:
            errors[i] = f"image of sample {sample['id']!r} in shard {shard} does not decode: {exc}"
    return samples, images, errors


def _seed_shard(seed: int, shard: str) -> None:
    """Seed the RNGs from ``(seed, shard)``: a sampled shard draws the same captions on any rank
    and after a resume."""
    import torch

    value = int.from_bytes(hashlib.sha256(f"{seed}\x00{shard}".encode()).digest()[:4], "big")
    random.seed(value)
    torch.manual_seed(value)


def _caption_chunk(
    samples: list[dict[str, Any]], images: dict[int, Any], errors: dict[int, str], shard: str,
    shard_state: dict[str, Any], caption: Any, component: Captioner, prompts: Sequence[str],
    steps: Sequence[FilterStep], seed: int, on_error: str,
) -> list[dict[str, Any]]:
    """Caption and filter one decoded chunk of a shard; rows come back in the samples' order."""
    where = f"captioner {component.name!r} (plugin {component.plugin!r})"
    chosen = [choose_prompt(prompts, sample["id"], seed) for sample in samples]
    texts = _run_captioner(caption, where, samples, images, chosen, errors)
    rows = []
    for i, sample in enumerate(samples):
        row: dict[str, Any] = {"id": sample["id"], "prompt": chosen[i]}
        if i not in errors:
            view = {**sample, "shard": shard, "shard_state": shard_state, "prompt": chosen[i]}
            try:
                row.update(apply_filters(steps, view, texts[i]))
            except FilterError as exc:
                errors[i] = str(exc)
        if i in errors:
            if on_error == "stop":
                raise CaptionError(f"{errors[i]} (shard {shard}; finished shards are saved)")
            row.update(text="", kept=False, scores={}, meta={"error": errors[i]})
        rows.append(row)
    return rows


def _run_captioner(
    caption: Any, where: str, samples: list[dict[str, Any]], images: dict[int, Any],
    prompts: list[str], errors: dict[int, str],
) -> dict[int, str]:
    """Caption the decodable images in one call; if that call raises, caption them one at a time
    to find the samples at fault (recorded in ``errors``)."""
    order = sorted(images)

    def call(indices: list[int]) -> list[str]:
        out = caption([images[i] for i in indices], [prompts[i] for i in indices])
        if not isinstance(out, list) or len(out) != len(indices) or not all(isinstance(t, str) for t in out):
            # a broken contract fails every call alike: stop, whatever on_error says
            raise PluginError(
                f"{where} returned {type(out).__name__} of length {len(out) if hasattr(out, '__len__') else '?'}"
                f" for {len(indices)} images; it must return one string per image"
            )
        return out

    if not order:
        return {}
    try:
        return dict(zip(order, call(order), strict=True))
    except PluginError:
        raise
    except Exception as exc:
        if len(order) == 1:
            errors[order[0]] = f"{where} failed on sample {samples[order[0]]['id']!r}: {exc!r}"
            return {}
    texts: dict[int, str] = {}
    for i in order:
        try:
            texts[i] = call([i])[0]
        except PluginError:
            raise
        except Exception as exc:
            errors[i] = f"{where} failed on sample {samples[i]['id']!r}: {exc!r}"
    if not texts:
        # on_error="skip" is for bad samples; a captioner failing on every one is broken itself
        raise CaptionError(
            f"{where} failed on all {len(order)} images of a chunk, one by one too; first: "
            f"{errors[order[0]]}"
        )
    return texts


__all__ = [
    "BATCHES_PER_CALL",
    "DEFAULT_EXECUTOR",
    "EXECUTOR_PACKAGES",
    "CaptionError",
    "CaptionJob",
    "CaptionSummary",
    "FilterStep",
    "apply_filters",
    "caption_dataset",
    "executor_settings_for",
    "find_executor",
    "resolve_filters",
    "summarize",
]
