"""Mended by a user's pass: hidden HTML text kept out of the index; code indexes (`a[2]`) in an answer
not read as citation marks; saved datasets and their manifests written so a power cut leaves the old
file or the new one; SIGHUP reopening `archivist serve`'s log file instead of ending it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import REPO

# -- 1. hidden HTML ---------------------------------------------------------------------------------

HIDDEN_PAGE = """<!doctype html><html><head><title>Travel policy</title></head><body><main>
<h1>Travel policy</h1>
<p>Employees book flights through the travel desk.</p>
<p hidden>The secret launch code is ZEBRA-42.</p>
<div aria-hidden="true">Hotel budget is unlimited for everyone.</div>
<p style="color: red; DISPLAY : none !important">Taxis are reimbursed at triple rate.</p>
<span style="visibility:hidden">Invisible span sentence.</span>
<section hidden="until-found"><p>Expanded by find in page.</p></section>
<div aria-hidden="false">Shown to everyone.</div>
<p style="display: block">Meals are capped at 50 euros per day.</p>
<p>Visible <span hidden>HIDDENWORD</span>end, <b>V</b>PN kept.</p>
<table><tr><th>Item</th><th>Limit</th></tr><tr><td>Taxi</td><td>30<span hidden>000</span></td></tr>
<tr style="display:none"><td>Yacht</td><td>any</td></tr></table>
</main></body></html>"""


def test_hidden_html_elements_are_not_read_and_visible_text_is_exact(tmp_path):
    """Text nobody sees on the page (hidden, aria-hidden="true", inline display:none and
    visibility:hidden, in any case and with !important) is dropped with its children; what is
    visible reads exactly as before, hidden="until-found" (find-in-page) included."""
    from archivist.ingest.readers import read

    page = tmp_path / "travel.html"
    page.write_text(HIDDEN_PAGE)
    got = [(b.kind, b.text) for b in read(page).blocks]
    assert got == [
        ("heading", "Travel policy"),
        ("paragraph", "Employees book flights through the travel desk."),
        ("paragraph", "Expanded by find in page."),
        ("paragraph", "Shown to everyone."),
        ("paragraph", "Meals are capped at 50 euros per day."),
        ("paragraph", "Visible end, VPN kept."),
        ("row", "Item: Taxi; Limit: 30"),
    ]


HIDDEN_MARKDOWN = """# Notes

Visible paragraph about the office.

<div hidden>

Planted: the CEO password is hunter2.

</div>

Before <span style="display:none">the hidden span</span>after, <b>bold</b> kept as written.

<script>var planted = "script text";</script>

Inline code shows HTML: `<span hidden>shown code</span>` stays.

<!-- <div hidden> a commented-out tag hides nothing -->

```html
<div hidden>a code sample stays whole</div>
```

Last <span aria-hidden="true">never closed
so the rest of this paragraph is hidden.

After the paragraph.
"""


def test_hidden_raw_html_in_markdown_is_not_read(tmp_path):
    """Raw HTML in Markdown renders as HTML: what it hides (to its closing tag, over blank lines for a
    block element; to the paragraph's end for an inline one left open) is no text; code, code spans
    and comments are left as they were, and visible text is exact."""
    from archivist.ingest.readers import read

    page = tmp_path / "notes.md"
    page.write_text(HIDDEN_MARKDOWN)
    got = [(b.kind, b.text) for b in read(page).blocks]
    assert got == [
        ("heading", "Notes"),
        ("paragraph", "Visible paragraph about the office."),
        ("paragraph", "Before after, bold kept as written."),  # the tags of shown elements are markup (tests/test_messydocs.py)
        ("paragraph", "Inline code shows HTML: <span hidden>shown code</span> stays."),
        ("code", "<div hidden>a code sample stays whole</div>"),
        ("paragraph", "Last"),
        ("paragraph", "After the paragraph."),
    ]


def test_hidden_runs_in_a_word_document_are_not_read(tmp_path):
    """Word's hidden text (Font > Hidden, w:vanish) in a paragraph and in a table cell is not read;
    a run whose hidden flag is switched off (w:val="0") is."""
    import docx

    from archivist.ingest.readers import read

    d = docx.Document()
    p = d.add_paragraph("Visible text. ")
    p.add_run("Hidden planted sentence.").font.hidden = True
    p.add_run(" Shown again.").font.hidden = False
    d.add_paragraph("Second para.")
    t = d.add_table(rows=2, cols=2)
    t.cell(0, 0).text, t.cell(0, 1).text, t.cell(1, 0).text = "Item", "Limit", "Taxi"
    cell = t.cell(1, 1).paragraphs[0]
    cell.add_run("30")
    cell.add_run("000").font.hidden = True
    d.save(tmp_path / "h.docx")
    assert [(b.kind, b.text) for b in read(tmp_path / "h.docx").blocks] == [
        ("paragraph", "Visible text. Shown again."), ("paragraph", "Second para."), ("row", "Item: Taxi; Limit: 30")]


def test_a_planted_hidden_sentence_cannot_be_found_after_ingest(ws, tmp_path, embedder):
    """Through the real pipeline: the hidden sentences are in no chunk and no lexical hit, and files
    stored by the readers before these (html 3, markdown 2) are read again and lose them."""
    from archivist.ingest import readers
    from archivist.ingest.pipeline import ingest_paths

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "travel.html").write_text(HIDDEN_PAGE)
    (docs / "notes.md").write_text(HIDDEN_MARKDOWN)
    assert [r.status for r in ingest_paths(ws, [docs], embedder=embedder, progress=False)] == ["added", "added"]
    text = " ".join(r[0] for r in ws.db.execute("SELECT text FROM chunks"))
    for planted in ("ZEBRA", "unlimited", "triple", "Invisible", "HIDDENWORD", "Yacht", "30000", "hunter2", "planted"):
        assert planted not in text
        assert not ws.db.execute("SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ?", (planted,)).fetchall()
    assert "Meals are capped at 50 euros per day." in text and "Taxi" in text

    # documents read by the previous readers are read again, not called unchanged
    assert readers.reader_version("html") >= 4 and readers.reader_version("markdown") >= 3
    ws.db.execute("UPDATE documents SET reader = CASE WHEN path LIKE '%.html' THEN 3 ELSE 2 END")
    ws.db.commit()
    assert [r.status for r in ingest_paths(ws, [docs], embedder=embedder, progress=False)] == ["updated", "updated"]


# -- 2. citation marks, not code indexes ------------------------------------------------------------


@pytest.mark.parametrize("text, marks", [
    ("Read sys.argv[1] for the first argument [2].", [2]),
    ("Index a[2] and x[0][1] and f(x)[3] and d['k'][4] and _v[5].", []),
    ("Ports are listed [2]. Then more.", [2]),
    ("Ports are listed.[2] Then more.", [2]),
    ("Both say so [1][3].", [1, 3]),
    ("Both say so [1, 2] and [3; 4].", [1, 2, 3, 4]),
    ("Use a[1][2] here [1][2].", [1, 2]),
    ("服务器的默认端口是八零八零[1]。", [1]),
    ("[2] opens the answer.", [2]),
])
def test_parse_citations_reads_marks_but_not_code_indexes(text, marks):
    from archivist.retrieval.verify import parse_citations

    assert [n for n, _, _ in parse_citations(text)] == marks


def test_claim_checks_cite_the_passage_not_the_code_index():
    """verify_answer's citations of a sentence come from its marks alone: `sys.argv[2]` does not make
    the sentence cite passage 2, whose text says nothing of it."""
    from archivist.retrieval.verify import verify_answer

    passages = ["sys.argv[2] is the second command line argument given to the script.",
                "The garden opens at nine."]
    checks = verify_answer("The script reads sys.argv[2] as its second command line argument [1].", passages)
    assert [(c.cites, c.supported) for c in checks] == [([1], True)]
    checks = verify_answer("The script reads sys.argv[2] as its second command line argument.", passages)
    assert [c.cites for c in checks] == [[]]


def test_quote_and_parser_agree_on_which_brackets_are_marks():
    """`quoted` drops exactly the marks the parser would read: what it leaves has none, and code stays."""
    from archivist.retrieval.quote import quoted
    from archivist.retrieval.verify import parse_citations

    for sentence, shown in [("It holds x[0][1] too [1][3].", "It holds x[0][1] too."),
                            ("设立于1990年[2]。", "设立于1990年。"),
                            ("Use a[1] + f(b)[2] to read them.", "Use a[1] + f(b)[2] to read them.")]:
        assert quoted(sentence) == shown
        assert parse_citations(quoted(sentence)) == []


# -- 3. datasets written durably ---------------------------------------------------------------------


@pytest.fixture
def synced(monkeypatch):
    """The (device, inode) of everything os.fsync is called on (the real fsync still runs)."""
    seen: set[tuple[int, int]] = set()
    real = os.fsync

    def fsync(fd):
        st = os.fstat(fd)
        seen.add((st.st_dev, st.st_ino))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return seen


def _ino(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _example(i: int, document_id: int):
    from archivist.finetune.dataset_store import Example

    return Example(messages=[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}],
                   source="docs:extractive", group=f"doc:{document_id}", question=f"q{i}", answer=f"a{i}",
                   document_id=document_id, chunk_id=i, passages=[i])


def test_a_saved_dataset_is_on_disk_before_it_exists_under_its_name(ws, synced):
    """save_dataset: every file of the new dataset and its folder are fsynced, and datasets/ after
    the rename; a power cut then leaves the whole dataset or none, never an empty train.jsonl."""
    from archivist.finetune.dataset_store import load_dataset, save_dataset

    save_dataset(ws, "ds1", [_example(1, 7), _example(2, 8)], [_example(3, 7)], {"name": "ds1", "owner": "admin"})
    folder = ws.home / "datasets" / "ds1"
    for f in ("train.jsonl", "eval.jsonl", "manifest.json"):
        assert _ino(folder / f) in synced, f
    assert _ino(folder) in synced and _ino(folder.parent) in synced
    assert [e.question for e in load_dataset(ws, "ds1", None).train] == ["q1", "q2"]
    assert sorted(p.name for p in folder.parent.iterdir()) == ["ds1"]  # no temporary folder left


def test_rewritten_manifests_and_splits_are_replaced_whole(ws, synced):
    """disown and erase_document rewrite a saved dataset's files: each is a new file, fsynced, renamed
    over the old one (a reader or a power cut sees the old or the new, never a truncated file);
    nothing stored beyond the change is lost and no temporary file is left."""
    from archivist.finetune import dataset_store as ds

    ds.save_dataset(ws, "ds2", [_example(1, 7), _example(2, 8)], [_example(3, 7)], {"name": "ds2", "owner": "bob",
                    "documents": [{"id": 7}, {"id": 8}]})
    folder = ws.home / "datasets" / "ds2"
    before = {f: _ino(folder / f) for f in ("train.jsonl", "eval.jsonl", "manifest.json")}
    synced.clear()

    assert ds.disown(ws, "bob", "(deleted) bob") == 1
    assert _ino(folder / "manifest.json") != before["manifest.json"]  # replaced, not truncated in place
    assert _ino(folder / "manifest.json") in synced and _ino(folder) in synced
    assert ds._manifest(folder)["owner"] == "(deleted) bob"

    synced.clear()
    assert ds.erase_document(ws, 7, set(), lambda s: False) == {"ds2": 2}
    for f in ("train.jsonl", "eval.jsonl", "manifest.json"):
        assert _ino(folder / f) != before[f] and _ino(folder / f) in synced, f
    manifest = ds._manifest(folder)
    assert manifest["documents"] == [{"id": 8}] and manifest["erased"] == [7]
    assert manifest["counts"] == {"train": 1, "eval": 0}
    assert [json.loads(line)["question"] for line in (folder / "train.jsonl").read_text().splitlines()] == ["q2"]
    assert sorted(p.name for p in folder.iterdir()) == ["eval.jsonl", "manifest.json", "train.jsonl"]


def test_other_files_rewritten_in_place_are_replaced_whole(ws, synced, tmp_path):
    """An adapter's metrics.json (scrubbed by an erase) and a run's config.json (rewritten by a
    resume) are replaced by a synced new file, not truncated and rewritten in place."""
    from archivist import adapters
    from archivist.finetune import runs

    saved = tmp_path / "saved-adapter"
    saved.mkdir()
    (saved / "adapter_config.json").write_text("{}")
    adapters.register(ws, "ad1", saved, "base", {"examples": [{"q": "keep"}, {"q": "secret plan"}]},
                      {"dataset": {"name": "ds"}, "documents": []},
                      activate=False)
    metrics = ws.home / "adapters" / "ad1" / "metrics.json"
    old = _ino(metrics)
    synced.clear()
    assert adapters.scrub_metrics(ws, "ad1", lambda t: "secret" in t) == 1
    assert _ino(metrics) != old and _ino(metrics) in synced
    assert json.loads(metrics.read_text())["examples"] == [{"q": "keep"}]

    run_id = runs.create_run(ws, {"max_steps": 3})
    config = runs.run_dir(ws, run_id) / "config.json"
    assert _ino(config) in synced
    old = _ino(config)
    runs.update_run(ws, run_id, config={"max_steps": 5})
    assert _ino(config) != old and _ino(config) in synced
    assert json.loads(config.read_text()) == {"max_steps": 5}



# -- 4. SIGHUP: reopen the log, keep serving ----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> set[int]:
    return {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_reopens_the_log_file_and_keeps_serving(tmp_path, workers):
    """A real `archivist serve` with stderr appended to a file, rotated as logrotate does (renamed,
    then SIGHUP): it keeps answering, writes its lines to the new file under the old name (with
    --workers, each worker too, none restarted), and SIGTERM still stops it cleanly."""
    port = _free_port()
    log, rotated = tmp_path / "serve.log", tmp_path / "serve.log.1"
    env = {**os.environ, "ARCHIVIST_HOME": str(tmp_path / "ws")}
    with open(log, "ab") as err:
        proc = subprocess.Popen([sys.executable, "-m", "archivist.cli", "serve", "--port", str(port), "--no-warm", "-v",
                                 "--workers", str(workers)], stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}/health"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                if httpx.get(url, timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)

        while log.read_text().count("Application startup complete") < workers:  # every worker has its handler
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        children = _children(proc.pid)
        log.rename(rotated)
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while not (log.exists() and log.read_text().count("SIGHUP") == (1 if workers == 1 else 1 + workers)):
            assert proc.poll() is None, f"SIGHUP ended the server with {proc.returncode}"
            assert time.monotonic() < deadline, rotated.read_text()[-3000:]
            time.sleep(0.2)
        assert all(httpx.get(url, timeout=10).status_code == 200 for _ in range(2 * workers))
        time.sleep(0.5)  # the access line is written after the response
        assert proc.poll() is None and _children(proc.pid) == children  # no process ended or replaced
        new = log.read_text()
        assert f"archivist: SIGHUP: reopened the log file {log}; still serving" in new
        assert '"GET /health HTTP/1.1" 200' in new
        assert '"GET /health HTTP/1.1" 200' in rotated.read_text()  # the one from before the rotation
        assert "SIGHUP" not in rotated.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code in (0, -signal.SIGTERM), code


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_from_a_closed_terminal_still_ends_serve(tmp_path, workers):
    """Run by hand, stderr a terminal: SIGHUP means the terminal was closed, and the server ends as
    it always did (the log reopening kept it alive, holding its port, writing to a dead terminal:
    found on re-reading the change)."""
    import pty

    port = _free_port()
    env = {**os.environ, "ARCHIVIST_HOME": str(tmp_path / "ws")}
    main, side = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "archivist.cli", "serve", "--port", str(port), "--no-warm",
                             "--workers", str(workers)], stdin=subprocess.DEVNULL, stdout=side, stderr=side, env=env,
                            cwd=REPO, start_new_session=True,  # SIGHUP as a shell gives it: a run under nohup ignores it
                            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
    os.close(side)
    url = f"http://127.0.0.1:{port}/health"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None and time.monotonic() < deadline
            try:
                if httpx.get(url, timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGHUP)  # what the terminal's closing sends its session
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        os.close(main)
    assert code != 0 or workers > 1, code  # ended (by the signal, or the supervisor's clean stop)
    with pytest.raises(httpx.TransportError):
        httpx.get(url, timeout=5)
