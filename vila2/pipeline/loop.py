"""The VILA² loop (arXiv 2407.17453), in the order the paper runs it::

    sources         the pretraining images with their web alt-text, and the SFT mix
    starting point  a preset or checkpoint (optionally warmed up): every generalist starts here
    round 0         train on alt-text + SFT; evaluate
    round i         the round-(i-1) model recaptions the pretraining images; a new model is
                    trained FROM THE STARTING POINT on alt-text + recaption; evaluate; stop when
                    the gain on the stop benchmark is too small (or, with a confidence, not
                    shown above it by its paired-bootstrap interval)
    specialists     each LoRA-tuned from the best round, evaluated on its own benchmark next to
                    that round, then it recaptions the images with its task prompts
    final           the generalist retrained from the starting point with the specialists'
                    answers appended as question–answer turns; evaluated on everything

Each step is a method of :class:`vila2.pipeline.run.Run` with explicit inputs; this module only
orders them and keeps one typed row per trained model for the report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from vila2.pipeline.recipe import Recipe, StopWhen
from vila2.pipeline.report import collect, paired_bootstrap, per_sample
from vila2.pipeline.run import Run, Sources, saturated, score, unproven


@dataclass
class ModelRow:
    """One trained model: a row of the report's table."""

    name: str
    kind: Literal["round", "specialist", "final"]
    model: str  # relative to the run folder where it lies inside it
    evals: dict[str, str] = field(default_factory=dict)  # benchmark -> result file
    caption_stats: str | None = None  # statistics of the captions it was trained on / produced
    round: int | None = None
    caption_layer: str | None = None
    specialist: str | None = None
    domain: str | None = None  # a specialist's own benchmark
    base_evals: dict[str, str] = field(default_factory=dict)  # the round it came from, there

    def to_dict(self) -> dict[str, Any]:
        """The row as ``collect`` reads it (unset fields left out)."""
        return {k: v for k, v in asdict(self).items() if v is not None and v != {}}


def run_recipe(recipe: Recipe, out: str | Path, *, rerun_changed: bool = False,
               log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) the whole loop of ``recipe`` in the run folder ``out``; returns the
    results (what ``results.json`` holds)."""
    run = Run(recipe, out, rerun_changed=rerun_changed, log=log)
    specialists = run.check()  # every misspelt name fails here, before any training
    run.start()
    src = run.sources()
    start, start_after = run.starting_point(src)
    rounds, stop = self_augment(run, src, start, start_after)
    best = best_round(run, rounds)
    rows = list(rounds)
    layers = specialist_augment(run, src, best, specialists, rows)
    if layers:
        rows.append(final(run, src, start, start_after, best, specialists, layers))
    results = collect(run.root, [r.to_dict() for r in rows], name=recipe.name, run_dir=str(run.root),
                      stop=stop, best_round=best.round if specialists else None, errors=run.errors)
    return run.finish(results)


def self_augment(run: Run, src: Sources, start: str, start_after: list[str]) -> tuple[list[ModelRow], dict | None]:
    """Round 0 and the recaption rounds; returns their rows and why the rounds stopped early."""
    sa = run.recipe.self_augment
    alt = {"layers": [src.alt], "template": "replace", "prompt": None}
    model = run.train("round0.train", start, src, alt, run.data_after, start_after)
    rounds = [ModelRow("round 0", "round", run.rel(model), run.evaluate_all("round0", model, src, ["round0.train"]),
                       caption_stats=run.alt_stats(src, run.data_after), round=0, caption_layer=src.alt)]
    run.round_ended(0, rounds[0].model, rounds[0].evals)
    for i in range(1, sa.rounds + 1):
        layer = run.layer_name(f"recap-r{i}")
        stats = run.recaption(f"round{i}.caption", src, run.abs(rounds[-1].model), layer,
                              captioner=sa.captioner, prompts=run.prompts(sa.prompts), filters=run.filters(),
                              round=i, batch_size=sa.batch_size, max_new_tokens=sa.max_new_tokens,
                              settings=sa.settings, after=[f"round{i - 1}.train"])
        captions = {"layers": [src.alt, layer], "template": sa.template, "prompt": None}
        model = run.train(f"round{i}.train", start, src, captions, [*run.data_after, f"round{i}.caption"], start_after)
        rounds.append(ModelRow(f"round {i}", "round", run.rel(model),
                               run.evaluate_all(f"round{i}", model, src, [f"round{i}.train"]),
                               caption_stats=stats, round=i, caption_layer=layer))
        run.round_ended(i, rounds[-1].model, rounds[-1].evals)
        if sa.stop_when is not None:
            why = _saturation(run, rounds, sa.stop_when)
            if why is not None:
                return rounds, {"round": i, "reason": f"{sa.stop_when.benchmark} {why}"}
    return rounds, None


def best_round(run: Run, rounds: list[ModelRow]) -> ModelRow:
    """The round the specialists start from: the best on the stop benchmark (earliest on ties),
    else the last. With ``stop_when.confidence``, the latest round not shown worse than the best
    before it: a difference within noise goes to the later round, whose recaptions are the
    richer data, as the paper goes on from its last self-augmented round."""
    stop = run.recipe.self_augment.stop_when
    if stop is None or len(rounds) == 1:
        return rounds[-1]
    scores = _scores(run, rounds, stop.benchmark)
    if stop.confidence is None:
        return rounds[max(range(len(rounds)), key=lambda i: (scores[i], -i))]
    best = rounds[0]
    for later in rounds[1:]:
        if _gain(run, best, later, stop.benchmark, stop.confidence)["high"] >= 0:
            best = later
    return best


def specialist_augment(run: Run, src: Sources, best: ModelRow, specialists: list[Any],
                       rows: list[ModelRow]) -> list[tuple[str, str]]:
    """Fine-tune, evaluate and recaption with each specialist; returns (name, caption layer)."""
    layers = []
    for spec in specialists:

        def one(spec: Any = spec) -> str:
            model = run.finetune_specialist(spec, src, run.abs(best.model), f"round{best.round}.train")
            row = ModelRow(f"+ {spec.name} specialist", "specialist", run.rel_or_abs(model), specialist=spec.name)
            if spec.evaluator:
                _evaluate_specialist(run, spec, model, src, best, row)
            layer, row.caption_stats = run.specialist_recaption(spec, model, src)
            rows.append(row)
            return layer

        layer = run.skippable(f"specialists.{spec.name}", one)
        if layer is not None:
            layers.append((spec.name, layer))
    return layers


def final(run: Run, src: Sources, start: str, start_after: list[str], best: ModelRow,
          specialists: list[Any], layers: list[tuple[str, str]]) -> ModelRow:
    """Retrain the generalist from the starting point with the specialists' answers appended to
    the captions as question–answer turns; evaluate it everywhere, the specialists' domains too."""
    assert best.round is not None
    first, first_after = run.original_captions(src, best.round, best.caption_layer)
    after = [*run.data_after, *first_after, *(f"specialists.{n}.caption" for n, _ in layers)]
    model = run.train("final.train", start, src, final_captions(run, first, specialists, layers), after, start_after)
    evals = evaluate_final(run, "final", model, src, specialists, layers)
    return ModelRow("final (VILA²)", "final", run.rel(model), evals)


def final_captions(run: Run, first: str, specialists: list[Any], layers: list[tuple[str, str]]) -> dict[str, Any]:
    """The final model's caption mixture entry: the caption layer ``first``, then each
    specialist's answers (``layers``: (name, layer)) as question–answer turns."""
    cfg = run.recipe.specialists
    assert cfg is not None
    questions = {layer: list(s.questions) for s in specialists for n, layer in layers
                 if n == s.name and s.questions}
    return {"layers": [first, *(layer for _, layer in layers)], "template": "qa",
            "prompt": None, "questions": questions, "max_turns": cfg.qa_turns}


def evaluate_final(run: Run, prefix: str, model: str, src: Sources, specialists: list[Any],
                   layers: list[tuple[str, str]]) -> dict[str, str]:
    """Evaluate a final model on every evaluator of the recipe and on the domain benchmark of
    each specialist that added a layer; returns ``{benchmark: result file}``."""
    after = [f"{prefix}.train"]
    evals = run.evaluate_all(prefix, model, src, after)
    listed = {e.name for e in run.recipe.evaluators}
    for spec in specialists:
        if spec.evaluator and spec.evaluator not in listed and any(n == spec.name for n, _ in layers):
            bench = run.domain_benchmark(spec)
            result = run.evaluate(f"{prefix}.eval.{bench.name}", model, bench, src, after)
            if result is not None:
                evals[bench.name] = result
    return evals


def _evaluate_specialist(run: Run, spec: Any, model: str, src: Sources, best: ModelRow, row: ModelRow) -> None:
    """The specialist and the round it came from, on the specialist's own benchmark."""
    bench = run.domain_benchmark(spec)
    row.domain = bench.name
    own = run.evaluate(f"specialists.{spec.name}.eval.{bench.name}", model, bench, src,
                       [f"specialists.{spec.name}.finetune"])
    base = best.evals.get(bench.name) or run.evaluate(
        f"round{best.round}.eval.{bench.name}", run.abs(best.model), bench, src, [f"round{best.round}.train"])
    if own is not None:
        row.evals[bench.name] = own
    if base is not None:
        row.base_evals[bench.name] = base
        best.evals[bench.name] = base  # the round's row shows it too


def _saturation(run: Run, rounds: list[ModelRow], stop: StopWhen) -> str | None:
    """Why the rounds stop after the last of ``rounds``, or ``None``: its gain on the stop
    benchmark, as a mean (:func:`saturated`) or as a paired-bootstrap interval (:func:`unproven`)."""
    scores = _scores(run, rounds, stop.benchmark)
    if stop.confidence is None:
        return saturated(scores, stop.min_gain)
    return unproven(_gain(run, rounds[-2], rounds[-1], stop.benchmark, stop.confidence), stop.min_gain)


def _gain(run: Run, before: ModelRow, after: ModelRow, benchmark: str, level: float) -> dict[str, Any]:
    """``after − before`` on ``benchmark`` with its paired-bootstrap interval at ``level`` (the
    stop rule's ``confidence``)."""
    from vila2.errors import PipelineError

    files = [before.evals[benchmark], after.evals[benchmark]]
    old, new = (per_sample(run.root, f) for f in files)
    for values, file in ((old, files[0]), (new, files[1])):
        if values is None:
            raise PipelineError(f"{file}: no per-sample scores, which self_augment.stop_when.confidence "
                                f"needs to put an interval on the gain (leave confidence out to compare means)")
    assert old is not None and new is not None
    gain = paired_bootstrap(new, old, level=level)
    if gain is None:
        raise PipelineError(f"{files[1]} and {files[0]}: no sample scored by both rounds, so "
                            f"self_augment.stop_when.confidence cannot pair them")
    return gain


def _scores(run: Run, rounds: list[ModelRow], benchmark: str) -> list[float]:
    from vila2.errors import PipelineError

    missing = [r.round for r in rounds if benchmark not in r.evals]
    if missing:
        raise PipelineError(f"round {missing[0]}: no {benchmark!r} result to decide saturation on")
    return [score(run.root, r.evals[benchmark]) for r in rounds]
