"""Pytest fixtures for plugin authors (and vila2's own tests).

In your ``conftest.py``::

    pytest_plugins = ["vila2.testing"]

then::

    def test_my_filter(fresh_host, plugin_registered):
        plugin_registered(my_plugin_module)
        assert "my_filter" in fresh_host.filters()
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from vila2.plugins import Host, set_host


@pytest.fixture
def fresh_host() -> Iterator[Host]:
    """A plugin host with the built-ins only (nothing installed is loaded), made process-wide
    for the duration of the test."""
    host = Host(entry_points=False, builtins=True)
    previous = set_host(host)
    try:
        yield host
    finally:
        set_host(previous)


@pytest.fixture
def plugin_registered(fresh_host: Host) -> Iterator[Callable[..., str]]:
    """``plugin_registered(obj, name=None)`` registers a plugin object for this test only."""
    names: list[str] = []

    def register(plugin: object, name: str | None = None) -> str:
        registered = fresh_host.register(plugin, name=name)
        names.append(registered)
        return registered

    try:
        yield register
    finally:
        for name in names:
            fresh_host.unregister(name)
