"""What a newcomer reads first: the ingest summary's counts, the Documents page's list of accepted
kinds, the note under a demo answer, and `make test`'s progress."""

from __future__ import annotations


def test_ingest_counts_agree_with_their_number(cli, tmp_path):
    """One file of one chunk was summed up as "1 files: 1 added; 1 chunks written", and deleting it said
    "(1 chunks)": every count the ingest CLI prints (and a job's message) now takes the singular for one."""
    from archivist.ingest.folders import FileResult, counts_line

    note = tmp_path / "badge.txt"
    note.write_text("Visitor badges are returned to the front desk before leaving the building.")
    r = cli("ingest", str(note), "-c", "notes", "-q")
    assert r.returncode == 0, r.stderr
    row, summary = r.stdout.strip().splitlines()[-2:]
    assert (row.split()[0], row.split()[2:4]) == ("added", ["1", "chunk"])
    assert summary == "1 file: 1 added, 0 updated, 0 unchanged, 0 failed; 1 chunk written, 1 embedded"

    d = cli("delete", "badge.txt", "-c", "notes")
    assert d.returncode == 0, d.stderr
    assert d.stdout.strip() == "deleted badge.txt (1 chunk) from notes"

    assert counts_line([FileResult("a.txt", "added", 1)]) == "1 file: 1 added"
    assert counts_line([FileResult("a.txt", "added", 1), FileResult("b.txt", "failed")]) == "2 files: 1 added, 1 failed"


def test_the_upload_caption_names_every_kind_the_readers_accept(ws):
    """The Documents page's uploader listed a hand-written set of kinds that left out GIF, which the
    README and the image reader accept: it now names the readers' own labels and image names."""
    import os
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from archivist import auth
    from archivist.ingest.readers import LABELS

    os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "ui" / "app.py"), default_timeout=60)
    at.session_state["_token"] = auth.create_session(ws, "alice")
    at.run()
    at = at.switch_page("views/documents.py").run()
    assert not at.exception
    label = at.file_uploader[0].label
    assert ".gif" in label and ".png" in label and ".webp" in label and ".tiff" in label, label
    assert all(name in label for kind, name in LABELS.items() if kind != "image"), label
    at.file_uploader[0].set_value([("parking.md", b"# Parking\n\nVisitors park in lot C.\n", "text/markdown")])
    at.run()
    assert at.button(key="ingest").label == "Ingest 1 file"


def test_the_note_under_a_quote_that_replaced_a_shown_draft_says_plainly_what_happened():
    """The README's demo question (`make run`, on a terminal) ended "(answered; quoted from the documents;
    this replaces the model's draft shown while it was written: the passages do not support 27 of its
    sentence(s))", which read as a fault on a first run. It now says what happened without the count;
    a generated answer names its left-out sentences in agreeing words."""
    from archivist.records import Answer
    from archivist.retrieval.cli import status_line

    def claims(*supported):
        return [{"sentence": f"s{i}", "supported": s} for i, s in enumerate(supported)]

    quoted = Answer("q", "20 weeks [1]", [], [], mode="extractive", claims=claims(*[False] * 27))
    assert status_line(quoted, draft_shown=True) == (
        "(answered; quoted from the documents; the documents do not support the model's draft shown while it "
        "was written, so the passages are quoted instead)")
    assert status_line(quoted, draft_shown=False) == "(answered; quoted from the documents)"
    generated = Answer("q", "20 weeks [1].", [], [], mode="generated", claims=claims(True, False))
    assert status_line(generated, draft_shown=True) == (
        "(answered; written by the model; every claim found in its sources; 1 sentence the model wrote was left out: "
        "the documents do not support it)")
    generated.claims = claims(True, False, False)
    assert status_line(generated, draft_shown=False).endswith("; 2 sentences the model wrote were left out: "
                                                              "the documents do not support them)")


def test_make_test_shows_its_workers_collected_before_the_first_dot(tmp_path):
    """`make test` (pytest-xdist with -q) printed "bringing up nodes..." and then nothing for minutes while
    the workers imported the tests. The command it runs now says how many workers it started and,
    once they have collected, how many tests they share: run here on one light test of this file."""
    import os
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    planned = subprocess.run(["make", "-n", "test", "PYTEST_N=2"], cwd=root, capture_output=True, text=True, check=True)
    command = [ln for ln in planned.stdout.splitlines() if "-m pytest" in ln][-1]
    assert "make test:" in planned.stdout and " -q" not in command, planned.stdout
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}  # not a worker of this run
    out = subprocess.run(command.split() + ["--basetemp", str(tmp_path / "pt"), "tests/test_polish.py", "-k", "note_under"],
                         cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "created: 2/2 workers" in out.stdout and "2 workers [1 item]" in out.stdout, out.stdout
