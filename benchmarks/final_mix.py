"""The final model's caption mix, with and without the recaption: does the best round's
recaption help or cost the final VILA² model?

The loop trains the final model on each pretraining image's alt-text joined with the best
round's recaption, followed by the specialists' answers as question–answer turns. This script
takes a finished run folder and trains the same model once more from the same starting point,
with the same steps and seed, on the alt-text alone followed by the same turns; it evaluates
it on every benchmark of the run and prints each score beside the final model's, with the
difference's 95 % paired-bootstrap interval. Its steps live in the run folder under
``ablation.final-alt.*`` and resume like the loop's::

    python benchmarks/final_mix.py --recipe demo --run vila2-demo
    python benchmarks/fidelity.py ... ; python benchmarks/final_mix.py --recipe /tmp/fid/seed-101/recipe.yaml --run /tmp/fid/seed-101/run
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from vila2.pipeline.loop import evaluate_final, final_captions
from vila2.pipeline.recipe import load_recipe, packaged_recipe
from vila2.pipeline.report import paired_bootstrap, per_sample
from vila2.pipeline.run import Run, score

STEP = "ablation.final-alt"


def final_without_recaption(run: Run, results: dict[str, Any]) -> dict[str, str]:
    """Train and evaluate the final model of ``run`` (whose ``results.json`` is ``results``)
    with the alt-text alone before the specialists' turns; returns ``{benchmark: result file}``."""
    specialists = run.check()
    # the layers the run's specialists wrote, as its results name them
    written = {r["specialist"]: r["caption_quality"]["layer"] for r in results["rows"] if r["kind"] == "specialist"}
    if sorted(written) != sorted(s.name for s in specialists):
        raise SystemExit(f"final_mix: the run's final model took turns from the specialists {sorted(written)}; "
                         f"installed here: {[s.name for s in specialists]}")
    run.start()
    # the loop's steps are done: this step's inputs name their fingerprints
    run.folder.recall_finished()
    src = run.sources()
    start, start_after = run.starting_point(src)
    layers = [(s.name, written[s.name]) for s in specialists]
    after = [*run.data_after, *(f"specialists.{n}.caption" for n, _ in layers)]
    captions = final_captions(run, src.alt, specialists, layers)
    model = run.train(f"{STEP}.train", start, src, captions, after, start_after)
    return evaluate_final(run, STEP, model, src, specialists, layers)


def compare(root: Path, results: dict[str, Any], evals: dict[str, str]) -> list[str]:
    """Markdown rows: per benchmark, the final model's score, this one's, and the difference."""
    final = next(r for r in results["rows"] if r["kind"] == "final")
    lines = ["| benchmark | final (alt-text + recaption) | alt-text alone | difference [95 %] |",
             "|---|---:|---:|---:|"]
    for bench, file in evals.items():
        theirs = final["scores"].get(bench, {}).get("file")
        if theirs is None:
            continue
        mine, base = per_sample(root, file), per_sample(root, theirs)
        gain = paired_bootstrap(mine, base) if mine and base else None
        interval = (f"{100 * gain['diff']:+.1f} [{100 * gain['low']:+.1f}, {100 * gain['high']:+.1f}]"
                    if gain else "–")
        lines.append(f"| {bench} | {100 * score(root, theirs):.1f} | {100 * score(root, file):.1f} | {interval} |")
        held = final.get("hallucination")
        if held and held["file"] == theirs:  # the hallucination rate comes with this benchmark's result
            metric = held["metric"]
            mine_h = json.loads((root / file).read_text(encoding="utf-8"))["metrics"][metric]
            lines.append(f"| {metric} | {100 * held['value']:.1f} | {100 * mine_h:.1f} | – |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", required=True, help="the run's recipe: a packaged name or a YAML file")
    parser.add_argument("--run", required=True, type=Path, help="the finished run folder")
    args = parser.parse_args(argv)
    path = Path(args.recipe) if Path(args.recipe).is_file() else packaged_recipe(args.recipe)
    results = json.loads((args.run / "results.json").read_text(encoding="utf-8"))
    run: Any = Run(load_recipe(path), args.run)
    evals = final_without_recaption(run, results)
    print("\n".join(compare(args.run, results, evals)))


if __name__ == "__main__":
    main()
