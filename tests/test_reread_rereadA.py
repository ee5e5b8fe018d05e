"""Re-read of today's erase change: a deleted account named as `users delete` left it
(`NAME#deleted-ID`, ID its `user.delete` record) made its log records before that record."""

from __future__ import annotations

from test_erase_race import _formers, _two_former_maras

from archivist import audit


def test_erasing_the_first_former_mara_leaves_the_second_mara_s_log_records(ws):
    """Before: with no current user of the name, erasing mara#deleted-ID redacted every record made
    as "mara", the second (not erased) mara's questions and ratings too."""
    from archivist import user_erase

    first, second = _two_former_maras(ws)
    one = _formers(ws, first)
    seconds = [r[0] for r in ws.db.execute(
        "SELECT id FROM audit WHERE user = 'mara' AND action = 'feedback.given' AND target = ?", (str(second),))]
    assert seconds  # the second mara's rating is in the log
    report = user_erase.erase_user(ws, one, by="admin")
    assert report.feedback == 1
    left = ws.db.execute(f"SELECT user, redacted_by FROM audit WHERE id IN ({','.join('?' * len(seconds))})",
                         seconds).fetchall()
    assert [tuple(r) for r in left] == [("mara", None)] * len(seconds)
    assert audit.verify(ws).ok


def test_a_cut_short_job_an_erase_took_a_file_from_counts_each_file_once(ws, tmp_path):
    """An erase takes its document's file out of a cut-short ingest job (into its refused files):
    the job's counts, read from its row, counted that file twice (waiting and failed)."""
    from archivist import job_files, jobs
    from archivist.ingest.erase import _drop_from_job
    from archivist.ingest.pipeline import create_job

    paths = []
    for name in ("a.txt", "b.txt", "c.txt"):
        (tmp_path / name).write_text(f"{name} text")
        paths.append((tmp_path / name, name))
    job = create_job(ws, "ingest", "admin", "default", paths)
    jobs.start(ws, job.id)
    jobs.end(ws, job.id, "cancelled", result={"counts": {"added": 1}, "files": [
        {"name": "a.txt", "status": "added", "chunks": 1, "seconds": 0.1}]})
    assert _drop_from_job(ws, jobs.get(ws, job.id, "admin"), "b.txt")
    job = jobs.get(ws, job.id, "admin")
    statuses = job_files.statuses(job)
    assert sorted((f["name"], f["status"]) for f in statuses) == [("a.txt", "added"), ("b.txt", "failed"),
                                                                  ("c.txt", "cancelled")]
    assert job_files.counts(job) == {"added": 1, "cancelled": 1, "failed": 1}
