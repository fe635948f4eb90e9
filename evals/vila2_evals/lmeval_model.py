"""``vila2``: an lm-eval model for any folder ``vila2.models.checkpoint.load`` opens (PEFT adapters included).

Importing this module registers it with lm-eval, so ``lm_eval --model vila2 --model_args
pretrained=runs/round1/model --tasks mmmu_val`` works once ``vila2_evals.lmeval_model`` is
imported. Images come from each request's ``visual`` argument, one per ``<image>`` in the prompt,
and the model's own chat template lays them out (so run it without ``--apply_chat_template``).
Generation is greedy through :class:`vila2_evals.answerer.Answerer` (``vila2.models.generation.Generator``),
honouring each task's ``until`` and ``max_gen_toks``. Only ``generate_until`` tasks are supported.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

# lm-eval lists its own models only while its registry is empty: list them before adding ours
import lm_eval.models  # noqa: F401
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from vila2_evals.answerer import Answerer

DEFAULT_MAX_GEN_TOKS = 256


@register_model("vila2")
class Vila2LM(LM):
    """lm-eval's view of a vila2 model folder."""

    MULTIMODAL = True

    def __init__(self, pretrained: str, batch_size: int | str = 8, device: str | None = None,
                 dtype: str | None = None, max_gen_toks: int = DEFAULT_MAX_GEN_TOKS, **_: Any) -> None:
        super().__init__()
        self.answerer = Answerer(pretrained, batch_size=int(batch_size), device=device, dtype=dtype)
        self.max_gen_toks = int(max_gen_toks)

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        """Answer each request; requests with the same generation settings are batched together."""
        groups: dict[tuple[int, tuple[str, ...]], list[int]] = defaultdict(list)
        for i, request in enumerate(requests):
            kwargs = request.args[1] or {}
            if kwargs.get("do_sample"):
                raise ValueError("the vila2 lm-eval model decodes greedily; the task asks for do_sample=True")
            until = kwargs.get("until") or ()
            until = (until,) if isinstance(until, str) else tuple(until)
            groups[(int(kwargs.get("max_gen_toks", self.max_gen_toks)), until)].append(i)
        answers: list[str] = [""] * len(requests)
        for (max_new_tokens, until), indices in groups.items():
            batch = [(_visuals(requests[i]), requests[i].args[0]) for i in indices]
            for i, text in zip(indices, self.answerer(batch, max_new_tokens=max_new_tokens, stop=until),
                               strict=True):
                answers[i] = text
                self.cache_hook.add_partial("generate_until", requests[i].args[:2], text)
        return answers

    def loglikelihood(self, requests: list[Any]) -> list[tuple[float, bool]]:
        raise NotImplementedError("the vila2 lm-eval model runs generate_until tasks only")

    def loglikelihood_rolling(self, requests: list[Any]) -> list[float]:
        raise NotImplementedError("the vila2 lm-eval model runs generate_until tasks only")


def _visuals(request: Any) -> list[Any]:
    aux = request.args[2] if len(request.args) > 2 else {}
    return list(aux.get("visual") or [])
