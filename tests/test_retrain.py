"""Retraining a stale adapter, as an admin and a member would: one function (runs.retrain_config)
that the CLI's `--retrain` and the Fine-tune page's Retrain button both call; the new adapter's
lineage names the one it replaces, and `archivist adapters` and the page show it; an adapter that
another one replaced as the chat's no longer says it was "activated by hand"; and a revoked
member's feedback in an admin's fine-tune (docs/finetune.md, Access)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from archivist import access, adapters, feedback
from archivist.finetune import datasets, runs
from archivist.finetune.train import FinetuneConfig
from conftest import ingest_texts

pytestmark = pytest.mark.usefixtures("one_torch_thread")
os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")  # no background model loading inside the test process
APP = str(Path(__file__).resolve().parent.parent / "ui" / "app.py")

LEAVE = "# Leave\n\nFull-time employees receive 30 days of paid annual leave per calendar year.\n"
ONCALL = "# On-call\n\nEach engineer on call receives an allowance of EUR 250 per week.\n"


def _register(ws, tmp_path, name: str, settings: dict, collections=("hr",), stale: str | None = None) -> None:
    """Adapter `name` registered, not activated, with `settings` as its recorded config (its weights
    are not what these tests look at), stale for `stale` when given."""
    folder = tmp_path / f"{name}-weights"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    adapters.register(ws, name, folder, ws.settings.llm, {"better": False, "reason": "cannot tell"},
                      {"dataset": {"name": "d"}, "collections": list(collections), "settings": settings}, activate=False)
    if stale:
        adapters.mark_stale(ws, [name], stale)
        ws.db.commit()


@pytest.fixture
def hr_ops(ws, embedder, tmp_path):
    """hr and ops documents; member alice reads hr; adapter `weekly` (admin's, hr+ops, 40 steps,
    stale) and `alices` (alice's, hr, stale)."""
    ingest_texts(ws, embedder, tmp_path / "src", {"hr": {"leave.md": LEAVE}, "ops": {"oncall.md": ONCALL}})
    access.add_user(ws, "alice", "member")
    access.grant(ws, "alice", "hr", "read")
    _register(ws, tmp_path, "weekly", dataclasses.asdict(FinetuneConfig(data=["docs"], max_steps=40, user="admin")),
              ("hr", "ops"), stale="trained on a deleted document: pay.md")
    _register(ws, tmp_path, "alices", dataclasses.asdict(FinetuneConfig(data=["docs"], max_steps=5, user="alice")),
              ("hr",), stale="trained on a deleted document: pay.md")
    return ws


def test_retrain_config_is_the_stage_s_one_home_for_the_cli_and_the_page(hr_ops):
    ws = hr_ops
    # before: only the CLI's private _retrain_config(args) existed; the page could not offer a retrain
    cfg = runs.retrain_config(ws, "weekly", "admin", {"max_steps": 2})
    assert (cfg.name, cfg.replaces, cfg.max_steps, cfg.user, cfg.dataset) == ("weekly-r2", "weekly", 2, "admin", None)
    # a retrain queued already holds weekly-r2: a second one (a click twice) takes the next name
    runs.create_run(ws, dataclasses.asdict(cfg))
    again = runs.retrain_config(ws, "weekly", "admin")
    assert (again.name, again.replaces, again.max_steps) == ("weekly-r3", "weekly", 40)
    # a member retrains her own adapter, as herself
    mine = runs.retrain_config(ws, "alices", "alice")
    assert (mine.name, mine.replaces, mine.user, mine.max_steps) == ("alices-r2", "alices", "alice", 5)
    # alice may not read ops: to her, weekly is a name that does not exist, in the same words
    with pytest.raises(LookupError) as theirs:
        runs.retrain_config(ws, "weekly", "alice")
    with pytest.raises(LookupError) as missing:
        runs.retrain_config(ws, "nothing", "alice")
    assert str(theirs.value).replace("weekly", "X") == str(missing.value).replace("nothing", "X")
    with pytest.raises(ValueError, match="rebuilds its dataset from the current documents"):
        runs.retrain_config(ws, "weekly", "admin", {"dataset": "old"})


def test_a_retrain_s_lineage_names_the_adapter_it_replaces(ws, tiny, tmp_path, cli):
    """A real (tiny: 2 steps) retrain through `archivist finetune --retrain`, then `archivist adapters`."""
    recipe = FinetuneConfig(data=[str(tiny)], method="lora", batch_size=1, max_steps=2, lr=1e-3, max_seq_len=256,
                            warmup_steps=1, eval_limit=1, eval_max_new_tokens=4, threads=1, device="cpu", activate=False)
    _register(ws, tmp_path, "facts", dataclasses.asdict(recipe), collections=(), stale="trained on a deleted document: x.md")
    done = cli("finetune", "--retrain", "facts", "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    name = json.loads(done.stdout)["adapter"]["name"]
    assert name == "facts-r2"
    lineage = adapters.get(ws, name)["lineage"]
    # before: the lineage had no word of `facts` (only the -r2 in its name, which --name replaces)
    assert lineage["replaces"] == "facts" and lineage["settings"]["replaces"] == "facts"
    on_disk = json.loads((adapters.path(ws, name) / "lineage.json").read_text())
    assert on_disk["replaces"] == "facts"
    listed = {line.split()[0].lstrip("*"): line for line in cli("adapters").stdout.splitlines()[1:]}
    assert "retrains facts" in listed["facts-r2"] and "retrains" not in listed["facts"]
    assert json.loads(cli("adapters", "--json").stdout)[0]["lineage"]["replaces"] == "facts"


def test_an_adapter_another_one_replaced_no_longer_says_it_was_activated_by_hand(ws, tmp_path, cli):
    for name in ("first", "second"):
        _register(ws, tmp_path, name, {"data": ["docs"]}, collections=())
    assert cli("activate", "first").returncode == 0
    assert adapters.get(ws, "first")["note"] == "activated by admin by hand; at registration not activated: cannot tell"
    assert cli("activate", "second").returncode == 0
    # before: first (inactive now) kept "activated by admin by hand; ..." in `archivist adapters`
    notes = {r["name"]: (r["active"], r["note"]) for r in adapters.list_for(ws, "admin")}
    assert notes == {"first": (False, "not activated: cannot tell"),
                     "second": (True, "activated by admin by hand; at registration not activated: cannot tell")}
    listed = cli("adapters").stdout
    assert listed.count("activated by admin by hand") == 1 and "* second" in listed
    # back to the base model: neither says it is the chat's
    assert cli("activate", "none").returncode == 0
    assert {r["note"] for r in adapters.list_for(ws, "admin")} == {"not activated: cannot tell"}
    # and switched on again, by hand again
    assert cli("activate", "first").returncode == 0
    assert adapters.get(ws, "first")["note"].startswith("activated by admin by hand; at registration not activated")


def _page(ws, user: str):
    from streamlit.testing.v1 import AppTest

    from archivist import auth

    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["_token"] = auth.create_session(ws, user)
    at.run()
    return at.switch_page("views/finetune.py").run()


def test_the_page_retrains_a_stale_adapter_for_an_admin_and_a_member_their_own(hr_ops):
    from archivist import auth

    ws = hr_ops
    auth.set_password(ws, "admin", "admin-pass-1")
    auth.set_password(ws, "alice", "alice-pass-1")
    member = _page(ws, "alice")
    assert not member.exception, [e.value for e in member.exception]
    # alice sees her own stale adapter with a Retrain button; weekly (ops) is not hers to see at all
    keys = {b.key for b in member.button}
    assert "ft-retrain-alices" in keys and "ft-retrain-weekly" not in keys
    at = _page(ws, "admin")
    keys = {b.key for b in at.button}
    assert {"ft-retrain-alices", "ft-retrain-weekly"} <= keys  # before: only "run archivist finetune --retrain"
    at.button(key="ft-retrain-weekly").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    (run,) = runs.list_runs(ws, "admin")
    try:
        assert (run["config"]["name"], run["config"]["replaces"], run["config"]["max_steps"], run["config"]["user"]) == \
            ("weekly-r2", "weekly", 40, "admin")
        assert any("retrains weekly" in s.value for s in at.success)
        at.run()
        assert at.button(key="ft-retrain-weekly").disabled  # one retrain at a time, not a second copy
    finally:
        runs.cancel_run(ws, run["id"], "admin")


def test_a_revoked_member_s_feedback_stays_in_an_admin_s_dataset_and_out_of_theirs(hr_ops):
    """docs/finetune.md (Access): feedback is its writer's; access protects its passages' collections,
    judged for whoever builds the dataset. Revoking bob from ops keeps his ops feedback in an admin's
    dataset (the adapter then lists ops, so bob's chat keeps the base model) and out of his own."""
    ws = hr_ops
    access.add_user(ws, "bob", "member")
    for c in ("hr", "ops"):
        access.grant(ws, "bob", c, "read")
    oncall = ws.db.execute("SELECT c.id, c.text, d.path FROM chunks c JOIN documents d ON d.id = c.document_id "
                           "JOIN collections k ON k.id = d.collection_id WHERE k.name = 'ops'").fetchone()
    passage = {"chunk_id": oncall[0], "n": 1, "text": oncall[1], "document": oncall[2], "collection": "ops"}
    fid = feedback.record_feedback(ws, "bob", "What is the on-call allowance?", "EUR 200 per week.", -1,
                                   correction="EUR 250 per week [1].", citations=[passage], collection="ops")
    feedback.review_correction(ws, None, fid, approve=True)  # learned once an admin approved it
    access.revoke(ws, "bob", "ops")
    admins = datasets.build_dataset(ws, ["feedback"], user="admin", eval_fraction=0.0)
    assert [e.answer for e in admins.train if e.source == "feedback"] == ["EUR 250 per week."]
    with pytest.raises(ValueError):  # bob's own: the row's passage is in ops, which he no longer reads
        datasets.build_dataset(ws, ["feedback"], user="bob", eval_fraction=0.0)
