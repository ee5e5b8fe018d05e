"""An admin upgrading a workspace (opsmend): what `archivist doctor` and `archivist ingest` tell her
about the upgrade ahead and the one done, and two races and gaps of moving and naming fine-tune runs."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import warnings
from dataclasses import asdict

import pytest

# An AsciiDoc man page's head (Debian's git-doc: every page), which made bs4 print its 12-line
# XMLParsedAsHTMLWarning: an XML declaration, then a root the parser does not take for <html>.
XHTML = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.1//EN"
    "http://www.w3.org/TR/xhtml11/DTD/xhtml11.dtd">
<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en">
<head>
<meta http-equiv="Content-Type" content="application/xhtml+xml; charset=UTF-8" />
<meta name="generator" content="AsciiDoc 10.2.0" />
<title>git-init(1)</title>
<style type="text/css">
/* Shared CSS for AsciiDoc xhtml11 and html5 backends */
body { font-family: Georgia,serif; }
</style>
</head>
<body>
<h1>git-init(1) Manual Page</h1>
<h2>NAME</h2>
<p>git-init - Create an empty Git repository named zorblax or reinitialize an existing one</p>
</body>
</html>
"""


def test_an_xhtml_page_is_read_without_the_parsers_warning(tmp_path):
    """`archivist ingest git-init.html --quiet` printed bs4's 12-line advice to parse the page as XML
    on stderr: noise the user cannot act on (the page is read well). The reader keeps it quiet."""
    from archivist.ingest.readers_html import read_html

    page = tmp_path / "git-init.html"
    page.write_text(XHTML)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        extracted = read_html(page)
    assert [type(w.message).__name__ for w in caught] == []
    assert extracted.title == "git-init(1)"
    texts = [b.text for b in extracted.blocks]
    assert "git-init - Create an empty Git repository named zorblax or reinitialize an existing one" in texts
    assert not any("font-family" in t for t in texts)


def _old_workspace(settings) -> dict[str, int]:
    """A workspace as an archivist one schema back left it (its last migration's tables not made yet)
    holding documents read by older readers; returns the reader versions of today."""
    from archivist.ingest.readers import reader_version
    from archivist.schema import MIGRATIONS
    from archivist.workspace import open_workspace

    now = {k: reader_version(k) for k in ("html", "pdf", "csv")}
    w = open_workspace(settings)
    cid = w.collection_id("git", create=True)
    rows = [("a.html", "html", now["html"] - 1), ("b.html", "html", now["html"] - 1), ("c.html", "html", now["html"]),
            ("d.pdf", "pdf", now["pdf"] - 1), ("e.csv", "csv", now["csv"])]
    w.db.executemany("INSERT INTO documents(collection_id, path, content_hash, kind, size, reader) VALUES (?,?,?,?,?,?)",
                     [(cid, name, name, kind, 1, reader) for name, kind, reader in rows])
    w.close()
    db = sqlite3.connect(settings.home / "archivist.db")
    db.executescript(f"DROP TABLE sign_in_failures; DROP TABLE setup_code; PRAGMA user_version = {len(MIGRATIONS) - 1};")
    db.close()
    return now


def test_doctor_tells_of_a_pending_migration_and_the_documents_a_newer_reader_reads_again(settings, cli):
    """`archivist doctor` on an old workspace said nothing of the upgrade ahead: the admin learnt of
    the migration and of every document read again only from the next ingest. Now it says both,
    in its text and --json, and opens the database read-only: it migrates nothing."""
    from archivist.schema import MIGRATIONS

    now = _old_workspace(settings)
    out = cli("doctor", "--json")
    report = json.loads(out.stdout)
    assert report["schema"] == {"version": len(MIGRATIONS) - 1, "current": len(MIGRATIONS), "pending": 1}
    assert report["reread"] == {"documents": 3, "by_kind": [
        {"kind": "html", "reader": now["html"] - 1, "now": now["html"], "documents": 2},
        {"kind": "pdf", "reader": now["pdf"] - 1, "now": now["pdf"], "documents": 1}]}
    text = cli("doctor").stdout
    assert f"schema:    {len(MIGRATIONS) - 1}, this archivist has {len(MIGRATIONS)}: 1 migration(s) applied on the next open" in text
    assert (f"re-read:   3 document(s) read by an older reader are read again when ingested again: "
            f"2 html (reader {now['html'] - 1} -> {now['html']}), 1 pdf (reader {now['pdf'] - 1} -> {now['pdf']})") in text
    db = sqlite3.connect(settings.home / "archivist.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) - 1  # not migrated
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 'setup_code'").fetchone() is None
    db.close()


def test_doctor_on_an_up_to_date_workspace_and_on_none(settings, ws, cli):
    from archivist.schema import MIGRATIONS

    report = json.loads(cli("doctor", "--json").stdout)
    assert report["schema"] == {"version": len(MIGRATIONS), "current": len(MIGRATIONS), "pending": 0}
    assert report["reread"] == {"documents": 0, "by_kind": []}
    fresh = json.loads(cli("doctor", "--json", env={"ARCHIVIST_HOME": str(settings.home.parent / "none")}).stdout)
    assert (fresh["schema"], fresh["reread"]) == (None, None)
    assert not (settings.home.parent / "none").exists()


def test_a_file_read_again_for_its_newer_reader_says_so(ws, embedder, tmp_path, capsys):
    """A file read again only because its reader is newer was reported as plain `updated`, like a
    changed file: after an upgrade the admin could not tell that nobody had changed her files. Its
    result now names the reader versions (`reread`, in --json too, beside the keys clients use), and
    the summary says "re-read by a newer reader"; a changed file stays plain `updated`."""
    from archivist.ingest.cli import print_summary
    from archivist.ingest.pipeline import ingest_paths
    from archivist.ingest.readers import reader_version

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "old.txt").write_text("The zorblax valve is checked every Tuesday by the night shift.")
    (folder / "edited.txt").write_text("Badges are renewed each March at the front desk.")
    ingest_paths(ws, [folder], collection="ops", embedder=embedder, progress=False)
    v = reader_version("text")
    ws.db.execute("UPDATE documents SET reader = ?", (v - 1,))  # as an older archivist read them
    (folder / "edited.txt").write_text("Badges are renewed each April at the front desk.")

    results = {r.name: r for r in ingest_paths(ws, [folder], collection="ops", embedder=embedder, progress=False)}
    assert (results["docs/old.txt"].status, results["docs/old.txt"].reread) == ("updated", f"text reader {v - 1} -> {v}")
    assert (results["docs/edited.txt"].status, results["docs/edited.txt"].reread) == ("updated", None)
    as_json = asdict(results["docs/old.txt"])
    assert {"name", "status", "chunks", "seconds", "reason", "document_id", "embedded"} <= set(as_json)
    assert as_json["reread"] == f"text reader {v - 1} -> {v}"

    capsys.readouterr()
    print_summary(list(results.values()))
    lines = capsys.readouterr().out.splitlines()
    assert [ln for ln in lines if "re-read" in ln and "old.txt" in ln][0].endswith(
        f"re-read by a newer reader (text reader {v - 1} -> {v}); the file did not change")
    assert not any("re-read" in ln for ln in lines if "edited.txt" in ln)
    assert "0 added, 2 updated (1 re-read by a newer reader), 0 unchanged, 0 failed" in lines[-1]
    assert ws.db.execute("SELECT COUNT(*) FROM documents WHERE reader = ?", (v,)).fetchone()[0] == 2


def _interrupted_run(ws, name: str) -> str:
    from archivist import jobs
    from archivist.finetune import runs
    from archivist.finetune.train import FinetuneConfig

    run_id = runs.create_run(ws, asdict(FinetuneConfig(data=["x.jsonl"], name=name)))
    jobs.start(ws, run_id)
    jobs.end(ws, run_id, "interrupted", error="killed")
    return run_id


def test_a_hand_given_name_an_interrupted_run_will_register_is_refused(ws):
    """A name given by hand was refused only while a queued or running run held it: a second run
    could take the name of an interrupted run, and when both finished one adapter replaced the
    other's name. Refused now, naming the run that resumes under it."""
    from archivist.finetune import runs
    from archivist.finetune.train import FinetuneConfig

    held = _interrupted_run(ws, "handbook-qa")
    with pytest.raises(ValueError, match=rf"'handbook-qa' is taken \(run {held} will register it once resumed; "
                                         r"it is interrupted\); choose another --name"):
        runs.create_run(ws, asdict(FinetuneConfig(data=["x.jsonl"], name="handbook-qa")))
    assert len(runs.list_runs(ws)) == 1
    other = runs.create_run(ws, asdict(FinetuneConfig(data=["x.jsonl"], name="handbook-qa-2")))
    assert runs.get_run(ws, other)["status"] == "queued"


def test_a_run_resumed_while_it_is_moved_is_not_moved(ws, settings):
    """move_run read the run's state and then changed its config in another step: a resume that
    another process started in between ran on the old device while the record said the new one.
    The check and the change are one transaction now: the move waits for the resume's, sees a
    queued run, and refuses it, leaving its config as it was."""
    from archivist import jobs
    from archivist.finetune import runs
    from archivist.finetune.train import FinetuneConfig  # noqa: F401  (imported before the race, not in it)
    from archivist.workspace import open_workspace

    run_id = _interrupted_run(ws, "moved")
    other = open_workspace(settings)  # the process that resumes it
    other.db.execute("BEGIN IMMEDIATE")
    outcome: list = []

    def move():
        try:
            runs.move_run(ws, run_id, "cpu")
            outcome.append("moved")
        except jobs.JobError as e:
            outcome.append(str(e))

    mover = threading.Thread(target=move)
    mover.start()
    time.sleep(1.0)  # the move has started and waits on the lock (before the fix: it had read "interrupted")
    jobs.requeue(other, run_id)
    other.db.execute("COMMIT")
    mover.join(90)
    other.close()
    assert outcome == [f"run {run_id} is queued; it goes on where it runs (cancel it first to move it)"]
    assert runs.get_run(ws, run_id)["config"]["device"] == "auto"
    assert json.loads((runs.run_dir(ws, run_id) / "config.json").read_text())["device"] == "auto"
