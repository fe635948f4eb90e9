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
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from vila2.captioning.filters import FilterError, FilterStep, apply_filters, resolve_filters
from vila2.captioning.prompts import choose_prompt, prompt_set_name, resolve_prompts
from vila2.captioning.summary import CaptionSummary, summarize
from vila2.components import Captioner, Filter
from vila2.errors import CaptionError
from vila2.models.checkpoint import model_hash

#: batches handed to the captioner per call: enough for length bucketing to pay off
BATCHES_PER_CALL = 4
#: failed samples a summary quotes (all of them are in the layer's rows)
ON_ERROR = ("skip", "stop")



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
    """
    from vila2.data import Dataset
    from vila2.distributed import process_state
    from vila2.plugins import get_host

    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    ds = dataset if isinstance(dataset, Dataset) else Dataset.open(dataset)
    host = get_host()
    component: Captioner = host.get("captioner", captioner)
    prompt_list = resolve_prompts(prompts)
    steps = resolve_filters(filters, host)
    load_settings = {**component.settings, "batch_size": batch_size, "max_new_tokens": max_new_tokens,
                     **(settings or {})}
    state = process_state()
    # a new layer's captioner loads first, so a bad model or setting leaves no layer behind;
    # a finished layer's rerun loads nothing
    caption = None if layer in ds.layers() else load_captioner(component, model, load_settings)
    writer = ds.create_layer(
        layer, "caption",
        producer=f"{component.plugin}:{component.name}",
        model=None if model is None else str(Path(model).resolve()) if Path(str(model)).exists() else str(model),
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
    pending = writer.pending_shards(state.process_index, state.num_processes)
    new, seconds = 0, 0.0
    if pending:
        if caption is None:
            caption = load_captioner(component, model, load_settings)
        new, seconds = _caption_shards(
            ds, writer, pending, component, caption, prompt_list, steps, seed,
            chunk=batch_size * BATCHES_PER_CALL, on_error=on_error,
            progress=progress and state.is_local_main_process,
            desc=f"caption {layer}"
            + (f" [rank {state.process_index} of {state.num_processes}]" if state.num_processes > 1 else ""),
        )
    state.wait_for_everyone()
    return summarize(ds, layer, new=new, seconds=seconds)


def load_captioner(component: Captioner, model: str | Path | None, settings: Mapping[str, Any]) -> Any:
    """``component.load(model, settings)``, with a failure naming the captioner and its plugin."""
    try:
        return component.load(None if model is None else str(model), settings)
    except Exception as exc:
        raise CaptionError(
            f"captioner {component.name!r} (plugin {component.plugin!r}) could not load"
            + (f" model {model}" if model is not None else "") + f": {exc}"
        ) from exc


def _caption_shards(
    ds: Any, writer: Any, shards: list[str], component: Captioner, caption: Any,
    prompts: Sequence[str], steps: Sequence[FilterStep], seed: int, *, chunk: int, on_error: str,
    progress: bool, desc: str,
) -> tuple[int, float]:
    """Caption ``shards``; returns how many samples were captioned and the seconds it took."""
    import torch
    from tqdm.auto import tqdm

    started = time.perf_counter()
    rows_per_shard = {entry["name"]: int(entry["rows"]) for entry in ds.manifest["shards"]}
    bar = tqdm(total=sum(rows_per_shard[s] for s in shards), unit="img", desc=desc, disable=not progress,
               dynamic_ncols=True)
    new = 0
    python_rng = random.getstate()
    # per-shard seeds must not leak into the caller's random streams; one worker decodes the
    # next chunk's images while the captioner works on this one
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices), ThreadPoolExecutor(max_workers=1) as pool:
        try:
            for shard in shards:
                _seed_shard(seed, shard)
                shard_state: dict[str, Any] = {}
                rows: list[dict[str, Any]] = []
                for samples, images, errors in _decoded_chunks(ds, shard, chunk, pool):
                    rows += _caption_chunk(samples, images, errors, shard, shard_state, caption, component,
                                           prompts, steps, seed, on_error)
                    bar.update(len(samples))
                writer.write_shard(shard, rows)
                new += sum(1 for row in rows if "error" not in row["meta"])
        finally:
            bar.close()
            random.setstate(python_rng)
    return new, time.perf_counter() - started


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
    from vila2.plugins import PluginError

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
    "CaptionError",
    "CaptionSummary",
    "FilterStep",
    "apply_filters",
    "caption_dataset",
    "resolve_filters",
    "summarize",
]
