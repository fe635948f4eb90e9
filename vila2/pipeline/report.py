"""The run report: ``results.json``, ``report.md`` with a paper-style table, and PNG plots.

The pipeline hands over *where* each number lives (a row per model naming its evaluation files
and caption statistics file); this module reads every number from those files, so each figure in
the report can be traced to a file of the run. Scores are shown as percentages (×100), one
decimal, as in the paper's tables.

Besides the paper's table the report shows whether gains are real and what the loop does to the
data: each score's difference from the row before it with a 95% paired-bootstrap interval (from
the per-sample ``<benchmark>.jsonl`` every evaluator writes beside its ``result.json``), the
quality of every caption layer a model was trained on (``caption_stats.json``'s ``quality``),
how much each model's answers depend on its image (the ``*_shuffled`` and ``loss_gap`` metrics),
and a gallery, ``report.html`` (:mod:`vila2.pipeline.gallery`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vila2.pipeline.steps import write_json

RESULT_FILE = "result.json"  # what an evaluation step writes: vila2.EvalResult.to_dict()
CAPTION_STATS_FILE = "caption_stats.json"  # what a caption step writes: {"mean_words", ...}


GALLERY_FILE = "report.html"
#: the paired bootstrap of score differences: resamples, seed and interval (fixed: reports of
#: the same run files are identical)
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
BOOTSTRAP_LEVEL = 0.95
#: image-dependence metrics an evaluator may report beside a benchmark's primary metric
LOSS_METRICS = ("answer_loss", "answer_loss_shuffled", "loss_gap")

#: names under which caption benchmarks report object hallucination, preferred first
HALLUCINATION_METRICS = ("chair_i", "hallucination_rate", "hallucination", "chair_s")


def hallucination_metric(metrics: Mapping[str, Any]) -> str | None:
    """The object-hallucination metric of a caption benchmark (CHAIR-like), if it reports one."""
    return next((key for key in HALLUCINATION_METRICS if key in metrics), None)


def _read(run_dir: Path, rel: str) -> dict[str, Any]:
    file = run_dir / rel
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RuntimeError(f"report: cannot read {file}: {exc}") from exc


def _score(run_dir: Path, rel: str) -> dict[str, Any]:
    result = _read(run_dir, rel)
    metrics = result["metrics"]
    cell: dict[str, Any] = {
        "score": float(metrics[result["primary"]]), "metric": result["primary"],
        "n": result.get("n"), "file": rel,
    }
    key = hallucination_metric(metrics)
    if key is not None:
        cell["hallucination"] = {"value": float(metrics[key]), "metric": key, "file": rel}
    shuffled = f"{result['primary']}_shuffled"
    if shuffled in metrics or any(k in metrics for k in LOSS_METRICS):
        cell["image_dependence"] = {
            k: float(metrics[k]) for k in (shuffled, *LOSS_METRICS) if k in metrics
        }
    by_kind = (result.get("details") or {}).get("by_kind") or {}
    kinds = {kind: {"n": int(group["n"]), "score": float(group[result["primary"]])}
             for kind, group in by_kind.items() if result["primary"] in group}
    if kinds:
        cell["by_kind"] = kinds
    return cell


def per_sample(run_dir: Path, rel: str) -> dict[str, float] | None:
    """``{sample id: primary metric}`` from the per-sample file of the result ``rel``, or
    ``None`` when the evaluator wrote none (or one without per-sample metrics).

    The file is looked for beside ``result.json`` (``<benchmark>.jsonl``, or the name of the
    result's ``samples_path``), so a moved run folder still finds it, then at ``samples_path``.
    A sample is named by its ``id`` (or ``doc_id``); its value is read by :func:`_sample_value`.
    """
    result = _read(run_dir, rel)
    folder = (run_dir / rel).parent
    candidates = [folder / f"{result.get('benchmark')}.jsonl"]
    if result.get("samples_path"):
        candidates += [folder / Path(result["samples_path"]).name, Path(result["samples_path"])]
    file = next((c for c in candidates if c.is_file()), None)
    if file is None:
        return None
    values: dict[str, float] = {}
    for line in file.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        value = _sample_value(record, result["primary"])
        sample_id = record.get("id", record.get("doc_id"))
        if sample_id is not None and value is not None:
            values[str(sample_id)] = value
    return values or None


def _sample_value(record: Mapping[str, Any], metric: str) -> float | None:
    """One sample's ``metric``: under ``metrics`` (vila2's evaluators), at the top level, or for
    ``accuracy`` the ``correct`` flag (the ``vila2-evals`` back ends' records)."""
    value = (record.get("metrics") or {}).get(metric, record.get(metric))
    if value is None and metric == "accuracy" and "correct" in record:
        value = float(bool(record["correct"]))
    if isinstance(value, (bool, int, float)) and math.isfinite(value):
        return float(value)
    return None  # missing, not a number, or NaN (a sample the evaluator could not score)


def paired_bootstrap(new: Mapping[str, float], old: Mapping[str, float], *,
                     resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                     level: float = BOOTSTRAP_LEVEL) -> dict[str, Any] | None:
    """The mean difference ``new − old`` over the samples both scored, with a percentile
    bootstrap interval: the samples are resampled with replacement, in pairs (one sample's two
    scores stay together, so the interval reflects the models' difference, not how hard the
    questions are). Deterministic for a fixed ``seed``. ``None`` when no sample is shared."""
    import numpy as np

    ids = sorted(set(new) & set(old))
    if not ids:
        return None
    diffs = np.array([new[i] - old[i] for i in ids], dtype=np.float64)
    rng = np.random.default_rng(seed)
    # resampled in blocks, so a benchmark of 100k samples does not need a 1000 × 100k index array
    block = max(1, min(resamples, 2_000_000 // len(diffs)))
    means = np.concatenate([
        diffs[rng.integers(0, len(diffs), size=(min(block, resamples - start), len(diffs)))].mean(axis=1)
        for start in range(0, resamples, block)
    ])
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return {"diff": float(diffs.mean()), "low": float(low), "high": float(high), "n": len(ids),
            "resamples": resamples, "seed": seed, "level": level}


def _reference_rows(rows: Sequence[Mapping[str, Any]], best_round: int | None) -> list[int | None]:
    """For each row, the row its gains are measured against: a round against the round before
    it, the final model against the round the specialists started from (the last round when
    none is named); a specialist is compared with its own base results instead."""
    rounds = [i for i, r in enumerate(rows) if r["kind"] == "round"]
    out: list[int | None] = []
    for i, row in enumerate(rows):
        if row["kind"] == "round":
            earlier = [j for j in rounds if j < i]
            out.append(earlier[-1] if earlier else None)
        elif row["kind"] == "final" and rounds:
            named = [j for j in rounds if rows[j].get("round") == best_round]
            out.append(named[0] if named else rounds[-1])
        else:
            out.append(None)
    return out


def gains(root: Path, rows: Sequence[Mapping[str, Any]], best_round: int | None = None) -> list[dict[str, Any]]:
    """Per row, ``{benchmark: {"vs", "diff", "low", "high", "n", ...}}``: each score against the
    row before it (see :func:`_reference_rows`), paired by sample id."""
    refs = _reference_rows(rows, best_round)
    cache: dict[str, dict[str, float] | None] = {}

    def samples(rel: str) -> dict[str, float] | None:
        if rel not in cache:
            cache[rel] = per_sample(root, rel)
        return cache[rel]

    out: list[dict[str, Any]] = []
    for row, ref in zip(rows, refs, strict=True):
        mine: dict[str, Any] = {}
        if row["kind"] == "specialist":
            start = f"round {best_round}" if best_round is not None else "its starting round"
            pairs = [(b, f, (row.get("base_evals") or {}).get(b), start) for b, f in row.get("evals", {}).items()]
        else:
            base = rows[ref] if ref is not None else None
            pairs = [(b, f, base["evals"].get(b) if base else None, base["name"] if base else None)
                     for b, f in row.get("evals", {}).items()]
        for benchmark, file, base_file, vs in pairs:
            if base_file is None:
                continue
            a, b = samples(file), samples(base_file)
            if a is None or b is None:
                continue
            interval = paired_bootstrap(a, b)
            if interval is not None:
                mine[benchmark] = {"vs": vs, **interval, "files": [file, base_file]}
        out.append(mine)
    return out


def _quality(run_dir: Path, rel: str) -> dict[str, Any] | None:
    """The caption layer's quality numbers of a ``caption_stats.json``, with where they are."""
    stats = _read(run_dir, rel)
    quality = stats.get("quality")
    if quality is None:
        return None
    return {**quality, "layer": stats.get("layer"), "dataset": stats.get("dataset"),
            "world": stats.get("world"), "file": rel}


def collect(root: str | Path, rows: Sequence[Mapping[str, Any]], **extra: Any) -> dict[str, Any]:
    """Read every number of the report from the run's files.

    Each row: ``{"name", "kind": "round"|"specialist"|"final", "model", "evals": {benchmark:
    result file}, "caption_stats": file or None}``, plus for a specialist ``"domain"`` (its
    benchmark) and ``"base_evals"`` (the self-augmented model's results it is compared with).
    Files are relative to the run folder ``root``. ``extra`` is stored as is (stop reason,
    errors...); its ``best_round`` is the round the final model's gains are measured against.
    Each output row also carries ``caption_quality`` (the caption layer's quality numbers, or
    ``None``) and ``gains`` (:func:`gains`).
    """
    root = Path(root)
    out_rows = []
    benchmarks: list[str] = []
    row_gains = gains(root, rows, extra.get("best_round"))
    for row, gain in zip(rows, row_gains, strict=True):
        scores = {b: _score(root, f) for b, f in row.get("evals", {}).items()}
        for b in scores:
            if b not in benchmarks:
                benchmarks.append(b)
        out = {k: v for k, v in row.items() if k not in {"evals", "base_evals", "caption_stats"}}
        out["scores"] = scores
        if row.get("base_evals"):
            out["base_scores"] = {b: _score(root, f) for b, f in row["base_evals"].items()}
        halluc = [s["hallucination"] for s in scores.values() if "hallucination" in s]
        out["hallucination"] = halluc[0] if halluc else None
        if row.get("caption_stats"):
            stats = _read(root, row["caption_stats"])
            # a layer whose every caption was rejected has no length to report
            out["caption_words"] = ({"value": float(stats["mean_words"]), "file": row["caption_stats"]}
                                    if stats.get("kept", 1) else None)
            out["caption_quality"] = _quality(root, row["caption_stats"])
        else:
            out["caption_words"] = None
            out["caption_quality"] = None
        out["gains"] = gain
        out_rows.append(out)
    return {"format": "vila2-results", "version": 1, "benchmarks": benchmarks, "rows": out_rows, **extra}


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def markdown_table(results: Mapping[str, Any]) -> str:
    """One row per model, one column per benchmark, plus caption words and hallucination."""
    benchmarks = list(results["benchmarks"])
    metric = {b: next(r["scores"][b]["metric"] for r in results["rows"] if b in r["scores"]) for b in benchmarks}
    halluc = next((r["hallucination"]["metric"] for r in results["rows"] if r.get("hallucination")), None)
    head = ["model", "caption words", *(f"{b} ({metric[b]})" for b in benchmarks),
            "hallucination" + (f" ({halluc})" if halluc else "")]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for row in results["rows"]:
        words = row.get("caption_words")
        cells = [row["name"], "–" if words is None else f"{words['value']:.1f}"]
        for b in benchmarks:
            score = row["scores"].get(b)
            cells.append("–" if score is None else _pct(score["score"]))
        halluc = row.get("hallucination")
        cells.append("–" if halluc is None else _pct(halluc["value"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def specialist_table(results: Mapping[str, Any]) -> str:
    """Each specialist on its own domain benchmark next to the self-augmented model it came from."""
    rows = [r for r in results["rows"] if r["kind"] == "specialist" and r.get("domain")]
    if not rows:
        return ""
    lines = ["| specialist | benchmark | self-augmented | specialist | gain |", "|---|---|---:|---:|---:|"]
    for row in rows:
        domain = row["domain"]
        mine = row["scores"].get(domain)
        base = (row.get("base_scores") or {}).get(domain)
        gain = None if mine is None or base is None else mine["score"] - base["score"]
        lines.append(
            f"| {row['specialist']} | {domain} | {_pct(base and base['score'])} | "
            f"{_pct(mine and mine['score'])} | {'–' if gain is None else f'{100 * gain:+.1f}'} |"
        )
    return "\n".join(lines)


def _plain_table(head: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int) -> str:
    """A Markdown table whose columns from ``numeric_from`` on are right-aligned numbers."""
    align = ["---"] * numeric_from + ["---:"] * (len(head) - numeric_from)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def _interval(gain: Mapping[str, Any] | None) -> str:
    if gain is None:
        return "–"
    return f"{100 * gain['diff']:+.1f} [{100 * gain['low']:+.1f}, {100 * gain['high']:+.1f}]"


def gains_table(results: Mapping[str, Any]) -> str:
    """Each row's score differences from the row it is compared with, with 95% intervals."""
    benchmarks = list(results["benchmarks"])
    rows = []
    for row in results["rows"]:
        row_gains = row.get("gains") or {}
        if not row_gains:
            continue
        vs = sorted({g["vs"] for g in row_gains.values()})
        rows.append([row["name"], ", ".join(vs), *(_interval(row_gains.get(b)) for b in benchmarks)])
    if not rows:
        return ""
    return _plain_table(["model", "vs", *benchmarks], rows, 2)


def _trained_on(row: Mapping[str, Any]) -> str:
    if row["kind"] == "round":
        return "alt-text" if row.get("round") == 0 else f"round {row['round'] - 1} recaptions"
    if row["kind"] == "specialist":
        return f"{row.get('specialist')} specialist's answers (final model's QA turns)"
    return "–"


def _places(quality: Mapping[str, Any]) -> str:
    # a layer measured before places were scored, or one that gives no object a place
    if "place_accuracy" not in quality:
        return "not measured"
    return _pct(quality["place_accuracy"]) if quality.get("placed_objects") else "none placed"


def quality_table(results: Mapping[str, Any]) -> str:
    """One row per caption layer a model was trained on: size, diversity, length and, against
    the world's ground truth, object recall, the wrong-mention rate and how often a place given
    to an object is right."""
    rows = []
    for row in results["rows"]:
        q = row.get("caption_quality")
        if not q:
            continue
        truth = q.get("ground_truth") == "world"
        if not q["captions"]:  # every caption rejected: nothing to measure, nothing trained on
            rows.append([row["name"], _trained_on(row), f"`{q.get('layer')}`", "0", *["none kept"] * 5])
            continue
        rows.append([
            row["name"], _trained_on(row), f"`{q.get('layer')}`", str(q["captions"]), _pct(q["distinct"]),
            f"{q['mean_words']:.1f}",
            _pct(q["object_recall"]) if truth else "no ground truth",
            _pct(q["wrong_mention_rate"]) if truth else "no ground truth",
            _places(q) if truth else "no ground truth",
        ])
    if not rows:
        return ""
    head = ["model", "trained on", "layer", "captions", "distinct (%)", "words", "object recall (%)",
            "wrong mentions (%)", "places right (%)"]
    return _plain_table(head, rows, 3)


def image_dependence_table(results: Mapping[str, Any]) -> str:
    """Per row and benchmark asked with shuffled images: the score with the right and with
    another sample's image, and the reference answer's loss both ways."""
    rows = []
    for row in results["rows"]:
        for benchmark, cell in row["scores"].items():
            dep = cell.get("image_dependence")
            if not dep:
                continue
            shuffled = dep.get(f"{cell['metric']}_shuffled")
            loss, loss_shuffled, gap = (dep.get(k) for k in LOSS_METRICS)
            rows.append([
                row["name"], f"{benchmark} ({cell['metric']})", _pct(cell["score"]), _pct(shuffled),
                "–" if shuffled is None else f"{100 * (cell['score'] - shuffled):+.1f}",
                "–" if loss is None else f"{loss:.3f}", "–" if loss_shuffled is None else f"{loss_shuffled:.3f}",
                "–" if gap is None else f"{gap:+.3f}",
            ])
    if not rows:
        return ""
    head = ["model", "benchmark", "right image", "shuffled images", "gap", "answer loss",
            "loss, shuffled", "loss gap"]
    return _plain_table(head, rows, 2)


def kind_tables(results: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(benchmark title, table)`` for each benchmark whose results hold more than one question
    kind: one row per model, the primary metric per kind."""
    out = []
    for benchmark in results["benchmarks"]:
        cells = [(row["name"], row["scores"][benchmark]) for row in results["rows"]
                 if benchmark in row["scores"] and row["scores"][benchmark].get("by_kind")]
        kinds: dict[str, int] = {}
        for _, cell in cells:
            for kind, group in cell["by_kind"].items():
                kinds.setdefault(kind, group["n"])
        if len(kinds) < 2:
            continue
        head = ["model", *(f"{kind} (n={n})" for kind, n in kinds.items())]
        rows = [[name, *(_pct(cell["by_kind"][k]["score"]) if k in cell["by_kind"] else "–" for k in kinds)]
                for name, cell in cells]
        out.append((f"{benchmark} ({cells[0][1]['metric']})", _plain_table(head, rows, 1)))
    return out


def _round_rows(results: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [r for r in results["rows"] if r["kind"] == "round"]


def plot(results: Mapping[str, Any], folder: str | Path) -> list[str]:
    """``scores.png`` (score per round per benchmark, the final model as a last point) and
    ``caption_length.png`` (mean caption words per round). Returns the file names written."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rounds = _round_rows(results)
    final = [r for r in results["rows"] if r["kind"] == "final"]
    written = []
    if rounds:
        fig, ax = plt.subplots(figsize=(6, 4))
        xs = [r["round"] for r in rounds]
        for b in results["benchmarks"]:
            points = [(x, 100 * r["scores"][b]["score"]) for x, r in zip(xs, rounds, strict=True) if b in r["scores"]]
            if not points:
                continue
            line = ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=b)[0]
            if final and b in final[0]["scores"]:
                ax.plot([xs[-1] + 1], [100 * final[0]["scores"][b]["score"]], marker="*",
                        markersize=12, color=line.get_color())
        ticks = [*xs, xs[-1] + 1] if final else xs
        ax.set_xticks(ticks, [*(str(x) for x in xs), "final"] if final else [str(x) for x in xs])
        ax.set_xlabel("self-augment round")
        ax.set_ylabel("score (%)")
        ax.set_title(f"{results.get('name', 'run')}: score per round")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "scores.png", dpi=100)
        plt.close(fig)
        written.append("scores.png")
        measured = [(r["round"], r["caption_words"]["value"]) for r in rounds if r.get("caption_words")]
        if measured:
            fig, ax = plt.subplots(figsize=(5, 3.5))
            ax.bar([str(x) for x, _ in measured], [w for _, w in measured], color="#4c72b0")
            ax.set_xlabel("self-augment round")
            ax.set_ylabel("mean caption words")
            ax.set_title("caption length per round")
            fig.tight_layout()
            fig.savefig(out / "caption_length.png", dpi=100)
            plt.close(fig)
            written.append("caption_length.png")
    return written


def render_markdown(results: Mapping[str, Any], plots: Sequence[str], gallery: str | None = None) -> str:
    """The whole ``report.md`` (``gallery``: the gallery file's name, linked when given)."""
    parts = [f"# VILA² run: {results.get('name', 'run')}", ""]
    parts += [
        "Scores are percentages on each benchmark (primary metric); *caption words* is the mean "
        "length of the captions a model was trained on (round 0: the original alt-text; round *i*: "
        "the recaptions made by round *i − 1*; a specialist: its task-oriented recaptions); "
        "*hallucination* is the object hallucination rate on the caption benchmark (lower is better).",
        "",
        markdown_table(results),
        "",
    ]
    spec = specialist_table(results)
    if spec:
        parts += ["## Specialists on their own domain", "", spec, ""]
    table = gains_table(results)
    if table:
        parts += [
            "## Gains with 95% confidence", "",
            "Each cell is the score's difference from the model named in *vs*, in points, with a "
            f"{BOOTSTRAP_LEVEL:.0%} paired-bootstrap interval ({BOOTSTRAP_RESAMPLES:,} resamples of the "
            f"samples both models answered, seed {BOOTSTRAP_SEED}, from the per-sample files beside each "
            "`result.json`). An interval that contains 0 is a difference chance could explain. It "
            "covers which samples were asked, not the spread between training runs: a gain that "
            "counts holds over seeds too (`benchmarks/fidelity.py`).", "",
            table, "",
        ]
    table = quality_table(results)
    if table:
        parts += [
            "## Caption quality per layer", "",
            "The captions each model was trained on: *captions* counts those the filters kept (a "
            "specialist's answers it rejects, such as malformed boxes, are recorded in its layer and "
            "not trained on). *Distinct*: share of different texts; *words*: "
            "mean length; against the world's ground-truth scenes, *object recall*: mean share of an "
            "image's objects named with their colour and shape, *wrong mentions*: share of object "
            "mentions that name no object in the image, and *places right*: share of the objects "
            "given a place (\"red circle at the top left\") whose place is right (chance: about 1 in "
            "9). The ground truth is read here only, never for training.", "",
            table, "",
        ]
    table = image_dependence_table(results)
    if table:
        parts += [
            "## Image dependence", "",
            "Each question asked again with another sample's image: a model that looks at the image "
            "loses accuracy (*gap*, in points) and finds the right answer less likely (*loss gap*: the "
            "reference answer's mean token loss with shuffled images minus with the right ones).", "",
            table, "",
        ]
    tables = kind_tables(results)
    if tables:
        parts += [
            "## By question kind", "",
            "Each benchmark's score per kind of question (the *n* in each column heading): which "
            "questions a gain comes from.", "",
        ]
        for title, table in tables:
            parts += [f"**{title}**", "", table, ""]
    if gallery:
        parts += [f"Gallery: [{gallery}]({gallery}): pretraining images with every caption layer, "
                  "object mentions marked right or wrong against the ground truth where there is one.", ""]
    stop = results.get("stop")
    if stop:
        parts += [f"Self-augment stopped after round {stop['round']}: {stop['reason']}.", ""]
    if results.get("best_round") is not None:
        parts += [f"Specialists were fine-tuned from the round-{results['best_round']} model.", ""]
    errors = results.get("errors") or []
    if errors:
        parts += ["## Skipped (on_error: skip)", ""]
        parts += [f"- `{e['step']}`: {e['error']}" for e in errors]
        parts.append("")
    if plots:
        parts += ["## Plots", ""] + [f"![{p}](plots/{p})" for p in plots] + [""]
    parts += ["Every number above is read from the evaluation files (each `result.json` and the "
              "per-sample file beside it) and caption statistics listed in `results.json`.", ""]
    return "\n".join(parts)


def write_report(run_dir: str | Path, results: Mapping[str, Any]) -> Path:
    """Write ``results.json``, ``plots/*.png``, ``report.html`` (when a caption layer of the
    pretraining images is known) and ``report.md`` into the run folder."""
    from vila2.pipeline.gallery import write_gallery

    root = Path(run_dir)
    write_json(root / "results.json", results)
    plots = plot(results, root / "plots")
    gallery = write_gallery(root, results, root / GALLERY_FILE)
    report = root / "report.md"
    tmp = report.with_name(".report.md.tmp")
    tmp.write_text(render_markdown(results, plots, gallery.name if gallery else None), encoding="utf-8")
    tmp.replace(report)
    return report


__all__ = [
    "CAPTION_STATS_FILE",
    "GALLERY_FILE",
    "RESULT_FILE",
    "collect",
    "gains",
    "gains_table",
    "hallucination_metric",
    "image_dependence_table",
    "markdown_table",
    "paired_bootstrap",
    "per_sample",
    "plot",
    "quality_table",
    "render_markdown",
    "specialist_table",
    "write_report",
]
