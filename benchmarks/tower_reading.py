"""Can the starting point's tower read the written word, and what does a reading tower cost the
starting point? (benchmarks/RESULTS.md, "Reading the written word")

    python benchmarks/tower_reading.py --out /tmp/reading [--widths 64 128] [--start-steps 800]
        [--feature-norm none]

For each width, a tower is trained as the shipped one is (``vila2 preset tower``), plus the word
over each cell and the letter over its centre (``read_text``, ``vila2.training.tower``), on its
own split, and its held-out per-cell accuracies are printed: colour and shape on object cells,
word and letter on text cells (chance: 1 in 20 words, 1 in 22 letters). Its features are then
rescaled to the 64-wide shipped tower's mean norm (``--feature-norm none``: left as trained).
With ``--start-steps``, a starting point is built on the widest tower for each number of steps
(``vila2 preset start`` with that tower) and its image dependence on its own world's VQA
benchmark is printed beside the shipped one's. Everything lands in ``--out``; rerunning reuses it.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--word-rate", type=float, default=0.5,
                        help="share of tower images with a written word (a world's is 0.3)")
    parser.add_argument("--start-steps", type=int, nargs="*", default=[])
    parser.add_argument("--feature-norm", default="36.6",
                        help="mean feature norm after training, or 'none' (default: the 64-wide tower's)")
    args = parser.parse_args()

    import torch

    from vila2.cli import quiet_progress_in_logs
    from vila2.pipeline.recipe import PACKAGED
    from vila2.training.start import StartSettings, build_start, start_info
    from vila2.training.tower import TowerSettings, pretrain_tower

    torch.set_num_threads(1)
    quiet_progress_in_logs()
    rows = []
    for width in args.widths:
        settings = replace(TowerSettings(), vision_hidden_size=width, vision_intermediate_size=2 * width,
                           word_rate=args.word_rate, read_text=True,
                           feature_norm=None if args.feature_norm == "none" else float(args.feature_norm))
        started = time.perf_counter()
        folder = pretrain_tower(args.out / f"tower-{width}", settings)
        accuracy = json.loads((folder / "tower.json").read_text())["held_out_accuracy"]
        rows.append((width, accuracy, round(time.perf_counter() - started)))
        print(f"tower {width} wide: colour {accuracy['color_on_objects']:.3f}, shape {accuracy['shape_on_objects']:.3f} "
              f"(object cells), word {accuracy['word_on_text']:.3f}, letter {accuracy['letter_on_text']:.3f} "
              f"(text cells); {rows[-1][2]} s", flush=True)

    starts = [("shipped (`world-start`)", start_info(PACKAGED / "world-start"))]
    widest = args.out / f"tower-{max(args.widths)}"
    norm = json.loads((widest / "tower.json").read_text())["feature_norm"]
    for steps in args.start_steps:
        folder = build_start(args.out / f"start-{max(args.widths)}-{steps}", widest, replace(StartSettings(), steps=steps))
        starts.append((f"{max(args.widths)} wide, feature norm {norm}, {steps} steps", start_info(folder)))
    if args.start_steps:
        print("\n| starting point | VQA right | VQA shuffled | loss gap (nats) |\n|---|---:|---:|---:|")
        for name, info in starts:
            seen = info["image_dependence"]
            print(f"| {name} | {100 * seen['vqa']:.1f} | {100 * seen['vqa_shuffled']:.1f} | {seen['loss_gap']:.2f} |")
    result = {"towers": [{"width": w, "held_out_accuracy": a, "seconds": s} for w, a, s in rows],
              "starts": [{"name": n, "image_dependence": i["image_dependence"]} for n, i in starts]}
    (args.out / "tower_reading.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
