"""The run report: ``results.json``, ``report.md`` with a paper-style table, and PNG plots.

The pipeline hands over *where* each number lives (a row per model naming its evaluation files
and caption statistics file); this module reads every number from those files, so each figure in
the report can be traced to a file of the run. Scores are shown as percentages (×100), one
decimal, as in the paper's tables.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vila2.pipeline.steps import write_json

RESULT_FILE = "result.json"  # what an evaluation step writes: vila2.EvalResult.to_dict()
CAPTION_STATS_FILE = "caption_stats.json"  # what a caption step writes: {"mean_words", ...}


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
    return cell


def collect(root: str | Path, rows: Sequence[Mapping[str, Any]], **extra: Any) -> dict[str, Any]:
    """Read every number of the report from the run's files.

    Each row: ``{"name", "kind": "round"|"specialist"|"final", "model", "evals": {benchmark:
    result file}, "caption_stats": file or None}``, plus for a specialist ``"domain"`` (its
    benchmark) and ``"base_evals"`` (the self-augmented model's results it is compared with).
    Files are relative to the run folder ``root``. ``extra`` is stored as is (stop reason,
    errors...).
    """
    root = Path(root)
    out_rows = []
    benchmarks: list[str] = []
    for row in rows:
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
            out["caption_words"] = {"value": float(stats["mean_words"]), "file": row["caption_stats"]}
        else:
            out["caption_words"] = None
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


def render_markdown(results: Mapping[str, Any], plots: Sequence[str]) -> str:
    """The whole ``report.md``."""
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
    parts += ["Every number above is read from the evaluation files and caption statistics listed "
              "in `results.json`.", ""]
    return "\n".join(parts)


def write_report(run_dir: str | Path, results: Mapping[str, Any]) -> Path:
    """Write ``results.json``, ``plots/*.png`` and ``report.md`` into the run folder."""
    root = Path(run_dir)
    write_json(root / "results.json", results)
    plots = plot(results, root / "plots")
    report = root / "report.md"
    tmp = report.with_name(".report.md.tmp")
    tmp.write_text(render_markdown(results, plots), encoding="utf-8")
    tmp.replace(report)
    return report


__all__ = [
    "CAPTION_STATS_FILE",
    "RESULT_FILE",
    "collect",
    "hallucination_metric",
    "markdown_table",
    "plot",
    "render_markdown",
    "specialist_table",
    "write_report",
]
