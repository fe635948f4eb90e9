"""The recipe: one YAML file that says what a VILA² run does, validated before anything runs.

A recipe names the data (the embedded world, or your datasets and their layers), the starting
model (a tiny preset or a checkpoint folder), how to train, how to self-augment, which specialists
to add and how to evaluate. ``load_recipe(path)`` returns a :class:`Recipe` or raises
:class:`RecipeError` whose message names the key path at fault and what it accepts::

    recipe.yaml: self_augment.template: must be one of 'concat', 'replace', 'qa' (got 'both')

Relative paths in a recipe are relative to the recipe file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from vila2.captioning.prompts import PROMPT_SETS
from vila2.errors import RecipeError

#: component names, as plugins register them (they name steps and folders of a run)
# names become folders of the run, split at dots (round1/eval/<name>): no empty part
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]+)*$"



class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # YAML reads `seed: no` as false: a number field must not quietly become 0 or 1
        annotation = cls.model_fields[info.field_name].annotation if info.field_name else None
        kinds = {annotation, *getattr(annotation, "__args__", ())}
        if isinstance(value, bool) and kinds & {int, float} and bool not in kinds:
            raise ValueError(f"must be a number, not {str(value).lower()}")
        return value


class WorldData(_Strict):
    """The embedded synthetic world, written into the run folder (what ``vila2 demo`` uses)."""

    seed: int = 0
    size: str | int = Field("demo", description="a size name of vila2.world or a pretraining image count")
    image_size: int = Field(64, ge=16)


class DatasetRef(_Strict):
    """A layer of a vila2 dataset folder."""

    dataset: str
    layer: str
    weight: float = Field(1.0, gt=0)


class Data(_Strict):
    """Where the images and the original text come from: ``world`` or ``pretrain`` + ``sft``.

    ``pretrain`` is the image–text data the loop recaptions (its layer is the original alt-text);
    ``sft`` are conversation layers mixed into every generalist training run (with the world: its
    ``sft`` set, the detailed-caption seed included). ``specialists`` maps a specialist name to its
    own domain data (LLaVA JSON or a dataset), passed to the specialist's ``prepare_data``.
    ``pretrain_limit`` keeps the first N pretraining images (as the paper's ablations use a
    fraction of the data): they are copied, with the original captions, into the run folder.
    """

    world: WorldData | None = None
    pretrain: DatasetRef | None = None
    sft: list[DatasetRef] = Field(default_factory=list)
    specialists: dict[str, str] = Field(default_factory=dict)
    pretrain_limit: int | None = Field(None, ge=1, description="use only the first N pretraining images")

    @model_validator(mode="after")
    def _one_source(self) -> Data:
        if (self.world is None) == (self.pretrain is None):
            raise ValueError("give exactly one of 'world' or 'pretrain' (with optional 'sft')")
        if self.world is not None and self.sft:
            raise ValueError("'sft' comes with the world; give it only with 'pretrain'")
        return self


class ModelSpec(_Strict):
    """The starting point every generalist is trained from: a preset or a checkpoint folder."""

    preset: str | None = None
    #: a model folder, or the name of one shipped with vila2 (``world-start``: the demo's
    #: starting point, built by ``vila2 preset start``)
    checkpoint: str | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)
    #: a pretrained vision tower for the preset (``world-tower``: the one shipped with vila2,
    #: built by ``vila2 preset tower``; or a folder holding ``tower.safetensors``)
    vision_tower: str | None = None
    trust_remote_code: bool = False

    @field_validator("trust_remote_code")
    @classmethod
    def _no_remote_code(cls, value: bool) -> bool:
        # refused rather than ignored: nothing in a run would honour it
        if value:
            raise ValueError("vila2 run does not load models that bring their own code; use a "
                             "checkpoint transformers supports natively (trust_remote_code: false)")
        return value

    @model_validator(mode="after")
    def _one_model(self) -> ModelSpec:
        if (self.preset is None) == (self.checkpoint is None):
            raise ValueError("give exactly one of 'preset' (e.g. llava-tiny) or 'checkpoint' (a folder)")
        if self.checkpoint is not None and self.overrides:
            raise ValueError("'overrides' apply to a preset only")
        if self.checkpoint is not None and self.vision_tower is not None:
            raise ValueError("'vision_tower' applies to a preset only")
        return self


class Hyper(_Strict):
    """Training hyper-parameters (``vila2.training.trainer.TrainConfig``); every field left unset falls back
    to the level above, then to the trainer's default. ``steps`` caps ``epochs``."""

    steps: int | None = Field(None, ge=1)
    epochs: float | None = Field(None, gt=0)
    batch_size: int | None = Field(None, ge=1)
    lr: float | None = Field(None, gt=0)
    projector_lr: float | None = Field(None, gt=0, description="the projector's own learning rate")
    vision_lr: float | None = Field(None, gt=0, description="the vision tower's own learning rate")
    loss_weighting: Literal["token", "sample", "square"] | None = Field(
        None, description="how answer tokens are averaged into the loss: per token (the default), "
                          "per conversation, or 1/sqrt(tokens) per conversation")
    warmup_ratio: float | None = Field(None, ge=0, le=1)
    weight_decay: float | None = Field(None, ge=0)
    grad_accum: int | None = Field(None, ge=1)
    max_length: int | None = Field(None, ge=8)
    train_vision: bool | None = None
    save_every: int | None = Field(None, ge=0, description="steps between resumable checkpoints")

    def train_settings(self, *below: Hyper) -> dict[str, Any]:
        """The fields set here or in ``below`` (later wins), named as ``TrainConfig`` names them."""
        merged: dict[str, Any] = {}
        for level in (self, *below):
            merged.update({k: v for k in Hyper.model_fields if (v := getattr(level, k)) is not None})
        if "steps" in merged:
            merged["max_steps"] = merged.pop("steps")
        return merged


class Stage(Hyper):
    """One training stage: which parameters train and on which data.

    ``data`` lists the parts of the mixture this stage sees: ``captions`` (the pretraining images
    with this round's caption template), ``sft`` (the conversation sets) and, with the embedded
    world, ``sft_described`` (its SFT images with a description turn on each: a starting point
    that describes is warmed up on it; never the pretraining images).
    """

    name: Literal["align", "pretrain", "sft"]
    data: list[Literal["captions", "sft", "sft_described"]] = Field(min_length=1)


class Training(Hyper):
    """Stages and their shared hyper-parameters (the trainer's defaults fill the rest).

    ``warmup`` is a stage run once on the starting model before round 0; every generalist is
    then trained from its result. It stands in for the pretrained language model and vision
    tower a real run starts from, when the starting model is a random tiny preset.
    """

    stages: list[Stage] = Field(min_length=1)
    warmup: Stage | None = None
    seed: int | None = None


class FilterSpec(_Strict):
    name: str
    settings: dict[str, Any] = Field(default_factory=dict)


class StopWhen(_Strict):
    """Saturation: stop adding rounds when ``benchmark`` improves by less than ``min_gain`` or,
    with ``confidence``, unless the gain's paired-bootstrap interval lies above ``min_gain``."""

    benchmark: str
    min_gain: float = 0.0
    confidence: float | None = Field(
        None, gt=0, lt=1,
        description="continue only if the gain's paired-bootstrap interval at this level (0.95) lies "
                    "above min_gain, so a noise-level move stops the rounds; unset: compare the means")


class SelfAugment(_Strict):
    """The self-augment loop (docs/METHOD.md): each round recaptions with the previous round's model."""

    rounds: int = Field(3, ge=0, le=20)
    captioner: str = "self"
    prompts: str | list[str] = Field("long", description="a prompt set (long, brief), a file, or prompts")
    filters: list[FilterSpec] = Field(default_factory=list)
    template: Literal["concat", "replace", "qa"] = "concat"
    batch_size: int = Field(32, ge=1)
    max_new_tokens: int = Field(96, ge=1)
    stop_when: StopWhen | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    executor: str = Field("local", pattern=NAME_PATTERN,
                          description="where recaption shards run: local, or a plugin's (ray)")
    executor_settings: dict[str, Any] = Field(default_factory=dict,
                                              description="the executor's settings (ray: address, actors...)")

    @field_validator("filters", mode="before")
    @classmethod
    def _filter_names(cls, value: Any) -> Any:
        # a bare name is the common case: `filters: [repeat_cut, word_count]`
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("prompts")
    @classmethod
    def _some_prompts(cls, value: Any) -> Any:
        if isinstance(value, list) and (not value or not all(p.strip() for p in value)):
            raise ValueError("a prompt list needs at least one non-empty prompt")
        return value


class Specialists(_Strict):
    """Specialist-augment: which installed specialists, their LoRA settings and QA turns."""

    names: Literal["installed"] | list[Annotated[str, Field(pattern=NAME_PATTERN)]] = "installed"
    lora: dict[str, Any] = Field(default_factory=dict)
    training: Hyper = Field(default_factory=Hyper)
    training_for: dict[Annotated[str, Field(pattern=NAME_PATTERN)], Hyper] = Field(
        default_factory=dict, description="one specialist's training settings over `training`, by name")
    qa_turns: int | None = Field(None, ge=1, description="QA turns appended per image (default: all)")
    batch_size: int = Field(32, ge=1)
    max_new_tokens: int = Field(64, ge=1)
    eval_limit: int | None = Field(None, ge=1, description="samples of each domain benchmark not in evaluators")


class EvaluatorSpec(_Strict):
    """A benchmark to score every model on; ``data`` overrides where its samples come from."""

    name: str = Field(pattern=NAME_PATTERN)
    backend: str = "builtin"
    data: str | None = None
    limit: int | None = Field(None, ge=1)
    settings: dict[str, Any] = Field(default_factory=dict)


class Recipe(_Strict):
    """A whole VILA² run. See ``vila2/recipes/demo.yaml`` for a complete example."""

    name: str = "vila2-run"
    seed: int = 0
    on_error: Literal["skip", "stop"] = "stop"
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: torch's choice)")
    processes: int = Field(1, ge=1, le=64, description="processes per training and recaption step (accelerate launch: "
                           "DDP training, captioning sharded by rank)")
    plugins: list[str] = Field(default_factory=list)
    data: Data
    model: ModelSpec
    training: Training
    self_augment: SelfAugment = Field(default_factory=SelfAugment)
    specialists: Specialists | None = None
    evaluators: list[EvaluatorSpec] = Field(min_length=1)
    base_dir: str = Field(".", exclude=True, description="the recipe's folder (set by load_recipe)")

    @field_validator("evaluators", mode="before")
    @classmethod
    def _evaluator_names(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    def path(self, value: str) -> Path:
        """A path from the recipe, resolved against the recipe's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else (Path(self.base_dir) / p).resolve()

    def normalised(self) -> dict[str, Any]:
        """The recipe as plain data with every default filled in (what step fingerprints hash).

        Fields added after a run folder was made are left out while unset, so that folder's
        steps keep their fingerprints and it still resumes."""
        return _without_unset_later_fields(self.model_dump(mode="json"))


#: recipe fields added after run folders existed: left out of the fingerprints while unset
LATER_FIELDS = frozenset({"projector_lr", "vision_lr", "loss_weighting"})


def _without_unset_later_fields(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_unset_later_fields(v) for k, v in value.items()
                if not (k in LATER_FIELDS and v is None)}
    if isinstance(value, list):
        return [_without_unset_later_fields(v) for v in value]
    return value


_TYPE_TAGS = {"str", "int", "float", "bool", "dict", "list", "none"}


def _where(error: dict[str, Any]) -> str:
    loc = error["loc"]
    parts: list[str] = []
    for i, item in enumerate(loc):
        user_key = error["type"] == "extra_forbidden" and i == len(loc) - 1
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif not user_key and (item in _TYPE_TAGS or "[" in str(item)):
            continue  # pydantic's labels for union branches are not keys the user wrote
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def _explain(error: dict[str, Any]) -> str:
    kind, msg, ctx = error["type"], error["msg"], error.get("ctx") or {}
    if kind == "extra_forbidden":
        return "is not a recipe key" + _allowed_keys(error["loc"])
    if kind == "missing":
        return "is required"
    if kind == "literal_error":
        return f"must be {ctx.get('expected', msg)}"
    if kind == "value_error":
        return str(ctx.get("error", msg))
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == NAME_PATTERN:
        return "must be a name: letters, digits, '_', '-' or '.', starting with a letter or digit"
    text = msg[:1].lower() + msg[1:]
    return text.replace("input should be", "must be")


def _allowed_keys(loc: tuple[Any, ...]) -> str:
    """The keys the mapping at ``loc`` accepts, for 'is not a recipe key' errors."""
    model: Any = Recipe
    for item in loc[:-1]:
        if isinstance(item, int):
            continue
        field = model.model_fields.get(item)
        if field is None:
            return ""
        model = _model_in(field.annotation)
        if model is None:
            return ""
    return " (accepted: " + ", ".join(k for k in model.model_fields if k != "base_dir") + ")"


def _model_in(annotation: Any) -> Any:
    """The pydantic model inside ``annotation`` (``X``, ``X | None``, ``list[X]``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _is_file(recipe: Recipe, value: str) -> bool:
    try:
        return recipe.path(value).is_file()
    except (OSError, ValueError, RuntimeError):  # too long a name, a NUL byte, "~nobody"...
        return False


def _cross_check(recipe: Recipe) -> list[str]:
    """Rules that relate two parts of a recipe, as ``key: message`` lines."""
    problems = []
    stop = recipe.self_augment.stop_when
    evaluated = [e.name for e in recipe.evaluators]
    if stop is not None and stop.benchmark not in evaluated:
        problems.append(f"self_augment.stop_when.benchmark: {stop.benchmark!r} is not one of the "
                        f"evaluators ({', '.join(evaluated)})")
    prompts = recipe.self_augment.prompts
    if isinstance(prompts, str) and prompts not in PROMPT_SETS and not _is_file(recipe, prompts):
        problems.append(f"self_augment.prompts: {prompts[:80]!r} is neither a prompt set "
                        f"({', '.join(PROMPT_SETS)}) nor a file of prompts")
    for i, plugin in enumerate(recipe.plugins):
        if not _is_file(recipe, plugin):
            problems.append(f"plugins[{i}]: plugin file {plugin[:80]!r} does not exist")
    return problems


def parse_recipe(raw: Any, *, source: str = "recipe", base_dir: str | Path = ".") -> Recipe:
    """Validate already-parsed YAML; errors name ``source`` and the key path."""
    if not isinstance(raw, dict):
        raise RecipeError(f"{source}: a recipe is a mapping of keys (data, model, training, ...), "
                          f"got {type(raw).__name__}")
    if "base_dir" in raw:
        raise RecipeError(f"{source}: base_dir: is not a recipe key")
    try:
        recipe = Recipe.model_validate({**raw, "base_dir": str(Path(base_dir).resolve())})
    except ValidationError as exc:
        # one line per key; the branches of a union (e.g. 'long' | a list) become "a, or b"
        by_key: dict[str, list[str]] = {}
        got: dict[str, str] = {}
        for error in exc.errors():
            where = _where(error)
            text = _explain(error)
            if text not in by_key.setdefault(where, []):
                by_key[where].append(text)
            value = error.get("input")
            if error["type"] not in {"missing", "extra_forbidden"} and isinstance(value, (str, int, float, bool)):
                got[where] = f" (got {value!r})"
        lines = [f"{source}: {where}: {', or '.join(texts)}{got.get(where, '')}" for where, texts in by_key.items()]
        raise RecipeError("\n".join(lines)) from None
    problems = _cross_check(recipe)
    if problems:
        raise RecipeError("\n".join(f"{source}: {p}" for p in problems))
    return recipe


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file."""
    import yaml

    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read the recipe ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: the recipe is not UTF-8 text") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(f"{path}: not valid YAML{where}: {problem}") from None
    return parse_recipe(raw, source=str(path), base_dir=file.resolve().parent)


#: what ships with vila2 for recipes to name: the packaged recipes and starting points
PACKAGED = Path(__file__).resolve().parents[1] / "recipes"


def packaged_recipe(name: str) -> Path:
    """The path of a recipe shipped in ``vila2/recipes/`` (``demo``, ``demo-quick``)."""
    folder = PACKAGED
    file = folder / f"{name}.yaml"
    if not file.is_file():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.yaml"))) or "none"
        raise RecipeError(f"no packaged recipe named {name!r}; packaged: {known}")
    return file


__all__ = ["PACKAGED", "Recipe", "RecipeError", "load_recipe", "packaged_recipe", "parse_recipe"]
