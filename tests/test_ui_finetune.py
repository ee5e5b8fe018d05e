"""The fine-tune page (AppTest): dataset preview, memory estimate, a background run started and
cancelled, live metrics of a run, and choosing the adapter the chat uses."""

from __future__ import annotations

import os

import json
from pathlib import Path

import pytest

from archivist import adapters, auth
from archivist.finetune import runs
from conftest import ingest_texts

os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")  # no background model loading inside the test process
APP = str(Path(__file__).resolve().parent.parent / "ui" / "app.py")
HANDBOOK = ("# Leave\n\nEmployees get 20 weeks of fully paid parental leave under policy HR-17. "
            "The yearly learning budget is EUR 1,500 per person.\n\n# Hours\n\nCore working hours are 10:00 to 15:00.\n")
RUNBOOK = ("# On call\n\nThe on-call engineer answers pages within 15 minutes. Incidents of severity 1 are escalated "
           "to the duty manager after 30 minutes.\n")


@pytest.fixture
def ft_ws(ws, embedder, tmp_path):
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    ingest_texts(ws, embedder, tmp_path, {"default": {"handbook.md": HANDBOOK, "runbook.md": RUNBOOK}}, "alice")
    return ws


def page(ws, user: str = "alice"):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["_token"] = auth.create_session(ws, user)
    at.run()
    return at.switch_page("views/finetune.py").run()


def test_dataset_preview_estimate_and_a_background_run_cancelled(ft_ws):
    ws = ft_ws
    at = page(ws)
    assert not at.exception, [e.value for e in at.exception]
    assert any("fits" in m.value for m in at.success)  # the memory estimate of the planned run
    at.button(key="ft-build").click().run()
    assert not at.exception and not at.error
    preview = at.dataframe[0].value
    assert set(preview["split"]) <= {"train", "eval"} and len(preview) >= 2
    assert preview["question"].str.endswith("?").all()
    (name,) = [d.name for d in (ws.home / "datasets").iterdir() if not d.name.startswith(".")]
    assert any(name in c.value.replace("\\", "") for c in at.caption)  # "Trains on dataset <name>"
    at.number_input(key="ft-steps").set_value(2)
    at.button(key="ft-start").click().run()
    assert not at.exception
    (run,) = runs.list_runs(ws)
    assert run["config"]["dataset"] == name and run["config"]["max_steps"] == 2 and run["config"]["user"] == "alice"
    assert run["status"] in ("queued", "running") and run["pid"], (run["error"], (runs.run_dir(ws, run["id"]) / "log.txt").read_text())
    at.run()
    at.button(key=f"ft-cancel-{run['id']}").click().run()
    assert runs.get_run(ws, run["id"])["status"] == "cancelled"


def test_run_metrics_are_plotted_and_adapter_is_activated(ft_ws, tmp_path):
    ws = ft_ws
    run_id = runs.create_run(ws, {"data": ["docs"], "max_steps": 3})
    with open(runs.run_dir(ws, run_id) / "metrics.jsonl", "w") as f:
        for step, loss in enumerate([2.5, 2.0, 1.6], start=1):
            f.write(json.dumps({"step": step, "loss": loss, "tokens_per_s": 100.0 + step, "lr": 1e-4, "elapsed": step}) + "\n")
        f.write('{"step": 4, "lo')  # a line the trainer is writing right now
    runs.update_run(ws, run_id, "done", adapter="hr-v1")
    src = tmp_path / "adapter"
    src.mkdir()
    (src / "adapter_config.json").write_text("{}")
    m = {"n": 4, "base": {"accuracy": 0.25, "f1": 0.3, "citations": 0.5, "perplexity": 9.0},
         "adapter": {"accuracy": 0.75, "f1": 0.6, "citations": 0.75, "perplexity": 4.0}, "better": True, "reason": "better"}
    adapters.register(ws, "hr-v1", src, ws.settings.llm, m, {"dataset": {"name": "d"}}, run_id=run_id, activate=False)
    at = page(ws)
    assert not at.exception, [e.value for e in at.exception]
    runs_tab, adapters_tab = at.tabs[1], at.tabs[2]
    table = runs_tab.dataframe[0].value
    assert list(table["run"]) == [run_id] and table["loss"][0] == 1.6 and table["step"][0] == 3
    assert any(f"Run {run_id}" in md.value.replace("\\", "") for md in runs_tab.markdown)
    left, right = runs_tab.columns[0], runs_tab.columns[1]
    assert [left.markdown[0].value, right.markdown[0].value] == ["Loss", "Tokens per second"]
    assert len(left.children) == len(right.children) == 2  # each title with its line chart
    rows = adapters_tab.dataframe[0].value
    assert rows["accuracy (base → adapter)"][0] == "0.250 → 0.750" and rows["active"][0] == ""
    at.selectbox(key="ft-activate-pick").set_value("hr-v1").run()
    at.button(key="ft-activate-go").click().run()
    assert adapters.get(ws, "hr-v1")["active"]
    at.switch_page("views/chat.py").run()
    assert at.sidebar.selectbox(key="chat-adapter").value == "hr-v1"  # the chat preselects the active adapter


def test_members_cannot_activate_adapters(ft_ws):
    ws = ft_ws
    auth.create_user(ws, "bob", "bob-pass-12", by="alice")
    at = page(ws, "bob")
    assert not at.exception
    assert at.checkbox(key="ft-activate").disabled and at.checkbox(key="ft-activate").value is False
    assert "ft-activate-pick" not in [s.key for s in at.selectbox]


def test_start_training_needs_something_to_train_on(ft_ws):
    ws = ft_ws
    auth.create_user(ws, "carol", "carol-pass-12", by="alice")  # reads no collection
    at = page(ws, "carol")
    assert not at.exception
    assert at.button(key="ft-start").disabled
    assert "No collection is shared with you, so there is nothing to train on." in [c.value for c in at.caption]
    at = page(ws, "alice")
    assert not at.button(key="ft-start").disabled
    at.multiselect(key="ft-collections").set_value([]).run()  # unticking all would have meant every collection
    assert at.button(key="ft-start").disabled
    assert "Choose at least one collection, or a saved dataset, to train on." in [c.value for c in at.caption]
    assert runs.list_runs(ws) == []


def test_a_failed_run_offers_a_resume_only_when_it_saved_a_checkpoint(ft_ws):
    ws = ft_ws
    run_id = runs.create_run(ws, {"data": ["docs"], "max_steps": 3})
    runs.update_run(ws, run_id, "failed", error="the documents hold no facts to learn")
    label = lambda: page(ws).tabs[1].button(key=f"ft-resume-{run_id}").label  # noqa: E731
    assert label() == "Run it again (it saved no checkpoint)"  # a resume would start over from step 0
    folder = runs.run_dir(ws, run_id) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "latest").write_text("step-2")
    assert label() == "Resume from its checkpoint"
