"""The layering DESIGN.md promises: the kernel (archivist/*.py) imports no stage. Checked in a fresh
interpreter, where nothing else has imported a stage yet."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO

STAGES = ("archivist.ingest", "archivist.retrieval", "archivist.finetune", "archivist.ui", "archivist.api")


def _stages_imported(code: str) -> list[str]:
    """Run `code` in a fresh interpreter; the stage modules it left in sys.modules."""
    script = code + f"\nimport json, sys\nprint(json.dumps(sorted(m for m in sys.modules if m.startswith({STAGES!r}))))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_opening_a_workspace_imports_no_stage(tmp_path):
    assert _stages_imported(f"""
from archivist.settings import Settings
from archivist.workspace import open_workspace
with open_workspace(Settings.from_env(home={str(tmp_path / 'ws')!r})) as ws:
    ws.collection_id("default", create=True)
""") == []


def test_no_kernel_module_imports_a_stage():
    """(The command line, archivist/cli.py, names the stages' command modules and imports them when it
    runs a command: it is the one shell over the stages in the kernel. Importing it imports none.)"""
    kernel = sorted(p.stem for p in (REPO / "archivist").glob("*.py") if p.stem != "__init__")
    assert {"workspace", "access", "models", "settings", "cli"} <= set(kernel)
    assert _stages_imported("\n".join(f"import archivist.{m}" for m in kernel)) == []


def test_opening_checked_repairs_what_the_kernel_open_leaves(tmp_path, embedder):
    """`open_checked` (the retrieval stage's open) runs the repairs the kernel's open no longer runs."""
    from archivist.ingest.pipeline import ingest_paths
    from archivist.retrieval.repair import open_checked
    from archivist.settings import Settings
    from archivist.workspace import open_workspace

    settings = Settings.from_env(home=tmp_path / "ws")
    (tmp_path / "a.txt").write_text("Forklift batteries are charged overnight in bay 4.\n")
    with open_workspace(settings) as ws:
        ingest_paths(ws, [tmp_path / "a.txt"], embedder=embedder, progress=False)
        faiss_file = ws.index_dir / f"c{ws.collection_id('default')}.faiss"
    assert faiss_file.exists()
    faiss_file.unlink()
    with open_workspace(settings):
        assert not faiss_file.exists()  # the kernel's open leaves derived files alone
    with open_checked(settings):
        assert faiss_file.exists()
