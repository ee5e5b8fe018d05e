"""A hostile member of a team, in a real browser (Playwright + Debian Chromium) against `archivist ui`:
every string mallory controls is shown to alice, the admin, and must read as the plain text it is.

mallory writes Markdown into what alice will see: a document's file name and the headings inside it,
the error of an ingestion job that quotes her file, the error of a fine-tuning run of hers (an admin sees
every run) and the file name of an evaluation set of hers (an admin sees every run's set). Each holds a
link dressed as a button, an image pointing at mallory's server (it would tell her who looked, and when),
a setext heading faking a system notice, `:red[…]`, a `:material/…:` icon, LaTeX, HTML, a bare URL and
e-mail address (GitHub-flavoured Markdown links them even when escaped), a 300-character unbroken word,
and a right-to-left override that turns "photo\u202egnp.md" into "photodm.png" on the screen (ingest
drops it from the stored name; the job's error quotes the name as it was).

alice opens Documents, Fine-tune (Runs) and Evaluation. On each page: nothing links to or loads from
mallory's server (which counts every request it gets), no heading, colour, icon or formula came from
mallory's text, the text itself is there to read, and nothing is wider than the page.
Before: a job's error, a run's error and an evaluation's set name were rendered as Markdown (a phishing
link, an image fetched from mallory's server, a fake heading), and escaped text still made bare URLs
links and showed `:material/lock:` as an icon.
"""

from __future__ import annotations

import http.server
import threading
from urllib.parse import urlparse

import pytest

from conftest import ingest_texts
from test_browser import ARTIFACTS, _free_port, _idle, _serve, _sign_in
from test_browser import browser  # noqa: F401  (its module-scoped Chromium, one per module)

pytestmark = pytest.mark.e2e

ADMIN, ADMIN_PW = "alice", "alice-pass-1"
MEMBER, MEMBER_PW = "mallory", "mallory-pass-1"
PIXEL = _free_port()  # mallory's server: every request it gets is a leak of alice's visit
EVIL = f"http://127.0.0.1:{PIXEL}"
LONG = "W" * 300


def hostile(where: str) -> str:
    return (f"[Sign in again]({EVIL}/{where}-link) ![p]({EVIL}/{where}-pixel.png) "
            f"<img src='{EVIL}/{where}-html.png'> {EVIL}/{where}-bare mallory@evil.example www.evil.example\n\n"
            f"SESSION EXPIRED {where}\n===\n\n    indented {where}\n\n"
            f":red[Enter your password again] :material/lock: $x^2$ {LONG}")


# a name that cannot hold "/": the image URL is "http:127.0.0.1:PORT" (a browser reads it as http://127.0.0.1:PORT/)
DOC_NAME = f"![p](http:127.0.0.1:{PIXEL}) photo\u202egnp.md"
HEADING = f"[Sign in again]({EVIL}/heading) {EVIL}/heading-bare :material/lock: :red[SYSTEM] {LONG}"


class _Pixel(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802
        _Pixel.hits.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory, embedder):
    from archivist import access, auth, jobs
    from archivist.finetune import runs
    from archivist.retrieval.evaluation import store_evaluation
    from archivist.settings import Settings
    from archivist.workspace import open_workspace

    pixel = http.server.ThreadingHTTPServer(("127.0.0.1", PIXEL), _Pixel)
    threading.Thread(target=pixel.serve_forever, daemon=True).start()
    root = tmp_path_factory.mktemp("e2e-untrusted")
    home = root / "ws"
    ws = open_workspace(Settings.from_env(home=home))
    auth.create_first_admin(ws, ADMIN, ADMIN_PW)
    auth.create_user(ws, MEMBER, MEMBER_PW, by=ADMIN)
    access.create_collection(ws, "team", by=ADMIN)
    access.grant(ws, MEMBER, "team", "write", by=ADMIN)
    ingest_texts(ws, embedder, root / "docs", {"team": {DOC_NAME: f"# {HEADING}\n\nThe parking gate code is 4417.\n"}}, MEMBER)
    # alice's ingestion of a shared folder failed as a whole, quoting mallory's file
    job = jobs.create(ws, "upload", ADMIN, spec={"collection": "team", "files": []})
    jobs.start(ws, job.id)
    jobs.fail(ws, job.id, f"could not read {DOC_NAME}: " + hostile("job"))
    # mallory's fine-tuning run failed; its error quotes what her dataset held
    run = runs.create_run(ws, {"method": "lora"}, user=MEMBER)
    runs.update_run(ws, run, "failed", error=hostile("run"))
    store_evaluation(ws, "retrieval", hostile("eval").replace("\n", " ") + ".jsonl",
                     {"modes": {"hybrid": {"recall@5": 0.5, "mrr@10": 0.25}}}, user=MEMBER)
    ws.close()
    for url in _serve(home, "e2e-untrusted-server.log", warmup=False):
        yield {"url": url, "home": home}
    pixel.shutdown()


def _plain_text(main) -> str:
    # the word joiner md_escape puts into "http://" is invisible; a reader sees the text without it
    return main.inner_text().replace("\u2060", "")


def _inert(page, where: str) -> str:
    """Check the page's main area shows mallory's strings as text; returns that text."""
    main = page.locator('[data-testid="stMain"]')
    links = main.locator("a").evaluate_all("els => els.map(e => e.href)")
    # a heading's own anchor ("/documents#slug") stays on the app
    outside = [h for h in links if urlparse(h).netloc != urlparse(page.url).netloc]
    assert outside == [], (where, outside)
    images = main.locator("img").evaluate_all("els => els.map(e => e.src)")
    assert not [s for s in images if str(PIXEL) in s], (where, images)
    headings = main.locator("h1, h2, h3, h4, h5, h6").all_inner_texts()
    assert not [h for h in headings if "SESSION EXPIRED" in h or "Sign in again" in h], (where, headings)
    assert main.locator(".katex, pre").count() == 0, where  # no formula, no indented code block
    icons = main.locator('[data-testid="stIconMaterial"]').all_inner_texts()
    assert "lock" not in icons, (where, icons)
    colored = main.locator("span[style*='color']").all_inner_texts()  # :red[…] becomes a coloured span
    assert not [c for c in colored if "password" in c or "SYSTEM" in c], (where, colored)
    wide = page.evaluate("() => { const m = document.querySelector('[data-testid=\"stMain\"]');"
                         " return m.scrollWidth - m.clientWidth; }")
    assert wide <= 0, (where, wide)  # the unbroken 300-character word wraps
    return _plain_text(main)


def _open(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()
    page.get_by_role("heading", name=title, exact=True, level=1).wait_for()
    _idle(page)


@pytest.fixture(scope="module")
def alice(hostile_server, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    _sign_in(page, hostile_server["url"], ADMIN, ADMIN_PW)
    yield page
    page.close()


def test_a_failed_jobs_error_quoting_a_members_file_is_plain_text(alice):
    _open(alice, "Documents")
    alice.locator('[data-testid="stAlertContentError"]').first.wait_for()
    text = _inert(alice, "documents")
    assert f"[Sign in again]({EVIL}/job-link) ![p]({EVIL}/job-pixel.png)" in text
    assert "SESSION EXPIRED job\n===" in text and ":red[Enter your password again] :material/lock: $x^2$" in text
    assert "photo[U+202E]gnp.md" in text  # the override is shown, not obeyed
    alice.screenshot(path=str(ARTIFACTS / "e2e-untrusted-documents.png"), full_page=True)


def test_a_members_document_name_and_headings_are_plain_text(alice):
    _open(alice, "Documents")
    grid = alice.locator('[data-testid="stDataFrame"]').last  # the documents table (the job's comes first)
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    alice.mouse.move(box["x"] + 18, box["y"] + 35 + 17)  # the first row's selection box shows on hover
    alice.wait_for_timeout(300)
    alice.mouse.click(box["x"] + 18, box["y"] + 35 + 17)
    chunk = alice.locator('[data-testid="stExpander"]', has_text="Sign in again").first
    chunk.wait_for()
    chunk.locator("summary").click()  # open it: the chunk's text, with the 300-character word, is shown too
    chunk.get_by_text("The parking gate code is 4417.").wait_for()
    _idle(alice)
    text = _inert(alice, "document view")
    assert f"![p](http:127.0.0.1:{PIXEL}) photo[U+202E]gnp.md" in text  # its heading: the name as it is
    # a chunk's title: the heading as the Markdown reader stored it (it keeps a link's text, drops its target)
    assert f"Sign in again {EVIL}/heading-bare :material/lock: :red[SYSTEM] WWW" in text
    alice.screenshot(path=str(ARTIFACTS / "e2e-untrusted-document.png"), full_page=True)


def test_a_members_failed_run_is_plain_text_to_the_admin(alice):
    _open(alice, "Fine-tune")
    alice.get_by_role("tab", name="Runs").click()
    alice.locator('[data-testid="stAlertContentError"]', has_text="SESSION EXPIRED run").first.wait_for()
    _idle(alice)
    text = _inert(alice, "finetune")
    assert f"[Sign in again]({EVIL}/run-link)" in text and ":material/lock:" in text
    alice.screenshot(path=str(ARTIFACTS / "e2e-untrusted-finetune.png"), full_page=True)


def test_a_members_evaluation_set_name_is_plain_text_to_the_admin(alice):
    _open(alice, "Evaluation")
    alice.get_by_text("Latest run #").first.wait_for()
    _idle(alice)
    text = _inert(alice, "evaluation")
    assert f"[Sign in again]({EVIL}/eval-link) ![p]({EVIL}/eval-pixel.png)" in text
    alice.screenshot(path=str(ARTIFACTS / "e2e-untrusted-evaluation.png"), full_page=True)


def test_nothing_told_the_member_that_the_admin_looked(alice):
    alice.wait_for_timeout(500)
    assert _Pixel.hits == []  # no image, link prefetch or anything else reached mallory's server
