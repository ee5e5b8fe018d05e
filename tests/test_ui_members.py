"""A member (not an admin) of a team workspace going through every page the app shows them, and the
admin who set it up: each control is one the member may use and works, or says plainly why not.
Run headless with Streamlit's AppTest, on real workspaces, models and ingests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from archivist import access, auth

os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")  # no background model loading inside the test process
APP = str(Path(__file__).resolve().parent.parent / "ui" / "app.py")


def app(token: str | None = None, page: str | None = None):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=120)
    if token:
        at.session_state["_token"] = token
    at.run()
    if page:
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def team(ws) -> None:
    """admin (with a password) and nina, a member who may write `team`."""
    auth.create_first_admin(ws, "admin", "admin-pass-1")
    auth.create_user(ws, "nina", "nina-pass-1", by="admin")
    access.create_collection(ws, "team", by="admin")
    access.grant(ws, "nina", "team", "write", by="admin")


# -- sign-in ----------------------------------------------------------------------------------------


def test_a_user_name_typed_with_other_capitals_signs_in_as_that_user(ws):
    team(ws)
    at = app()
    at.text_input[0].set_value("Nina")
    at.text_input[1].set_value("nina-pass-1")
    at.button[0].click().run()
    assert not at.error, [e.value for e in at.error]  # was: "wrong user name or password"
    assert [t.value for t in at.title] == ["Chat"]
    assert auth.session_user(ws, at.session_state["_token"]) == "nina"
    assert any("Signed in as **nina** (member)" in c.value for c in at.sidebar.caption)
    # the wrong password is still wrong, whatever the capitals
    with pytest.raises(auth.AuthError, match="wrong user name or password"):
        auth.sign_in(ws, "NINA", "not-her-password")


def test_names_that_differ_only_in_case_are_not_created_and_old_ones_need_exact_typing(ws, cli):
    team(ws)
    with pytest.raises(ValueError, match="'nina' already exists"):
        auth.create_user(ws, "Nina", "other-pass-1", by="admin")
    r = cli("users", "add", "NINA")
    assert r.returncode != 0 and "'nina' already exists" in r.stderr
    assert [u["name"] for u in access.list_users(ws, by="admin")].count("nina") == 1
    r = cli("--user", "Nina", "documents")  # was: "… (create it with `archivist users add Nina`)", which is refused
    assert r.returncode != 0 and "no such user: 'Nina' (user names are exact here: did you mean 'nina'?)" in r.stderr
    assert "NINA" not in [u["name"] for u in access.list_users(ws, by="admin")]
    # two such users made by an earlier release: each signs in by the exact name, a third spelling is neither
    ws.db.execute("INSERT INTO users(name, role, password_hash) VALUES ('Nina', 'member', ?)", (auth.hash_password("big-nina-pw"),))
    ws.db.commit()
    assert auth.session_user(ws, auth.sign_in(ws, "Nina", "big-nina-pw")) == "Nina"
    assert auth.session_user(ws, auth.sign_in(ws, "nina", "nina-pass-1")) == "nina"
    for password in ("big-nina-pw", "nina-pass-1"):
        with pytest.raises(auth.AuthError):
            auth.sign_in(ws, "NINA", password)


# -- Documents ---------------------------------------------------------------------------------------

TRAVEL = "# Travel\n\nA hotel night is refunded up to 130 euro. Trains are booked in second class.\n"


def test_word_and_markdown_documents_show_a_blank_page_count_not_none(ws, embedder, tmp_path):
    from conftest import ingest_texts

    team(ws)
    docx = Path(__file__).resolve().parent.parent / "samples" / "travel-expense-policy.docx"
    from archivist.ingest.pipeline import ingest_paths

    ingest_paths(ws, [docx], collection="team", embedder=embedder, user="nina", progress=False)
    ingest_texts(ws, embedder, tmp_path, {"team": {"travel.md": TRAVEL}}, "nina")
    at = app(auth.create_session(ws, "nina"), "documents")
    table = next(d.value for d in at.dataframe if "pages" in d.value.columns)
    pages = {name: str(p) for name, p in zip(table["name"], table["pages"])}
    # was a null cell (pandas <NA>), which the grid writes as a grey "None"
    assert pages == {"travel-expense-policy.docx": "", "travel.md": ""}


def test_a_copy_uploaded_under_another_name_says_the_same_content_is_stored(ws, embedder):
    from archivist.ui import library

    team(ws)
    at = app(auth.create_session(ws, "nina"), "documents")
    at.file_uploader[0].set_value([("travel.md", TRAVEL.encode(), "text/markdown")])
    at.run()
    at.button(key="ingest").click().run()
    (job,) = library.jobs_for(ws, "nina")
    assert [(f.status, f.reason) for f in library.wait(job, timeout=120).files] == [("added", None)]
    at.run()
    at.button(key=f"dismiss-{job.id}").click().run()
    at.file_uploader[0].set_value([("Travel (copy).md", TRAVEL.encode(), "text/markdown")])
    at.run()
    at.button(key="ingest").click().run()
    (job,) = library.jobs_for(ws, "nina")
    (f,) = library.wait(job, timeout=120).files
    assert f.status == "added"  # kept as asked: the user may want both names
    assert f.reason == ("the same content is already stored as travel.md in team: now it is there twice "
                        "(delete one copy to keep one)")  # was None: no hint at all
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    table = next(d.value for d in at.dataframe if "reason" in d.value.columns)
    assert list(table["reason"]) == [f.reason]
    assert any("Travel \\(copy\\)\\.md\\: the same content is already stored as travel\\.md in team" in i.value for i in at.info)
    # the same file under the same name again: unchanged, and the table says why nothing happened
    at.button(key=f"dismiss-{job.id}").click().run()
    at.file_uploader[0].set_value([("travel.md", TRAVEL.encode(), "text/markdown")])
    at.run()
    at.button(key="ingest").click().run()
    (job,) = library.jobs_for(ws, "nina")
    assert [f.status for f in library.wait(job, timeout=120).files] == ["unchanged"]
    at.run()
    table = next(d.value for d in at.dataframe if "reason" in d.value.columns)
    assert list(table["reason"]) == ["already stored under this name with the same content: nothing to do"]  # was ""


def test_the_same_content_is_named_only_from_collections_the_uploader_may_read(ws, embedder, tmp_path):
    from archivist.ingest.pipeline import ingest_paths

    team(ws)
    access.create_collection(ws, "board", by="admin")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "minutes.md").write_text(TRAVEL)
    ingest_paths(ws, [tmp_path / "a" / "minutes.md"], collection="board", embedder=embedder, user="admin", progress=False)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "guess.md").write_text(TRAVEL)
    (r,) = ingest_paths(ws, [tmp_path / "b" / "guess.md"], collection="team", embedder=embedder, user="nina", progress=False)
    assert r.status == "added" and r.reason is None  # nina may not read board: nothing of it is confirmed


# -- Chat ----------------------------------------------------------------------------------------------


def test_sentences_left_out_of_an_answer_are_told_calmly_and_kept_collapsed(ws):
    from archivist import conversations

    team(ws)
    conv = conversations.start_conversation(ws, "nina")
    conversations.add_message(ws, conv, "nina", "user", "How much is a hotel night refunded?")
    claims = [{"text": "A hotel night is refunded up to 130 euro [1].", "claim": True, "supported": True},
              {"text": "Hotels must be booked in Paris.", "claim": True, "supported": False, "reason": "not in passage [1]"},
              {"text": "Breakfast is free.", "claim": True, "supported": False, "reason": "not in passage [1]"}]
    conversations.add_message(ws, conv, "nina", "assistant", "A hotel night is refunded up to 130 euro [1].",
                              meta={"status": "answered", "mode": "generated", "claims": claims,
                                    "question": "How much is a hotel night refunded?"})
    at = app(auth.create_session(ws, "nina"), "chat")
    labels = [e.label for e in at.chat_message[-1].expander]
    left_out = [label for label in labels if "left out" in label]
    # was "2 sentence(s) of the model's draft were dropped: the sources do not support them"
    assert left_out == ["2 sentences the model wrote were left out: the sources do not confirm them"]
    assert not any("dropped" in label for label in labels)
    box = next(e for e in at.chat_message[-1].expander if "left out" in e.label)
    assert not box.proto.expanded  # collapsed: the checked answer is what a reader sees first
    assert "Breakfast is free\\." in " ".join(m.value for m in box.markdown)


# -- Evaluation ----------------------------------------------------------------------------------------


def test_a_member_with_no_evaluation_is_told_what_the_page_is_for_and_how_runs_get_there(ws):
    team(ws)
    at = app(auth.create_session(ws, "nina"), "evaluation")
    said = " ".join(m.value for m in at.markdown) + " ".join(i.value for i in at.info)
    assert "measures how often search finds the right passages" in said  # was: only CLI commands
    assert "`archivist --user nina eval answers --set samples/QUESTIONS.jsonl`" in said  # runs she can see


def _answers(accuracy: float, adapter) -> dict:
    # the shape `archivist eval answers` stores (retrieval.evaluate.evaluate_answers); "adapter" None is the base model
    out = {"mode": "auto", "metrics": {"questions": 4, "answerable": 4, "unanswerable": 0, "accuracy": accuracy, "token_f1": accuracy,
                       "citation_precision": 0.9, "refusal_rate": 0.0},
           "per_question": [{"question": "q1", "gold": "130 euro", "answer": "130 euro [1]"}]}
    return out if adapter == "missing" else {**out, "adapter": adapter}


def test_evaluation_compares_answers_only_with_a_run_of_the_same_model(ws):
    from archivist.retrieval.evaluation import store_evaluation

    team(ws)
    store_evaluation(ws, "answers", "QUESTIONS.jsonl", _answers(0.25, None), user="nina")        # #1 base
    store_evaluation(ws, "answers", "QUESTIONS.jsonl", _answers(0.75, "ft-travel"), user="nina")  # #2 adapter
    at = app(auth.create_session(ws, "nina"), "evaluation")
    cards = {m.label: (m.value, m.delta) for m in at.metric}
    assert cards["accuracy"] == ("0.750", "")  # no delta; was 0.5: the base's score presented as this adapter's change
    captions = " ".join(c.value for c in at.caption)
    assert "answered by: adapter ft-travel" in captions
    assert "Not compared with run #1 on the same set, answered by: base model." in captions
    runs = at.dataframe[-2].value
    assert list(runs["answered by"]) == ["adapter ft-travel", "base model"]
    store_evaluation(ws, "answers", "QUESTIONS.jsonl", _answers(0.5, "ft-travel"), user="nina")   # #3 same adapter
    at.run()
    cards = {m.label: (m.value, m.delta) for m in at.metric}
    assert cards["accuracy"] == ("0.500", "-0.25")  # against #2, the same adapter, not #1
    assert "change since run #2" in " ".join(c.value for c in at.caption)
    store_evaluation(ws, "answers", "QUESTIONS.jsonl", {**_answers(0.9, "ft-travel"), "mode": "extractive"}, user="nina")
    at.run()  # #4: quoted passages, whatever the adapter: not the adapter's change either
    assert {m.label: m.delta for m in at.metric}["accuracy"] == ""
    assert "answered by: extractive mode (passages quoted, no model)" in " ".join(c.value for c in at.caption)
    store_evaluation(ws, "answers", "QUESTIONS.jsonl", _answers(0.5, "missing"), user="nina")     # #5 not recorded
    at.run()
    assert {m.label: m.delta for m in at.metric}["accuracy"] == ""
    assert "which model answered was not recorded" in " ".join(c.value for c in at.caption)


def test_the_first_admin_typed_with_a_capital_is_the_local_admin_not_a_second_user(ws):
    at = app()
    at.text_input[0].set_value("Admin")  # the form offers "admin"; a person may well capitalise it
    at.text_input[1].set_value("first-admin-pw")
    at.text_input[2].set_value("first-admin-pw")
    at.text_input[3].set_value(auth.issue_setup_code(ws))  # `archivist ui` prints it
    at.button[0].click().run()
    assert not at.exception and not at.error
    names = [u["name"] for u in access.list_users(ws, by="admin")]
    assert names == ["admin"]  # was ["Admin", "admin"]: then "admin" could not sign in, nor "ADMIN"
    assert auth.session_user(ws, at.session_state["_token"]) == "admin"
    assert any("Signed in as **admin** (admin)" in c.value for c in at.sidebar.caption)
    for typed in ("admin", "ADMIN", " Admin "):
        assert auth.session_user(ws, auth.sign_in(ws, typed, "first-admin-pw")) == "admin"


# -- Fine-tune -----------------------------------------------------------------------------------------


def test_a_member_is_told_in_words_what_the_fine_tune_controls_they_cannot_use_would_do(ws):
    team(ws)
    at = app(auth.create_session(ws, "nina"), "finetune")
    assert at.checkbox(key="ft-activate").disabled  # offered to admins only …
    captions = [c.value for c in at.caption]
    # … and said in words, not in a tooltip alone (was: nothing on the page for either)
    assert any("Only an admin makes an adapter the one everyone's chat uses" in c for c in captions)
    assert any("Only an admin can switch search to an adapted embedder" in c for c in captions)
    admin = app(auth.create_session(ws, "admin"), "finetune")
    assert not admin.checkbox(key="ft-activate").disabled
    assert not any("Only an admin" in c.value for c in admin.caption)


def test_a_members_retriever_run_does_not_hand_them_a_server_path(ws, embedder, tmp_path):
    import psutil
    from conftest import ingest_texts

    team(ws)
    ingest_texts(ws, embedder, tmp_path, {"team": {"travel.md": TRAVEL}}, "nina")
    at = app(auth.create_session(ws, "nina"), "finetune")
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    try:
        at.button(key="rt-start").click().run()
    finally:  # the real background run it started: stopped at once, this test is about what the page says
        for p in psutil.Process().children(recursive=True):
            if p.pid not in before:
                p.kill()
    (said,) = [s.value for s in at.success if "Started in the background" in s.value]
    assert str(ws.home) not in said and "log" not in said  # was: "Started in the background; its log: /…/runs/retriever-….log"
    assert "listed below when it is done" in said
