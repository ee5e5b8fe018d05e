"""Shared fixtures: every test gets its own workspace under tmp_path; models load once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
DATA = Path(__file__).resolve().parent / "data"
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(autouse=True)
def _workspace_env(tmp_path, monkeypatch):
    """All state of a test lives in tmp_path; the model cache stays shared so conversion happens once."""
    monkeypatch.setenv("ARCHIVIST_HOME", str(tmp_path / "ws"))
    monkeypatch.delenv("ARCHIVIST_USER", raising=False)
    yield


@pytest.fixture
def settings(tmp_path):
    from archivist.settings import Settings

    return Settings.from_env()


@pytest.fixture
def ws(settings):
    from archivist.workspace import open_workspace

    w = open_workspace(settings)
    yield w
    w.close()


@pytest.fixture(scope="session")
def embedder():
    from archivist.models import load_embedder

    return load_embedder()
