"""A new user's install and first commands are quiet: no build-deprecation warning, no warning of a
model library probing a hub (issue 17, item 9)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow  # subprocesses: pip, the CLI, a fresh interpreter importing the model libraries


def test_the_package_builds_without_the_license_deprecation_warning():
    """setuptools warns that `project.license` as a TOML table stops building after 2027-02-18."""
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-build-isolation",
                          "-v", "-e", str(REPO)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout + out.stderr
    assert "project.license" not in text and "License classifiers are deprecated" not in text, text[-3000:]


def _run(*code_or_args: str, cli: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "archivist.cli", *code_or_args] if cli else [sys.executable, "-c", *code_or_args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def test_help_and_documents_print_no_warning(ws):
    for args, stderr in ((["--help"], ""), (["documents"], "no documents\n")):
        out = _run(*args)
        assert out.returncode == 0, out.stderr
        assert out.stderr == stderr, (args, out.stderr)


def test_loading_the_model_libraries_prints_no_kernel_hub_warning_but_others_still_show():
    """Importing peft imports bitsandbytes, whose optional-kernel probe (on CPUs with AVX512-BF16)
    logged two hub warnings; only those two are dropped."""
    code = ("import logging, archivist.models, peft, sentence_transformers; "
            "logging.getLogger('bitsandbytes.backends.cpu.ops').warning('a real bitsandbytes warning'); "
            "logging.getLogger('kernels._internals.hf_hub').warning('a real kernels warning')")
    out = _run(code, cli=False)
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines() == ["a real bitsandbytes warning", "a real kernels warning"], out.stderr
