"""One run of a recipe: its run folder, plugin host and log, and the kinds of work the VILA²
loop is made of — data, the starting point, training, recaptioning, evaluation, a specialist's
fine-tune. :mod:`vila2.pipeline.loop` orders them as the method does.

Every piece of work is a step of :class:`vila2.pipeline.steps.RunFolder`: one folder and a
completion marker each, with a fingerprint of the recipe parts it reads and the steps it uses,
so a rerun resumes after the last finished step and a changed recipe is refused (or its affected
steps rerun, when asked). Paths in step outputs are relative to the run folder.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vila2.errors import PipelineError
from vila2.pipeline.recipe import EvaluatorSpec, Recipe, RecipeError, Stage
from vila2.pipeline.report import (
    CAPTION_STATS_FILE,
    RESULT_FILE,
    markdown_table,
    write_report,
)
from vila2.pipeline.steps import RunFolder, StepChanged, write_json

#: images per shard of a ``pretrain_limit`` subset: the unit a killed recaption resumes from
SUBSET_SHARD = 100



@dataclass(frozen=True)
class Sources:
    """Where the loop's data lives once the data step has run."""

    pretrain: str  # dataset folder whose images are recaptioned
    alt: str  # its original (web alt-text) caption layer
    sft: tuple[tuple[str, str, float], ...]  # (dataset, conversation layer, weight)
    world: str | None  # the embedded world, for evaluators and specialists that default to it


def saturated(scores: list[float], min_gain: float) -> str | None:
    """Why self-augment should stop after the last of ``scores`` (one per round), or ``None``."""
    if len(scores) < 2:
        return None
    gain = scores[-1] - scores[-2]
    if gain < min_gain:
        return f"gain {gain:+.4f} < {min_gain}"
    return None


def unproven(gain: Mapping[str, Any], min_gain: float) -> str | None:
    """Why self-augment should stop when the last round's gain is the paired-bootstrap interval
    ``gain`` (:func:`vila2.pipeline.report.paired_bootstrap`): unless the whole interval lies above
    ``min_gain``, the round is not shown to be better, or ``None``."""
    if gain["low"] > min_gain:
        return None
    return (f"gain {gain['diff']:+.4f}, {gain['level']:.0%} interval [{gain['low']:+.4f}, {gain['high']:+.4f}] "
            f"not above {min_gain}")


def mean_words(texts: Mapping[str, str]) -> float:
    """Mean word count of caption texts (0 for none)."""
    return sum(len(t.split()) for t in texts.values()) / len(texts) if texts else 0.0


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "run"


class Run:
    """One run of ``recipe`` in the run folder ``out``: each public method is one kind of work,
    taking its inputs explicitly and returning where its output is."""

    def __init__(
        self,
        recipe: Recipe,
        out: str | Path,
        *,
        host: Any = None,
        rerun_changed: bool = False,
        log: Callable[[str], None] = print,
    ) -> None:
        from vila2.plugins import get_host

        self.recipe = recipe
        self.host = host or get_host()
        self.log = log
        self.folder = RunFolder(out, rerun_changed=rerun_changed, log=log, on_step_end=self._step_ended)
        self.root = self.folder.root
        self.errors: list[dict[str, str]] = []
        self.stop: dict[str, Any] | None = None  # why self-augment stopped early, if it did
        self.data_after: list[str] = []  # the data steps every step downstream depends on
        self.parts = recipe.normalised()

    # ------------------------------------------------------------------ plumbing
    def _step_ended(self, step: str, outputs: dict[str, Any]) -> None:
        self.host.hook.on_step_end(step=step, run_dir=str(self.root), outputs=outputs)

    def rel(self, path: str | Path) -> str:
        return str(Path(path).resolve().relative_to(self.root))

    def abs(self, rel: str) -> str:
        return str(self.root / rel)

    def _part(self, dotted: str) -> Any:
        value: Any = self.parts
        for key in dotted.split("."):
            value = value[key]
        return value

    def _inputs(self, recipe_keys: list[str], after: list[str], **more: Any) -> dict[str, Any]:
        """A step's inputs: the recipe parts it reads and the fingerprints of the steps it uses."""
        inputs: dict[str, Any] = {k: self._part(k) for k in recipe_keys}
        inputs.update({f"step {s}": self.folder.fingerprints[s] for s in after})
        inputs.update(more)
        return inputs

    def skippable(self, step: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn``; under ``on_error: skip`` a failure is recorded and ``None`` returned."""
        try:
            return fn()
        except StepChanged:
            raise
        except Exception as exc:
            if self.recipe.on_error != "skip":
                raise
            message = f"{type(exc).__name__}: {exc}".splitlines()[0]
            self.log(f"  skip   {step}: {message}")
            self.errors.append({"step": step, "error": message})
            return None

    def start(self) -> None:
        """Threads for this process, and the normalised recipe beside the results."""
        if self.recipe.threads is not None:
            import torch

            torch.set_num_threads(self.recipe.threads)
        write_json(self.root / "recipe.json", self.parts)

    def round_ended(self, index: int, model: str, evals: Mapping[str, str]) -> None:
        """Tell the plugins (``on_round_end``) that round ``index`` is trained and evaluated."""
        results = {b: json.loads((self.root / f).read_text()) for b, f in evals.items()}
        self.host.hook.on_round_end(round=index, model=self.abs(model), results=results, run_dir=str(self.root))

    def finish(self, results: dict[str, Any]) -> dict[str, Any]:
        """Write report.md, results.json and plots; tell the plugins; print the table."""
        write_report(self.root, results)
        self.host.hook.on_run_end(run_dir=str(self.root), report=results)
        self.log("")
        self.log(markdown_table(results))
        self.log(f"\nreport: {self.root / 'report.md'}")
        return results

    # ------------------------------------------------------------------ checks before any step
    def check(self) -> list[Any]:
        """Load the recipe's plugins and resolve every named component; return the specialists.

        Everything a user can misspell fails here, before hours of training."""
        from vila2.captioning.engine import executor_settings_for, find_executor, resolve_filters
        from vila2.plugins import PluginError

        for path in self.recipe.plugins:
            self.host.load_file(self.recipe.path(path))
        self.host.check_pending()
        sa = self.recipe.self_augment
        try:
            if sa.rounds:
                self.host.get("captioner", sa.captioner)
            executor_settings_for(find_executor(sa.executor, self.host), sa.executor_settings)
            resolve_filters(self.filters(), self.host)
            for spec in self.recipe.evaluators:
                self.host.find_evaluator(spec.name, spec.backend)
        except (PluginError, ValueError) as exc:
            raise RecipeError(f"recipe: {exc}") from None
        return self._specialists()

    def _shipped_or_path(self, name: str, marker: str) -> Path:
        """A folder shipped with vila2 (``world-tower``, ``world-start``) when ``name`` is one
        holding ``marker``, else ``name`` as a path of the recipe."""
        from vila2.pipeline.recipe import PACKAGED

        packaged = PACKAGED / name
        return packaged if (packaged / marker).is_file() else self.recipe.path(name)

    def _tower(self, name: str) -> Path:
        """The pretrained tower folder ``model.vision_tower`` names."""
        folder = self._shipped_or_path(name, "tower.safetensors")
        if not (folder / "tower.safetensors").is_file():
            raise RecipeError(f"recipe: model.vision_tower: {folder} holds no tower.safetensors "
                              "(build one with `vila2 preset tower --out DIR`)")
        return folder

    def _checkpoint(self, name: str) -> Path:
        """The model folder ``model.checkpoint`` names."""
        folder = self._shipped_or_path(name, "config.json")
        if not (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file():
            raise RecipeError(f"recipe: model.checkpoint: {folder} is not a model folder (no config.json)")
        return folder

    def _plugin_files(self) -> list[str]:
        """The one-file plugins of this run (the recipe's ``plugins`` and every file its host
        loaded, ``--plugin FILE`` included), for processes started by a step: they build their
        own host. (A plugin object registered in this process cannot travel.)"""
        files = [Path(self.recipe.path(p)).resolve() for p in self.recipe.plugins]
        files += [Path(info.name.removeprefix("file:")) for info in self.host.infos.values()
                  if info.source == "file" and info.status == "loaded"]
        return [str(f) for f in dict.fromkeys(files)]

    def check_inputs(self) -> list[str]:
        """What the recipe reads from disk, checked before anything runs: each dataset has the
        layer the recipe names, the checkpoint is a model folder, evaluator and specialist data
        exist. Returns one line per input checked; a missing one raises ``RecipeError``."""
        from vila2.data import Dataset
        from vila2.errors import StoreError

        data, lines = self.recipe.data, []
        refs = ([("data.pretrain", data.pretrain)] if data.pretrain else []) + [
            (f"data.sft[{i}]", s) for i, s in enumerate(data.sft)]
        for key, ref in refs:
            path = self.recipe.path(ref.dataset)
            try:
                layers = Dataset.open(path).layers()
            except StoreError as exc:
                raise RecipeError(f"recipe: {key}.dataset: {exc}") from None
            if ref.layer not in layers:
                raise RecipeError(f"recipe: {key}.layer: {path} has no layer {ref.layer!r} "
                                  f"(layers: {', '.join(layers) or 'none'})")
            lines.append(f"{key}: {path} layer {ref.layer!r}")
        if self.recipe.model.checkpoint is not None:
            lines.append(f"model.checkpoint: {self._checkpoint(self.recipe.model.checkpoint)}")
        paths = [(f"evaluators[{i}].data", e.data) for i, e in enumerate(self.recipe.evaluators) if e.data]
        paths += [(f"data.specialists.{n}", s) for n, s in data.specialists.items()]
        for key, value in paths:
            if not self.recipe.path(value).exists():
                raise RecipeError(f"recipe: {key}: {self.recipe.path(value)} does not exist")
            lines.append(f"{key}: {self.recipe.path(value)}")
        return lines

    def _specialists(self) -> list[Any]:
        wanted = self.recipe.specialists
        if wanted is None:
            return []
        installed = self.host.specialists()
        if wanted.names == "installed":
            for name in sorted(set(wanted.training_for) - set(installed)):
                # an optional plugin the recipe tunes, not installed here: the run goes on without it
                self.log(f"  note   specialists.training_for.{name}: no specialist {name!r} is installed; ignored")
            return [installed[n] for n in sorted(installed)]
        unused = sorted(set(wanted.training_for) - set(wanted.names))
        if unused:
            raise RecipeError(f"recipe: specialists.training_for: {', '.join(map(repr, unused))} is not one of "
                              f"specialists.names ({', '.join(wanted.names) or 'none'})")
        missing = [n for n in wanted.names if n not in installed]
        if missing:
            def pip_name(spec: Any) -> str:
                # the distribution that installed the plugin; a plugin registered as an object or
                # a file has none, and may name one in settings["pip"]
                info = self.host.infos.get(spec.plugin or "")
                return (info.distribution if info else None) or spec.settings.get("pip") or "pip name unknown"

            have = ", ".join(f"{n} ({pip_name(s)})" for n, s in sorted(installed.items()))
            pips = " ".join(f"vila2-{n}-specialist" for n in missing)
            raise RecipeError(
                f"recipe: specialists.names: {', '.join(map(repr, missing))} not installed; "
                f"installed: {have or 'none'}. Install with `pip install {pips}` "
                "(or the package that provides it)."
            )
        return [installed[n] for n in wanted.names]

    # ------------------------------------------------------------------ data and starting model
    def sources(self) -> Sources:
        data = self.recipe.data
        if data.world is None:
            assert data.pretrain is not None
            src = Sources(
                pretrain=str(self.recipe.path(data.pretrain.dataset)), alt=data.pretrain.layer,
                sft=tuple((str(self.recipe.path(s.dataset)), s.layer, s.weight) for s in data.sft),
                world=None,
            )
            return self._limited(src, [])
        world_spec = data.world

        def write(out: Path) -> dict[str, Any]:
            from vila2.world import write_world

            write_world(out, seed=world_spec.seed, size=world_spec.size, image_size=world_spec.image_size)
            return {"world": self.rel(out)}

        world = self.abs(self.folder.run("world", self._inputs(["data.world"], []), write)["world"])
        src = Sources(pretrain=str(Path(world) / "pretrain"), alt="alt",
                      sft=((str(Path(world) / "sft"), "conversations", 1.0),), world=world)
        return self._limited(src, ["world"])

    def _limited(self, src: Sources, after: list[str]) -> Sources:
        """``data.pretrain_limit``: the first N pretraining images and their original captions,
        copied into the run folder (so recaption layers never touch the source either)."""
        limit = self.recipe.data.pretrain_limit
        if limit is None:
            return src
        from vila2.data import Dataset

        def subset(out: Path) -> dict[str, Any]:
            source = Dataset.open(src.pretrain)
            target = Dataset.create(out / "dataset")
            rows: list[dict[str, Any]] = []
            alt = {row["id"]: row for row in source.layer(src.alt).iter_rows()}
            with target.writer(shard_size=SUBSET_SHARD, source=f"subset of {src.pretrain}") as writer:
                for sample in source.iter_samples():
                    if len(rows) == limit:
                        break
                    writer.add(sample["id"], sample["image"], sample["width"], sample["height"],
                               source=sample["source"])
                    rows.append(alt[sample["id"]])
            layer = target.create_layer(src.alt, "caption", producer="vila2.pipeline",
                                        settings={"source": src.pretrain, "limit": limit})
            by_id = {row["id"]: row for row in rows}
            for shard in layer.pending_shards():
                layer.write_shard(shard, [by_id[i] for i in target.shard_ids(shard)])
            return {"dataset": self.rel(out / "dataset"), "samples": len(rows)}

        inputs = self._inputs(["data.pretrain_limit"], after, source=None if src.world else src.pretrain,
                              layer=src.alt)
        dataset = self.folder.run("pretrain", inputs, subset)["dataset"]
        return Sources(pretrain=self.abs(dataset), alt=src.alt, sft=src.sft, world=src.world)

    def _texts(self, src: Sources) -> list[str]:
        """The text a preset's tokenizer learns from: the original captions and SFT turns."""
        from vila2.data import Dataset

        texts = list(Dataset.open(src.pretrain).layer(src.alt).texts().values())
        for dataset, layer, _ in src.sft:
            for text in Dataset.open(dataset).layer(layer).texts().values():
                texts.extend(turn["value"].replace("<image>", "") for turn in json.loads(text))
        return texts

    def starting_point(self, src: Sources) -> tuple[str, list[str]]:
        """The starting point of every generalist, and the steps it depends on: the preset or
        checkpoint, after ``training.warmup`` when the recipe asks for one."""
        base, after = self._base_model(src)
        warmup = self.recipe.training.warmup
        if warmup is None:
            return base, after
        alt = {"layers": [src.alt], "template": "replace", "prompt": None}
        model = self.train("warmup", base, src, alt, self.data_after, after, stages=[warmup])
        return model, ["warmup"]

    def _base_model(self, src: Sources) -> tuple[str, list[str]]:
        spec = self.recipe.model
        if spec.checkpoint is not None:
            return str(self._checkpoint(spec.checkpoint)), []
        after = self.data_after

        def build(out: Path) -> dict[str, Any]:
            from vila2.models.presets import build

            if src.world:
                from vila2.world import world_texts

                texts = list(world_texts(src.world))
            else:
                texts = self._texts(src)
            if spec.vision_tower is None:
                build(spec.preset, out / "model", texts=texts, seed=self.recipe.seed, **spec.overrides)
            else:
                from vila2.training.tower import build_with_tower

                build_with_tower(spec.preset, out / "model", self._tower(spec.vision_tower), texts=texts,
                                 seed=self.recipe.seed, **spec.overrides)
            return {"model": self.rel(out / "model")}

        inputs = self._inputs(["model", "seed"], after, data=None if src.world else self._part("data"))
        return self.abs(self.folder.run("base", inputs, build)["model"]), ["base"]

    # ------------------------------------------------------------------ the three kinds of work
    def train(self, step: str, base: str, src: Sources, captions: dict[str, Any], after: list[str],
               base_after: list[str], stages: list[Stage] | None = None) -> str:
        """Train a generalist from ``base`` through the recipe's stages (or ``stages``);
        ``captions`` is the mixture entry of the pretraining images (layers + template)."""

        seed = self.recipe.training.seed if self.recipe.training.seed is not None else self.recipe.seed

        def train(out: Path) -> dict[str, Any]:
            from vila2.training.trainer import TrainConfig, train

            model = base
            for i, stage in enumerate(stages or self.recipe.training.stages):
                mixture = []
                if "captions" in stage.data:
                    mixture.append({"dataset": src.pretrain, **captions, "weight": 1.0})
                if "sft" in stage.data:
                    mixture += [{"dataset": d, "layers": [layer], "template": "conversation",
                                 "prompt": None, "weight": w} for d, layer, w in src.sft]
                if "sft_described" in stage.data:
                    if src.world is None:
                        raise RecipeError("recipe: training: 'sft_described' is a set of the embedded world "
                                          "(data.world); with your own data, list it under data.sft")
                    mixture.append({"dataset": str(Path(src.world) / "sft"), "layers": ["described"],
                                    "template": "conversation", "prompt": None, "weight": 1.0})
                stage_out = out / f"{i}-{stage.name}"
                settings = {"model": model, "out": str(stage_out), "stage": stage.name, "mixture": mixture,
                            "seed": seed, **self.recipe.training.train_settings(stage)}
                processes = self.recipe.processes
                if processes > 1:
                    from vila2.pipeline.launch import launch

                    # the same effective batch as one process: each rank takes its share
                    settings["batch_size"] = max(1, TrainConfig(**settings).batch_size // processes)
                    launch("train", settings, processes=processes, folder=stage_out,
                           threads=self.recipe.threads, plugin_files=self._plugin_files())
                    model = str(stage_out)
                else:
                    model = str(train(TrainConfig(**settings)))
            return {"model": self.rel(model)}

        # DDP sums gradients in another order than one process: the process count is an input
        inputs = self._inputs(["training", "seed", "processes"], [*base_after, *after], captions=captions)
        # a killed training step keeps its folder: the trainer resumes from its last checkpoint
        return self.abs(self.folder.run(step, inputs, train, resumable=True)["model"])

    def recaption(self, step: str, src: Sources, model: str, layer: str, *, captioner: str,
                  prompts: Any, filters: list[dict[str, Any]], round: int | None, batch_size: int,
                  max_new_tokens: int, settings: Mapping[str, Any], after: list[str],
                  specialist: str | None = None, executor: str | None = None,
                  executor_settings: Mapping[str, Any] | None = None) -> str:
        """Recaption the pretraining images into ``layer``; returns the caption statistics file.
        ``filters`` are recipe entries; ``specialist`` adds that specialist's clean-up filter.
        ``executor`` (default: the recipe's ``self_augment.executor``) runs the shards; the
        built-in one runs them on the recipe's ``processes`` (sharded by rank). Like the batch
        size, where captions are made is no step input: it changes speed, not captions."""
        sa = self.recipe.self_augment
        from vila2.data import Dataset
        from vila2.pipeline.launch import specialist_clean_filter

        # looked up once, before the step: a specialist missing here is named before any work
        clean = [specialist_clean_filter(self.host, specialist)] if specialist else []
        job = {"dataset": src.pretrain, "model": model, "layer": layer, "captioner": captioner,
               "prompts": prompts, "filters": filters, "round": round, "batch_size": batch_size,
               "max_new_tokens": max_new_tokens, "settings": dict(settings),
               "on_error": self.recipe.on_error, "seed": self.recipe.seed}

        def caption(out: Path) -> dict[str, Any]:
            from vila2.captioning.engine import DEFAULT_EXECUTOR, caption_dataset

            runner = executor or sa.executor
            if self.recipe.processes > 1 and runner == DEFAULT_EXECUTOR:
                summary = self._caption_on_ranks(job, specialist, out)
            else:
                summary = caption_dataset(
                    **{**job, "filters": [*filters, *clean]}, executor=runner,
                    executor_settings=dict(sa.executor_settings if executor_settings is None else executor_settings))
            from vila2.world.quality import layer_quality

            if summary.filtered:
                rejected = ", ".join(f"{name} {n}" for name, n in sorted(summary.filtered.items()))
                self.log(f"         {layer}: kept {summary.kept} of {summary.captioned} captions "
                         f"(rejected by {rejected}; recorded in the layer)")
            texts = Dataset.open(src.pretrain).layer(layer).texts()
            # measured after the layer is written, and only into the statistics file: nothing
            # here reaches training (the ground truth is read for the report alone)
            stats = {"layer": layer, "mean_words": _rounded(mean_words(texts)), "kept": len(texts),
                     "dataset": self.rel_or_abs(src.pretrain),
                     "world": self.rel_or_abs(src.world) if src.world else None,
                     "quality": layer_quality(src.pretrain, layer, src.world), "summary": summary.to_dict()}
            write_json(out / CAPTION_STATS_FILE, stats)
            return {"layer": layer, "caption_stats": self.rel(out / CAPTION_STATS_FILE)}

        def cleanup() -> None:
            ds = Dataset.open(src.pretrain)
            if layer in ds.layers():
                ds.delete_layer(layer)

        described = [*filters, *(f.name for f in clean)]
        # batch size changes speed, not captions: it is no input, so changing it reruns nothing
        inputs = {"captioner": captioner, "prompts": prompts, "filters": described, "round": round,
                  "max_new_tokens": max_new_tokens, "settings": settings, "layer": layer,
                  **self._inputs([], after)}
        return self.folder.run(step, inputs, caption, resumable=True, cleanup=cleanup)["caption_stats"]

    def _caption_on_ranks(self, job: dict[str, Any], specialist: str | None, out: Path) -> Any:
        """``caption_dataset(**job)`` on the recipe's ``processes`` ranks (``accelerate launch``,
        each rank its own shards); the summary counts the layer, ``new`` and ``seconds`` the
        ranks' own (seconds: the slowest rank's)."""
        from vila2.captioning.summary import summarize
        from vila2.pipeline.launch import launch

        for old in out.glob("caption-summary.rank*.json"):
            old.unlink()  # a killed earlier try's ranks
        launch("caption", {**job, "clean_with": specialist}, processes=self.recipe.processes, folder=out,
               threads=self.recipe.threads, plugin_files=self._plugin_files())
        ranks = [json.loads(f.read_text()) for f in sorted(out.glob("caption-summary.rank*.json"))]
        return summarize(job["dataset"], job["layer"], new=sum(r["new"] for r in ranks),
                         seconds=max((r["seconds"] for r in ranks), default=0.0))

    def evaluate(self, step: str, model: str, spec: EvaluatorSpec, src: Sources, after: list[str]) -> str | None:
        """Score ``model`` on one benchmark; returns the result file (``None`` if skipped)."""

        def evaluate(out: Path) -> dict[str, Any]:
            evaluator = self.host.find_evaluator(spec.name, spec.backend)
            data = str(self.recipe.path(spec.data)) if spec.data else None
            try:
                result = evaluator.run(model, spec.name, data=data, limit=spec.limit, out_dir=str(out),
                                       settings={"world": src.world, **spec.settings})
            except Exception as exc:
                raise PipelineError(f"evaluator {evaluator.name!r} (plugin {evaluator.plugin!r}) failed on "
                                    f"benchmark {spec.name!r}: {exc}") from exc
            write_json(out / RESULT_FILE, {**result.to_dict(), "model": self.rel_or_abs(model)})
            return {"result": self.rel(out / RESULT_FILE)}

        inputs = self._inputs([], after, evaluator=spec.model_dump(mode="json"))
        outputs = self.skippable(step, lambda: self.folder.run(step, inputs, evaluate))
        return None if outputs is None else outputs["result"]

    def rel_or_abs(self, path: str) -> str:
        p = Path(path).resolve()
        return self.rel(p) if p.is_relative_to(self.root) else str(p)

    def evaluate_all(self, prefix: str, model: str, src: Sources, after: list[str]) -> dict[str, str]:
        evals = {}
        for spec in self.recipe.evaluators:
            result = self.evaluate(f"{prefix}.eval.{spec.name}", model, spec, src, after)
            if result is not None:
                evals[spec.name] = result
        return evals

    # ------------------------------------------------------------------ the loop
    def layer_name(self, suffix: str) -> str:
        """Caption layers of this run; outside the run folder they carry the run's name."""
        if self.recipe.data.world is not None or self.recipe.data.pretrain_limit is not None:
            return suffix
        return f"{_slug(self.recipe.name)}-{_slug(self.root.name)}-{suffix}"

    def filters(self) -> list[dict[str, Any]]:
        """The recipe's filters as the recaption engine takes them (name + settings)."""
        return [{"name": f.name, **f.settings} for f in self.recipe.self_augment.filters]

    def prompts(self, prompts: str | list[str]) -> str | list[str]:
        from vila2.captioning.prompts import PROMPT_SETS

        if isinstance(prompts, str) and prompts not in PROMPT_SETS:
            return str(self.recipe.path(prompts))
        return prompts

    def alt_stats(self, src: Sources, after: list[str]) -> str:
        """Caption statistics of the original alt-text (round 0's captions)."""
        from vila2.data import Dataset

        def stats(out: Path) -> dict[str, Any]:
            from vila2.world.quality import layer_quality

            texts = Dataset.open(src.pretrain).layer(src.alt).texts()
            # measurement only (see recaption): the ground truth goes into this file, nowhere else
            write_json(out / CAPTION_STATS_FILE, {
                "layer": src.alt, "mean_words": _rounded(mean_words(texts)), "kept": len(texts),
                "dataset": self.rel_or_abs(src.pretrain), "world": self.rel_or_abs(src.world) if src.world else None,
                "quality": layer_quality(src.pretrain, src.alt, src.world),
            })
            return {"caption_stats": self.rel(out / CAPTION_STATS_FILE)}

        inputs = self._inputs([], after, layer=src.alt, dataset=None if src.world else src.pretrain)
        return self.folder.run("round0.captions", inputs, stats)["caption_stats"]

    # ------------------------------------------------------------------ specialist-augment
    def finetune_specialist(self, spec: Any, src: Sources, start: str, start_step: str) -> str:
        """Prepare ``spec``'s domain data and fine-tune it (LoRA by default, through the
        ``finetune_specialist`` hook) from the model ``start`` made by step ``start_step``."""
        cfg = self.recipe.specialists
        assert cfg is not None
        name = spec.name
        source = self.recipe.data.specialists.get(name)

        def prepare(out: Path) -> dict[str, Any]:
            folder = spec.prepare_data(str(self.recipe.path(source)) if source else None, src.world, str(out))
            return {"data": self.rel_or_abs(folder)}

        data = self.folder.run(f"specialists.{name}.data", self._inputs([], self.data_after, source=source),
                               prepare)["data"]

        own = cfg.training_for.get(name)

        def finetune(out: Path) -> dict[str, Any]:
            settings = {**spec.lora, **cfg.lora, "seed": self.recipe.seed, **self.specialist_training(name)}
            folder = self.host.hook.finetune_specialist(
                specialist=spec, base_model=start, data=str(self.root / data),
                out_dir=str(out / "model"), settings=settings)
            if folder is None:
                raise PipelineError(f"no plugin fine-tuned specialist {name!r} (finetune_specialist returned None)")
            return {"model": self.rel_or_abs(folder)}

        # a specialist's own settings join its inputs only where given, so a run made before
        # `training_for` existed resumes unchanged
        more = {"training_for": own.model_dump(exclude_none=True)} if own is not None else {}
        inputs = self._inputs(["specialists.lora", "specialists.training", "seed"],
                              [f"specialists.{name}.data", start_step], **more)
        return str(self.root / self.folder.run(f"specialists.{name}.finetune", inputs, finetune)["model"])

    def specialist_training(self, name: str) -> dict[str, Any]:
        """Specialist ``name``'s training settings (``TrainConfig`` names): ``specialists.training``
        with ``specialists.training_for.<name>`` over it."""
        cfg = self.recipe.specialists
        assert cfg is not None
        own = cfg.training_for.get(name)
        return cfg.training.train_settings(*([own] if own is not None else []))

    def specialist_recaption(self, spec: Any, model: str, src: Sources) -> tuple[str, str]:
        """The specialist's task-oriented answers about every pretraining image, as a layer;
        returns the layer and its caption statistics file."""
        cfg = self.recipe.specialists
        assert cfg is not None
        layer = self.layer_name(f"spec-{spec.name}")
        stats = self.recaption(
            f"specialists.{spec.name}.caption", src, model, layer, captioner="self",
            prompts=list(spec.prompts), round=None, batch_size=cfg.batch_size,
            max_new_tokens=cfg.max_new_tokens, settings={},
            # the specialist's own clean-up and check (e.g. canonical, well-formed boxes) run as a
            # filter of its layer
            filters=[], specialist=spec.name if spec.clean_filter() else None,
            after=[f"specialists.{spec.name}.finetune"],
        )
        return layer, stats

    def domain_benchmark(self, spec: Any) -> EvaluatorSpec:
        """How a specialist's own benchmark is run: as the recipe's evaluators say, if listed."""
        cfg = self.recipe.specialists
        assert cfg is not None
        listed = next((e for e in self.recipe.evaluators if e.name == spec.evaluator), None)
        return listed or EvaluatorSpec(name=spec.evaluator, limit=cfg.eval_limit)

    def original_captions(self, src: Sources, best_round: int, recap: str | None) -> tuple[str, list[str]]:
        """The caption the specialists' QA turns follow: the original alt-text, joined with the
        best round's recaption (``concat``) when self-augment helped, as a layer of its own."""
        if best_round == 0 or recap is None:
            return src.alt, []
        from vila2.data import Dataset

        layer = self.layer_name(f"final-caption-r{best_round}")

        def merge(out: Path) -> dict[str, Any]:
            ds = Dataset.open(src.pretrain)
            writer = ds.create_layer(layer, "caption", producer="vila2.pipeline",
                                     settings={"concat": [src.alt, recap]})
            for shard in writer.pending_shards():
                rows = []
                for sample in ds.iter_samples(shards=[shard], layers=[src.alt, recap]):
                    parts = [t.strip() for t in (sample[src.alt], sample[recap]) if t and t.strip()]
                    rows.append({"id": sample["id"], "text": " ".join(parts), "kept": bool(parts)})
                writer.write_shard(shard, rows)
            return {"layer": layer}

        def cleanup() -> None:
            ds = Dataset.open(src.pretrain)
            if layer in ds.layers():
                ds.delete_layer(layer)

        step = "final.captions"
        self.folder.run(step, self._inputs([], [f"round{best_round}.caption"], layer=layer), merge,
                        resumable=True, cleanup=cleanup)
        return layer, [step]

def _rounded(value: float) -> float:
    """Statistics are stored rounded, so reruns compare equal and files stay readable."""
    return round(float(value), 4)


def score(root: Path, result_file: str) -> float:
    """The primary metric of an evaluation result file (relative to the run folder ``root``)."""
    result = json.loads((root / result_file).read_text())
    return float(result["metrics"][result["primary"]])
