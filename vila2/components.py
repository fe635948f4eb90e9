"""Typed records that plugins register and the host passes around.

Every component has a stable ``name``; the host stamps ``plugin`` with the name of the plugin that
registered it, so errors and listings can say where a component came from.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from vila2.errors import ComponentError

# names become folder names of a run (``specialists/<name>/...``), split at dots: no empty part
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]+)*$")



class CaptionFn(Protocol):
    """What ``Captioner.load`` returns: caption a batch of images, one prompt each."""

    def __call__(self, images: Sequence[Any], prompts: Sequence[str]) -> list[str]: ...


@dataclass(frozen=True)
class Captioner:
    """Produces captions for images.

    ``load(model, settings)`` returns a :class:`CaptionFn`; ``model`` is a model folder (or hub id)
    or ``None`` for captioners that bring their own. The recaption engine owns batching, prompts,
    filters, resume and sharding; a captioner only turns images + prompts into text.
    """

    name: str
    load: Callable[[str | None, Mapping[str, Any]], CaptionFn]
    description: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    plugin: str | None = None


@dataclass(frozen=True)
class Filter:
    """Judges a new caption.

    Two forms:

    * a predicate: ``Filter("no_urls", check=lambda sample, text: "http" not in text)``;
    * a scorer: ``score(sample, text) -> float`` plus ``keep(score, **settings) -> bool``. The
      score is stored with the caption layer, so changing a threshold needs no new inference.

    ``clean(text) -> text`` optionally rewrites the caption before scoring (for example, cutting
    it at the first repeated sentence). ``settings`` are the defaults a recipe may override.
    ``sample`` is the store's sample record (a dict with at least ``id``).
    """

    name: str
    check: Callable[[Mapping[str, Any], str], bool] | None = None
    score: Callable[[Mapping[str, Any], str], float] | None = None
    keep: Callable[..., bool] | None = None
    clean: Callable[[str], str] | None = None
    description: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    plugin: str | None = None

    def __post_init__(self) -> None:
        if self.check is None and self.score is None and self.clean is None:
            raise ComponentError(f"filter {self.name!r} needs check=, score= (with keep=) or clean=")
        if self.score is not None and self.keep is None:
            raise ComponentError(f"filter {self.name!r} has score= but no keep=")

    def apply(
        self, sample: Mapping[str, Any], text: str, **overrides: Any
    ) -> tuple[str, float | None, bool]:
        """Return ``(text, score, kept)`` for one caption, with settings overridden by a recipe."""
        if self.clean is not None:
            text = self.clean(text)
        if self.score is not None:
            value = float(self.score(sample, text))
            assert self.keep is not None
            return text, value, bool(self.keep(value, **{**self.settings, **overrides}))
        if self.check is not None:
            kept = bool(self.check(sample, text))
            return text, float(kept), kept
        return text, None, True


@dataclass(frozen=True)
class Specialist:
    """A domain expert fine-tuned from the self-augmented model (docs/METHOD.md, specialist-augment).

    * ``prepare_data(source, world, out_dir) -> str``: returns a vila2 dataset folder whose
      ``conversations`` layer holds the domain SFT conversations. ``source`` is the recipe's data
      path (LLaVA JSON or a dataset) or ``None``; ``world`` is the embedded world's folder or None.
    * ``prompts``: task-oriented recaption prompts (one drawn per image).
    * ``questions``: the pool from which a question is drawn when an answer is appended to a
      caption as a question–answer turn.
    * ``lora``: LoRA defaults (``r``, ``alpha``, ``dropout``, ``target_modules``...).
    * ``evaluator``: name of the benchmark that measures this domain, if any.
    * ``clean_answer``: optional post-processing of the specialist's recaption.
    * ``check_answer``: optional test that a (cleaned) recaption is usable as training data, e.g.
      every box well formed; an answer that fails is kept out of the final model's data and
      recorded in its layer as rejected (``kept=False``), never silently dropped.
    """

    name: str
    prepare_data: Callable[[str | None, str | None, str], str]
    prompts: tuple[str, ...]
    questions: tuple[str, ...] = ()
    description: str = ""
    lora: Mapping[str, Any] = field(default_factory=dict)
    evaluator: str | None = None
    clean_answer: Callable[[str], str] | None = None
    check_answer: Callable[[str], bool] | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    plugin: str | None = None

    def __post_init__(self) -> None:
        if not self.prompts:
            raise ComponentError(f"specialist {self.name!r} needs at least one prompt")

    def clean_filter(self) -> Filter | None:
        """``clean_answer`` and ``check_answer`` as the filter of the specialist's caption layer
        (``<name>-clean``), or ``None`` without either; built the same way in every process that
        captions."""
        if self.clean_answer is None and self.check_answer is None:
            return None
        check = self.check_answer
        # named after the specialist's plugin, so a clean-up or check that fails names it
        return Filter(f"{self.name}-clean", clean=self.clean_answer,
                      check=None if check is None else lambda _sample, text: check(text), plugin=self.plugin)


@dataclass(frozen=True)
class EvalResult:
    """One model scored on one benchmark. ``metrics[primary]`` is the headline number."""

    benchmark: str
    metrics: Mapping[str, float]
    primary: str
    n: int
    backend: str = "builtin"
    samples_path: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def score(self) -> float:
        return float(self.metrics[self.primary])

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Evaluator:
    """Scores a model folder on benchmarks.

    ``run(model, benchmark, *, data=None, limit=None, out_dir=None, settings={}) -> EvalResult``.
    ``benchmarks`` lists the names it scores; ``None`` means any name (e.g. lm-eval task names).
    ``backend`` groups evaluators: ``builtin``, ``lm-eval``, ``vlmeval`` or a plugin's own.
    """

    name: str
    run: Callable[..., EvalResult]
    benchmarks: tuple[str, ...] | None = None
    backend: str = "builtin"
    description: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    plugin: str | None = None


@dataclass(frozen=True)
class Executor:
    """Runs the recaption engine's shards: in this process, or on a cluster's workers.

    ``run(job, settings) -> (captioned, seconds)``: caption every shard of ``job.pending()``
    this process is responsible for, each with ``job.caption_shard(shard, job.load())`` on some
    worker (one loaded captioner per worker), and return how many samples were captioned and the
    seconds it took. ``job`` is a picklable ``vila2.captioning.engine.CaptionJob``; the engine
    has already created the layer with its provenance, and every shard a worker writes carries
    its own completion marker, so a killed run resumes from the shards already written.
    ``settings`` are the defaults here with what the caller set (unknown keys are refused).
    ``in_process=True`` tells the engine the shards are captioned in the calling process: it
    then loads the captioner there before creating a new layer (``job.caption``), so a model
    that cannot load leaves no layer behind.
    """

    name: str
    run: Callable[[Any, Mapping[str, Any]], tuple[int, float]]
    in_process: bool = False
    description: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    plugin: str | None = None


Component = Captioner | Filter | Specialist | Evaluator | Executor
KINDS: dict[str, type] = {
    "captioner": Captioner,
    "filter": Filter,
    "specialist": Specialist,
    "evaluator": Evaluator,
    "executor": Executor,
}


def validate(component: Any, kind: str, plugin: str) -> Component:
    """Check a registered component and stamp it with its plugin's name.

    A plain function ``(sample, text) -> bool`` registered as a filter becomes ``Filter(check=fn)``.
    """
    cls = KINDS[kind]
    if kind == "filter" and callable(component) and not isinstance(component, Filter):
        component = Filter(name=component.__name__, check=component, description=(component.__doc__ or "").strip())
    if not isinstance(component, cls):
        raise ComponentError(
            f"plugin {plugin!r} registered {type(component).__name__} as a {kind}; "
            f"expected vila2.{cls.__name__}"
        )
    if not isinstance(component.name, str) or not _NAME.match(component.name):
        raise ComponentError(
            f"plugin {plugin!r} registered a {kind} with a bad name {component.name!r}: "
            "use letters, digits, '_', '-' or '.'"
        )
    for attr in ("load", "run", "prepare_data"):
        if hasattr(component, attr) and not callable(getattr(component, attr)):
            raise ComponentError(f"{kind} {component.name!r} from plugin {plugin!r}: {attr} is not callable")
    return dataclasses.replace(component, plugin=plugin)
