"""Tests of vila2-vllm.

``tests/in_env/`` needs vLLM: it runs in the environment ``scripts/make_env.sh`` builds (the
main environment has no vLLM), either directly::

    bash plugins/vllm/scripts/make_env.sh
    plugins/vllm/.venv-vllm/bin/python -m pytest -q -p no:cacheprovider plugins/vllm/tests

or from the main environment through ``test_vllm_env.py``, which builds that environment and
runs ``tests/in_env`` in it. Where vLLM does not import, ``tests/in_env`` is not collected.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("vila2_vllm") is None:  # a checkout without `pip install -e plugins/vllm`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

collect_ignore = [] if importlib.util.find_spec("vllm") is not None else ["in_env"]
