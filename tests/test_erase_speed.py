"""Erase and job lists in a workspace with many documents and many large ingest jobs.

An erase compared each of its document's sentences with every other document and every workspace
file, one search per sentence (a 5,000-line document against 500 others: 81 s on this box, 65 s of
it the leftover scan); every erase and `archivist jobs` parsed every ingest job's whole file list.
These tests hold the results to what the one-search-per-sentence definitions give, and the work
to one pass per document (the other documents are counted, not timed)."""

from __future__ import annotations

import json
import random
import unicodedata

import pytest

from archivist import jobs
from archivist.ingest import erase as erase_mod
from archivist.ingest.folders import FileResult, job_summary
from archivist.ingest.pipeline import INGEST_KINDS, create_job


def _words(rng: random.Random, n: int) -> list[str]:
    alphabet = "abcdefghijklmnopqrstuvwxyzéøß"
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(2, 8))) for _ in range(n)]


def test_needles_finds_exactly_what_one_search_per_needle_finds(monkeypatch):
    """Short and long needles, multi-byte text, needles sharing their key, at the data's ends and
    across the windows hashed at once (STEP made small so the data spans many)."""
    import archivist.needles as needles_mod
    from archivist.needles import Needles

    monkeypatch.setattr(needles_mod, "STEP", 64)
    rng = random.Random(3)
    vocab = _words(rng, 40)
    for trial in range(200):
        data = " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 300))).encode()
        picked = set()
        for _ in range(rng.randint(1, 40)):
            if data and rng.random() < 0.5:  # a piece of the data: found (unless it cuts a character)
                start = rng.randrange(len(data))
                picked.add(data[start:start + rng.randint(1, 70)])
            else:  # words of the vocabulary: found only by chance
                picked.add(" ".join(rng.choice(vocab) for _ in range(rng.randint(1, 8))).encode())
        # two needles with the same middle (their key), one of them in the data every other time
        alike = [b"A" * 10 + b"0123456789abcdef" + b"B" * 10, b"C" * 10 + b"0123456789abcdef" + b"D" * 10]
        assert len({(n[(len(n) - needles_mod.KEY) // 2:][:needles_mod.KEY]) for n in alike}) == 1
        picked |= set(alike)
        data += alike[trial % 2] if trial % 3 else b""
        assert Needles(picked).found(data) == {n for n in picked if n in data}, trial
    assert Needles([]).found(b"anything") == set()
    assert Needles([b"a" * 30]).found(b"") == set()


class _Counted(str):
    """A document's text that counts the searches made in it."""

    searches = 0

    def __contains__(self, item):
        type(self).searches += 1
        return super().__contains__(item)


def _reference(text: str, chunks: list[str], others: list[tuple[str, str]]):
    """`matcher` as it was, one search per sentence: what each answer must still be."""
    norm = erase_mod._norm
    whole = norm(text)
    parts = "\0".join(c for c in (norm(c) for c in chunks) if len(c) >= erase_mod.MIN_MATCH and c not in whole)
    needles = {n for n in (norm(p) for p in erase_mod._SENTENCE.split(text) + chunks) if len(n) >= erase_mod.MIN_MATCH}
    holders = {label: other for label, other in others if any(n in other for n in needles)}
    shared = {n for n in needles if any(n in o for o in holders.values())}
    own = needles - shared

    def erased(s: str) -> bool:
        s = norm(s)
        passage = len(s) >= erase_mod.MIN_MATCH and (s in whole or s in parts) and not any(s in h for h in holders.values())
        return any(n in s for n in own) or passage

    def is_shared(s: str) -> bool:
        t = norm(s)
        return (any(n in t for n in shared) or (len(t) >= erase_mod.MIN_MATCH and (t in whole or t in parts))) and not erased(s)

    return erased, is_shared, sorted(holders)


def test_erase_reads_each_other_document_once_and_decides_as_before():
    """400 sentences against 80 other documents, some holding a sentence whole, inside a longer
    line, after the end of a word, in decomposed Unicode or across a paragraph break: the same
    holders and the same answer for every stored string as one search per sentence gave, and the
    other documents are searched once each, not once per sentence (400 searches each before)."""
    rng = random.Random(11)
    vocab = _words(rng, 500)
    sentences = [" ".join(rng.choice(vocab) for _ in range(rng.randint(5, 12))).capitalize() + "." for _ in range(400)]
    text = "# Handbook\n\n" + "\n".join(" ".join(sentences[i:i + 4]) for i in range(0, 400, 4))
    chunks = [" ".join(sentences[i:i + 10]) for i in range(0, 400, 10)]
    filler = lambda: " ".join(" ".join(rng.choice(vocab) for _ in range(9)) + "." for _ in range(30))  # noqa: E731
    copies = {
        "whole.md": sentences[3],
        "inside.md": f"Note: {sentences[40]} And more after it.",
        "midword.md": "pre" + sentences[77],  # held: the text, whatever comes before it
        "decomposed.md": unicodedata.normalize("NFD", sentences[120]),
        "across.md": f"{sentences[200]}\n\n{sentences[201]}",
        "short.md": sentences[300][:12],  # under MIN_MATCH: not a copy
    }
    others = [(f"{name} (default)", erase_mod._norm(f"{filler()} {copy} {filler()}")) for name, copy in copies.items()]
    others += [(f"d{i:02}.md (default)", erase_mod._norm(filler())) for i in range(74)]

    _Counted.searches = 0
    erased = erase_mod.matcher(text, chunks, [(label, _Counted(other)) for label, other in others])
    assert _Counted.searches <= len(others), f"{_Counted.searches} searches in {len(others)} documents"

    ref_erased, ref_shared, ref_holders = _reference(text, chunks, others)
    assert erased.holders == ref_holders == sorted(f"{n} (default)" for n in copies if n != "short.md")
    probes = sentences + chunks + [o for _, o in others[:8]] + [
        f"The answer: {sentences[3]}", f"The answer: {sentences[5]}", sentences[200] + " " + sentences[201],
        unicodedata.normalize("NFD", sentences[9]), erase_mod._norm(text)[500:560], erase_mod._norm(text)[7:20],
        chunks[4][100:200], "[erased]", "", f"{sentences[40]} {sentences[41]}"]
    assert [erased(p) for p in probes] == [ref_erased(p) for p in probes]
    assert [erased.shared(p) for p in probes] == [ref_shared(p) for p in probes]
    # and the answers are the ones wanted: a copy another document holds is shared, not erased
    assert not erased(sentences[3]) and erased.shared(sentences[3]) and erased(sentences[5])
    assert erased(f"The answer: {sentences[5]}") and not erased(sentences[120]) and erased(sentences[300])


def test_the_leftover_scan_agrees_with_one_search_per_sentence(tmp_path, monkeypatch):
    """files_holding with a long document's sentences (thousands) over files bigger than a scan block:
    the same files and sentences as searching each sentence in each file."""
    import archivist.files as files_mod
    import archivist.needles as needles_mod
    from archivist.files import files_holding

    monkeypatch.setattr(files_mod, "SCAN_BLOCK", 4096)
    monkeypatch.setattr(needles_mod, "STEP", 1000)
    rng = random.Random(5)
    vocab = _words(rng, 300)
    sentences = sorted({(" ".join(rng.choice(vocab) for _ in range(rng.randint(5, 10))) + ".").encode() for _ in range(3000)})
    home = tmp_path / "home"
    (home / "index").mkdir(parents=True)
    kept = rng.sample(sentences, 40)
    blob = bytearray(rng.randbytes(50_000))
    for s in kept[:20]:  # binary around them, some across a block edge
        at = rng.randrange(len(blob))
        blob[at:at] = s
    (home / "index" / "c1.faiss").write_bytes(bytes(blob))
    (home / "notes.txt").write_bytes(b"\n".join(kept[20:]))
    (home / "empty.txt").write_bytes(b"")
    found = files_holding(home, sentences)
    want = {}
    for f in ("index/c1.faiss", "notes.txt"):
        data = (home / f).read_bytes()
        want[f] = {s for s in sentences if s in data}
    assert found == want and want["notes.txt"] >= set(kept[20:]) and want["index/c1.faiss"] >= set(kept[:20])


def _many_ingest_jobs(ws, n_jobs: int, n_files: int, name: str = "x.md", last: str = "done") -> list[str]:
    """`n_jobs` finished ingest jobs of `n_files` files each (as an ingest writes them); the first and
    the last also list `name`, and the last ends `last`. Returns their ids, oldest first."""
    ids = []
    for j in range(n_jobs):
        files = [(f"/srv/share/batch-{j}/reports/r{i:05}.md", f"reports/r{i:05}.md") for i in range(n_files)]
        if j in (0, n_jobs - 1):
            files.append((f"/srv/share/batch-{j}/{name}", name))
        job = create_job(ws, "ingest", None, "default", files)
        jobs.start(ws, job.id)
        jobs.end(ws, job.id, last if j == n_jobs - 1 else "done", message=f"{len(files)} files",
                 result=job_summary([FileResult(name=n, status="unchanged") for _, n in files]))
        ids.append(job.id)
    return ids


def test_jobs_listing_leaves_the_file_lists_out_unless_asked(ws, cli, monkeypatch):
    """`archivist jobs --json` printed every ingest job's whole file list (3,000 names a job, its
    per-file results too); now the jobs without them, and `--files` with them, whole."""
    ids = _many_ingest_jobs(ws, 6, 1500)
    monkeypatch.setenv("ARCHIVIST_HOME", str(ws.home))
    out = cli("jobs", "--json")
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    assert sorted(j["id"] for j in listed) == sorted(ids)
    assert "reports/r00007.md" not in out.stdout and len(out.stdout) < 20_000
    for j in listed:
        assert j["spec"] == {"collection": "default", "refused": []} and j["total"] in (1500, 1501)
        assert j["result"]["counts"] == {"unchanged": j["total"]} and "files" not in j["result"]
    whole = json.loads(cli("jobs", "--json", "--files").stdout)
    assert [j["spec"]["files"] for j in whole] == [jobs.get(ws, i).spec["files"] for i in reversed(ids)]
    table = cli("jobs")
    assert table.returncode == 0 and table.stdout.count("ingest ") == 6 and "1501 files" in table.stdout


def test_the_jobs_an_erase_looks_at_are_chosen_in_sql(ws):
    """every() with a collection and a name: exactly the jobs whose file list holds that name there,
    also for names JSON escapes, a name inside another, and a spec written by SQLite (migration 7)."""
    ids = _many_ingest_jobs(ws, 5, 300, name='we"ird\\café.md')
    other = create_job(ws, "upload", None, "other", [("/up/x", 'we"ird\\café.md')])
    inside = create_job(ws, "ingest", None, "default", [("/a/data.md", "data.md")])
    with ws.db:  # a job as migration 7 moved it from ingest_jobs: its JSON written by SQLite
        ws.db.execute("INSERT INTO jobs(id, kind, owner, state, spec) VALUES ('ingest-7', 'ingest', 'admin', 'done', "
                      "json_object('collection', 'default', 'files', json_array(json_array('/old/w', ?))))",
                      ('we"ird\\café.md',))
    found = [j.id for j in jobs.every(ws, INGEST_KINDS, "default", 'we"ird\\café.md')]
    assert found == [ids[0], ids[-1], "ingest-7"]
    assert [j.id for j in jobs.every(ws, INGEST_KINDS, "other", 'we"ird\\café.md')] == [other.id]
    assert [j.id for j in jobs.every(ws, INGEST_KINDS, "default", "a.md")] == []  # in "data.md", not a name
    assert [j.id for j in jobs.every(ws, INGEST_KINDS, "default", "data.md")] == [inside.id]
    assert [j.id for j in jobs.every(ws, INGEST_KINDS, "default", "data.md", states=jobs.LIVE)] == [inside.id]  # queued
    assert jobs.every(ws, INGEST_KINDS, "default", 'we"ird\\café.md', states=jobs.LIVE) == []  # done, and never started
    assert len(jobs.every(ws, INGEST_KINDS)) == 8  # unfiltered: every one, as before


@pytest.mark.parametrize("state", ["interrupted", "done"])
def test_erase_takes_its_document_out_of_a_cut_short_job_among_many(ws, embedder, tmp_path, state):
    """Among many large ingest jobs, erase still finds the one that lists its document: a cut-short
    one loses the file (resumed, it would ingest the erased text again), a finished one keeps its
    spec, and the jobs that never listed it are left as they were."""
    from conftest import ingest_texts

    ingest_texts(ws, embedder, tmp_path / "docs", {"default": {
        "salaries.md": "# Salaries\n\nThe 2026 salary bands for engineers start at 61,000 euros a year.\n",
        "canteen.md": "# Canteen\n\nThe canteen on the second floor serves lunch from noon until two.\n"}})
    ids = _many_ingest_jobs(ws, 4, 500, name="salaries.md", last=state)
    before = {j.id: j.spec for j in jobs.every(ws, INGEST_KINDS)}
    report = erase_mod.erase(ws, "salaries.md")
    assert report.leftovers == [] and report.held_elsewhere == []
    after = {j.id: j.spec for j in jobs.every(ws, INGEST_KINDS)}
    cut = after[ids[-1]]
    if state == "interrupted":
        assert [f for f in cut["files"] if f[1] == "salaries.md"] == [] and len(cut["files"]) == 500
        assert cut["refused"][-1][0] == "salaries.md"
    else:
        assert cut == before[ids[-1]]
    assert {i: s for i, s in after.items() if i != ids[-1]} == {i: s for i, s in before.items() if i != ids[-1]}


def test_the_documents_holding_found_sentences_are_read_once(ws, embedder, tmp_path, monkeypatch):
    """`_held_by_others` ran one search of every document and chunk per sentence the scan found in
    the database: a 5,000-line file with a copy in another collection (every sentence found) took
    82 s. The same answer as that search per sentence, in one statement per document at most."""
    from conftest import ingest_texts

    from archivist.ingest import readers

    monkeypatch.setattr(readers, "STREAM_ABOVE_MB", 0)  # the CSV is read as a stream: no text stored, only chunks
    rng = random.Random(8)
    vocab = _words(rng, 200)
    sentences = [" ".join(rng.choice(vocab) for _ in range(8)) + "." for _ in range(150)]
    text = "# Plan\n\n" + "\n".join(sentences) + "\n"
    rows = "id,item,owner\n" + "".join(f"{i},{' '.join(rng.choice(vocab) for _ in range(5))},team {i % 7}\n" for i in range(40))
    ingest_texts(ws, embedder, tmp_path / "a", {"default": {"plan.md": text, "stock.csv": rows}})
    ingest_texts(ws, embedder, tmp_path / "b", {"other": {"plan-copy.md": "# Copy\n\n" + "\n".join(sentences[:100]) + "\n"}})
    [(streamed,)] = ws.db.execute("SELECT text FROM documents WHERE path = 'stock.csv'").fetchall()
    assert streamed == ""
    chunk = ws.db.execute("SELECT c.text FROM chunks c JOIN documents d ON d.id = c.document_id "
                          "WHERE d.path = 'stock.csv' ORDER BY c.seq").fetchone()[0]
    needles = erase_mod.erased_sentences(text) + erase_mod.erased_sentences(chunk) + [b"no document holds this sentence at all."]

    statements = []
    ws.db.set_trace_callback(statements.append)
    try:
        got = erase_mod._held_by_others(ws, needles)
    finally:
        ws.db.set_trace_callback(None)
    assert len(statements) <= 1 + 1, statements  # the documents, and the chunks of the one without text
    want = {}
    for n in needles:  # what the search per sentence answered
        t = n.decode()
        found = ws.db.execute("SELECT d.path, c.name FROM documents d JOIN collections c ON c.id = d.collection_id "
                              "WHERE instr(d.text, ?) > 0 OR d.id IN (SELECT document_id FROM chunks WHERE instr(text, ?) > 0)",
                              (t, t)).fetchall()
        if found:
            want[n] = sorted(f"{name} ({coll})" for name, coll in found)
    assert {n: sorted(d) for n, d in got.items()} == want
    assert want[sentences[0].encode()] == ["plan-copy.md (other)", "plan.md (default)"]
    assert want[sentences[120].encode()] == ["plan.md (default)"]
    assert any(d == ["stock.csv (default)"] for d in want.values())


def test_an_erase_cut_short_long_ago_is_finished_behind_a_thousand_later_erases(ws, embedder, tmp_path):
    """erase looked for a cut-short job among the newest 1,000 erase jobs only: one killed after it
    deleted its document, with 1,000 erases since, left the document "no document" for good and
    its record, stale marks and compaction never done. It reads the cut-short erase jobs alone now."""
    from conftest import ingest_texts

    from archivist import audit
    from archivist.ingest.pipeline import remove_documents

    ingest_texts(ws, embedder, tmp_path / "docs", {"default": {
        "depot.md": "# Depot\n\nThe depot on Vintry Lane closes at six in winter and at eight in summer.\n"}})
    [(doc_id, sha)] = ws.db.execute("SELECT id, content_hash FROM documents").fetchall()
    cut = jobs.create(ws, "erase", None, spec={"document": "depot.md", "document_id": doc_id, "collection": "default",
                                               "sha256": sha, "keep_ratings": False})
    jobs.start(ws, cut.id)
    remove_documents(ws, [doc_id], None)  # the copies and the document gone, and then the kill
    jobs.end(ws, cut.id, "interrupted", error="killed")
    with ws.db:  # a thousand erases of other documents since, each done (written at once: the rows those leave)
        ws.db.executemany("INSERT INTO jobs(id, kind, owner, state, spec, result, created_at) "
                          "VALUES (?, 'erase', 'admin', 'done', ?, '{}', ?)",
                          [(f"erase-later-{i:04}", json.dumps({"document": f"n{i}.md", "document_id": 10_000 + i,
                                                               "collection": "default"}), 2e9 + i) for i in range(1001)])
    report = erase_mod.erase(ws, "depot.md")
    assert report.resumed and report.document == "depot.md"
    assert jobs.get(ws, cut.id).state == "done"
    [record] = audit.read(ws, action="document.erased")
    assert record["detail"]["job"] == cut.id


def test_a_queued_ingest_of_the_document_among_many_jobs_refuses_the_erase(ws, embedder, tmp_path):
    """A queued ingest that lists the document (in its collection) would store it again: erase
    refuses, naming the job, and erases nothing; queued jobs of another collection or other names
    do not. Once that job is cancelled the erase goes ahead and takes the file out of it."""
    from conftest import ingest_texts

    ingest_texts(ws, embedder, tmp_path / "docs", {"default": {
        "salaries.md": "# Salaries\n\nThe 2026 salary bands for engineers start at 61,000 euros a year.\n"}})
    _many_ingest_jobs(ws, 3, 200, name="salaries.md")
    create_job(ws, "ingest", None, "other", [("/elsewhere/salaries.md", "salaries.md")])  # queued, another collection
    create_job(ws, "ingest", None, "default", [("/elsewhere/memo.md", "memo.md")])  # queued, another name
    blocking = create_job(ws, "upload", None, "default", [("/up/a.md", "a.md"), ("/up/salaries.md", "salaries.md")])
    with pytest.raises(ValueError, match=f"job {blocking.id}"):
        erase_mod.erase(ws, "salaries.md")
    assert ws.db.execute("SELECT COUNT(*) FROM documents WHERE path = 'salaries.md'").fetchone()[0] == 1
    jobs.cancel(ws, blocking.id)
    assert erase_mod.erase(ws, "salaries.md").document == "salaries.md"
    assert jobs.get(ws, blocking.id).spec["files"] == [["/up/a.md", "a.md"]]
