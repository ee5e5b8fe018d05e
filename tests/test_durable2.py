"""Crash windows and concurrent writers of the files that hold saved datasets, adapted embedders'
manifests and the vector indexes' sidecars, and a file name's accent twin: real processes, killed
(SIGKILL) or paused (SIGSTOP) at the point that matters, against a real workspace."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from archivist.finetune import dataset_store
from archivist.finetune.dataset_store import DatasetError, Example
from conftest import stopped

# Saves a dataset of `rows` examples named argv[1] in $ARCHIVIST_HOME, sending itself signal argv[2]
# (KILL or STOP) when its files are written and about to be synced: where a save's crash window is.
SAVER = """
import os, signal, sys
from archivist import files
from archivist.finetune import dataset_store
from archivist.workspace import open_workspace

name, sig, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
real = files.sync_tree

def stop_then_sync(folder):
    if folder.name.startswith("."):  # the folder the dataset is built in, written whole by now
        os.kill(os.getpid(), getattr(signal, "SIG" + sig))
    return real(folder)

files.sync_tree = stop_then_sync
ws = open_workspace()
train = [dataset_store.Example(messages=[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"{name} {i}"}],
                               source="file", group=f"file:x:{i}", question=f"q{i}", answer=f"{name} {i}") for i in range(rows)]
try:
    dataset_store.save_dataset(ws, name, train, [], {"name": name, "owner": "admin", "collections": [], "counts": {"train": rows, "eval": 0}})
except dataset_store.DatasetError as e:
    print("DatasetError:", e)
    sys.exit(3)
"""


def _saver(name: str, sig: str, rows: int = 300) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SAVER, name, sig, str(rows)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _save(ws, name: str, answers: list[str]) -> None:
    train = [Example(messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": a}], source="file",
                     group=f"file:y:{i}", question="q", answer=a) for i, a in enumerate(answers)]
    dataset_store.save_dataset(ws, name, train, [], {"name": name, "owner": "admin", "collections": [],
                                                     "counts": {"train": len(train), "eval": 0}})


def _hidden(ws) -> list[str]:
    return sorted(p.name for p in (ws.home / "datasets").iterdir() if p.name.startswith("."))


def test_a_dataset_save_killed_mid_write_is_never_listed_and_the_next_save_removes_it(ws):
    """Before: the killed save's `.<name>.tmp` folder was listed as a dataset named <name> (its
    manifest was written), which `load_dataset` then said did not exist, and it stayed until a save
    of that same name."""
    proc = _saver("killed", "KILL")
    assert proc.wait(timeout=120) == -signal.SIGKILL
    assert len(_hidden(ws)) == 1  # the half-made folder is there, written whole but never renamed
    assert dataset_store.list_datasets(ws, None) == []
    with pytest.raises(LookupError):
        dataset_store.load_dataset(ws, "killed", None)
    _save(ws, "next", ["kept"])
    assert _hidden(ws) == []
    assert [d["name"] for d in dataset_store.list_datasets(ws, None)] == ["next"]


def test_a_save_holds_no_write_lock_while_it_syncs_and_its_folder_is_not_taken_from_it(ws):
    """Paused where it syncs its files, a save lets other writers commit (before: it held SQLite's
    write lock through every fsync of the dataset); another save meanwhile leaves its folder alone,
    and resumed it finishes whole."""
    proc = _saver("paused", "STOP")
    try:
        stopped(proc)
        other = sqlite3.connect(ws.home / "archivist.db", timeout=0.5)
        other.execute("BEGIN IMMEDIATE")  # raises "database is locked" while the paused save holds the lock
        other.execute("ROLLBACK")
        other.close()
        building = _hidden(ws)
        assert len(building) == 1
        _save(ws, "meanwhile", ["m"])
        assert _hidden(ws) == building  # a live saver's folder is not an abandoned one
    finally:
        proc.send_signal(signal.SIGCONT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert _hidden(ws) == []
    ds = dataset_store.load_dataset(ws, "paused", None)
    assert [e.answer for e in ds.train] == [f"paused {i}" for i in range(300)]
    assert sorted(d["name"] for d in dataset_store.list_datasets(ws, None)) == ["meanwhile", "paused"]


def test_two_saves_of_one_name_end_in_one_whole_dataset_and_a_clear_error(ws):
    """Before: the second save removed the first one's folder (one fixed temporary name), and the
    first then failed with a bare FileNotFoundError."""
    proc = _saver("same", "STOP")
    try:
        stopped(proc)
        _save(ws, "same", ["second"])
    finally:
        proc.send_signal(signal.SIGCONT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, out + err
    assert "dataset 'same' already exists" in out
    assert [e.answer for e in dataset_store.load_dataset(ws, "same", None).train] == ["second"]
    assert _hidden(ws) == []
    audit = ws.db.execute("SELECT COUNT(*) FROM audit WHERE action = 'dataset.built' AND target = 'same'").fetchone()[0]
    assert audit == 1  # the refused save recorded nothing


def test_a_dataset_built_from_a_document_erased_meanwhile_is_not_saved(ws):
    """An erase that finished while a dataset was built edited the datasets saved then; the new one
    would keep the erased document's text. (The erase's own record is how the save finds out.)"""
    from archivist import audit

    audit.record(ws, "document.erased", user="admin", target="secret.md", detail={"document_id": 7})
    ws.db.commit()
    train = [Example(messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": "s"}], source="docs:extractive",
                     group="doc:7", question="q", answer="s", document_id=7)]
    with pytest.raises(DatasetError, match="secret.md was erased while it was built"):
        dataset_store.save_dataset(ws, "late", train, [], {"name": "late", "owner": "admin", "collections": [],
                                                          "documents": [{"id": 7, "path": "secret.md"}]})
    assert not (ws.home / "datasets" / "late").exists() and _hidden(ws) == []


def test_a_dataset_save_on_a_full_disk_is_a_clear_error_and_leaves_nothing(ws):
    """datasets/ on a 1 MB tmpfs nearly full. Before: a bare OSError traceback, and the half-written
    folder stayed, holding the space, until a save of the same name."""
    from archivist.workspace import WorkspaceError

    disk = ws.home / "datasets"
    _mount_small_disk(disk, "1m")
    try:
        _save(ws, "before", ["kept"])
        filler = disk / "filler"
        filler.write_bytes(b"\0" * (os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize - 64 * 1024))
        with pytest.raises(WorkspaceError, match="cannot save dataset 'big' under .*: the disk is full; nothing of it was kept"):
            _save(ws, "big", ["x" * 1000] * 200)  # 200 KB of rows, 64 KB free
        assert _hidden(ws) == [] and not (disk / "big").exists()
        assert [e.answer for e in dataset_store.load_dataset(ws, "before", None).train] == ["kept"]
        filler.unlink()
        _save(ws, "big", ["x" * 1000] * 200)
        assert len(dataset_store.load_dataset(ws, "big", None).train) == 200
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


MARKER = """
import sys
from archivist.finetune import embedders
from archivist.workspace import open_workspace

ws = open_workspace()
for i in range(int(sys.argv[2])):
    embedders.mark_stale(ws, ["e1"], f"{sys.argv[1]} {i}")
"""


def test_two_processes_marking_one_embedder_stale_at_once_both_succeed(ws):
    """Two erases at once mark the same adapted embedder. Before: both wrote one fixed temporary file,
    and the one whose file the other had renamed away failed (FileNotFoundError)."""
    folder = ws.home / "embedders" / "e1"
    folder.mkdir(parents=True)
    (folder / "archivist.json").write_text(json.dumps({"name": "e1", "generation": "e1-abc", "documents": {"train": [1]}}))
    procs = [subprocess.Popen([sys.executable, "-c", MARKER, who, "400"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for who in ("a", "b")]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    manifest = json.loads((folder / "archivist.json").read_text())
    assert manifest["stale"] in ("a 399", "b 399") and manifest["generation"] == "e1-abc"
    assert sorted(p.name for p in folder.iterdir()) == ["archivist.json"]  # no temporary left


SAVE_EMBEDDER = """
import os, signal, sys
from sentence_transformers import SentenceTransformer
from archivist import files
from archivist.finetune import embedders
from archivist.workspace import open_workspace

real = files.publish

def publish_then_die(tmp, target, **kw):
    real(tmp, target, **kw)
    os.kill(os.getpid(), signal.SIGKILL)  # the folder exists under its name; nothing after it ran

files.publish = publish_then_die
embedders.save(open_workspace(), "adapted-1", SentenceTransformer(sys.argv[1], device="cpu"),
               {"base": "all-minilm-l6-v2", "collections": [], "documents": {"train": [7], "held_out": []}})
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A 2-layer, 64-dim sentence-transformers model (tests/make_tiny_models.py), as an adapted retriever."""
    from make_tiny_models import tiny_embedder

    out = tmp_path_factory.mktemp("tiny") / "tiny"
    tiny_embedder(out)
    return out


def _mount_small_disk(folder: Path, size: str) -> None:
    """A tmpfs of `size` at `folder` (skips the test where mounting is not permitted)."""
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root and the mount command")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")


def test_an_adapted_embedder_saved_on_a_full_disk_is_a_clear_error_and_leaves_nothing(ws, tiny):
    """embedders/ on a 2 MB tmpfs, too small for the weights. Before: the error came from the
    serializer as it was, and the half-written folder stayed, holding the space."""
    from sentence_transformers import SentenceTransformer

    from archivist.finetune import embedders
    from archivist.workspace import WorkspaceError

    disk = ws.home / embedders.FOLDER
    _mount_small_disk(disk, "2m")
    try:
        with pytest.raises(WorkspaceError, match="cannot save the adapted embedder 'adapted-1' under .*: the disk is full"):
            embedders.save(ws, "adapted-1", SentenceTransformer(str(tiny), device="cpu"),
                           {"base": "all-minilm-l6-v2", "collections": [], "documents": {"train": [], "held_out": []}})
        assert list(disk.iterdir()) == [] and embedders.list_embedders(ws) == []
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_an_embedder_trained_on_a_document_erased_meanwhile_is_stale_even_if_killed_once_saved(ws, tiny):
    """The erase ran while the embedder trained (its record is there before the save). Before: the
    stale mark was written after the folder's rename, so a kill right after it left an embedder that
    learned the erased text listed fresh, and `activate` would serve it."""
    from archivist import audit
    from archivist.finetune import embedders

    audit.record(ws, "document.erased", user="admin", target="secret.md", detail={"document_id": 7})
    ws.db.commit()
    proc = subprocess.run([sys.executable, "-c", SAVE_EMBEDDER, str(tiny)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    [listed] = embedders.list_embedders(ws)
    assert listed["name"] == "adapted-1" and listed["stale"] == "trained on a deleted document: secret.md"
    with pytest.raises(ValueError, match="is stale"):
        embedders.activate(ws, "adapted-1")


def test_a_damaged_embedder_manifest_is_named_and_hides_no_other_embedder(ws):
    """Before: one manifest that did not parse (a power cut mid-write, a hand edit) made every listing
    fail with a bare JSONDecodeError, and an erase's scan failed without naming the file."""
    from archivist.finetune import embedders

    for name, text in (("good-1", json.dumps({"name": "good-1", "collections": [], "documents": {"train": [3]}})),
                       ("bad-2", '{"name": "bad-2", "documents": {"tr')):
        (ws.home / "embedders" / name).mkdir(parents=True)
        (ws.home / "embedders" / name / "archivist.json").write_text(text)
    assert [e["name"] for e in embedders.list_embedders(ws)] == ["good-1"]
    bad = re.escape(str(ws.home / "embedders" / "bad-2" / "archivist.json"))
    with pytest.raises(ValueError, match=f"{bad}: not a readable embedder manifest"):
        embedders.learned_from(ws, 3)  # an erase must not pass over an embedder it cannot read
    with pytest.raises(ValueError, match=f"{bad}: not a readable embedder manifest"):
        embedders.load_manifest(ws, "bad-2")


SIDECAR_WRITER = """
import sys
from pathlib import Path
import faiss, numpy as np
from archivist.retrieval import vectors

path = Path(sys.argv[1])
index = faiss.IndexIDMap2(faiss.IndexFlatIP(8))
index.add_with_ids(np.ones((3, 8), np.float32), np.arange(3, dtype=np.int64))
for i in range(int(sys.argv[2])):
    vectors.save_with_sidecar(path, path.with_suffix(".faiss.tmp"), lambda tmp: faiss.write_index(index, str(tmp)),
                              {"ntotal": 3, "id_sum": 3, "kind": "flat", "dim": 8, "format": 2, "pad": "x" * 4000, "i": i},
                              "vector index")
"""


def test_a_vector_sidecar_is_never_read_half_written(tmp_path):
    """Another process checks a sidecar on open (`check_and_repair`) without the index's lock. Before:
    the sidecar was truncated and rewritten in place, so such a reader could find it empty or cut
    short, and take a sound index for a damaged one."""
    path = tmp_path / "c1.faiss"
    proc = subprocess.Popen([sys.executable, "-c", SIDECAR_WRITER, str(path), "1500"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    sidecar, reads, torn = path.with_suffix(".json"), 0, []
    while proc.poll() is None:
        try:
            text = sidecar.read_text()
        except FileNotFoundError:
            continue
        reads += 1
        try:
            json.loads(text)
        except ValueError:
            torn.append(len(text))
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert reads > 100 and torn == []
    assert json.loads(sidecar.read_text())["i"] == 1499
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c1.faiss", "c1.json"]


def test_an_accent_twin_added_beside_a_stored_file_does_not_replace_it(tmp_path, ws, embedder):
    """`café.md` stored; a different `café.md` written decomposed (NFD) is added to the folder. Both
    are stored under one name, and the twin sorts first. Before: the twin replaced the stored
    document's text; now the stored document is kept and the twin refused, named. Once the original
    file is gone, the other one is its new version."""
    from archivist.ingest.pipeline import ingest_paths

    folder = tmp_path / "menu"
    folder.mkdir()
    original = folder / unicodedata.normalize("NFC", "café.md")
    original.write_text("# Menu\n\nEspresso costs two euros and a croissant one euro fifty.\n")
    [added] = ingest_paths(ws, [folder], embedder=embedder)
    assert added.status == "added"
    twin = folder / unicodedata.normalize("NFD", "café.md")
    twin.write_text("# Draft\n\nA scratch draft saved with a decomposed accent in its name.\n")
    results = ingest_paths(ws, [folder], embedder=embedder)
    rows = ws.db.execute("SELECT id, path, text, source FROM documents").fetchall()
    assert [(r["id"], r["source"]) for r in rows] == [(added.document_id, str(original))]
    assert "Espresso costs two euros" in rows[0]["text"]
    assert sorted(r.status for r in results) == ["failed", "unchanged"]  # tests/test_durable3.py: the twin alone refused
    refused = [r for r in results if (r.reason or "").startswith(str(twin))]
    assert len(refused) == 1 and refused[0].status == "failed"
    original.unlink()  # renamed to its decomposed form, say: then it is the document's new version
    [updated] = [r for r in ingest_paths(ws, [folder], embedder=embedder) if r.status != "missing"]
    assert (updated.status, updated.document_id) == ("updated", added.document_id)
    assert "scratch draft" in ws.db.execute("SELECT text FROM documents").fetchone()[0]


# Gives a converted model folder the catalog's prompt format for gemma3-270m, killed (SIGKILL) halfway
# through writing any of the folder's own files in place, as a kill or power cut lands mid-write.
PROMPT_WRITER = """
import builtins, os, signal, sys
from pathlib import Path
from archivist import catalog

folder = Path(sys.argv[1])
real_open = builtins.open

class DiesHalfway:
    def __init__(self, f):
        self.f = f
    def write(self, text):
        self.f.write(text[: len(text) // 2])
        self.f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.f.close()
    def __getattr__(self, name):
        return getattr(self.f, name)

def open_(file, mode="r", *args, **kwargs):
    f = real_open(file, mode, *args, **kwargs)
    if not isinstance(file, int) and Path(file).parent == folder and Path(file).name in catalog_files and "w" in mode:
        return DiesHalfway(f)
    return f

catalog_files = {"generation_config.json", "archivist-source.json", "chat_template.jinja"}
builtins.open = open_
catalog._write_prompt_format(folder, catalog.LLM_CATALOG["gemma3-270m"])
"""


def test_a_kill_while_the_prompt_format_is_written_never_tears_the_converted_model(tmp_path):
    """A converted model's folder (in the model cache every workspace shares) given the catalog's
    chat template and stop tokens in place. Before: a kill halfway through writing
    generation_config.json left it torn, and neither loading the model nor writing the format again
    could read it (the cache folder had to be deleted by hand)."""
    from transformers import GenerationConfig

    from archivist import catalog
    from archivist.settings import Settings

    source = Path(catalog.resolve_llm("smollm2-135m", Settings.from_env().cache))
    folder = tmp_path / "models" / "converted"
    folder.mkdir(parents=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json", "archivist-source.json"):
        if (source / name).exists():
            shutil.copy(source / name, folder / name)
    before = (folder / "generation_config.json").read_text()
    proc = subprocess.run([sys.executable, "-c", PROMPT_WRITER, str(folder)], capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr
    after = (folder / "generation_config.json").read_text()
    assert after == before or proc.returncode == 0  # the old file whole, or the new one
    GenerationConfig.from_pretrained(str(folder))  # loads
    src = catalog.LLM_CATALOG["gemma3-270m"]
    catalog._write_prompt_format(folder, src)  # and the format is written again, whole
    assert catalog._prompt_format_is(folder, src)
    assert (folder / "chat_template.jinja").read_text() == src.chat_template
    assert sorted(p.name for p in folder.parent.iterdir()) == ["converted"]  # nothing staged is left
