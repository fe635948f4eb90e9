"""The demo recipe on several world seeds: does what one run shows hold on worlds no test or
recipe uses?

    python benchmarks/fidelity.py --out /tmp/fidelity [--seeds 101 202 303] [--train-seeds 0 1]
        [--recipe demo] [--parallel 1] [--write-docs]

Each seed is a full ``vila2 run`` of the recipe with ``data.world.seed`` replaced (one run
folder per seed under ``--out``; rerunning resumes them). ``--train-seeds`` runs every world
once per training seed (the recipe's ``seed``: initialisation of what is trained, data order),
so a gain can be read against the spread that training alone gives. The table has, for every
model row and benchmark, the mean ± sample standard deviation of its score over the runs, the
gains with how many runs' 95% intervals exclude 0, each benchmark's scores by question kind,
and the quality of each caption layer the models were trained on; with several training seeds,
also each gain's spread between training seeds of one world against its spread between worlds.
``--write-docs`` puts the table into docs/DEMO.md between the ``fidelity`` markers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "DEMO.md"
START, END = "<!-- fidelity:start -->", "<!-- fidelity:end -->"
#: world seeds some test or recipe uses; the fidelity seeds must avoid them
USED_SEEDS = frozenset({0, 1, 2, 3, 7})


def recipe_for(recipe: str, seed: int, train_seed: int | None = None) -> dict[str, Any]:
    """The recipe (a packaged name or a YAML file) with its world seed replaced, and its
    training seed where ``train_seed`` is given."""
    import yaml

    from vila2.pipeline.recipe import PACKAGED

    path = Path(recipe) if Path(recipe).is_file() else PACKAGED / f"{recipe}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["data"]["world"]["seed"] = seed
    data["name"] = f"{data['name']}-seed{seed}"
    if train_seed is not None:
        data["seed"] = train_seed
        data["name"] += f"-train{train_seed}"
    return data


def label(run: dict[str, Any]) -> str:
    """``seed 101``, or ``seed 101/train 1`` for a run with a training seed of its own."""
    return f"seed {run['seed']}" + (f"/train {run['train_seed']}" if run.get("train_seed") is not None else "")


def run_seed(out: Path, recipe: str, seed: int, rerun_changed: bool = False,
             train_seed: int | None = None) -> dict[str, Any]:
    """Run (or resume) the recipe on world ``seed`` (with training seed ``train_seed``, where
    given); return its results.json and wall time. ``rerun_changed`` reruns the steps whose
    recipe parts changed since the run began."""
    import yaml

    name = label({"seed": seed, "train_seed": train_seed})
    folder = out / (f"seed-{seed}" if train_seed is None else f"seed-{seed}-train{train_seed}")
    folder.mkdir(parents=True, exist_ok=True)
    recipe_file = folder / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(recipe_for(recipe, seed, train_seed), sort_keys=False), encoding="utf-8")
    started = time.perf_counter()
    log_file = folder / "log.txt"
    print(f"{name}: running, log {log_file}", flush=True)  # a run takes minutes
    with log_file.open("a", encoding="utf-8") as log:
        done = subprocess.run([sys.executable, "-m", "vila2", "run", str(recipe_file), "--out", str(folder / "run"),
                               *(["--rerun-changed"] if rerun_changed else [])],
                              check=False, stdout=log, stderr=subprocess.STDOUT,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        tail = "\n".join(log_file.read_text(encoding="utf-8", errors="replace").splitlines()[-5:])
        raise SystemExit(f"{name}: vila2 run failed (exit {done.returncode}); rerunning resumes it. "
                         f"The end of {log_file}:\n{tail}")
    print(f"{name}: done in {time.perf_counter() - started:.0f} s", flush=True)
    results = json.loads((folder / "run" / "results.json").read_text(encoding="utf-8"))
    return {"seed": seed, "train_seed": train_seed, "seconds": round(time.perf_counter() - started, 1),
            "step_seconds": round(run_seconds(folder / "run"), 1), "results": results}


def _mean_sd(values: list[float], scale: float = 100.0, of: int | None = None, digits: int = 1) -> str:
    """``mean ± sd``; ``(k of n)`` when only ``k`` of the ``of`` runs have the cell."""
    if not values:
        return "–"
    mean = statistics.fmean(values) * scale
    text = (f"{mean:.{digits}f}" if len(values) == 1
            else f"{mean:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}")
    return f"{text} ({len(values)} of {of})" if of and len(values) < of else text


def run_seconds(run_dir: Path) -> float:
    """The run's compute time: the sum of its steps' seconds (a resumed run's too)."""
    return sum(json.loads(f.read_text(encoding="utf-8")).get("seconds", 0.0) for f in (run_dir / "steps").glob("*.json"))


def table(runs: list[dict[str, Any]]) -> str:
    """Markdown: scores, gains, scores by question kind and caption quality over the seeds' runs."""
    benchmarks: list[str] = []
    names: list[str] = []
    # the run with the most rows first: a round only some seeds reached keeps its place among
    # the rounds, not after the final model
    for run in sorted(runs, key=lambda r: -len(r["results"]["rows"])):
        for b in run["results"]["benchmarks"]:
            if b not in benchmarks:
                benchmarks.append(b)
        for row in run["results"]["rows"]:
            if row["name"] not in names:
                names.append(row["name"])

    def rows_named(name: str) -> list[dict[str, Any]]:
        return [r for run in runs for r in run["results"]["rows"] if r["name"] == name]

    worlds = list(dict.fromkeys(r["seed"] for r in runs))
    trains = list(dict.fromkeys(r.get("train_seed") for r in runs))
    train_text = ", ".join("the recipe's" if t is None else str(t) for t in trains)
    if trains == [None]:
        over = f"world seeds {', '.join(map(str, worlds))} (one run each)"
    elif len(trains) == 1:
        over = f"world seeds {', '.join(map(str, worlds))} (one run each, training seed {train_text})"
    else:
        over = f"{len(runs)} runs: world seeds {', '.join(map(str, worlds))}, with training seeds {train_text}"
    lines = [f"Scores in percent, mean ± sd over {over}.", "",
             "| model | " + " | ".join(benchmarks) + " | hallucination (chair_i) |",
             "|---|" + "---:|" * (len(benchmarks) + 1)]
    for name in names:
        rows = rows_named(name)
        cells = [_mean_sd([r["scores"][b]["score"] for r in rows if b in r.get("scores", {})], of=len(runs))
                 for b in benchmarks]
        halls = [r["hallucination"]["value"] for r in rows if r.get("hallucination")]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {_mean_sd(halls, of=len(runs))} |")

    lines += ["", "Gains against the row in *vs*: mean ± sd of the difference in points, and in how many "
              "runs the 95% paired-bootstrap interval lies above 0 / below 0.", "",
              "| model | vs | " + " | ".join(benchmarks) + " |", "|---|---|" + "---:|" * len(benchmarks)]
    for name in names:
        rows = [r for r in rows_named(name) if r.get("gains")]
        if not rows:
            continue
        vs = sorted({g["vs"] for r in rows for g in r["gains"].values()})
        cells = []
        for b in benchmarks:
            gains = [r["gains"][b] for r in rows if b in r["gains"]]
            if not gains:
                cells.append("–")
                continue
            up = sum(g["low"] > 0 for g in gains)
            down = sum(g["high"] < 0 for g in gains)
            cells.append(f"{_mean_sd([g['diff'] for g in gains])} ({up}↑ {down}↓ of {len(gains)})")
        lines.append(f"| {name} | {', '.join(vs)} | " + " | ".join(cells) + " |")
    lines += noise_table(runs, names, benchmarks)

    for b in benchmarks:  # which questions a score comes from, where a benchmark has kinds
        kinds: list[str] = []
        for name in names:
            for r in rows_named(name):
                for kind in (r.get("scores", {}).get(b) or {}).get("by_kind", {}):
                    if kind not in kinds:
                        kinds.append(kind)
        if len(kinds) < 2:
            continue
        lines += ["", f"{b} by question kind:", "", "| model | " + " | ".join(kinds) + " |",
                  "|---|" + "---:|" * len(kinds)]
        for name in names:
            cells = [r["scores"][b] for r in rows_named(name) if b in r.get("scores", {})]
            if not cells:
                continue
            lines.append(f"| {name} | " + " | ".join(
                _mean_sd([c["by_kind"][k]["score"] for c in cells if k in c.get("by_kind", {})], of=len(runs))
                for k in kinds) + " |")

    lines += ["", "Caption layers the models were trained on, against the world's ground truth (*kept*: the "
              "captions the filters kept; the other columns over the runs that kept any):", "",
              "| model | layer | kept | object recall | wrong mentions | distinct | words |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for name in names:
        every = [r["caption_quality"] for r in rows_named(name) if r.get("caption_quality")]
        if not every or "object_recall" not in every[0]:
            continue
        quality = [q for q in every if q["captions"]]
        lines.append(
            f"| {name} | `{every[0]['layer']}` | {_mean_sd([q['captions'] for q in every], scale=1.0, digits=0)} | "
            f"{_mean_sd([q['object_recall'] for q in quality], of=len(every))} | "
            f"{_mean_sd([q['wrong_mention_rate'] for q in quality], of=len(every))} | "
            f"{_mean_sd([q['distinct'] for q in quality], of=len(every))} | "
            f"{_mean_sd([q['mean_words'] for q in quality], scale=1.0, of=len(every))} |")
    stops = "; ".join(f"{label(r)}: {(r['results'].get('stop') or {}).get('reason', 'every round ran')}"
                      for r in runs)
    lines += ["", f"Stop rule: {stops}. Time per run (the sum of its steps): "
              + ", ".join(f"{r.get('step_seconds', r['seconds']):.0f} s" for r in runs) + "."]
    return "\n".join(lines)


def spread(diffs: dict[int, list[float]]) -> tuple[float, float] | None:
    """``(training, worlds)`` of one gain from its values per world: the pooled sd between the
    runs of one world, and the sd the worlds add beyond that (the variance of the worlds' means
    less the part training noise puts there, floored at 0). ``None`` unless every world has the
    gain in the same number of runs, two or more, and there are two worlds or more."""
    counts = {len(values) for values in diffs.values()}
    if len(diffs) < 2 or len(counts) != 1 or (k := counts.pop()) < 2:
        return None
    pooled = statistics.fmean(statistics.variance(values) for values in diffs.values())
    between = statistics.variance([statistics.fmean(values) for values in diffs.values()]) - pooled / k
    return pooled ** 0.5, max(0.0, between) ** 0.5


def noise_table(runs: list[dict[str, Any]], names: list[str], benchmarks: list[str]) -> list[str]:
    """Markdown lines: each gain's spread between training seeds of one world against the spread
    the worlds add (:func:`spread`); none unless some world ran with several training seeds."""
    by_world: dict[int, list[dict[str, Any]]] = {}
    for run in runs:
        by_world.setdefault(run["seed"], []).append(run)
    if not any(len(group) > 1 for group in by_world.values()):
        return []
    lines = ["", "Where a gain's spread comes from, in points: *training*, the pooled sd between the training "
             "seeds of one world; *worlds*, the sd the worlds add beyond that. Only gains that every world has "
             "in every run; the row in *vs* may differ between runs of one world (the stop rule).", "",
             "| model | vs | " + " | ".join(benchmarks) + " |", "|---|---|" + "---:|" * len(benchmarks)]
    for name in names:
        vs = sorted({g["vs"] for run in runs for row in run["results"]["rows"]
                     if row["name"] == name for g in (row.get("gains") or {}).values()})
        cells = []
        for b in benchmarks:
            diffs = {world: [g["diff"] for run in group for row in run["results"]["rows"]
                             if row["name"] == name and (g := (row.get("gains") or {}).get(b))]
                     for world, group in by_world.items()}
            parts = spread(diffs) if all(len(d) == len(by_world[w]) for w, d in diffs.items()) else None
            cells.append("–" if parts is None else f"training {100 * parts[0]:.1f}, worlds {100 * parts[1]:.1f}")
        if any(c != "–" for c in cells):
            lines.append(f"| {name} | {', '.join(vs)} | " + " | ".join(cells) + " |")
    return lines if len(lines) > 5 else []  # the caption and header alone say nothing


def write_docs(text: str, docs: Path = DOCS) -> None:
    """Replace what lies between the fidelity markers of ``docs``."""
    content = docs.read_text(encoding="utf-8")
    if START not in content or END not in content:
        raise SystemExit(f"{docs}: no {START} … {END} markers to write between")
    head, rest = content.split(START, 1)
    _, tail = rest.split(END, 1)
    docs.write_text(f"{head}{START}\n{text}\n{END}{tail}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[101, 202, 303])
    parser.add_argument("--train-seeds", type=int, nargs="+",
                        help="run every world once per training seed (the recipe's `seed`); default: the recipe's own")
    parser.add_argument("--recipe", default="demo", help="a packaged recipe name or a YAML file")
    parser.add_argument("--parallel", type=int, default=1, help="runs at once (each uses the recipe's threads)")
    parser.add_argument("--rerun-changed", action="store_true",
                        help="rerun the steps whose recipe parts changed since a seed's run began")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)
    used = USED_SEEDS.intersection(args.seeds)
    if used:
        parser.error(f"world seeds {sorted(used)} are used by tests or recipes; choose others")
    cells = [(world, train) for world in dict.fromkeys(args.seeds)
             for train in dict.fromkeys(args.train_seeds or [None])]  # each run once, even if named twice
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        runs = list(pool.map(lambda c: run_seed(args.out, args.recipe, c[0], args.rerun_changed, c[1]), cells))
    text = table(runs)
    (args.out / "fidelity.md").write_text(text + "\n", encoding="utf-8")
    print(text)
    if args.write_docs:
        write_docs(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
