"""Stored evaluations belong to the user who ran them (issue 17, leak 3).

The admin evaluates on questions about a secret document; a member must not see those questions,
the gold answers or the documents, on the Evaluation page or through the module that owns the table.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from archivist import auth
from archivist.cli import main

os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")  # no background model loading inside the test process
APP = str(Path(__file__).resolve().parent.parent / "ui" / "app.py")
SECRET = "zephyrquail"


def _page(ws, user: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["_token"] = auth.create_session(ws, user)
    at.run()
    return at.switch_page("views/evaluation.py").run()


def _shown(at) -> str:
    """Every text and table cell the page rendered, as one string."""
    parts = [e.value for kind in ("markdown", "caption", "info", "warning", "title") for e in getattr(at, kind)]
    parts += [m.label + str(m.value) for m in at.metric]
    parts += [df.value.to_csv() for df in at.dataframe]
    parts += [str(o) for s in at.selectbox for o in s.options]
    return "\n".join(map(str, parts))


def _admin_runs_eval_on_a_secret(ws, tmp_path, embedder, capsys) -> int:
    """The local admin runs `archivist eval retrieval` on a question naming the secret; returns the run's id."""
    from archivist.ingest.pipeline import ingest_paths

    doc = tmp_path / "finance-plan.md"
    doc.write_text(f"# Launch\n\nThe launch code word is {SECRET}; the acquisition target is Voltaris.\n")
    ingest_paths(ws, [doc], collection="finance", embedder=embedder, progress=False)
    qset = tmp_path / "secret-set.jsonl"
    qset.write_text(json.dumps({"question": f"Is the launch code word {SECRET}?", "relevant": ["finance-plan.md"]}))
    assert main(["eval", "retrieval", "--set", str(qset), "--mode", "lexical", "--json"]) == 0  # as the local admin
    return json.loads(capsys.readouterr().out)["id"]


def test_member_does_not_see_the_admins_evaluation_on_the_page(ws, tmp_path, embedder, capsys):
    auth.create_first_admin(ws, "admin", "admin-pass-1")
    auth.create_user(ws, "member-b", "member-b-pass", by="admin")
    admins = _admin_runs_eval_on_a_secret(ws, tmp_path, embedder, capsys)

    at = _page(ws, "member-b")
    assert not at.exception, [e.value for e in at.exception]
    assert SECRET not in _shown(at) and "finance-plan.md" not in _shown(at)
    assert any("No evaluation has run" in i.value for i in at.info)

    # member-b's own run (the CLI stores it as the acting user) is what their page shows
    qset = tmp_path / "canteen-set.jsonl"
    qset.write_text(json.dumps({"question": "What does the canteen serve?", "relevant": ["menu.md"]}))
    assert main(["eval", "retrieval", "--set", str(qset), "--mode", "lexical", "--user", "member-b"]) == 0
    at = _page(ws, "member-b")
    assert not at.exception, [e.value for e in at.exception]
    assert "canteen-set.jsonl" in _shown(at) and SECRET not in _shown(at) and "finance-plan.md" not in _shown(at)

    at = _page(ws, "admin")  # the admin sees both, and whose each is
    assert not at.exception, [e.value for e in at.exception]
    assert list(at.dataframe[-2].value["by"]) == ["member-b", "admin"]
    at.selectbox(key="eval-run-retrieval").set_value(admins).run()
    assert SECRET in _shown(at) and "finance-plan.md" in _shown(at)


def test_a_member_lists_and_opens_only_their_own_evaluations(ws):
    from archivist import access
    from archivist.retrieval import evaluation as ev

    access.add_user(ws, "member-a")
    access.add_user(ws, "member-b")
    secret = {"metrics": {"accuracy": 1.0}, "per_question": [{"question": "launch code?", "gold": SECRET,
                                                              "cited_documents": ["finance-plan.md"]}]}
    admins = ev.store_evaluation(ws, "answers", "finance.jsonl", secret, user=None)  # the acting user: the local admin
    mine = ev.store_evaluation(ws, "retrieval", "canteen.jsonl", {"modes": {"dense": {"hit@5": 1.0}}}, user="member-b")

    listed = ev.list_evaluations(ws, user="member-b")
    assert [(e.id, e.user, e.set_name) for e in listed] == [(mine, "member-b", "canteen.jsonl")]
    assert ev.list_evaluations(ws, user="member-b", kind="answers") == []
    assert ev.list_evaluations(ws, user="member-a") == []
    with pytest.raises(LookupError, match=f"no evaluation #{admins}$"):
        ev.get_evaluation(ws, admins, user="member-b")
    with pytest.raises(LookupError, match="no evaluation #9999$"):  # the same words as a missing one
        ev.get_evaluation(ws, 9999, user="member-b")
    assert ev.get_evaluation(ws, mine, user="member-b").results == {"modes": {"dense": {"hit@5": 1.0}}}

    # the admin sees everyone's, with whose each is
    assert [(e.id, e.user) for e in ev.list_evaluations(ws, user="admin")] == [(mine, "member-b"), (admins, "admin")]
    assert ev.get_evaluation(ws, admins, user="admin").results["per_question"][0]["gold"] == SECRET
    # a deleted member's runs stay, visible to admins only
    access.delete_user(ws, "member-b")
    assert [(e.id, e.user) for e in ev.list_evaluations(ws, user="admin")] == [(mine, None), (admins, "admin")]
    with pytest.raises(access.AccessDenied):
        ev.list_evaluations(ws, user="member-b")
    with pytest.raises(access.AccessDenied):
        ev.store_evaluation(ws, "retrieval", "x.jsonl", {}, user="nobody-such")


def test_evaluations_stored_before_owners_belong_to_the_local_admin(tmp_path):
    import sqlite3

    from archivist.retrieval import evaluation as ev
    from archivist.settings import Settings
    from archivist.workspace import MIGRATIONS, _split_sql, open_workspace

    home = tmp_path / "old"
    home.mkdir()
    db = sqlite3.connect(home / "archivist.db")
    for n in range(4):  # a workspace of schema 4, before evaluations had owners
        for statement in _split_sql(MIGRATIONS[n]):
            db.execute(statement)
    db.execute("PRAGMA user_version = 4")
    db.execute("INSERT INTO users(name, role) VALUES ('admin', 'admin'), ('member-b', 'member')")
    db.execute("""INSERT INTO evaluations(kind, set_name, results) VALUES ('answers', 'old.jsonl', '{"metrics": {}}')""")
    db.commit()
    db.close()

    with open_workspace(Settings.from_env(home=home)) as ws:
        (old,) = ev.list_evaluations(ws, user="admin")
        assert (old.user, old.set_name, old.results) == ("admin", "old.jsonl", {"metrics": {}})
        assert ev.list_evaluations(ws, user="member-b") == []
