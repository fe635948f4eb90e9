"""Test fixtures from vila2's plugin-author kit: the plugin-host sandbox, and a tiny embedded world
and model built once per session. Everything is local and seeded: no hub access."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("VILA2_LOAD_PLUGINS", "")  # tests register the plugin under test themselves

from vila2.testing import fresh_host, plugin_registered, tiny_model, tiny_world  # noqa: F401  (fixtures)
