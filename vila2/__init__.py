"""vila2: make vision-language models better by improving their own training data.

Plugins write::

    import vila2

    @vila2.hookimpl
    def register_filters(register):
        register(vila2.Filter("no_urls", check=lambda sample, text: "http" not in text))

A domain specialist package is its prompts, its scoring, its data and one registration
(:class:`DomainSpecialist`)::

    KIT = vila2.DomainSpecialist("ocr", "Reads the text in images.", prepare_data, PROMPTS,
                                 questions=QUESTIONS, score=score, primary="exact_match")
    register_specialists, register_evaluators = KIT.hookimpls()

Nothing heavy (torch, transformers) is imported here, so ``vila2 --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy

__version__ = "0.1.0"

PROJECT = "vila2"
hookimpl = pluggy.HookimplMarker(PROJECT)
hookspec = pluggy.HookspecMarker(PROJECT)

from vila2.components import (  # noqa: E402
    Captioner,
    ComponentError,
    EvalResult,
    Evaluator,
    Executor,
    Filter,
    Specialist,
)

ScoreFn = Callable[[str, str, Mapping[str, Any]], Mapping[str, float]]


@dataclass(frozen=True)
class DomainSpecialist:
    """One domain's specialist kit: what a specialist package declares, and the host turns into
    its :class:`Specialist` and (given ``score``) the :class:`Evaluator` of its own benchmark.

    * ``name``, ``description``, ``prepare_data``, ``prompts``, ``questions``, ``lora``,
      ``clean_answer``, ``check_answer``: as on :class:`Specialist`.
    * ``score(prediction, reference, sample) -> {metric: value}``: scores one benchmark answer
      (see :func:`vila2.evaluate.evaluate_conversations`). With it, the kit registers an evaluator
      named ``name`` for the benchmark ``name``; ``primary`` is its headline metric,
      ``max_new_tokens`` the answer length it allows, ``summarise(means) -> metrics`` an optional
      rewrite of the averaged per-sample metrics, and ``benchmark_folder`` the embedded world's
      ``bench/<folder>`` read when no data is given (default: ``name``).
    * ``evaluator``: without ``score``, the benchmark (scored by another plugin) that measures the
      domain.

    The pip name shown for a missing specialist comes from the distribution that installed the
    plugin, so a kit never repeats it. A package's ``__init__.py``::

        import vila2
        from vila2_ocr_specialist.prompts import LORA, PROMPTS, QUESTIONS
        from vila2_ocr_specialist.scoring import score
        from vila2_ocr_specialist.training_data import prepare_data

        __version__ = "0.1.0"

        KIT = vila2.DomainSpecialist(
            "ocr", "Recognises and describes the text in images.", prepare_data, PROMPTS,
            questions=QUESTIONS, lora=LORA, score=score, primary="exact_match", max_new_tokens=24)
        register_specialists, register_evaluators = KIT.hookimpls()
    """

    name: str
    description: str
    prepare_data: Callable[[str | None, str | None, str], str]
    prompts: tuple[str, ...]
    questions: tuple[str, ...] = ()
    lora: Mapping[str, Any] = field(default_factory=dict)
    clean_answer: Callable[[str], str] | None = None
    check_answer: Callable[[str], bool] | None = None
    score: ScoreFn | None = None
    primary: str | None = None
    max_new_tokens: int = 32
    summarise: Callable[[Mapping[str, float]], Mapping[str, float]] | None = None
    benchmark_folder: str | None = None
    evaluator: str | None = None
    evaluator_description: str = ""

    def __post_init__(self) -> None:
        if self.score is not None and self.evaluator not in (None, self.name):
            raise ComponentError(f"specialist kit {self.name!r}: score= scores its own benchmark "
                                 f"{self.name!r}; evaluator={self.evaluator!r} is for a kit without one")

    def specialist(self) -> Specialist:
        """The :class:`Specialist` this kit registers."""
        return Specialist(
            name=self.name, prepare_data=self.prepare_data, prompts=tuple(self.prompts),
            questions=tuple(self.questions), description=self.description, lora=dict(self.lora),
            evaluator=self.name if self.score is not None else self.evaluator,
            clean_answer=self.clean_answer, check_answer=self.check_answer,
        )

    def benchmark_evaluator(self) -> Evaluator | None:
        """The :class:`Evaluator` of the kit's own benchmark, or None without ``score``."""
        if self.score is None:
            return None
        return Evaluator(name=self.name, run=self.evaluate, benchmarks=(self.name,), backend="builtin",
                         description=self.evaluator_description or f"The {self.name} benchmark.")

    def evaluate(self, model: Any, benchmark: str, *, data: str | None = None,
                 limit: int | None = None, out_dir: str | None = None,
                 settings: Mapping[str, Any] | None = None) -> EvalResult:
        """Score ``model`` on ``data`` (a benchmark dataset with a ``conversations`` layer), by
        default the embedded world's ``<settings["world"]>/bench/<benchmark_folder>``.

        ``settings`` may set ``batch_size`` (default 32) and ``max_new_tokens``.
        """
        import dataclasses

        from vila2.evaluate import benchmark_data, evaluate_conversations

        if self.score is None:
            raise ComponentError(f"specialist kit {self.name!r} has no score= to evaluate with")
        settings = settings or {}
        folder = benchmark_data(self.name, self.benchmark_folder or benchmark, data, settings)
        result = evaluate_conversations(
            model, folder, self.score, benchmark=benchmark, limit=limit, out_dir=out_dir,
            batch_size=int(settings.get("batch_size", 32)),
            max_new_tokens=int(settings.get("max_new_tokens", self.max_new_tokens)),
            primary=None if self.summarise is not None else self.primary,
        )
        if self.summarise is None:
            return result
        metrics = dict(self.summarise(result.metrics))
        primary = self.primary or next(iter(metrics))
        if primary not in metrics:
            raise ValueError(f"benchmark {benchmark!r}: primary metric {primary!r} is not among "
                             f"{sorted(metrics)}")
        return dataclasses.replace(result, metrics=metrics, primary=primary)

    def hookimpls(self) -> tuple[Callable[[Any], None], Callable[[Any], None]]:
        """``(register_specialists, register_evaluators)``: the two hook implementations a
        package's ``__init__.py`` binds at module level (the second registers nothing without
        ``score``)."""

        @hookimpl
        def register_specialists(register: Any) -> None:
            register(self.specialist())

        @hookimpl
        def register_evaluators(register: Any) -> None:
            evaluator = self.benchmark_evaluator()
            if evaluator is not None:
                register(evaluator)

        return register_specialists, register_evaluators


__all__ = [
    "PROJECT",
    "Captioner",
    "ComponentError",
    "DomainSpecialist",
    "EvalResult",
    "Evaluator",
    "Executor",
    "Filter",
    "Specialist",
    "__version__",
    "hookimpl",
    "hookspec",
]
