"""An admin upgrading a workspace of the last release (schema 14) to this one: what `archivist doctor`
says before the first open, and what an ingest says of a file its current reader refuses while an
older reader's version of it is stored."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

from archivist.ingest.readers import READER_VERSIONS
from archivist.schema import MIGRATIONS

BINARY = bytes(range(1, 8)) * 400  # control bytes without a NUL: the text reader now refuses them


def _schema14(ws) -> None:
    """Downgrade a fresh workspace to schema 14 by its user_version alone, as tests do (migrations 15
    and 16 are written to run again), and close it."""
    ws.db.executescript("DROP TRIGGER IF EXISTS adapters_ad; DROP TABLE IF EXISTS deleted_adapters; PRAGMA user_version = 14;")
    ws.db.commit()
    ws.close()


def test_doctor_before_migrating_says_to_back_up_first_and_the_older_release_then_refuses(ws, cli):
    # Before: "schema: 14, this archivist has 16: 2 migration(s) applied on the next open", and the
    # admin who then ran `archivist backup` (this release) to keep a way back got a copy at schema 16,
    # which the release that wrote the workspace refuses: no copy it could open was left.
    home = ws.settings.home
    _schema14(ws)
    r = cli("doctor", "--home", home)
    line = next(x for x in r.stdout.splitlines() if x.startswith("schema:"))
    assert line.startswith(f"schema:    14, this archivist has {len(MIGRATIONS)}: {len(MIGRATIONS) - 14} migration(s) "
                           "applied on the next open by any command but `archivist backup`,")
    assert "the older release refuses the workspace" in line and "run `archivist backup DEST` first" in line
    db = sqlite3.connect(home / "archivist.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == 14  # doctor itself migrated nothing
    db.close()
    assert cli("documents", "--home", home).returncode == 0  # the first other command migrates it
    assert f"schema:    {len(MIGRATIONS)}, up to date" in cli("doctor", "--home", home).stdout


def test_a_file_its_reader_now_refuses_says_its_stored_version_is_kept(ws, embedder, tmp_path, cli):
    # Before: "failed  notes/deploy.txt  0 chunks  binary file (...), not text" alone, after an upgrade
    # too, though the version stored before stays searchable: it read as if the document were gone.
    from archivist.ingest.pipeline import ingest_paths
    from archivist.retrieval.search import search

    folder = tmp_path / "notes"
    folder.mkdir()
    f = folder / "deploy.txt"
    f.write_text("Deploy notes\n\nThe deploy window is Tuesday 14:00 UTC. Rollbacks need two approvals.\n")
    assert [r.status for r in ingest_paths(ws, [folder], embedder=embedder, progress=False)] == ["added"]
    f.write_bytes(BINARY)  # changed into bytes its reader refuses
    [r] = ingest_paths(ws, [folder], embedder=embedder, progress=False)
    assert (r.name, r.status, r.chunks) == ("notes/deploy.txt", "failed", 0)
    assert r.reason.startswith("binary file (")
    assert r.reason.endswith(f"; the version stored before (1 chunks, read by the text reader {READER_VERSIONS['text']}) "
                             "is kept and still searchable")
    hits = search(ws, "When is the deploy window?", k=1, embedder=embedder)
    assert [h.document for h in hits] == ["notes/deploy.txt"] and "Tuesday 14:00" in hits[0].text

    # the same bytes stored by an older text reader (release 6bbd6d0 read them as text, reader 5): the
    # ingest after the upgrade re-reads them, the newer reader refuses them, and the job says the same
    ws.db.execute("UPDATE documents SET reader = 5, content_hash = ? WHERE path = 'notes/deploy.txt'",
                  (hashlib.sha256(BINARY).hexdigest(),))
    ws.db.commit()
    r = cli("ingest", folder, "--home", ws.settings.home)
    assert r.returncode == 1
    assert ("failed    notes/deploy.txt" in r.stdout and "; the version stored before (1 chunks, read by the text "
            "reader 5) is kept and still searchable" in r.stdout)
    job = cli("jobs", "show", "--files", "--home", ws.settings.home,
              ws.db.execute("SELECT id FROM jobs ORDER BY created_at DESC LIMIT 1").fetchone()[0]).stdout
    assert "read by the text reader 5) is kept and still searchable" in job


def test_doctor_counts_the_pages_a_reread_ocrs_again(ws, embedder, tmp_path, cli):
    # Before: "1 image (reader 3 -> 4)" alone; re-reading it OCRs it again, the slow part of an upgrade's
    # first ingest (here 2 scans took 11.5 s of the 20 s that re-read 31 files), which an admin plans for.
    from archivist.ingest.pipeline import ingest_paths

    scan = Path(__file__).resolve().parent.parent / "samples" / "visitor-badge-notice.png"
    shutil.copy(scan, tmp_path / scan.name)
    (tmp_path / "plain.md").write_text("# Plain\n\nNothing here is OCRed.\n")
    ingest_paths(ws, [tmp_path / scan.name, tmp_path / "plain.md"], embedder=embedder, progress=False)
    ws.db.execute("UPDATE documents SET reader = reader - 1")  # as the release before read them
    ws.db.commit()
    r = cli("doctor", "--home", ws.settings.home)
    line = next(x for x in r.stdout.splitlines() if x.startswith("re-read:"))
    image, markdown = READER_VERSIONS["image"], READER_VERSIONS["markdown"]
    assert line.endswith(f"2 document(s) read by an older reader are read again when ingested again: 1 image (reader {image - 1} "
                         f"-> {image}), 1 markdown (reader {markdown - 1} -> {markdown}); 1 of their pages are OCRed again "
                         "(about 2.5 s a page on an idle 2-core CPU)")
    reread = json.loads(cli("doctor", "--json", "--home", ws.settings.home).stdout)["reread"]
    assert (reread["ocr_pages"], [k.get("ocr_pages") for k in reread["by_kind"]]) == (1, [1, None])  # only where there are some
