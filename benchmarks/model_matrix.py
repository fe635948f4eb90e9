"""Write docs/MODELS.md — the architecture matrix — from the results of tests/test_model_matrix.py.

    python benchmarks/model_matrix.py                  # run the matrix tests, then write the page
    python benchmarks/model_matrix.py --results R.json # write the page from an earlier run's results

The tests record every (family, step) outcome, with the error of a failed step, in a JSON file
(``VILA2_MATRIX_OUT``); this script only formats it, so the page never says more than the tests
showed. A step that did not run (deselected, skipped) is shown as such, never as a pass.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "docs" / "MODELS.md"
STEP_TITLES = {
    "load": "load",
    "chat": "chat prompt",
    "batch": "batched = single",
    "train": "train (loss falls)",
    "lora": "LoRA + merge",
    "lm-eval": "lm-eval hf-multimodal",
    "vlmeval": "VLMEvalKit",
}
STEP_MEANING = {
    "load": "the folder opens with the stock `AutoModelForImageTextToText` + `AutoProcessor`, and with "
            "`vila2.models.checkpoint.load`, as the family's own classes",
    "chat": "`chat_prompt` puts the image in the family's own place (before the question, once) and the "
            "processor expands it to the family's image tokens",
    "batch": "batched recaption with `vila2.models.generation.Generator` (4 images of 3 shapes) equals "
             "one-at-a-time",
    "train": "8 steps of `vila2.training.trainer.train` on the world's SFT set: the loss falls, and no logit "
             "of the trained model changes when a later token changes (no future leak through the mask)",
    "lora": "`finetune_lora` on every role the family has (language, projector, vision), recorded in "
            "`vila2_lora.json`; the merged folder, reloaded with the stock Auto class, gives the logits of "
            "base + adapter",
    "lm-eval": "`vila2 eval --backend lm-eval` on 2 world MMMU questions, driven by lm-eval's stock "
               "`hf-multimodal` model",
    "vlmeval": "`vila2 eval --backend vlmeval` (VLMEvalKit in a child process, vila2's adapter) on the same "
               "2 questions",
}


def run_tests(results: Path, extra: list[str]) -> tuple[int, float, float]:
    """Run the matrix tests; return (exit code, wall seconds, CPU seconds of the test process)."""
    env = {**os.environ, "VILA2_MATRIX_OUT": str(results), "HF_HUB_OFFLINE": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    code = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(ROOT / "tests" / "test_model_matrix.py"), *extra], cwd=ROOT, env=env,
                          check=False).returncode
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return code, wall, cpu


def _classes(family: str) -> str:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    names = [CONFIG_MAPPING_NAMES.get(family), MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES.get(family),
             PROCESSOR_MAPPING_NAMES.get(family)]
    return " · ".join(f"`{n}`" for n in names if isinstance(n, str))


def _lora_roles(family: str) -> list[str]:
    from vila2.models.lora import NO_LINEAR, role_patterns

    cells = []
    patterns = role_patterns(family)
    for role in ("language", "projector", "vision"):
        if role not in patterns:
            cells.append("unknown")
        elif patterns[role] is None:
            cells.append("✗ " + NO_LINEAR.get((family, role), "no nn.Linear"))
        else:
            pattern = str(patterns[role]).removeprefix(r"(.*\.)?")
            cells.append("`" + pattern.replace("|", "\\|") + "`")  # a bare | would split the table cell
    return cells


def render(data: dict[str, Any], timing: dict[str, float] | None = None) -> str:
    """The Markdown page for one run's results."""
    steps: list[str] = data["steps"]
    presets: dict[str, str] = data["presets"]
    cells = {(r["preset"], r["step"]): r for r in data["results"]}
    notes: list[str] = []
    lines = [
        "# Model families: the architecture matrix",
        "",
        "<!-- written by benchmarks/model_matrix.py from the results of tests/test_model_matrix.py; do not edit -->",
        "",
        "vila2 works on any Hugging Face image-text-to-text model. This page shows it for each family",
        "users recaption with: a tiny preset of the family (`vila2 preset list`, `vila2 preset build NAME",
        "--out DIR`), built from the family's own config, model and processor classes with a locally",
        "trained tokenizer and the family's chat template, goes through every step a user takes. Each",
        "cell is one test of `tests/test_model_matrix.py` "
        f"(transformers {data['transformers']}); ✓ passed, ✗ failed (the reason is below), "
        "· did not run.",
        "",
        "| preset | model_type | " + " | ".join(STEP_TITLES.get(s, s) for s in steps) + " |",
        "|---|---|" + "---|" * len(steps),
    ]
    for preset, family in presets.items():
        row = [f"`{preset}`", f"`{family}`"]
        for name in steps:
            cell = cells.get((preset, name))
            if cell is None:
                row.append("·")
            elif cell["ok"]:
                row.append("✓")
            else:
                notes.append(f"{preset} / {name}")
                why = cell.get("known") or "unexpected failure"
                notes[-1] = f"**`{preset}` — {STEP_TITLES.get(name, name)}**: {why}. Error: `{cell['error']}`"
                row.append(f"✗ [{len(notes)}]")
        lines.append("| " + " | ".join(row) + " |")
    passed = [p for p in presets if all(cells.get((p, s), {}).get("ok") for s in steps)]
    lines += ["", f"**{len(passed)} of {len(presets)} families pass every step.**", ""]
    if notes:
        lines += ["## Why a cell is ✗", ""] + [f"{i}. {note}" for i, note in enumerate(notes, 1)] + [""]
    lines += ["## The steps", ""] + [f"- **{STEP_TITLES.get(s, s)}** — {STEP_MEANING.get(s, '')}" for s in steps]
    lines += ["", "## Classes and LoRA roles", "",
              "`vila2 finetune --lora-targets language,projector,vision` (default `language`) resolves each "
              "role to the family's module names (`vila2/models/lora.py`); a role the family does not have "
              "as `nn.Linear` layers, or a family whose names are unknown, is an error naming the roles.",
              "", "| preset | config · model · processor | language | projector | vision |", "|---|---|---|---|---|"]
    for preset, family in presets.items():
        lines.append(f"| `{preset}` | {_classes(family)} | " + " | ".join(_lora_roles(family)) + " |")
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for row in data["results"]:
        wall[row["step"]] = wall.get(row["step"], 0.0) + float(row.get("seconds", 0.0))
        cpu[row["step"]] = cpu.get(row["step"], 0.0) + float(row.get("cpu", 0.0))
    lines += ["", "## Time", "", "Seconds per step, summed over the families (a step also pays for building "
              "or training what later steps share; CPU counts child processes such as VLMEvalKit's, and is "
              "what a quiet machine's wall time comes to, the models running on one thread):", "",
              "| | " + " | ".join(STEP_TITLES.get(s, s) for s in steps) + " |", "|---|" + "---|" * len(steps),
              "| CPU | " + " | ".join(f"{cpu.get(s, 0.0):.0f}" for s in steps) + " |",
              "| wall | " + " | ".join(f"{wall.get(s, 0.0):.0f}" for s in steps) + " |", ""]
    if timing:
        load = f", load average {timing['load']:.1f} on {timing['cores']} cores" if "load" in timing else ""
        lines += [f"Whole run: {timing['wall']:.0f} s wall, {timing['cpu']:.0f} s CPU{load} "
                  f"(`{timing['command']}`).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, help="Results JSON of an earlier run (skips running the tests).")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Markdown file to write.")
    parser.add_argument("--save-results", type=Path, help="Also keep this run's results JSON here.")
    parser.add_argument("pytest_args", nargs="*", help="Extra pytest arguments (e.g. -k llava).")
    args = parser.parse_args(argv)
    timing = None
    code = 0
    if args.results is not None:
        data = json.loads(args.results.read_text())
    else:
        with tempfile.TemporaryDirectory() as scratch:
            results = Path(scratch) / "matrix.json"
            code, wall, cpu = run_tests(results, args.pytest_args)
            if not results.is_file():
                print("the matrix tests wrote no results", file=sys.stderr)
                return code or 1
            data = json.loads(results.read_text())
            timing = {"wall": wall, "cpu": cpu, "load": os.getloadavg()[1], "cores": os.cpu_count() or 1,
                      "command": "pytest tests/test_model_matrix.py" + "".join(f" {a}" for a in args.pytest_args)}
            data["timing"] = timing
            if args.save_results is not None:
                args.save_results.write_text(json.dumps(data, indent=2) + "\n")
    timing = timing or data.get("timing")
    args.out.write_text(render(data, timing))
    print(f"wrote {args.out}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
