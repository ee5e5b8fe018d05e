"""A small team on the browser app: an admin (alice) and a reader (bob) of one collection, in a real
browser (Playwright + Debian Chromium) against `archivist ui` on a prepared workspace.

- A page reloaded while an answer is being written leaves the question stored without an answer;
  the chat says so and "Ask again" answers it in place (it was shown with no word, for good).
- A reader selecting a document is offered neither Re-ingest nor Delete (both were offered, and
  Delete was refused only after "This cannot be undone" was confirmed); a writer beside them, in a
  second browser context at the same time, still is.
- The chat's first question checks its length with the chat model's tokenizer while the server's
  warm-up thread may still be importing transformers: the tokenizer now loads under the model lock
  (a concurrent import showed "ImportError: cannot import name 'AutoTokenizer'" on the page).
- A collection chosen in the chat and revoked meanwhile is named in a warning; it silently became
  "All my collections" (AppTest).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from conftest import ingest_texts
from test_browser import ARTIFACTS, FEEDBACK, _idle, _serve, _sign_in
from test_browser import browser  # noqa: F401  (its module-scoped Chromium, one per module)

ADMIN, ADMIN_PW = "alice", "alice-pass-1"
READER, READER_PW = "bob", "bob-pass-1234"
HANDBOOK = ("# Learning budget\n\nEvery employee has a personal learning budget of EUR 1,500 per year for courses, "
            "conferences and books. Unused budget does not carry over to the next year.\n")
QUESTION = "How large is the yearly personal learning budget?"


@pytest.fixture(scope="module")
def team_server(tmp_path_factory, embedder):
    """alice (admin) and bob (read on hr); handbook.md in hr. The server warms its models up as in production."""
    from archivist import access, auth
    from archivist.settings import Settings
    from archivist.workspace import open_workspace

    root = tmp_path_factory.mktemp("e2e-team")
    home = root / "ws"
    ws = open_workspace(Settings.from_env(home=home))
    auth.create_first_admin(ws, ADMIN, ADMIN_PW)
    auth.create_user(ws, READER, READER_PW, by=ADMIN)
    ingest_texts(ws, embedder, root / "docs", {"hr": {"handbook.md": HANDBOOK}}, ADMIN)
    access.grant(ws, READER, "hr", "read", by=ADMIN)
    ws.close()
    for url in _serve(home, "e2e-team-server.log"):
        yield {"url": url, "home": home}


def _messages(home: Path, user: str) -> list[tuple[str, str]]:
    with sqlite3.connect(home / "archivist.db", timeout=30) as db:
        return db.execute("SELECT m.role, m.content FROM messages m JOIN conversations c ON c.id = m.conversation_id "
                          "JOIN users u ON u.id = c.user_id WHERE u.name = ? ORDER BY m.id", (user,)).fetchall()


@pytest.mark.e2e
def test_a_question_cut_short_by_a_reload_says_so_and_is_asked_again(team_server, browser):
    from playwright.sync_api import expect

    url, home = team_server["url"], team_server["home"]
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    _sign_in(page, url, ADMIN, ADMIN_PW)
    box = page.locator('[data-testid="stChatInput"] textarea')
    box.fill(QUESTION)
    box.press("Enter")
    page.get_by_text("Draft — being checked").wait_for(timeout=90_000)  # the answer is being written …
    page.reload()  # … and the page is reloaded
    page.get_by_role("heading", name="Chat", exact=True, level=1).wait_for()
    _idle(page)
    assert _messages(home, ADMIN) == [("user", QUESTION)]  # stored, with no answer after it
    asked = page.locator('[data-testid="stChatMessage"]').first
    expect(asked).to_contain_text(QUESTION)
    expect(asked).to_contain_text("Not answered: the page was reloaded or left")
    asked.get_by_role("button", name="Ask again").click()
    reply = page.locator('[data-testid="stChatMessage"]').nth(1)
    reply.locator(FEEDBACK).first.wait_for(timeout=90_000)  # answered, stored, shown with its feedback buttons
    _idle(page)
    stored = _messages(home, ADMIN)
    assert [role for role, _ in stored] == ["user", "assistant"] and stored[0][1] == QUESTION  # not asked twice
    expect(page.locator('[data-testid="stChatMessage"]')).to_have_count(2)
    expect(page.get_by_text("Not answered")).to_have_count(0)
    expect(page.get_by_role("button", name="Ask again")).to_have_count(0)
    expect(page.locator('[data-testid="stException"]')).to_have_count(0)


def _select_first_row(page, who: str) -> None:
    """Tick the first row of the documents table (a canvas grid: its checkbox column, first row)."""
    page.get_by_text("1 of 1 documents").wait_for()
    grid = page.locator('[data-testid="stDataFrame"]').last
    grid.wait_for()
    _idle(page)
    grid.scroll_into_view_if_needed()  # below an ingestion job's panel on a writer's page
    box = grid.bounding_box()
    opened = page.get_by_role("heading", name="handbook.md", level=4)
    for _ in range(3):  # a click while a rerun redraws the grid can be lost (a second one would untick it)
        if opened.count():
            break
        page.mouse.click(box["x"] + 15, box["y"] + 35 + 17)
        try:
            opened.wait_for(timeout=10_000)
        except Exception:  # noqa: BLE001 - playwright's TimeoutError: look again
            _idle(page)
    _idle(page)
    page.screenshot(path=str(ARTIFACTS / f"e2e-team-documents-{who}.png"), full_page=True)


@pytest.mark.e2e
def test_a_reader_is_not_offered_delete_or_reingest_and_a_writer_beside_them_is(team_server, browser):
    from playwright.sync_api import expect

    url = team_server["url"]
    reader = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
    writer = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()  # two people at once
    _sign_in(reader, url, READER, READER_PW)
    _sign_in(writer, url, ADMIN, ADMIN_PW)
    for page, who in ((reader, READER), (writer, ADMIN)):
        page.goto(f"{url}/documents")
        page.get_by_role("heading", name="Documents", exact=True, level=1).wait_for()
        _select_first_row(page, who)
    # the reader opens the document and reads it, and is offered nothing that would be refused
    expect(reader.get_by_role("heading", name="handbook.md", level=4)).to_be_visible()
    expect(reader.get_by_text("1 of 1 documents. Select rows to open them.")).to_be_visible()
    expect(reader.get_by_text("Read only: 1 of the selected documents")).to_be_visible()
    expect(reader.get_by_role("button", name="Delete 1")).to_have_count(0)
    expect(reader.get_by_role("button", name="Re-ingest 1")).to_have_count(0)
    # the admin, at the same time, may change it
    expect(writer.get_by_text("Select rows to open, re-ingest or delete them.")).to_be_visible()
    expect(writer.get_by_role("button", name="Delete 1")).to_be_visible()
    expect(writer.get_by_role("button", name="Re-ingest 1")).to_be_visible()
    expect(writer.get_by_text("Read only")).to_have_count(0)
    for page in (reader, writer):
        expect(page.locator('[data-testid="stException"]')).to_have_count(0)


def test_the_tokenizer_waits_while_another_thread_loads_a_model(settings):
    """load_tokenizer takes the model lock, as every model load does: while the app's warm-up holds it
    (importing transformers), the chat page's length check waits instead of importing beside it."""
    from archivist import models

    import transformers  # noqa: F401 - imported already: what is measured is the lock, not an import's time

    got: list = []
    cache = str(settings.cache) + "/"  # the same folder under a key no earlier test loaded
    with models.MODEL_LOAD_LOCK:  # another thread is loading a model
        t = threading.Thread(target=lambda: got.append(models.load_tokenizer(settings.llm, cache)), daemon=True)
        t.start()
        t.join(8)
        waited = t.is_alive() and not got
    t.join(120)
    assert waited, "load_tokenizer ran while another thread held the model lock"
    assert got and got[0]("EUR 1,500", add_special_tokens=False)["input_ids"]
    assert models.load_tokenizer(settings.llm, cache) is got[0]  # once per process


def test_a_collection_revoked_while_chosen_in_the_chat_is_named_not_silently_replaced(ws, monkeypatch):
    """bob chose "hr" in the chat's sidebar; an admin revoked it meanwhile. The choice became "All my
    collections" with no word, so his next answer ("not in the documents") hid why; now the page says so
    until he picks another collection (AppTest: no browser needed to read the page's elements)."""
    from streamlit.testing.v1 import AppTest

    from archivist import access, auth

    monkeypatch.setenv("ARCHIVIST_UI_WARMUP", "0")
    auth.create_first_admin(ws, ADMIN, ADMIN_PW)
    auth.create_user(ws, READER, READER_PW, by=ADMIN)
    for name in ("hr", "sales"):
        access.create_collection(ws, name, by=ADMIN)
        access.grant(ws, READER, name, "read", by=ADMIN)
    import archivist.ui

    at = AppTest.from_file(str(Path(archivist.ui.__file__).parent / "app.py"), default_timeout=60)
    at.session_state["_token"] = auth.create_session(ws, READER)
    at.run()
    at.sidebar.selectbox(key="chat-collection").select("hr").run()
    assert not at.exception and not at.warning
    access.revoke(ws, READER, "hr", by=ADMIN)  # the admin, in another browser
    for _ in range(2):  # said on this run and the next, not once in passing
        at.run()
        assert not at.exception
        assert at.sidebar.selectbox(key="chat-collection").value == "All my collections"
        assert [w.value for w in at.warning] == [
            "You may no longer read the collection hr: questions now search all your collections."]
    at.sidebar.selectbox(key="chat-collection").select("sales").run()
    assert not at.warning
