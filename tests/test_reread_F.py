"""Re-read F: three defects found re-reading the session's changes.

1. An old dataset (saved before schema 17, or whose correction was rejected since) trained a member's
   correction no admin approved: `archivist finetune --dataset OLD` loaded it as it was.
2. "two hundred days" was read as the number 2 with no unit, so a passage's "100 days" supported it.
3. A heading whose id names navigation and whose text is its own link (<h2 id="menu"><a href="#menu">
   Menu</a></h2>, as rustdoc writes section titles) was dropped as unmarked navigation.
"""

from __future__ import annotations

import pytest
from conftest import members_with_keys

from archivist import access, feedback
from archivist.finetune import dataset_store
from archivist.finetune.dataset_store import DatasetError, Example
from archivist.ingest.readers_html import read_html
from archivist.retrieval.verify import check_sentence, spelled_numbers

LIE = "Pages are answered within three days [1]."


def test_an_old_dataset_with_an_unapproved_correction_is_not_trained_on(ws, cli):
    access.create_collection(ws, "hr")
    members_with_keys(ws, {"bob": ("hr", "read")})
    fid = feedback.record_feedback(ws, "bob", "How fast are pages answered?", "Within 15 minutes [1].", rating=-1,
                                   correction=LIE, collection="hr", citations=[
                                       {"n": 1, "chunk_id": 1, "document": "oncall.md", "collection": "hr",
                                        "text": "The on-call engineer answers a page within 15 minutes."}])
    # as a dataset saved before the review gate holds it: bob's words as the target
    ex = Example(messages=[{"role": "user", "content": "How fast?"}, {"role": "assistant", "content": LIE}],
                 source="feedback", group=f"feedback:{fid}", question="How fast are pages answered?", answer=LIE)
    dataset_store.save_dataset(ws, "old", [ex], [], {"name": "old", "owner": "admin", "collections": ["hr"],
                                                     "sources": ["feedback"], "feedback": {"used": [fid]}})
    r = cli("finetune", "--dataset", "old")
    assert r.returncode == 2 and f"dataset 'old' learned corrections no admin has approved (feedback {fid})" in r.stderr, r.stderr
    ds = dataset_store.load_dataset(ws, "old", None)  # a preview still shows it
    feedback.review_correction(ws, None, fid, approve=False)
    with pytest.raises(DatasetError, match="build the dataset again"):
        dataset_store.check_reviewed(ws, ds)
    feedback.review_correction(ws, None, fid, approve=True)
    assert dataset_store.check_reviewed(ws, ds) is ds


def test_hundreds_in_words_are_read_whole():
    assert spelled_numbers("Logs are kept for two hundred days.") == [("200", "days")]
    assert spelled_numbers("a dozen steps, twenty-five hundred users") == [("12", "steps"), ("2500", "users")]
    said = "Logs are kept for two hundred days [1]."
    assert check_sentence(said, ["Logs are kept for 100 days."])[:2] == (False, "not in the cited passage: 200 days")
    assert check_sentence(said, ["Logs are kept for 200 days."])[0] is True


def test_a_heading_that_links_to_itself_is_not_navigation(tmp_path):
    page = tmp_path / "guide.html"
    page.write_text('<html><body><main><h1>Guide</h1><div class="menu"><a href="/">Home</a> <a href="/a">About</a></div>'
                    '<h2 id="menu"><a href="#menu">Menu</a></h2><p>The soup of the day is lentil.</p>'
                    '<h2 id="navigation" class="section-header"><a href="#navigation">Navigation</a></h2>'
                    '<p>Use the arrow keys to move between panes.</p></main></body></html>')
    blocks = [(b.text, b.heading) for b in read_html(page).blocks]
    assert blocks == [("Guide", ("Guide",)), ("Menu", ("Guide", "Menu")),
                      ("The soup of the day is lentil.", ("Guide", "Menu")),
                      ("Navigation", ("Guide", "Navigation")),
                      ("Use the arrow keys to move between panes.", ("Guide", "Navigation"))]


def test_a_retriever_run_whose_process_could_not_start_does_not_block_the_next(ws, monkeypatch):
    """Before: the job stayed queued under the app's own live process, and every later click was refused
    ("your retriever run ... is queued") until she cancelled it or the app restarted."""
    import subprocess

    from archivist import jobs
    from archivist.finetune import retriever

    access.create_collection(ws, "team")

    def no_fork(*a, **k):
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(subprocess, "Popen", no_fork)
    with pytest.raises(OSError):
        retriever.start_background(ws, None, ["team"], 64)
    (job,) = jobs.every(ws, ("retriever",))
    assert job.state == "failed" and "could not be started" in job.error
    with pytest.raises(OSError):  # not ValueError "your retriever run ... is queued"
        retriever.start_background(ws, None, ["team"], 64)
