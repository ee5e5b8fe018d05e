"""A newcomer's first hour in the browser app: what a person who has never used archivist meets when
something on the server is wrong, read in a real browser (Playwright + Debian Chromium) and through
AppTest where no browser is needed.

- The chat model cannot be loaded (a damaged download, a wrong ARCHIVIST_LLM): asking showed a Python
  traceback with the server's file paths, "OSError"/"SafetensorError" and "Ask Google / Ask ChatGPT"
  buttons that send the error text off the machine.
  Now the page says in words that an administrator must mend it; the question is stored and offered
  again ("Ask again"), and the traceback goes to the server's log.
- A job that added nothing (every file refused, failed or cancelled) said "Ingested into …"; it says
  "Nothing ingested into …" and counts the cancelled files.
- A failed upload's reason was cut short in the job's table ("notes.pages: unsuppor…"), and off screen
  on a phone; each is now written out in full under the table.
- A question refused as too long stayed in a box "to shorten and send again"; typing in it reruns the
  page, and the box with the edited text was gone. It now stays, with "Ask this" and "Discard", and the
  reason is given in characters, not "512 tokens" of "the prompt" (AppTest).
- The chat model's tokenizer cannot be loaded: the question vanished behind a traceback; now it is kept
  in a box to send again, with the same words (AppTest).
- Any other page that fails shows Streamlit's generic notice, not the traceback (`archivist ui` sets
  client.showErrorDetails=none unless the operator chose).
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from test_browser import ARTIFACTS, _idle, _serve, _sign_in
from test_browser import browser  # noqa: F401  (its module-scoped Chromium, one per module)

USER, USER_PW = "nina", "nina-pass-123"
QUESTION = "How much is the daily meal allowance when travelling?"
SAYS = "the model that writes answers could not be loaded or run on the server"
JARGON = ("Traceback", "Error:", "safetensors", "File \"", ".py", "Ask ChatGPT", "Ask Google")


def _damaged_llm(folder: Path) -> Path:
    """The default chat model's folder with its weights cut short, as an interrupted copy leaves it:
    the tokenizer loads (the question's length is checked), the model does not."""
    from archivist.catalog import resolve_llm
    from archivist.settings import Settings

    good = Path(resolve_llm("smollm2-135m", Settings.from_env().cache))
    folder.mkdir(parents=True)
    for f in good.iterdir():
        if f.is_file() and f.name != "model.safetensors":
            shutil.copy(f, folder / f.name)
    with open(good / "model.safetensors", "rb") as f:
        (folder / "model.safetensors").write_bytes(f.read(4096))
    return folder


@pytest.fixture(scope="module")
def broken_server(tmp_path_factory):
    from archivist import auth
    from archivist.settings import Settings
    from archivist.workspace import open_workspace

    root = tmp_path_factory.mktemp("e2e-newcomer")
    home = root / "ws"
    ws = open_workspace(Settings.from_env(home=home))
    auth.create_first_admin(ws, USER, USER_PW)
    ws.close()
    llm = _damaged_llm(root / "llm")
    served = _serve(home, "e2e-newcomer-server.log", warmup=False)
    with pytest.MonkeyPatch.context() as m:  # the server's environment, as an operator sets it; not this process's
        m.setenv("ARCHIVIST_LLM", str(llm))
        url = next(served)
    yield {"url": url, "home": home, "llm": llm, "log": ARTIFACTS / "e2e-newcomer-server.log"}
    next(served, None)  # stops the server


def _messages(home: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(home / "archivist.db", timeout=30) as db:
        return db.execute("SELECT role, content FROM messages ORDER BY id").fetchall()


@pytest.mark.e2e
def test_a_chat_model_that_cannot_load_is_said_in_words_and_the_question_is_kept(broken_server, browser):
    from playwright.sync_api import expect

    url, home = broken_server["url"], broken_server["home"]
    page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone: the newcomer's first try
    _sign_in(page, url, USER, USER_PW)
    box = page.locator('[data-testid="stChatInput"] textarea')
    box.fill(QUESTION)
    box.press("Enter")
    said = page.get_by_text(SAYS)
    said.wait_for(timeout=120_000)
    _idle(page)
    page.screenshot(path=str(ARTIFACTS / "e2e-newcomer-broken-model.png"), full_page=True)
    expect(said).to_contain_text("Please tell an administrator")
    expect(page.locator('[data-testid="stException"]')).to_have_count(0)
    main = page.locator('[data-testid="stMainBlockContainer"]').inner_text()
    assert not [w for w in JARGON if w in main], main
    assert str(broken_server["llm"]) not in main  # no server path
    expect(page.get_by_text("Searching your documents")).to_have_count(0)  # no state left saying it is still working
    assert _messages(home) == [("user", QUESTION)]  # the question is kept …
    page.reload()
    page.get_by_role("heading", name="Chat", exact=True, level=1).wait_for()
    _idle(page)
    asked = page.locator('[data-testid="stChatMessage"]').first
    expect(asked).to_contain_text(QUESTION)  # … and offered again once the model is mended
    expect(asked).to_contain_text("Not answered")
    expect(asked.get_by_role("button", name="Ask again")).to_be_visible()
    log = broken_server["log"].read_text()
    assert "SafetensorError" in log and "answering a question of nina failed" in log  # the details are in the log


@pytest.mark.e2e
def test_why_each_upload_failed_is_readable_in_full_on_a_phone(broken_server, browser, tmp_path):
    """A batch of what people have lying around: a Pages file (a ZIP inside), a program, a PDF cut short.
    The job's table cut each reason to "notes.pages: unsuppor…" (on a phone the reason column was off
    screen): the reasons are now written out under it."""
    from playwright.sync_api import expect

    from test_browser import _make_pdf

    (tmp_path / "notes.pages").write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    (tmp_path / "setup.exe").write_bytes(b"MZ" + b"\x90" * 1000)
    _make_pdf(tmp_path / "whole.pdf")
    (tmp_path / "minutes.pdf").write_bytes((tmp_path / "whole.pdf").read_bytes()[:600])  # a download cut short
    page = browser.new_page(viewport={"width": 390, "height": 844})
    _sign_in(page, broken_server["url"], USER, USER_PW)
    page.goto(f"{broken_server['url']}/documents")
    page.get_by_role("heading", name="Documents", exact=True, level=1).wait_for()
    _idle(page)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
        [str(tmp_path / n) for n in ("notes.pages", "setup.exe", "minutes.pdf")])
    page.get_by_role("button", name="Ingest 3 files").click()
    # nothing was added: it said "Ingested into default · 3 of 3 files · 3 failed"
    expect(page.get_by_text("Nothing ingested into default · 3 of 3 files · 3 failed")).to_be_visible(timeout=120_000)
    _idle(page)
    page.screenshot(path=str(ARTIFACTS / "e2e-newcomer-failed-uploads.png"), full_page=True)
    said = page.locator('[data-testid="stCaptionContainer"]').filter(has_text="notes.pages:")  # text, not the grid
    expect(said).to_be_visible()
    for reason in ("notes.pages: unsupported file type (looks like a ZIP archive that is not a DOCX, XLSX or PPTX)",
                   "setup.exe: unsupported file type (looks like a Windows executable)",
                   "minutes.pdf: corrupt PDF"):
        expect(said).to_contain_text(reason)
    expect(page.locator('[data-testid="stException"]')).to_have_count(0)


def test_a_cancelled_upload_does_not_say_ingested(ws, monkeypatch, tmp_path):
    """AppTest: an upload cancelled before it started read "Ingested into team · 2 of 2 files" (the
    cancelled files counted as done, and nothing said cancelled); it now says nothing was ingested and
    how many files were cancelled."""
    from streamlit.testing.v1 import AppTest

    from archivist import access, auth, jobs
    from archivist.ingest.pipeline import create_job

    monkeypatch.setenv("ARCHIVIST_UI_WARMUP", "0")
    auth.create_first_admin(ws, USER, USER_PW)
    access.create_collection(ws, "team", by=USER)
    files = []
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text(f"{name} says hello.\n")
        files.append((tmp_path / name, name))
    job = create_job(ws, "upload", USER, "team", files)
    jobs.cancel(ws, job.id, USER, wait=0)  # Cancel, before the worker took it
    import archivist.ui

    at = AppTest.from_file(str(Path(archivist.ui.__file__).parent / "app.py"), default_timeout=60)
    at.session_state["_token"] = auth.create_session(ws, USER)
    at.switch_page(str(Path(archivist.ui.__file__).parent / "views" / "documents.py")).run()
    assert not at.exception, [e.value for e in at.exception]
    heads = [m.value for m in at.markdown if "team" in m.value and "files" in m.value]
    assert heads == ["**Nothing ingested into team** · 2 of 2 files · 2 cancelled"], [m.value for m in at.markdown]


def test_a_tokenizer_that_cannot_load_keeps_the_question_and_says_why(ws, monkeypatch, tmp_path):
    """AppTest (no browser): the chat model's folder is missing altogether, so even the question's
    length cannot be checked; the question is not stored, it stays on the page to send again."""
    from streamlit.testing.v1 import AppTest

    from archivist import auth

    monkeypatch.setenv("ARCHIVIST_UI_WARMUP", "0")
    monkeypatch.setenv("ARCHIVIST_LLM", str(tmp_path / "models" / "gone"))
    auth.create_first_admin(ws, USER, USER_PW)
    import archivist.ui

    at = AppTest.from_file(str(Path(archivist.ui.__file__).parent / "app.py"), default_timeout=60)
    at.session_state["_token"] = auth.create_session(ws, USER)
    at.run()
    at.chat_input(key="chat-input").set_value(QUESTION).run()
    assert not at.exception, [e.value for e in at.exception]
    assert [e.value for e in at.error] == [
        "The question could not be answered: the model that writes answers could not be loaded or run on the server. "
        "Please tell an administrator of archivist; the details are in the server's log."]
    assert at.text_area(key="too-long").value == QUESTION  # kept to send again
    assert ws.db.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0


def test_a_refused_question_being_shortened_is_not_lost(ws, monkeypatch):
    """AppTest: a question too long to ask stays in a box "to shorten and send again". Typing in that
    box reruns the page, and the box and the edited text were gone (nothing on the page could send it
    either). Now the box keeps the edit through reruns, "Ask this" sends it (refused again while still
    too long, the edit kept), and "Discard" clears it."""
    from streamlit.testing.v1 import AppTest

    from archivist import auth

    monkeypatch.setenv("ARCHIVIST_UI_WARMUP", "0")
    auth.create_first_admin(ws, USER, USER_PW)
    import archivist.ui

    at = AppTest.from_file(str(Path(archivist.ui.__file__).parent / "app.py"), default_timeout=60)
    at.session_state["_token"] = auth.create_session(ws, USER)
    at.run()
    pasted = "Why " + "really " * 3000 + "is lunch at 11:30?"  # a pasted page: refused before any model is needed
    at.chat_input(key="chat-input").set_value(pasted).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.text_area(key="too-long").value == pasted and at.error[0].value.startswith("Could not answer: ")
    said = at.error[0].value  # in words a newcomer counts in: it spoke of "512 tokens" and "the prompt"
    assert "21,022 characters" in said and "token" not in said and "prompt" not in said, said
    shorter = "Why " + "really " * 2500 + "is lunch at 11:30?"  # the newcomer cuts some of it, then clicks away
    at.text_area(key="too-long").set_value(shorter).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.text_area(key="too-long").value == shorter  # still there, as edited
    at.button(key="unsent-ask").click().run()  # still too long: refused again, the edit kept
    assert at.text_area(key="too-long").value == shorter and "17,522 characters" in at.error[0].value
    assert ws.db.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0  # a refused question is never stored
    at.button(key="unsent-drop").click().run()
    assert not at.exception and not at.error and not [t for t in at.text_area if t.key == "too-long"]


def test_the_app_shows_no_traceback_unless_the_operator_asks():
    """Streamlit's default shows a failing page's traceback (server paths, code) with "Ask Google" and
    "Ask ChatGPT" links carrying the message; `archivist ui` asks for its generic notice instead
    (the server's log keeps the details), and STREAMLIT_CLIENT_SHOW_ERROR_DETAILS still chooses."""
    from archivist.ui.cli import streamlit_command

    def flags(cmd: list[str]) -> dict[str, str]:  # "--name value" pairs, after `python -P -m streamlit run APP`
        start = cmd.index("run") + 2
        return dict(zip(cmd[start::2], cmd[start + 1::2]))

    assert flags(streamlit_command(env={}))["--client.showErrorDetails"] == "none"
    chosen = flags(streamlit_command(env={"STREAMLIT_CLIENT_SHOW_ERROR_DETAILS": "full"}))
    assert "--client.showErrorDetails" not in chosen
