"""Test set-up for the whole repository (core, evals plugin, specialist packages).

Everything is local and seeded: no hub access, tiny models, tiny data. Installed plugins are not
loaded unless a test opts in, so results do not depend on what happens to be installed.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VILA2_LOAD_PLUGINS", "")
# Tiny models run fastest on one thread; extra OpenMP threads only wait for each other, and the
# multi-process tests would oversubscribe the cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

pytest_plugins = ["vila2.testing"]
