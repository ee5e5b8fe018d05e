"""Ingestion: chunking invariants, incremental re-ingest, delete everywhere, dedup, bad input, FAISS repair."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from archivist.ingest import chunking
from archivist.ingest.pipeline import delete_document, ingest_paths, list_documents, reindex
from archivist.ingest.readers import read
from archivist.records import Block
from archivist.retrieval import index_kinds, vectors
from archivist.retrieval.repair import open_checked
from archivist.settings import Settings
from archivist.workspace import MIGRATIONS

from conftest import SAMPLES


def faiss_ids(ws, collection="default") -> set[int]:
    import faiss

    index = faiss.read_index(str(ws.index_dir / f"c{ws.collection_id(collection)}.faiss"))
    return set(index_kinds.index_ids(index).tolist())


def fts_ids(ws, word: str) -> set[int]:
    return {r[0] for r in ws.db.execute("SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ?", (f'"{word}"',))}


def chunk_ids(ws) -> set[int]:
    return {r[0] for r in ws.db.execute("SELECT id FROM chunks")}


# -- chunking -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["employee-handbook.pdf", "travel-expense-policy.docx", "it-security-policy.html",
                                  "oncall-runbook.md", "price-list-2025.csv"])
def test_chunk_spans_map_back_and_cover_the_text(name, embedder):
    extracted = read(SAMPLES / name)
    spans = chunking.hf_token_spans(embedder.tokenizer)
    text, chunks = chunking.chunk_blocks(extracted.blocks, spans, size=64, overlap=8)
    assert text == "\n\n".join(b.text for b in extracted.blocks)
    covered = np.zeros(len(text), dtype=bool)
    for c in chunks:
        assert c.text == text[c.start:c.end]
        assert c.n_tokens <= 64
        assert c.start == 0 or not text[c.start - 1].isalnum() or not text[c.start].isalnum(), "cut inside a word"
        assert c.end == len(text) or not (text[c.end - 1].isalnum() and text[c.end].isalnum()), "cut inside a word"
        covered[c.start:c.end] = True
    uncovered = {text[i] for i in np.flatnonzero(~covered)}
    assert uncovered <= set(" \n\t"), f"text not in any chunk: {uncovered}"
    assert [c.seq for c in chunks] == list(range(len(chunks)))


def test_chunking_beside_embedding_keeps_every_token(embedder):
    """Ingestion chunks the next file while it embeds the last, with the embedder's tokenizer; the
    embedder turns its truncation to 256 tokens on every encode. Valgrind's manual lost most of a
    NEWS page that way (six chunks for 83,000 characters, one of them 32 KB counted as 250 tokens)."""
    spans = chunking.hf_token_spans(embedder.tokenizer)
    block = " ".join(f"Release {n} fixed bug {n * 7}." for n in range(400))
    before = spans(block)
    embedder.embed(["An unrelated batch that the embedder truncates. " * 60])
    assert spans(block) == before and len(before) > 1500
    text, chunks = chunking.chunk_blocks([Block(block)], chunking.hf_token_spans(embedder.tokenizer), size=256, overlap=32)
    assert chunks[-1].end == len(text) and max(c.end - c.start for c in chunks) < 2000


def test_chunks_follow_pages_and_headings(embedder):
    spans = chunking.hf_token_spans(embedder.tokenizer)
    blocks = [Block("Intro words here.", page=1, heading=("A",)), Block("More intro.", page=1, heading=("A",)),
              Block("Second page text.", page=2, heading=("A",)), Block("Other section.", page=2, heading=("A", "B"))]
    _, chunks = chunking.chunk_blocks(blocks, spans, size=256, overlap=32)
    assert [(c.text, c.page, c.heading) for c in chunks] == [
        ("Intro words here.\n\nMore intro.", 1, ("A",)),
        ("Second page text.", 2, ("A",)),
        ("Other section.", 2, ("A", "B")),
    ]


def test_long_section_overlaps_and_respects_size(embedder):
    spans = chunking.hf_token_spans(embedder.tokenizer)
    sentence = "The quarterly robot maintenance report lists seven overdue inspections. "
    blocks = [Block((sentence * 40).strip())]
    text, chunks = chunking.chunk_blocks(blocks, spans, size=50, overlap=10)
    assert len(chunks) > 5
    for a, b in zip(chunks, chunks[1:]):
        assert b.start < a.end, "consecutive chunks of one section overlap"
        assert a.end - b.start < len(a.text) // 2
        assert text[a.end - 1] == ".", "prefers to end at a sentence"


# -- incremental ingestion ---------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_reingest_skips_unchanged_replaces_changed_and_delete_removes_everywhere(ws, tmp_path, embedder):
    a = write(tmp_path / "docs" / "alpha.md", "# Alpha\n\nThe zebrafish tank holds 40 litres.\n")
    b = write(tmp_path / "docs" / "beta.txt", "The quokka enclosure opens at nine.\n")
    first = ingest_paths(ws, [tmp_path / "docs"], embedder=embedder, progress=False)
    assert [(r.name, r.status) for r in first] == [("docs/alpha.md", "added"), ("docs/beta.txt", "added")]
    before = chunk_ids(ws)
    assert faiss_ids(ws) == before and len(before) == 2

    again = ingest_paths(ws, [tmp_path / "docs"], embedder=embedder, progress=False)
    assert [r.status for r in again] == ["unchanged", "unchanged"]
    assert chunk_ids(ws) == before

    write(a, "# Alpha\n\nThe zebrafish tank now holds 55 litres of water.\n")
    changed = ingest_paths(ws, [tmp_path / "docs"], embedder=embedder, progress=False)
    assert [r.status for r in changed] == ["updated", "unchanged"]
    after = chunk_ids(ws)
    old_alpha = before - after
    assert len(old_alpha) == 1 and not (old_alpha & faiss_ids(ws)) and not (old_alpha & fts_ids(ws, "zebrafish"))
    assert faiss_ids(ws) == after
    assert "55 litres" in ws.db.execute("SELECT text FROM chunks WHERE id IN (SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH 'zebrafish')").fetchone()[0]

    doc = delete_document(ws, "docs/beta.txt")
    assert doc["name"] == "docs/beta.txt"
    assert not fts_ids(ws, "quokka")
    assert faiss_ids(ws) == chunk_ids(ws) and len(chunk_ids(ws)) == 1
    assert [d["name"] for d in list_documents(ws)] == ["docs/alpha.md"]


def test_a_file_read_by_an_older_reader_is_read_again(ws, tmp_path, embedder, monkeypatch):
    """A reader that improves (READER_VERSIONS) reaches files already stored: ingesting them again
    reads them again instead of calling them unchanged; chunks whose text is the same keep their
    vectors, and files of other kinds are left alone."""
    from archivist.ingest import readers
    from archivist.workspace import open_workspace

    write(tmp_path / "docs" / "box.html", "<h2>Listen Directive</h2><table><tr><th>Syntax:</th>"
                                                  "<td>Listen [IP-address:]portnumber</td></tr></table>")
    write(tmp_path / "docs" / "notes.md", "# Notes\n\nThe proxy listens on port 8080.\n")
    assert [r.status for r in ingest_paths(ws, [tmp_path / "docs"], embedder=embedder, progress=False)] == ["added", "added"]
    assert ws.db.execute("SELECT reader FROM documents WHERE path = 'docs/box.html'").fetchone()[0] == readers.reader_version("html")
    texts = sorted(r[0] for r in ws.db.execute("SELECT text FROM chunks"))

    monkeypatch.setitem(readers.READER_VERSIONS, "html", readers.reader_version("html") + 1)  # the next release's reader
    again = ingest_paths(ws, [tmp_path / "docs"], embedder=embedder, progress=False)
    assert [(r.name, r.status, r.embedded) for r in again] == [("docs/box.html", "updated", 0), ("docs/notes.md", "unchanged", 0)]
    assert ws.db.execute("SELECT reader FROM documents WHERE path = 'docs/box.html'").fetchone()[0] == readers.reader_version("html")
    assert [r.status for r in ingest_paths(ws, [tmp_path / "docs"], embedder=embedder, progress=False)] == ["unchanged"] * 2
    assert faiss_ids(ws) == chunk_ids(ws) and sorted(r[0] for r in ws.db.execute("SELECT text FROM chunks")) == texts

    # A workspace from before reader versions: its documents count as read by version 1.
    from archivist import workspace

    home = tmp_path / "old"
    monkeypatch.setattr(workspace, "MIGRATIONS", MIGRATIONS[:-1])
    with open_workspace(Settings.from_env(home=home)) as old:
        old.db.execute("INSERT INTO collections(name) VALUES ('default')")
        old.db.execute("INSERT INTO documents(collection_id, path, source, content_hash, kind, size, status) "
                       "VALUES (1, 'a.html', '/a.html', 'x', 'html', 1, 'ready')")
    monkeypatch.setattr(workspace, "MIGRATIONS", MIGRATIONS)
    with open_workspace(Settings.from_env(home=home)) as old:
        assert old.db.execute("SELECT reader FROM documents").fetchone()[0] == 1


def test_each_files_seconds_are_its_own_not_its_batchs(ws, tmp_path, embedder):
    # Files embedded in one batch all reported the batch's time: a one-line note "took" as long as a
    # 60-chunk manual beside it (ingest --json, the app's job table).
    words = " ".join(f"word{i}" for i in range(120))
    write(tmp_path / "docs" / "big.md", "\n\n".join(f"# Part {i}\n\n{words} part {i}." for i in range(60)))
    write(tmp_path / "docs" / "tiny.md", "One line.\n")
    big, tiny = ingest_paths(ws, [tmp_path / "docs"], embedder=embedder, progress=False)
    assert (big.name, tiny.name) == ("docs/big.md", "docs/tiny.md") and big.chunks >= 60 and tiny.chunks == 1
    assert 0 < tiny.seconds < big.seconds / 5, (tiny.seconds, big.seconds)


def test_same_content_under_two_names_is_embedded_once(ws, tmp_path, embedder):
    text = "Robots recharge at dock seven between shifts.\n\nThe dock uses 48 volt chargers.\n"
    one = ingest_paths(ws, [write(tmp_path / "one.txt", text)], embedder=embedder, progress=False)
    two = ingest_paths(ws, [write(tmp_path / "two.txt", text)], embedder=embedder, progress=False)
    assert one[0].embedded == one[0].chunks >= 1
    assert two[0].status == "added" and two[0].embedded == 0
    assert sorted(d["name"] for d in list_documents(ws)) == ["one.txt", "two.txt"]


def test_a_bad_file_never_stops_the_batch_and_is_named(ws, tmp_path, embedder):
    good = write(tmp_path / "good.md", "The server room is on floor three.\n")
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    corrupt = tmp_path / "broken.docx"
    corrupt.write_bytes(b"PK\x03\x04garbage")
    image = tmp_path / "photo.txt"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    results = {r.name: r for r in ingest_paths(ws, [empty, corrupt, good, image], embedder=embedder, progress=False)}
    assert results["good.md"].status == "added"
    for name in ("empty.pdf", "broken.docx", "photo.txt"):
        assert results[name].status == "failed" and results[name].reason, name
    assert "empty" in results["empty.pdf"].reason
    assert [d["name"] for d in list_documents(ws)] == ["good.md"]


def test_failed_update_keeps_the_stored_version(ws, tmp_path, embedder):
    path = write(tmp_path / "notes.md", "The badge office closes at 17:00.\n")
    ingest_paths(ws, [path], embedder=embedder, progress=False)
    path.write_bytes(b"")  # now broken
    result = ingest_paths(ws, [path], embedder=embedder, progress=False)[0]
    assert result.status == "failed"
    assert ws.db.execute("SELECT text FROM chunks").fetchone()[0] == "The badge office closes at 17:00."


def test_cli_ingest_exit_status_and_json(tmp_path, cli):
    write(tmp_path / "ok.md", "Lunch is served from 12:00 in the atrium.\n")
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.4 truncated")
    out = cli("ingest", tmp_path / "ok.md", tmp_path / "bad.pdf", "--json")
    assert out.returncode == 1, out.stderr
    files = {f["name"]: f for f in json.loads(out.stdout)["files"]}
    assert files["ok.md"]["status"] == "added"
    assert files["bad.pdf"]["status"] == "failed" and "PDF" in files["bad.pdf"]["reason"]
    listed = cli("documents", "--json")
    assert [d["name"] for d in json.loads(listed.stdout)] == ["ok.md"]


# -- FAISS against SQLite -----------------------------------------------------------------------


def test_faiss_out_of_step_is_repaired_on_open(settings, tmp_path, embedder):
    with open_checked(settings) as ws:
        ingest_paths(ws, [write(tmp_path / "a.md", "# A\n\nOne fact about turbines.\n\n# B\n\nAnother about gearboxes.\n")],
                     embedder=embedder, progress=False)
        want = chunk_ids(ws)
        index_file = ws.index_dir / f"c{ws.collection_id('default')}.faiss"
    index_file.unlink()  # lost index
    with open_checked(settings) as ws:
        assert faiss_ids(ws) == want
    # an index holding a stale extra vector and missing one
    import faiss

    index = faiss.read_index(str(index_file))
    index.remove_ids(np.array([min(want)], dtype=np.int64))
    index.add_with_ids(np.ones((1, index.d), dtype=np.float32), np.array([999999], dtype=np.int64))
    faiss.write_index(index, str(index_file))
    with open_checked(settings) as ws:
        assert faiss_ids(ws) == want
        assert reindex(ws, progress=False) == {"default": len(want)}


# -- settings and workspace --------------------------------------------------------------------


def test_settings_from_env_and_overrides(tmp_path):
    s = Settings.from_env({"ARCHIVIST_HOME": str(tmp_path), "ARCHIVIST_CHUNK_TOKENS": "128", "ARCHIVIST_TOP_K": "3"}, top_k=7)
    assert (s.home, s.chunk_tokens, s.top_k) == (tmp_path, 128, 7)
    with pytest.raises(ValueError, match="ARCHIVIST_CHUNK_TOKENS"):
        Settings.from_env({"ARCHIVIST_CHUNK_TOKENS": "many"})
    with pytest.raises(ValueError, match="chunk_overlap"):
        Settings(chunk_tokens=64, chunk_overlap=40)
    # a switch: "0" is off (a plain str("0") would be truthy)
    assert Settings.from_env({"ARCHIVIST_READ_QUOTES": "0"}).read_quotes is False
    assert Settings.from_env({"ARCHIVIST_READ_QUOTES": "yes"}).read_quotes is True
    with pytest.raises(ValueError, match="ARCHIVIST_READ_QUOTES='maybe'"):
        Settings.from_env({"ARCHIVIST_READ_QUOTES": "maybe"})


def test_workspace_schema_is_migrated_once_and_wal(settings):
    with open_checked(settings) as ws:
        assert ws.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert ws.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with open_checked(settings) as ws:  # reopening applies nothing twice
        assert ws.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert [tuple(r) for r in ws.db.execute("SELECT name, role FROM users")] == [("admin", "admin")]


def test_doctor_json_reports_models_and_memory(cli):
    out = cli("doctor", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["device"] in ("cpu", "cuda")
    assert report["models"]["smollm2-135m"]["installed"] and report["models"]["all-minilm-l6-v2"]["installed"]
    assert 0 < report["memory_free_gb"] <= report["memory_total_gb"]


@pytest.mark.long
def test_two_processes_convert_the_default_model_once(tmp_path):
    code = "import sys; from pathlib import Path; from archivist.catalog import resolve_llm; print(resolve_llm('smollm2-135m', Path(sys.argv[1])))"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sum("converting" in err for _, err in outs) == 1
    assert (tmp_path / "models" / "smollm2-135m" / "model.safetensors").exists()


@pytest.mark.slow
def test_an_ivf_collection_finds_the_right_chunks_after_deletions(tmp_path, embedder):
    """Past ann_threshold a collection's index is IVF. Deleting documents must not shift the ids its
    searches return (they did while IVF sat inside IndexIDMap2), and a file in that old form is
    rebuilt when the workspace opens."""
    import faiss

    from conftest import SAMPLE_DOCS

    settings = Settings.from_env(home=tmp_path / "ws", ann_threshold=60, chunk_tokens=64, chunk_overlap=8)

    def each_chunk_finds_itself(ws) -> list[int]:
        cid = ws.collection_id("default")
        rows = ws.db.execute("SELECT id, embedding FROM chunks WHERE hash IN "
                             "(SELECT hash FROM chunks GROUP BY hash HAVING COUNT(*) = 1)").fetchall()
        assert len(rows) > 40
        wrong = [r["id"] for r in rows if vectors.search(ws, cid, np.frombuffer(r["embedding"], np.float32), 1)[0][0] != r["id"]]
        allowed = np.array([r["id"] for r in rows[::3]], np.int64)  # a filter goes into FAISS as an id selector
        for r in rows[:20]:
            found = [i for i, _ in vectors.search(ws, cid, np.frombuffer(r["embedding"], np.float32), 5, allowed)]
            assert found and set(found) <= set(allowed.tolist()) and (r["id"] in found) == (r["id"] in allowed)
        return wrong

    # the samples read as text (116 chunks of 64 tokens): the scan and the image add one chunk each
    # and an OCR run each (about 30 s of this test on a loaded 2-core machine)
    docs = [p for p in SAMPLE_DOCS if p.name not in ("visitor-badge-notice.png", "warehouse-safety-memo-scan.pdf")]
    assert len(docs) == len(SAMPLE_DOCS) - 2
    with open_checked(settings) as ws:
        ingest_paths(ws, docs, embedder=embedder, progress=False)
        cid = ws.collection_id("default")
        assert vectors._load(ws, cid).kind == "ivf" and isinstance(vectors._load(ws, cid).index, faiss.IndexIVF)
        for doc in list_documents(ws)[-2:]:  # the first ingested: the lowest chunk ids, so every later one would shift
            delete_document(ws, doc["id"])
        assert each_chunk_finds_itself(ws) == []
        # the old form: the same vectors in an IVF inside IndexIDMap2, with a sidecar that matches SQLite
        ids = np.array([r[0] for r in ws.db.execute("SELECT id FROM chunks ORDER BY id")], np.int64)
        vecs = np.stack([np.frombuffer(r[0], np.float32) for r in ws.db.execute("SELECT embedding FROM chunks ORDER BY id")])
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(vecs.shape[1]), vecs.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
        ivf.train(vecs)
        old = faiss.IndexIDMap2(ivf)
        old.add_with_ids(vecs, ids)
        path = ws.index_dir / f"c{cid}.faiss"
        vectors.save_with_sidecar(path, path.with_suffix(".faiss.tmp"), lambda tmp: faiss.write_index(old, str(tmp)),
                                  {"ntotal": len(ids), "id_sum": int(ids.sum()), "kind": "ivf", "dim": vecs.shape[1]}, "test index")
    with open_checked(settings) as ws:  # the open sees the old form and rebuilds it
        loaded = vectors._load(ws, ws.collection_id("default"))
        assert isinstance(loaded.index, faiss.IndexIVF) and sorted(index_kinds.index_ids(loaded.index)) == ids.tolist()
        assert each_chunk_finds_itself(ws) == []


# -- symlinks in folders (issue 17, leak 5) ------------------------------------------------------


def _folder_with_links(tmp_path: Path) -> Path:
    """docs/ with a real file, a link to a file outside (a stand-in for /etc/passwd), a link to a
    folder outside, a link to a file inside, and a link to a folder inside."""
    secret = write(tmp_path / "outside" / "secret.txt", "The vault combination is 4711-KESTREL.\n")
    docs = tmp_path / "docs"
    write(docs / "guide.md", "Visitors sign in at the front desk.\n")
    write(docs / "sub" / "faq.md", "Parking is free on weekends.\n")
    (docs / "passwd").symlink_to(Path("/etc/passwd"))
    (docs / "stolen.txt").symlink_to(secret)
    (docs / "elsewhere").symlink_to(secret.parent, target_is_directory=True)
    (docs / "alias.md").symlink_to(docs / "guide.md")
    (docs / "subalias").symlink_to(docs / "sub", target_is_directory=True)
    return docs


def test_folder_symlinks_leaving_the_folder_are_refused_and_named(ws, tmp_path, embedder):
    docs = _folder_with_links(tmp_path)
    results = {r.name: r for r in ingest_paths(ws, [docs], embedder=embedder, progress=False)}
    assert sorted(d["name"] for d in list_documents(ws)) == ["docs/alias.md", "docs/guide.md", "docs/sub/faq.md"]
    for name in ("docs/passwd", "docs/stolen.txt", "docs/elsewhere"):
        assert results[name].status == "failed", name
        assert "symlink" in results[name].reason and "outside the folder" in results[name].reason
        assert "--follow-symlinks" in results[name].reason
    texts = " ".join(r[0] for r in ws.db.execute("SELECT text FROM chunks"))
    assert "root:" not in texts and "KESTREL" not in texts


def test_follow_symlinks_ingests_them_and_the_cli_refuses_by_default(tmp_path, cli):
    docs = _folder_with_links(tmp_path)
    (docs / "passwd").unlink()  # keep the system file out of the followed run
    cmd = ["ingest", docs, "--json"]
    out = cli(*cmd)
    assert out.returncode == 1, out.stderr
    files = {f["name"]: f for f in json.loads(out.stdout)["files"]}
    assert files["docs/stolen.txt"]["status"] == "failed" and "symlink" in files["docs/stolen.txt"]["reason"]
    out = cli(*cmd, "--follow-symlinks")
    assert out.returncode == 0, out.stderr
    files = {f["name"]: f["status"] for f in json.loads(out.stdout)["files"]}
    assert files["docs/stolen.txt"] == "added" and files["docs/elsewhere/secret.txt"] == "added"
    assert files["docs/sub/faq.md"] == "unchanged" and "docs/subalias/faq.md" not in files  # walked once


def test_a_folder_s_web_assets_are_left_out_but_a_file_named_is_read(ws, tmp_path, embedder):
    """An exported manual's folder holds stylesheets, scripts, fonts and icons beside its pages; none is
    a document (Sphinx's searchindex.js would fill the index with its word lists, and an arrow icon
    would fail OCR and the ingest's exit status with it). A larger image is still read."""
    site = tmp_path / "site"
    write(site / "index.html", "<html><body><h1>Backups</h1><p>Backups run nightly at two.</p></body></html>")
    write(site / "_static" / "basic.css", "body { font-family: sans-serif; margin: 0 }\n")
    write(site / "searchindex.js", 'Search.setIndex({"docnames": ["index"], "terms": {"backup": 0}})\n')
    write(site / "app.MJS", "export const nightly = 2;\n")
    write(site / "notes.txt", "Restores are tested every quarter.\n")
    write(site / "_static" / "logo.svg", '<svg xmlns="http://www.w3.org/2000/svg"><text>Backups</text></svg>\n')
    from PIL import Image

    (site / "images").mkdir()
    Image.new("RGB", (24, 20), "white").save(site / "images" / "next.png")  # a navigation arrow's size
    Image.new("L", (400, 120), 255).save(site / "images" / "diagram.png")  # blank, but large enough to be read
    results = {r.name: r for r in ingest_paths(ws, [site], embedder=embedder, progress=False)}
    assert sorted(d["name"] for d in list_documents(ws)) == ["site/index.html", "site/notes.txt"]
    assert sorted(results) == ["site/images/diagram.png", "site/index.html", "site/notes.txt"]
    assert results["site/images/diagram.png"].status == "failed" and "no text" in results["site/images/diagram.png"].reason
    ingest_paths(ws, [site / "searchindex.js"], embedder=embedder, progress=False)  # named: the user's choice
    assert "searchindex.js" in [d["name"] for d in list_documents(ws)]


def test_a_folder_s_archivistignore_leaves_out_what_it_names(tmp_path):
    """A folder's .archivistignore (gitignore-like) leaves files and folders out of a folder
    ingest, in it and below it; a file named on the command line is still read."""
    from archivist.ingest.folders import expand

    docs = tmp_path / "docs"
    write(docs / ".archivistignore", "# notes for the team\n*.jsonl\ndrafts/\n/README.md\nold/2019-*\n")
    for name in ("README.md", "guide.md", "q.jsonl", "drafts/plan.md", "sub/README.md", "sub/q.jsonl",
                 "old/2019-report.md", "old/2020-report.md", "sub/old/2019-x.md"):
        write(docs / name, "Visitors sign in at the front desk.\n")
    write(docs / "sub" / ".archivistignore", "*.md\n")
    files, refused = expand([docs])
    # sub/README.md: the root's /README.md is anchored to the root, but sub's own file takes *.md
    assert [name for _, name in files] == ["docs/guide.md", "docs/old/2020-report.md"]
    assert not refused
    assert [name for _, name in expand([docs / "q.jsonl"])[0]] == ["q.jsonl"]
    # the bundled samples folder: its README and question file are not documents
    names = sorted(name for _, name in expand([SAMPLES])[0])
    assert "samples/README.md" not in names and "samples/QUESTIONS.jsonl" not in names
    assert "samples/employee-handbook.pdf" in names and "samples/oncall-runbook.md" in names


# -- the embedder identity: model + backend + weights (issue 17) ---------------------------------


def test_a_chunk_s_vector_does_not_depend_on_the_chunks_embedded_beside_it(embedder, tmp_path):
    """The default onnx-int8 backend quantizes activations with one scale per run: embedded in a
    batch, a text got another vector than alone (0.026 apart in a coordinate), so an index depended
    on how its chunks were batched, and a query (embedded alone) met batched chunks."""
    from archivist.models import STEmbedder

    text = "Which file holds the name this computer calls itself at boot?"
    others = ["The quick brown fox jumps over the lazy dog. " * 30, "short", "Systemd starts the services."]
    alone = embedder.embed([text])[0]
    assert np.array_equal(alone, embedder.embed(others + [text])[3])
    assert np.array_equal(alone, embedder.embed([text] + others, batch_size=2)[0])
    int8 = STEmbedder(embedder.name, "cpu", "int8")  # torch's dynamic int8: the same rule
    assert np.array_equal(int8.embed([text])[0], int8.embed(others + [text])[3])


def test_another_embedder_backend_is_refused_until_reembed(ws, tmp_path, embedder):
    from archivist.models import embedder_identity, load_embedder
    from archivist.retrieval.vectors import EmbedderMismatch

    assert embedder.backend == "onnx-int8"  # the default CPU backend
    torch_emb = load_embedder(ws.settings.embedder, "cpu", "torch", str(ws.settings.cache))
    assert embedder_identity(torch_emb) != embedder_identity(embedder)
    one = write(tmp_path / "one.md", "The archive room opens at nine.\n")
    two = write(tmp_path / "two.md", "The loading dock closes at six.\n")
    assert ingest_paths(ws, [one], embedder=embedder, progress=False)[0].status == "added"
    with pytest.raises(EmbedderMismatch, match=r"archivist reindex --reembed"):
        ingest_paths(ws, [two], embedder=torch_emb, progress=False)
    assert [d["name"] for d in list_documents(ws)] == ["one.md"]
    reindex(ws, reembed=True, embedder=torch_emb, progress=False)
    stored = np.frombuffer(ws.db.execute("SELECT embedding FROM chunks").fetchone()[0], np.float32)
    assert np.allclose(stored, torch_emb.embed(["The archive room opens at nine."])[0], atol=1e-5)
    assert ingest_paths(ws, [two], embedder=torch_emb, progress=False)[0].status == "added"
    # the same text again reuses the torch vector; the onnx embedder is now the one refused
    same = ingest_paths(ws, [write(tmp_path / "copy.md", "The archive room opens at nine.\n")], embedder=torch_emb,
                        progress=False)[0]
    assert same.status == "added" and same.embedded == 0
    with pytest.raises(EmbedderMismatch, match=r"reindex --reembed"):
        ingest_paths(ws, [one], embedder=embedder, progress=False)


@pytest.mark.slow  # loads the embedder's torch backend too
def test_cli_refuses_another_backend_naming_the_command(tmp_path, cli):
    write(tmp_path / "a.md", "Keys are returned to reception.\n")
    run = ["ingest", tmp_path / "a.md", "-q"]
    assert cli(*run).returncode == 0
    env = {"ARCHIVIST_EMBED_BACKEND": "torch"}
    out = cli(*run, env=env)
    assert out.returncode == 2 and "archivist reindex --reembed" in out.stderr, out.stderr
    out = cli("reindex", "--reembed", "--json", env=env)
    assert out.returncode == 0 and json.loads(out.stdout) == {"default": 1}, out.stderr
    out = cli(*run, env=env)
    assert out.returncode == 0 and "unchanged" in out.stdout, out.stderr


def test_a_file_whose_name_is_not_utf8_is_refused_and_the_rest_ingested(ws, embedder, tmp_path):
    """A file named in an older system's encoding ("caf\\xe9.md", Latin-1 bytes) reached Python as a
    lone surrogate that SQLite's UTF-8 text refused: the whole ingest failed with "surrogates not
    allowed", naming no file, and nothing was stored. It is refused, named with its bytes shown, and
    the other files are ingested."""
    import os

    folder = tmp_path / "share"
    folder.mkdir()
    (folder / "ok.md").write_text("# OK\n\nThe canteen opens at eight.\n")
    bad = os.path.join(os.fsencode(folder), b"caf\xe9.md")
    with open(bad, "wb") as f:
        f.write(b"# Cafe\n\nThe cafe opens at nine.\n")
    res = ingest_paths(ws, [folder], embedder=embedder, progress=False)
    by_status = {r.status: r for r in res}
    assert sorted(by_status) == ["added", "failed"] and by_status["added"].name == "share/ok.md"
    why = by_status["failed"].reason
    assert "caf\\xe9.md" in why and "not UTF-8" in why, why
    assert [d["name"] for d in list_documents(ws)] == ["share/ok.md"]
    [again] = ingest_paths(ws, [os.fsdecode(bad)], embedder=embedder, progress=False)  # named on the command line
    assert again.status == "failed" and "not UTF-8" in again.reason


def test_a_document_scope_names_documents_as_written(ws, embedder, tmp_path):
    """`search -d NAME` matched the last part of a name with LIKE: ASCII case ignored and "_" or "%"
    read as wildcards, so `-d a_b.md` also searched x/axb.md, and `-d Notes.md` notes.md."""
    from archivist.retrieval.search import resolve_documents

    folder = tmp_path / "x"
    folder.mkdir()
    for name in ("a_b.md", "axb.md", "Notes.md", "notes.md"):
        (folder / name).write_text(f"# {name}\n\nThe text of {name}.\n")
    ingest_paths(ws, [folder], embedder=embedder, progress=False)
    names = {d["id"]: d["name"] for d in list_documents(ws)}
    assert sorted(names[i] for i in resolve_documents(ws, ["a_b.md"])) == ["x/a_b.md"]
    assert sorted(names[i] for i in resolve_documents(ws, ["Notes.md"])) == ["x/Notes.md"]
    assert sorted(names[i] for i in resolve_documents(ws, ["x/notes.md", "%"])) == ["x/notes.md"]


def test_a_document_outside_the_named_collections_is_said(ws, embedder, tmp_path):
    """`search -c A -d DOC` with DOC in collection B passed the scope check and found nothing with
    exit 0: the search looks in A alone (found on re-reading the scripter's change)."""
    import argparse

    from archivist.cli import CLIError
    from archivist.retrieval.cli import _check_scope

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.md").write_text(f"# {name}\n\nThe text of {name}.\n")
        ingest_paths(ws, [tmp_path / name / f"{name}.md"], collection=name, embedder=embedder, progress=False)
    _check_scope(ws, argparse.Namespace(user=None, collection=["b"], document=["b.md"]))
    _check_scope(ws, argparse.Namespace(user=None, collection=None, document=["b.md"]))
    with pytest.raises(CLIError, match="no document 'b.md'"):
        _check_scope(ws, argparse.Namespace(user=None, collection=["a"], document=["b.md"]))
