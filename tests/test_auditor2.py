"""A compliance officer's second pass over the trail, on this morning's new features: what
`archivist erase` records when it reaches a document's earlier versions and the adapters that
learned it, and what `archivist backup` records when its copy is cut short. Each is done as an
operator would (the CLI, a real workspace) and read back through the log itself."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from archivist import adapters, audit, feedback

V1 = "# Plan\n\nThe first draft says the vault combination is 31-41-59 and nobody else knows.\n"
V2 = "# Plan\n\nThe second draft removes the combination entirely from this plan for good.\n"


def test_the_erase_record_counts_every_copy_it_removed_from_an_adapters_metrics(ws, embedder, tmp_path, monkeypatch, capsys):
    """`document.erased` is governance's answer to "where did this document end up": the printed
    report said how many evaluation examples were dropped from adapters' metrics.json, the record
    did not (`adapter_examples` was left out of its detail), so the log under-counted what erase
    removed. Here one example quotes the current version and one the earlier version, whose text
    erase finds through the feedback that cited it."""
    from archivist.cli import main
    from archivist.ingest.pipeline import ingest_paths

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "plan.md").write_text(V1)
    [first] = ingest_paths(ws, [folder], embedder=embedder, progress=False)
    old = ws.db.execute("SELECT id, text FROM chunks WHERE document_id = ?", (first.document_id,)).fetchone()
    feedback.record_feedback(ws, None, "What is the vault combination?", "31-41-59 [1]", rating=1, collection="default",
                             citations=[{"n": 1, "chunk_id": old["id"], "document": first.name, "collection": "default",
                                         "text": old["text"]}])
    (folder / "plan.md").write_text(V2)
    [second] = ingest_paths(ws, [folder], embedder=embedder, progress=False)
    assert (second.status, second.document_id) == ("updated", first.document_id)
    saved = tmp_path / "adapter"
    saved.mkdir()
    (saved / "adapter_config.json").write_text("{}")
    examples = [{"question": "combination?", "gold": "The first draft says the vault combination is 31-41-59"},
                {"question": "second?", "gold": "The second draft removes the combination entirely from this plan"},
                {"question": "unrelated?", "gold": "the canteen opens at noon"}]
    adapters.register(ws, "plan-v1", saved, ws.settings.llm, {"better": False, "reason": "t", "examples": examples},
                      {"dataset": {"name": "d"}, "documents": [{"id": first.document_id, "collection": "default",
                                                                "name": first.name}], "collections": ["default"]})
    monkeypatch.setenv("ARCHIVIST_HOME", str(ws.home))
    capsys.readouterr()
    assert main(["erase", first.name, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["adapter_examples"] == 2 and printed["feedback_deleted"] == 1
    [rec] = audit.read(ws, by="admin", action="document.erased")
    d = rec["detail"]
    assert (d["adapter_examples"], d["feedback_deleted"], d["stale_adapters"]) == (2, 1, ["plan-v1"])
    left = json.loads((ws.home / "adapters" / "plan-v1" / "metrics.json").read_text())["examples"]
    assert [e["question"] for e in left] == ["unrelated?"]
    assert audit.verify(ws).ok


def test_a_backup_cut_short_by_an_interrupt_is_recorded_as_failed(ws, embedder, tmp_path, monkeypatch):
    """`workspace.backup` is written before the copy; a copy that fails adds
    `workspace.backup.failed`, so the log never tells of a copy not taken. Only a WorkspaceError
    was caught: an operator's Ctrl-C (or any other exception) mid-copy left nothing at DEST and
    only the `workspace.backup` record, which says a backup exists."""
    from archivist import backup
    from archivist.cli import main
    from archivist.ingest.pipeline import ingest_paths

    (tmp_path / "a.txt").write_text("Penguins live in large colonies on the Antarctic ice shelf.\n")
    ingest_paths(ws, [tmp_path / "a.txt"], embedder=embedder, progress=False)
    real = shutil.copy2

    def interrupted(src, dst, **kw):  # the operator presses Ctrl-C while uploads/ is copied
        if Path(src).relative_to(ws.home).parts[0] in ("uploads", "index"):
            raise KeyboardInterrupt
        return real(src, dst, **kw)

    monkeypatch.setattr(backup.shutil, "copy2", interrupted)
    monkeypatch.setenv("ARCHIVIST_HOME", str(ws.home))
    dest = tmp_path / "bk"
    assert main(["backup", str(dest)]) == 130  # "interrupted"
    assert not dest.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".bk.part")]
    got = [(r["action"], r["target"], r["detail"].get("reason")) for r in audit.read(ws, by="admin", action="workspace.")]
    assert got == [("workspace.backup", str(dest), None),
                   ("workspace.backup.failed", str(dest), "interrupted (KeyboardInterrupt): nothing was left there, "
                                                           "and the workspace is untouched")]
    assert audit.verify(ws).ok
    # the next backup, not interrupted, is recorded alone and its copy verifies
    monkeypatch.setattr(backup.shutil, "copy2", real)
    dest2 = tmp_path / "bk2"
    assert main(["backup", str(dest2)]) == 0
    assert [r["action"] for r in audit.read(ws, by="admin", action="workspace.")][2:] == ["workspace.backup"]
    from archivist.settings import Settings
    from archivist.workspace import open_workspace

    copy = open_workspace(Settings.from_env(home=dest2))
    try:
        assert audit.verify(copy).ok
        assert [r["target"] for r in audit.read(copy, by="admin", action="workspace.backup")][-1] == str(dest2)
    finally:
        copy.close()


def test_a_backup_holds_the_adapted_embedders_and_rerankers_its_log_names(ws, tmp_path, monkeypatch):
    """A restored backup's log says which adapted embedder and reranker were registered (and the
    embedder active: the index's vectors are its), but the copy left out embedders/ and rerankers/,
    so the restored workspace held records of models it did not have and vectors it could not
    search with."""
    from archivist.cli import main
    from archivist.finetune import embedders
    from archivist.retrieval import rerank
    from archivist.settings import Settings
    from archivist.workspace import open_workspace

    for folder, name in ((embedders.FOLDER, "retriever-1"), (rerank.FOLDER, "reranker-1")):
        (ws.home / folder / name).mkdir(parents=True)
        (ws.home / folder / name / "archivist.json").write_text(json.dumps({"name": name}))
        (ws.home / folder / name / "model.safetensors").write_bytes(b"\x00weights" * 100)
    monkeypatch.setenv("ARCHIVIST_HOME", str(ws.home))
    dest = tmp_path / "bk"
    assert main(["backup", str(dest)]) == 0
    got = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file() and p.parts[-3] in ("embedders", "rerankers"))
    assert got == ["embedders/retriever-1/archivist.json", "embedders/retriever-1/model.safetensors",
                   "rerankers/reranker-1/archivist.json", "rerankers/reranker-1/model.safetensors"]
    assert (dest / "embedders" / "retriever-1" / "model.safetensors").read_bytes() == b"\x00weights" * 100
    copy = open_workspace(Settings.from_env(home=dest))
    try:
        assert audit.verify(copy).ok
    finally:
        copy.close()


def test_every_record_kind_is_in_the_governance_table_with_the_modules_that_write_it():
    """A guard (it passes on the code as it was): each kind in audit.KINDS is a row of
    docs/governance.md's table and each row's kinds are in KINDS; each `audit.record(ws, "KIND"` in
    the source is written by a module that the kind's row names, so the table says who writes it."""
    import re

    root = Path(__file__).resolve().parent.parent
    rows = {}  # kind -> the modules its row names
    for line in (root / "docs" / "governance.md").read_text().splitlines():
        if line.startswith("| `"):
            cells = line.split("|")
            for kind in re.findall(r"`([a-z_.]+)`", cells[1]):
                rows[kind] = set(re.findall(r"[a-z_]+/[a-z_/]+\.py", cells[2]))
    assert set(rows) == set(audit.KINDS)
    writers = {}
    for folder in ("archivist", "ingest", "retrieval", "finetune", "api", "ui"):
        for f in (root / folder).rglob("*.py"):
            for kind in re.findall(r"""audit\.record\(ws, "([a-z_.]+)\"""", f.read_text()):
                writers.setdefault(kind, set()).add(str(f.relative_to(root)))
    assert writers, "no audit.record call found"
    for kind, files in writers.items():
        assert files <= rows[kind], (kind, files - rows[kind])
