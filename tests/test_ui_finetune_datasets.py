"""The fine-tune page's datasets (AppTest): a member sees only their own saved datasets, never
another user's preview, and the page learns from documents plus feedback by default."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from archivist import access, auth
from archivist.finetune.datasets import build_dataset
from conftest import ingest_texts

os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")  # no background model loading inside the test process
APP = str(Path(__file__).resolve().parent.parent / "ui" / "app.py")
FINANCE = "# Board notes\n\nThe launch code for project Kestrel is ZEBRA-7731, valid from 1 March 2027.\n"
CANTEEN = "# Canteen\n\nThe canteen opens at 11:30 on working days. A lunch costs EUR 4.50 for employees.\n"


@pytest.fixture
def office(ws, embedder, tmp_path):
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    auth.create_user(ws, "bob", "bob-pass-12", by="alice")
    ingest_texts(ws, embedder, tmp_path, {"finance": {"finance.md": FINANCE}, "canteen": {"canteen.md": CANTEEN}}, "alice")
    access.grant(ws, "bob", "canteen", "write", by="alice")
    build_dataset(ws, ["docs"], user="alice", collections=["finance"], name="finance-qa", eval_fraction=0, embedder=embedder)
    build_dataset(ws, ["docs"], user="bob", name="canteen-qa", eval_fraction=0, embedder=embedder)
    return ws


def page(ws, user: str, **state):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["_token"] = auth.create_session(ws, user)
    at.run()
    at.switch_page("views/finetune.py")
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def test_a_member_sees_only_their_own_datasets_and_no_other_preview(office):
    ws = office
    at = page(ws, "bob")
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="ft-dataset").options == ["— build a new one —", "canteen-qa"]
    assert at.multiselect(key="ft-sources").value == ["docs", "feedback"]  # documents plus feedback by default
    # a dataset name smuggled into the page's state is refused like an unknown one, and not trained on
    at = page(ws, "bob", **{"ft-dataset-built": "finance-qa"})
    assert not at.exception
    assert [e.value for e in at.error] == [f"no dataset named 'finance-qa' (under {ws.home / 'datasets'})"]
    assert not at.dataframe or "ZEBRA" not in at.dataframe[0].value.to_string()
    assert all("ZEBRA" not in t.value for t in at.text)
    assert at.button(key="ft-start").disabled
    # the admin sees both
    at = page(ws, "alice")
    assert set(at.selectbox(key="ft-dataset").options) == {"— build a new one —", "canteen-qa", "finance-qa"}
