"""What a crash or a twin file leaves behind: a decomposed-accent twin beside a stored file, the
marker of an assembled multi-part model, adapted-embedder saves at once or killed, the temp files
of `files.replace` a killed writer leaves, and the active embedder's damaged manifest. Real
processes, killed (SIGKILL) or paused (SIGSTOP) where it matters, against a real workspace."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from conftest import stopped


def test_a_stored_file_stays_current_beside_its_accent_twin_and_only_the_twin_is_refused(tmp_path, ws, embedder):
    """`café.md` stored (composed); a different `café.md` written decomposed (NFD), which sorts
    first, added beside it. Before: every ingest reported the stored file "failed ... not ingested"
    and an edit to it was never stored while the twin was there."""
    from archivist.ingest.pipeline import ingest_paths

    folder = tmp_path / "menu"
    folder.mkdir()
    original = folder / unicodedata.normalize("NFC", "café.md")
    original.write_text("# Menu\n\nEspresso costs two euros and a croissant one euro fifty.\n")
    [added] = ingest_paths(ws, [folder], embedder=embedder)
    twin = folder / unicodedata.normalize("NFD", "café.md")
    twin.write_text("# Draft\n\nA scratch draft saved with a decomposed accent in its name.\n")

    def outcome(results):
        """(what became of the stored file, the refusal's reason)"""
        [refused] = [r for r in results if r.status == "failed"]
        return [(r.status, r.document_id) for r in results if r.status != "failed"], refused.reason

    kept, why = outcome(ingest_paths(ws, [folder], embedder=embedder))
    assert kept == [("unchanged", added.document_id)]
    assert why.startswith(f"{twin} would be stored under the same name as {original}, and replace it")
    assert "this one is 'cafe\\u0301.md', the one kept 'caf\\xe9.md'" in why  # the two print alike otherwise

    original.write_text("# Menu\n\nEspresso costs three euros now; the croissant two.\n")
    kept, why = outcome(ingest_paths(ws, [folder], embedder=embedder))
    assert kept == [("updated", added.document_id)] and why.startswith(f"{twin} would be stored")
    [row] = ws.db.execute("SELECT id, source, text FROM documents").fetchall()
    assert (row["id"], row["source"]) == (added.document_id, str(original))
    assert "three euros" in row["text"] and "scratch draft" not in row["text"]


def test_the_marker_of_an_assembled_model_is_written_only_once_the_file_is_on_disk(tmp_path, monkeypatch):
    """A GGUF shipped in parts is assembled into the model cache once; a `.sha256` marker beside it
    spares the re-hash on every load. Before: the assembled file was renamed unsynced and the marker
    written in place, so after a power cut the marker could vouch for a torn or empty file (loaded
    and converted as it was), or be empty itself. The fsyncs and renames are recorded as they happen."""
    import hashlib

    from archivist import catalog

    parts = [os.urandom(3 << 20), os.urandom(1 << 20)]
    for i, data in enumerate(parts):
        (tmp_path / "pkgs" / f"durable3_part{i}").mkdir(parents=True)
        (tmp_path / "pkgs" / f"durable3_part{i}" / "__init__.py").write_text("")
        (tmp_path / "pkgs" / f"durable3_part{i}" / f"m.gguf.part{i:02d}").write_bytes(data)
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    src = catalog.GGUFSource("durable3_part0", "m.gguf", "two parts",
                             parts=tuple((f"durable3_part{i}", f"m.gguf.part{i:02d}") for i in range(2)),
                             sha256=hashlib.sha256(b"".join(parts)).hexdigest())
    events = []
    real_fsync, real_rename, real_replace = os.fsync, os.rename, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def rename(a, b, **kw):
        events.append(("rename", str(a), str(b)))
        return real_rename(a, b, **kw)

    def replace(a, b, **kw):
        events.append(("rename", str(a), str(b)))
        return real_replace(a, b, **kw)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "replace", replace)
    root = tmp_path / "cache" / "models"
    gguf = catalog._assembled("two-parts", src, root, "pip install")
    monkeypatch.undo()

    assert gguf.read_bytes() == b"".join(parts)
    marker = str(gguf) + ".sha256"
    assert Path(marker).read_text() == src.sha256
    at = {e: i for i, e in reversed(list(enumerate(events)))}  # where each event first happened
    [(_, built, _)] = [e for e in events if e[0] == "rename" and e[2] == str(gguf)]
    assert ("fsync", built) in at, events  # the assembled bytes on disk before they have the name
    [(_, staged, _)] = [e for e in events if e[0] == "rename" and e[2] == marker]
    assert at[("fsync", built)] < at[("rename", built, str(gguf))] < at[("fsync", str(root))], events
    # the marker: written aside, on disk, then renamed, and only after the model file's name is on disk
    assert at[("fsync", str(root))] < at[("fsync", staged)] < at[("rename", staged, marker)], events
    # a verified copy is used as it is: nothing is written again
    events.clear()
    assert catalog._assembled("two-parts", src, root, "pip install") == gguf and events == []


# Saves adapted embedder argv[3] from the model at argv[1], sending itself signal argv[2] (STOP or
# KILL) when its folder is written whole and about to be renamed into place.
SAVE_EMBEDDER = """
import os, signal, sys
from sentence_transformers import SentenceTransformer
from archivist import files
from archivist.finetune import embedders
from archivist.workspace import open_workspace

real = files.publish

def signal_then_publish(tmp, target, **kw):
    os.kill(os.getpid(), getattr(signal, "SIG" + sys.argv[2]))
    return real(tmp, target, **kw)

files.publish = signal_then_publish
try:
    embedders.save(open_workspace(), sys.argv[3], SentenceTransformer(sys.argv[1], device="cpu"),
                   {"base": "all-minilm-l6-v2", "collections": [], "documents": {"train": [], "held_out": []}})
except FileExistsError as e:
    print("FileExistsError:", e)
    sys.exit(3)
"""


@pytest.fixture(scope="module")
def tiny_retriever(tmp_path_factory) -> Path:
    """A 2-layer, 64-dim sentence-transformers model (tests/make_tiny_models.py), as an adapted retriever."""
    from make_tiny_models import tiny_embedder

    out = tmp_path_factory.mktemp("tiny") / "tiny"
    tiny_embedder(out)
    return out


def _save_embedder(tiny: Path, sig: str, name: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SAVE_EMBEDDER, str(tiny), sig, name], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _other_weights(tiny: Path):
    """The tiny model with other weights than the file's (another training run's)."""
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny), device="cpu")
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    return model


def _hidden(ws) -> list[str]:
    return sorted(p.name for p in (ws.home / "embedders").iterdir() if p.name.startswith("."))


def test_two_saves_of_one_embedder_name_at_once_keep_each_its_own_folder(ws, tiny_retriever):
    """A retriever fine-tune paused with its folder written, about to rename it; meanwhile another
    saves an embedder of another name, then one of the same name. Before: every save of a name used
    the folder `.<name>.tmp`, removed first: the second save of the name deleted the first's weights
    under it, and the first then failed with a bare "No such file or directory"."""
    import hashlib

    from archivist.finetune import embedders

    first = _save_embedder(tiny_retriever, "STOP", "adapted-1")
    try:
        stopped(first)
        [building] = _hidden(ws)
        embedders.save(ws, "other-1", _other_weights(tiny_retriever), {"base": "all-minilm-l6-v2", "collections": []})
        assert _hidden(ws) == [building]  # a live save's folder is not taken for an abandoned one
        embedders.save(ws, "adapted-1", _other_weights(tiny_retriever), {"base": "all-minilm-l6-v2", "collections": []})
        assert _hidden(ws) == [building] and (ws.home / "embedders" / building / "model.safetensors").exists()
    finally:
        first.send_signal(signal.SIGCONT)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 3, err
    assert out.startswith("FileExistsError: an embedder named 'adapted-1' exists already")
    assert _hidden(ws) == []
    saved = ws.home / "embedders" / "adapted-1"
    manifest = json.loads((saved / "archivist.json").read_text())
    assert manifest["weights_sha256"] == hashlib.sha256((saved / "model.safetensors").read_bytes()).hexdigest()[:12]
    assert manifest["weights_sha256"] == embedders.load_manifest(ws, "other-1")["weights_sha256"]  # the same weights


def test_the_folder_of_an_embedder_save_killed_midway_is_removed_by_the_next_save(ws, tiny_retriever):
    """Before: a save killed before its rename left `.<name>.tmp` (a model's worth of weights) until
    a later save happened to take the same name; fine-tunes name each run afresh, so never."""
    from archivist.finetune import embedders

    killed = _save_embedder(tiny_retriever, "KILL", "adapted-1")
    killed.communicate(timeout=180)
    assert killed.returncode == -signal.SIGKILL
    [left] = _hidden(ws)
    assert (ws.home / "embedders" / left / "model.safetensors").exists()
    embedders.save(ws, "adapted-2", _other_weights(tiny_retriever), {"base": "all-minilm-l6-v2", "collections": []})
    assert _hidden(ws) == [] and [e["name"] for e in embedders.list_embedders(ws)] == ["adapted-2"]


# Replaces the file argv[1] with argv[3], sending itself signal argv[2] (KILL or STOP) when its own
# temp file is written and about to be renamed over the file.
REPLACER = """
import os, signal, sys
from pathlib import Path
from archivist import files

real = os.replace

def signal_then_rename(a, b, **kw):
    os.kill(os.getpid(), getattr(signal, "SIG" + sys.argv[2]))
    return real(a, b, **kw)

os.replace = signal_then_rename
files.replace(Path(sys.argv[1]), sys.argv[3])
"""


def test_temp_files_of_writers_killed_mid_replace_are_removed_by_the_next_replace(tmp_path):
    """A dataset's manifest replaced by three processes one after another: two killed with their
    temp file written (each holding the version it wrote: text an erase had removed, say), one
    paused at the same point. Before: each kill left its `.manifest.json.<pid>-<hex>.tmp` for good.
    Now the next replace of the file removes the dead ones and leaves the live writer's, which then
    finishes."""
    from archivist import files

    manifest = tmp_path / "manifest.json"
    manifest.write_text('{"v": 0}')
    for v in (1, 2):
        killed = subprocess.run([sys.executable, "-c", REPLACER, str(manifest), "KILL", f'{{"v": {v}}}'],
                                capture_output=True, text=True, timeout=60)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
    # the second writer removed the first one's temp file; its own is left
    dead = sorted(p.name for p in tmp_path.iterdir() if p.name != "manifest.json")
    assert len(dead) == 1 and dead[0].startswith(".manifest.json.") and dead[0].endswith(".tmp"), dead
    assert json.loads(manifest.read_text()) == {"v": 0}
    paused = subprocess.Popen([sys.executable, "-c", REPLACER, str(manifest), "STOP", '{"v": 3}'],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stopped(paused)
        [live] = [p.name for p in tmp_path.iterdir() if p.name not in dead and p.name != "manifest.json"]
        files.replace(manifest, '{"v": 4}')
        assert json.loads(manifest.read_text()) == {"v": 4}
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live, "manifest.json"])
    finally:
        paused.send_signal(signal.SIGCONT)
    _, err = paused.communicate(timeout=60)
    assert paused.returncode == 0, err
    assert json.loads(manifest.read_text()) == {"v": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_a_damaged_manifest_of_the_active_embedder_serves_the_base_and_names_the_file(ws, embedder, caplog):
    """The active adapted embedder's manifest damaged (a power cut before it was replaced whole, a
    hand edit). Before: every `POST /v1/embeddings` failed with a bare JSONDecodeError; now who may
    use the adapted weights cannot be told, so the base embedder is served and the file named."""
    import numpy as np

    from archivist.finetune import embedders
    from archivist.models import ACTIVE_EMBEDDER

    (ws.home / "embedders" / "e1").mkdir(parents=True)
    (ws.home / "embedders" / "e1" / "archivist.json").write_text('{"name": "e1", "generation": "e1-ab')
    (ws.home / ACTIVE_EMBEDDER).parent.mkdir(parents=True, exist_ok=True)
    (ws.home / ACTIVE_EMBEDDER).write_text(json.dumps({"generation": "e1-abc", "path": "embedders/e1",
                                                       "base": "all-minilm-l6-v2"}))
    served = embedders.served_embedder(ws)
    text = ["Espresso costs two euros."]
    assert np.allclose(served.embed(text), embedder.embed(text), atol=1e-5)
    assert f"{ws.home / 'embedders' / 'e1' / 'archivist.json'}: not a readable embedder manifest" in caplog.text
