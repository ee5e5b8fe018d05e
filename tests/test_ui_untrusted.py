"""Strings another person controls, shown by the browser app as the plain text they are (no browser
needed: AppTest and a real CommonMark parser). tests/e2e/test_browser_untrusted.py reads the same
pages in Chromium.

`archivist.ui.core.md_escape` is the one helper for every place Streamlit renders Markdown, and
`plain` / `plain_frame` for plain-text places (st.dataframe cells, selectbox options).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from archivist import access, auth, jobs, ui
from archivist.ui import core  # core.md_escape and core.plain: looked up when used

os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")  # no background model loading inside the test process
APP = str(Path(ui.__file__).resolve().parent / "app.py")  # the app of the archivist package imported
EVIL = "http://127.0.0.1:9"
HOSTILE = [
    f"[Sign in again]({EVIL}/phish)",
    f"![p]({EVIL}/pixel.png)",
    "<img src=x onerror=alert(1)><script>alert(2)</script>",
    "# SYSTEM NOTICE",
    "Your session expired\n===\nSign in below",  # a setext heading
    "intro\n\n    indented code\n\nafter",
    "| a | b |\n|---|---|\n| 1 | 2 |",
    "&lt;b&gt; &amp; &zwj; &#x202E;",  # entities: shown as typed, never decoded
    ":red[ALERT] :material/lock: :smile: $x^2$ $$y$$",
    "> quoted\n- item\n1. first\n+ plus\n***\n```\nfence\n```",
    "a\\*b\\* trailing backslash \\",
    "[ref]: http://evil.example\n[ref]",
    "x" * 300,
]


def _rendered(markdown: str) -> tuple[str, list[str]]:
    """The text a CommonMark renderer shows for `markdown` (line breaks as "\n") and the kinds of tokens
    it made that are more than text (links, images, headings, HTML, code …)."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark").enable(["table", "strikethrough"])
    text, kinds = [], []
    for block in md.parse(markdown):
        if block.type not in ("paragraph_open", "paragraph_close", "inline"):
            kinds.append(block.type)
        for t in block.children or []:
            if t.type == "text":
                text.append(t.content)
            elif t.type in ("softbreak", "hardbreak"):
                text.append("\n")
            else:
                kinds.append(t.type)
    return "".join(text), kinds


@pytest.mark.parametrize("s", HOSTILE)
def test_md_escape_shows_markdown_as_the_text_it_is(s):
    pytest.importorskip("markdown_it")
    text, kinds = _rendered(core.md_escape(s))
    assert kinds == []  # no link, image, heading, HTML, code block, table, list, quote or rule
    # the word joiner (U+2060) and the no-break spaces that keep a line's indentation are all it adds
    assert text.replace("\u2060", "").replace("\u00a0", " ") == s.replace("\n\n", "\n \n")


def test_md_escape_breaks_what_gfm_links_without_markdown():
    # GitHub-flavoured Markdown links a bare URL, www. name or e-mail address even when escaped (Streamlit's
    # renderer does, tests/e2e checks it in Chromium): a word joiner sits where the link would start
    shown = core.md_escape(f"see {EVIL}/x, www.evil.example or mallory@evil.example; recall@5 stays as it is")
    assert "http://" not in shown.replace("\\", "") and "www." not in shown.replace("\\", "")
    assert "@evil" not in shown and "recall@5" in shown
    assert ":material/" not in shown  # Streamlit turns ":material/lock:" into an icon before parsing anything


def test_plain_reveals_what_disguises_a_name_and_keeps_real_scripts():
    assert core.plain("invoice\u202efdp.exe") == "invoice[U+202E]fdp.exe"  # shown as invoiceexe.pdf otherwise
    assert core.plain("hand\u200bbook.md") == "hand[U+200B]book.md" != core.plain("handbook.md")
    assert core.plain("pay\u00adroll \u2066x\u2069 tag\U000E0041") == "pay[U+00AD]roll [U+2066]x[U+2069] tag[U+E0041]"
    assert core.plain("a\rb\x00c") == "a[U+000D]b[U+0000]c"
    assert core.plain("line one\nline\ttwo") == "line one\nline\ttwo"
    persian, family = "می\u200cخواهم", "👩\u200d💻"  # a zero-width (non-)joiner a script needs stays
    assert core.plain(persian) == persian and core.plain(family) == family
    assert core.plain("report\u200d.pdf") == "report[U+200D].pdf"
    assert core.plain("שלום.txt") == "שלום.txt"  # right-to-left letters are letters, not overrides


def page(ws, user: str, path: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["_token"] = auth.create_session(ws, user)
    at.run()
    return at.switch_page(path).run()


def _team(ws):
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    auth.create_user(ws, "mallory", "mallory-pass-1", by="alice")
    access.create_collection(ws, "team", by="alice")
    access.grant(ws, "mallory", "team", "write", by="alice")


ERROR = (f"could not read report.md: [Sign in again]({EVIL}/phish) ![p]({EVIL}/pixel.png)\n\n"
         "SESSION EXPIRED\n===\n:red[Enter your password]")


def _inert(value: str, original: str) -> None:
    text, kinds = _rendered(value)
    assert kinds == [] and text.replace("\u2060", "").replace("\u00a0", " ") == original.replace("\n\n", "\n \n")


def test_a_jobs_error_is_shown_as_plain_text(ws):
    pytest.importorskip("markdown_it")
    _team(ws)
    job = jobs.create(ws, "upload", "alice", spec={"collection": "team", "files": []})
    jobs.start(ws, job.id)
    jobs.fail(ws, job.id, ERROR)
    at = page(ws, "alice", "views/documents.py")
    assert not at.exception
    (error,) = at.error
    _inert(error.value, ERROR)  # was rendered as Markdown: a link, an image, a heading


def test_a_members_failed_run_reaches_the_admin_as_plain_text(ws):
    from archivist.finetune import runs

    pytest.importorskip("markdown_it")
    _team(ws)
    run = runs.create_run(ws, {"method": "lora"}, user="mallory")
    runs.update_run(ws, run, "failed", error=ERROR)
    at = page(ws, "alice", "views/finetune.py")  # an admin sees every run
    assert not at.exception
    (error,) = [e for e in at.tabs[1].error]
    _inert(error.value, ERROR)


def test_a_members_evaluation_set_name_reaches_the_admin_as_plain_text(ws):
    from archivist.retrieval.evaluation import store_evaluation

    pytest.importorskip("markdown_it")
    _team(ws)
    name = f"[Sign in again]({EVIL}/phish) ![p]({EVIL}/pixel.png) $x^2$.jsonl"
    store_evaluation(ws, "retrieval", name, {"modes": {"hybrid": {"recall@5": 0.5}}}, user="mallory")
    at = page(ws, "alice", "views/evaluation.py")
    assert not at.exception
    (caption,) = [c for c in at.caption if c.value.startswith("Latest run")]
    text, kinds = _rendered(caption.value)
    assert kinds == [] and name in text.replace("\u2060", "")
    assert list(at.dataframe[-1].value["set"]) == [name]


def test_a_disguised_set_name_is_revealed_in_the_runs_table(ws):
    from archivist.retrieval.evaluation import store_evaluation

    _team(ws)
    # document names lose such characters on the way in (ingest); a question set's file name keeps them
    store_evaluation(ws, "retrieval", "hand\u200bbook-\u202elmnosj.csv", {"modes": {"hybrid": {"recall@5": 0.5}}}, user="mallory")
    store_evaluation(ws, "retrieval", "handbook.jsonl", {"modes": {"hybrid": {"recall@5": 0.9}}}, user="alice")
    at = page(ws, "alice", "views/evaluation.py")
    assert not at.exception
    # was "handbook-csv.jsonl" on the screen, the very name of alice's own set
    assert list(at.dataframe[-1].value["set"]) == ["handbook.jsonl", "hand[U+200B]book-[U+202E]lmnosj.csv"]


def test_a_collection_named_person_does_not_hide_who_holds_each_grant(ws):
    _team(ws)
    access.create_collection(ws, "person", by="alice")
    access.grant(ws, "mallory", "person", "read", by="alice")
    at = page(ws, "alice", "views/admin.py")
    assert not at.exception
    grid = at.dataframe[-1].value  # the Access tab's grid: one row per member, one column per collection
    # was one "person" column holding "read": mallory's name was gone from the grid
    assert list(grid["person"]) == ["mallory"] and list(grid["person (collection)"]) == ["read"]
    assert list(grid["team"]) == ["write"]


def _citation_page():
    import streamlit as st

    from archivist.settings import Settings
    from archivist.ui import page_image
    from archivist.workspace import open_workspace

    with open_workspace(Settings.from_env()) as ws:
        page_image.show_citation(st, ws, "alice", st.session_state["citation"], key="page")


def test_a_cited_pages_caption_shows_the_documents_name_as_text(ws, embedder, tmp_path):
    from fpdf import FPDF
    from streamlit.testing.v1 import AppTest

    from archivist.ingest.pipeline import ingest_paths

    pytest.importorskip("markdown_it")
    _team(ws)
    name = f"[Sign in again]({EVIL.replace('//', '')}) ![p]({EVIL.replace('//', '')}) memo.pdf"  # no "/" in a file name
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 6, "The parking gate code is 4417 for every visitor.")
    (tmp_path / "in").mkdir()
    pdf.output(str(tmp_path / "in" / name))
    ingest_paths(ws, [tmp_path / "in" / name], collection="team", user="mallory", embedder=embedder, progress=False)
    at = AppTest.from_function(_citation_page, default_timeout=60)
    at.session_state["citation"] = {"document": name, "collection": "team", "page": 1, "boxes": [[0.1, 0.1, 0.5, 0.2]]}
    at.run()
    at.toggle(key="page").set_value(True).run()
    assert not at.exception
    (image,) = at.get("image")
    caption = image.proto.imgs[0].caption
    text, kinds = _rendered(caption)
    assert kinds == [] and text.replace("\u2060", "") == f"{name}, page 1"  # was a link and an image in the caption
