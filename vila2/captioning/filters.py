"""Applying caption filters: recipe entries to filters, filters to captions, and new
thresholds from stored scores.

A recipe names filters as ``"word_count"`` or ``{"name": "word_count", "min": 8}``.
:func:`apply_filters` runs them on a fresh caption (the recaption engine calls it);
:func:`rethreshold` writes a new layer whose ``kept`` column is decided again from the scores an
earlier caption run stored, without any new inference::

    rethreshold("data/pretrain", "recap-r1", "recap-r1-long", [{"name": "word_count", "min": 40}])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vila2.components import Filter
from vila2.errors import FilterError


@dataclass(frozen=True)
class FilterStep:
    """One filter of a run with the settings the recipe gave it."""

    filter: Filter
    overrides: Mapping[str, Any]

    @property
    def name(self) -> str:
        return self.filter.name

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, **self.overrides}


def resolve_filters(specs: Sequence[str | Mapping[str, Any] | Filter], host: Any = None) -> list[FilterStep]:
    """Recipe filter entries -> filters. An entry is a name (``"word_count"``), a mapping with
    ``name`` plus settings (``{"name": "word_count", "min": 8}``) or a :class:`vila2.Filter`."""
    if isinstance(specs, (str, Mapping, Filter)):
        specs = [specs]
    steps: list[FilterStep] = []
    for i, spec in enumerate(specs):
        if isinstance(spec, Filter):
            steps.append(FilterStep(spec, {}))
            continue
        if isinstance(spec, str):
            name, overrides = spec, {}
        elif isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
            name, overrides = spec["name"], {k: v for k, v in spec.items() if k != "name"}
        else:
            raise ValueError(f"filter entry {i} ({spec!r}) must be a name or a mapping with 'name'")
        if host is None:
            from vila2.plugins import get_host

            host = get_host()
        component: Filter = host.get("filter", name)
        unknown = sorted(set(overrides) - set(component.settings))
        if unknown:
            offered = ", ".join(sorted(component.settings)) or "none"
            raise ValueError(
                f"filter {name!r} (plugin {component.plugin!r}) has no setting {', '.join(unknown)}; "
                f"its settings: {offered}"
            )
        steps.append(FilterStep(component, overrides))
    names = [s.name for s in steps]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"filter {duplicated[0]!r} is listed twice")
    return steps


def apply_filters(steps: Sequence[FilterStep], sample: Mapping[str, Any], text: str) -> dict[str, Any]:
    """Run every filter on one caption, in order (each sees the text the previous one cleaned).

    Every filter scores every caption, even one an earlier filter rejected, so any threshold can
    be changed later from the stored scores. Returns the row fields ``text``, ``kept``,
    ``scores`` and ``meta``.
    """
    raw = text
    scores: dict[str, float | None] = {}
    rejected: list[str] = []
    for step in steps:
        try:
            text, score, kept = step.filter.apply(sample, text, **step.overrides)
        except Exception as exc:
            raise FilterError(
                f"filter {step.name!r} (plugin {step.filter.plugin!r}) failed on sample "
                f"{sample.get('id')!r}: {exc!r}"
            ) from exc
        scores[step.name] = score
        if not kept:
            rejected.append(step.name)
    meta: dict[str, Any] = {}
    if rejected:
        meta["rejected_by"] = rejected
    if text != raw:
        meta["raw"] = raw
    return {"text": text, "kept": not rejected, "scores": scores, "meta": meta}


def decide(steps: Sequence[FilterStep], scores: Mapping[str, Any], where: str) -> list[str]:
    """The names of the filters that reject a caption with the stored ``scores``."""
    rejected = []
    for step in steps:
        if step.name not in scores:
            raise FilterError(
                f"{where} has no stored score for filter {step.name!r} (scored: "
                f"{', '.join(sorted(scores)) or 'none'}); caption again with that filter to add it"
            )
        score = scores[step.name]
        component = step.filter
        if score is None:  # a filter that only cleans text stores no score and rejects nothing
            kept = True
        elif component.keep is None:  # a predicate stored its verdict as 1.0 / 0.0
            kept = bool(score)
        else:
            kept = bool(component.keep(score, **{**component.settings, **step.overrides}))
        if not kept:
            rejected.append(step.name)
    return rejected


def rethreshold(
    dataset: Any,
    layer: str,
    new_layer: str,
    filters: Sequence[str | Mapping[str, Any] | Filter],
    *,
    progress: bool = True,
) -> Any:
    """Write ``new_layer``: ``layer``'s captions and scores, with ``kept`` decided by ``filters``
    (exactly these; filters of the old run that are not listed no longer reject) from the scores
    stored in ``layer``. No model runs. Texts stay as stored, so a ``clean`` step (such as the
    repeated-sentence cut) is not undone. Resumable and split across ranks like a caption run;
    returns the new layer's :class:`vila2.captioning.engine.CaptionSummary`.
    """
    import time

    from vila2.captioning.summary import summarize
    from vila2.data import Dataset, StoreError
    from vila2.distributed import process_state
    from vila2.progress import progress_bar

    ds = dataset if isinstance(dataset, Dataset) else Dataset.open(dataset)
    source = ds.layer(layer)
    if source.kind != "caption":
        raise StoreError(f"layer {layer!r} of {ds.path} is a {source.kind} layer, not a caption layer")
    if not source.is_complete():
        raise StoreError(f"layer {layer!r} of {ds.path} is unfinished; finish the caption run first")
    steps = resolve_filters(filters)
    info = source.info
    scored = {f.get("name") for f in info.get("settings", {}).get("filters", [])}
    missing = [s.name for s in steps if s.name not in scored]
    if missing:
        raise FilterError(
            f"layer {layer!r} of {ds.path} has no stored scores for filter {', '.join(map(repr, missing))} "
            f"(scored: {', '.join(sorted(map(str, scored))) or 'none'}); caption again with it to add them"
        )
    state = process_state()
    started = time.perf_counter()
    writer = ds.create_layer(
        new_layer, "caption", producer="vila2.captioning.filters:rethreshold", model=info.get("model"),
        model_hash=info.get("model_hash"), round=info.get("round"), prompt_set=info.get("prompt_set"),
        settings={**info.get("settings", {}), "filters": [s.spec() for s in steps], "rethreshold_of": layer},
    )
    pending = writer.pending_shards(state.process_index, state.num_processes)
    for shard in progress_bar(pending, unit="shard", desc=f"rethreshold {new_layer}",
                              disable=not (progress and state.is_local_main_process)):
        rows = []
        for row in source.iter_rows([shard]):
            meta = {k: v for k, v in row["meta"].items() if k != "rejected_by"}
            if "error" in meta:
                rows.append({**row, "meta": meta})
                continue
            rejected = decide(steps, row["scores"], f"layer {layer!r} sample {row['id']!r}")
            if rejected:
                meta["rejected_by"] = rejected
            rows.append({**row, "kept": not rejected, "meta": meta})
        writer.write_shard(shard, rows)
    seconds = time.perf_counter() - started
    state.wait_for_everyone()
    return summarize(ds, new_layer, seconds=seconds)


__all__ = ["FilterError", "FilterStep", "apply_filters", "decide", "resolve_filters", "rethreshold"]
