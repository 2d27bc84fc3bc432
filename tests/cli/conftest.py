"""Fixtures the command-line tests share."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def wan(tmp_path_factory) -> Path:
    """A tiny Wan pipeline saved as a folder (built once; the tests only read it)."""
    from tiny_wan import wan_pipeline

    folder = tmp_path_factory.mktemp("wan")
    wan_pipeline(folder / "build").save_pretrained(folder / "model")
    return folder / "model"
