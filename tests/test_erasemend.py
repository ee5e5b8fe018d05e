"""Erase, exactly: a person's log records and no one else's (the log keeps names, not people), and
a document's words gone from the term table without rebuilding it from every chunk."""

from __future__ import annotations

import pytest

from archivist import access, audit, user_erase


def _mara(ws, query: str, delete: bool = True) -> str | None:
    """One person named mara: added, searching `query`, deleted (unless not `delete`); returns the
    name `users delete` left for her (None while she is a current user)."""
    access.add_user(ws, "mara", by="admin")
    audit.record(ws, "search", user="mara", detail={"query": query})
    if not delete:
        return None
    access.delete_user(ws, "mara", by="admin")
    rid = ws.db.execute("SELECT MAX(id) FROM audit WHERE action = 'user.delete' AND target = 'mara'").fetchone()[0]
    return access.former_owner("mara", rid)


def _searches(ws) -> dict[str, str | None]:
    """{query: who the record still names} for every search record (a redacted one has no query)."""
    out, redacted = {}, 0
    for r in audit.read(ws, by="admin", action="search"):
        if "query" in r["detail"]:
            out[r["detail"]["query"]] = r["user"]
        else:
            redacted += 1
    return {**out, "[redacted]": redacted}


FIRST = "first mara searches her medical leave dates"
SECOND = "second mara searches her visa renewal papers"


def test_erasing_the_later_of_two_deleted_maras_leaves_the_earlier_one_s_records(ws):
    """Before: erasing the later former mara redacted every record made as "mara" before her
    `user.delete`, the earlier mara's search among them."""
    _mara(ws, FIRST)
    second = _mara(ws, SECOND)
    report = user_erase.erase_user(ws, second, by="admin")
    assert report.audit_redacted == 1 and report.untold == {}
    assert _searches(ws) == {FIRST: "mara", "[redacted]": 1}
    assert audit.verify(ws).ok


def test_erasing_a_current_user_leaves_an_earlier_holder_s_records(ws):
    """Before: an earlier mara who left no rows (only her log records) was not noticed, and erasing
    the current mara redacted the earlier one's search too."""
    _mara(ws, FIRST)
    _mara(ws, SECOND, delete=False)
    report = user_erase.erase_user(ws, "mara", by="admin")
    assert report.account and report.audit_redacted == 1
    assert _searches(ws) == {FIRST: "mara", "[redacted]": 1}
    assert user_erase.deleted_accounts(ws, by="admin") == [
        access.former_owner("mara", ws.db.execute("SELECT id FROM audit WHERE action = 'user.delete'").fetchone()[0])]


def test_a_name_two_deleted_accounts_had_only_in_the_log_is_refused(ws):
    """Before: with no current user of the name and nothing but log records left of two former
    maras, `users erase mara` redacted both people's records. Now it names both, and each label
    redacts its own."""
    first, second = _mara(ws, FIRST), _mara(ws, SECOND)
    with pytest.raises(ValueError, match=rf"2 deleted accounts had that name \({first}, {second}\)"):
        user_erase.erase_user(ws, "mara", by="admin")
    assert _searches(ws) == {FIRST: "mara", SECOND: "mara", "[redacted]": 0}
    assert user_erase.erase_user(ws, first, by="admin").audit_redacted == 1
    assert _searches(ws) == {SECOND: "mara", "[redacted]": 1}
    assert user_erase.deleted_accounts(ws, by="admin") == [second]
    assert audit.verify(ws).ok


def test_a_label_the_log_has_no_end_for_redacts_nothing_and_says_whose_records_might_be_theirs(ws):
    """`mara#deleted` (what migration 13 left on rows of accounts deleted before it) names no
    `user.delete` record, so the log cannot say which mara's records are hers. Before: all of
    them were redacted, silently. Now none are, and the report names the accounts to look at."""
    from archivist import feedback

    first = _mara(ws, FIRST)
    access.add_user(ws, "mara", by="admin")
    fid = feedback.record_feedback(ws, "mara", "Where does the second mara renew her visa papers?", "At the office.",
                                   rating=1)
    audit.record(ws, "search", user="mara", detail={"query": SECOND})
    access.delete_user(ws, "mara", by="admin")
    second = ws.db.execute("SELECT former_owner FROM feedback WHERE id = ?", (fid,)).fetchone()[0]
    ws.db.execute("UPDATE feedback SET former_owner = 'mara#deleted' WHERE id = ?", (fid,))  # as migration 13 named it
    ws.db.commit()
    report = user_erase.erase_user(ws, "mara#deleted", by="admin")
    assert report.feedback == 1 and report.audit_redacted == 0
    assert report.untold == {first: 1, second: 2}  # her search and rating are among the second's; the first searched
    assert _searches(ws) == {FIRST: "mara", SECOND: "mara", "[redacted]": 0}
    said = "\n".join(user_erase.as_lines(report))
    assert f"1 records of {first}, 2 records of {second} may be theirs" in said, said
    assert audit.verify(ws).ok


RARE = "Quorvandel"  # a word only the erased document has
DOCS = {"hr": {
    "merger.md": f"# Merger\n\nThe {RARE} merger closes in March.\n\nThe canteen opens at eight in the morning.\n",
    "canteen.md": "# Canteen\n\nThe canteen opens at eight in the morning and closes at three.\n",
    "leave.md": "# Leave\n\nEvery employee receives twenty-eight days of paid leave per year.\n"}}


def _erase_counting_reads(ws, monkeypatch, name: str) -> list[int]:
    """Erase document `name`; returns the chunk ids the lexical index read back from SQLite to
    tokenize meanwhile (`lexicon_store._rows`, counted and passed on)."""
    from archivist.ingest import erase
    from archivist.retrieval import lexicon_store

    read, rows = [], lexicon_store._rows
    monkeypatch.setattr(lexicon_store, "_rows", lambda w, ids: read.extend(ids.tolist()) or rows(w, ids))
    erase.erase(ws, name)
    return read


def _lexical_bytes(ws) -> bytes:
    """Every file of the lexical index (its npz, uncompressed, and any pending segment), read whole."""
    return b"".join(f.read_bytes() for f in ws.index_dir.rglob("*")
                    if f.is_file() and "lexical" in str(f.relative_to(ws.index_dir)))


def _on_disk(ws):
    from archivist.retrieval import lexicon_store

    return lexicon_store._read(lexicon_store._path(ws))


@pytest.mark.parametrize("pending", [False, True], ids=["held", "pending-segments"])
def test_an_erase_drops_the_document_s_terms_without_reading_every_chunk_again(ws, embedder, tmp_path, monkeypatch,
                                                                               pending):
    """Before: every erase rebuilt the term table from every chunk SQLite holds (a workspace of a
    million chunks tokenized again to drop one document). Now the document's chunks and the terms
    only it had leave the index as a rebuild would leave it, and no other chunk is read again; with
    pending segments (an ingest into a big workspace), none is left holding its words either."""
    from conftest import ingest_texts

    from archivist.ingest import pipeline
    from archivist.retrieval import lexicon, lexicon_store

    if pending:  # as past HOLD_INDEXES_UP_TO chunks: the ingest writes its chunks as pending segments
        monkeypatch.setattr(pipeline, "HOLD_INDEXES_UP_TO", 0)
    ingest_texts(ws, embedder, tmp_path / "docs", DOCS)
    stem = lexicon.tokens(RARE)[0].encode()
    assert stem in _lexical_bytes(ws)  # in the index file, or in a pending segment
    assert bool(lexicon_store._segments(ws)) == pending
    assert _erase_counting_reads(ws, monkeypatch, "merger.md") == []
    assert lexicon_store._segments(ws) == []
    kept = _on_disk(ws)
    assert not set(lexicon.tokens(RARE)) & set(kept.terms)
    assert len(kept.ids) == kept.n_live == ws.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]  # no dead position
    assert stem not in _lexical_bytes(ws)
    rebuilt = lexicon.Index.empty(kept.fields).with_chunks(lexicon_store._rows(ws, lexicon_store._sqlite_ids(ws)))
    assert set(kept.terms) == set(rebuilt.terms)  # "canteen", which merger.md shares, is kept; nothing else of it
    for word in ("canteen", "morning", "leave"):  # the same postings: a search ranks as on a rebuilt index
        t, r = kept.terms[lexicon.tokens(word)[0]], rebuilt.terms[lexicon.tokens(word)[0]]
        got = sorted(zip(kept.ids[kept.post_pos[kept.indptr[t]:kept.indptr[t + 1]]].tolist(),
                         kept.post_f[kept.indptr[t]:kept.indptr[t + 1]].tolist()))
        want = sorted(zip(rebuilt.ids[rebuilt.post_pos[rebuilt.indptr[r]:rebuilt.indptr[r + 1]]].tolist(),
                          rebuilt.post_f[rebuilt.indptr[r]:rebuilt.indptr[r + 1]].tolist()))
        assert got == want and got, word


def test_an_erase_searches_the_jobs_for_its_document_once(ws, embedder):
    """Before: erase's search for the uploads of earlier versions ran two searches of every ingest
    job's file list (`jobs.every` for the cut-short ones, `job_files.naming` for the paths), besides
    the check for a live ingest. Now `naming` alone finds them, and only the cut-short job is read
    whole, by its id; the earlier upload still goes and the cut-short job still loses the file."""
    from archivist import jobs
    from archivist.ingest.erase import erase
    from archivist.ingest.pipeline import create_job, run_job
    from archivist.ingest.uploads import save_upload

    p1, _ = save_upload(ws, "salaries.md", b"# Salaries\n\nThe chief financial officer earns 412,000 euros a year.\n")
    cut = create_job(ws, "upload", None, "default", [(p1, "salaries.md")])
    jobs.start(ws, cut.id)
    jobs.end(ws, cut.id, "cancelled")
    p2, _ = save_upload(ws, "salaries.md", b"# Salaries\n\nSalaries are confidential; ask HR for your own band.\n")
    run_job(ws, create_job(ws, "upload", None, "default", [(p2, "salaries.md")]).id, embedder=embedder)
    searches = []
    ws.db.set_trace_callback(lambda sql: searches.append(sql) if "json_each(jobs.spec" in sql else None)
    try:
        report = erase(ws, "salaries.md")
    finally:
        ws.db.set_trace_callback(None)
    assert report.earlier_uploads == 1 and not p1.exists() and not p2.exists()
    job = jobs.get(ws, cut.id)
    assert job.spec["files"] == [] and job.spec["refused"][0][0] == "salaries.md"
    assert len(searches) == 2, searches  # the live-ingest check at the start, and `naming`
