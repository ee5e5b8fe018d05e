"""What the chat page and the fine-tune loop did wrong when two people (or two processes) acted at once:
a grant revoked while the chat page prepared an answer, two retrains of one adapter, two registrations
of one adapter name, and a run resumed on another device."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from archivist import access, auth
from conftest import ingest_texts

APP = str(Path(__file__).resolve().parent.parent / "ui" / "app.py")
PARKING = ("# Visitor parking\n\nVisitors park in lot C behind the warehouse. The gate code for lot C is 4417. "
           "Parking in lot A is reserved for delivery trucks.\n")


@pytest.mark.slow  # the chat model generates
def test_the_chat_page_does_not_save_an_answer_after_its_reader_lost_the_collection(ws, embedder, tmp_path, monkeypatch):
    """The API checked both lost access and erased documents before saving an answer; the chat page
    only the second. A grant revoked after the draft's last piece (while the answer was checked) left
    the finished answer saved in the member's conversation. Now both surfaces call one check
    (retrieval.answer.withhold_unsaved) in the saving transaction."""
    from streamlit.testing.v1 import AppTest

    from archivist import conversations
    from archivist.retrieval import answer as answer_module

    os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")
    monkeypatch.setenv("ARCHIVIST_MAX_NEW_TOKENS", "16")
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    auth.create_user(ws, "bob", "bob-pass-12", by="alice")
    ingest_texts(ws, embedder, tmp_path / "docs", {"facilities": {"parking.md": PARKING}}, "alice")
    access.grant(ws, "bob", "facilities", "read", by="alice")
    real_settle = answer_module.settle

    def revoked_while_checking(*args, **kwargs):  # the admin revokes bob's grant after the draft was written
        access.revoke(ws, "bob", "facilities", by="alice")
        return real_settle(*args, **kwargs)

    monkeypatch.setattr(answer_module, "settle", revoked_while_checking)
    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["_token"] = auth.create_session(ws, "bob")
    at.run()
    at.chat_input(key="chat-input").set_value("What is the gate code for visitor parking in lot C?").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("lost read access to facilities" in e.value.replace("\\", "") for e in at.error), [e.value for e in at.error]
    (conv,) = conversations.list_conversations(ws, "bob")
    stored = ws.db.execute("SELECT role, content FROM messages WHERE conversation_id = ?", (conv["id"],)).fetchall()
    assert [r["role"] for r in stored] == ["user"]  # the question only: no copy of the passage's text was saved
    assert not any("4417" in r["content"] for r in stored)


def _saved_adapter(folder: Path, weights: bytes) -> Path:
    """A folder as PEFT's save_pretrained leaves it (its config and its weights file)."""
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.safetensors").write_bytes(weights)
    return folder


def test_two_registrations_of_one_name_keep_the_winners_weights_with_its_row(ws, tmp_path, monkeypatch):
    """`adapters.register` copied into one fixed folder per name (adapters/.<name>.tmp), removed first:
    of two registrations of one name at once, the second removed the first one's half-made copy and
    copied its own into the same folder, so the adapter registered held the other run's weights (or one
    of them failed on a folder gone under it). Now each copies into a folder of its own
    (files.building), and the name is checked again in the transaction that renames it into place."""
    import shutil
    import threading

    from archivist import adapters
    from archivist.workspace import open_workspace

    sources = {run: _saved_adapter(tmp_path / run, run.encode() * 4096) for run in ("run-a", "run-b")}
    both_copying = threading.Barrier(2, timeout=10)
    real_copytree = shutil.copytree

    def copy_then_wait(src, dst, *args, **kwargs):  # each registration has copied before either goes on
        out = real_copytree(src, dst, *args, **kwargs)
        both_copying.wait()
        return out

    monkeypatch.setattr(shutil, "copytree", copy_then_wait)
    outcome: dict[str, object] = {}

    def register(run: str) -> None:
        own = open_workspace(ws.settings)  # each registering process has its own connection
        try:
            outcome[run] = adapters.register(own, "hr", sources[run], own.settings.llm, {"better": False, "reason": "t"},
                                             {"dataset": {"name": "d"}, "documents": [], "collections": []}, run_id=run)
        except Exception as e:  # noqa: BLE001 - the loser's error is what the test reads
            outcome[run] = e
        finally:
            own.close()

    threads = [threading.Thread(target=register, args=(run,)) for run in sources]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    won = [run for run, o in outcome.items() if isinstance(o, dict)]
    lost = [o for o in outcome.values() if not isinstance(o, dict)]
    assert len(won) == 1 and len(lost) == 1, outcome
    assert isinstance(lost[0], ValueError) and "an adapter named 'hr' already exists" in str(lost[0])
    rec = adapters.get(ws, "hr")
    assert rec["run_id"] == won[0]
    folder = adapters.path(ws, "hr")
    assert (folder / "adapter_model.safetensors").read_bytes() == won[0].encode() * 4096  # its own weights
    assert sorted(p.name for p in (ws.home / "adapters").iterdir()) == ["hr"]  # no copy left beside it


@pytest.fixture
def stale_pair(ws, tmp_path):
    """Member alice reads hr. Stale adapters: `weekly` (the admin's), `weekly-r2` (its earlier retrain,
    stale too) and `alices` (alice's own), all trained on hr."""
    import dataclasses

    from archivist import adapters
    from archivist.finetune.train import FinetuneConfig

    access.add_user(ws, "alice", "member")
    access.create_collection(ws, "hr")
    access.grant(ws, "alice", "hr", "read")
    for name, who in (("weekly", "admin"), ("weekly-r2", "admin"), ("alices", "alice")):
        settings = dataclasses.asdict(FinetuneConfig(data=["docs"], max_steps=3, user=who))
        adapters.register(ws, name, _saved_adapter(tmp_path / name, b"w"), ws.settings.llm, {"better": False, "reason": "t"},
                          {"dataset": {"name": "d"}, "collections": ["hr"], "settings": settings}, activate=False)
        adapters.mark_stale(ws, [name], "trained on a deleted document: pay.md")
    ws.db.commit()
    return ws


def test_two_retrains_started_at_once_never_both_train(stale_pair):
    """`retrain_config` chose the name (<stem>-rN, free when it looked) and `create_run` recorded the run
    later, unchecked: two retrains started at the same instant both became runs. Of one adapter, both
    trained (the second then failed at registration, its training lost); of `weekly` and `weekly-r2`
    (both name weekly-r3), likewise. Now the run is checked and its name claimed in the transaction
    that records it: a second retrain of one adapter is refused at once, naming the first's run, and
    a retrain whose name another run took meanwhile gets the next one."""
    import dataclasses

    from archivist.finetune import runs

    ws = stale_pair
    first, second = (runs.retrain_config(ws, "weekly", "admin") for _ in range(2))  # both looked before either started
    assert first.name == second.name == "weekly-r3"
    run = runs.create_run(ws, dataclasses.asdict(first))
    with pytest.raises(ValueError, match=f"weekly is already being retrained by run {run} \\(queued, as admin\\)"):
        runs.create_run(ws, dataclasses.asdict(second))
    other = runs.retrain_config(ws, "weekly-r2", "admin")  # another adapter of the same stem, looked at once too
    assert other.name == "weekly-r4"
    stale_view = dataclasses.replace(other, name="weekly-r3")  # what it chose had it looked before `run` was recorded
    moved = runs.create_run(ws, dataclasses.asdict(stale_view))
    names = {r["id"]: r["config"]["name"] for r in runs.list_runs(ws, "admin")}
    assert names == {run: "weekly-r3", moved: "weekly-r4"}
    assert [r["config"]["replaces"] for r in runs.list_runs(ws, "admin")].count("weekly") == 1
    # a name given by hand that a queued run will register is refused before training, not after
    with pytest.raises(ValueError, match="the adapter name 'weekly-r3' is taken \\(run .* will register it\\)"):
        runs.create_run(ws, {"name": "weekly-r3", "data": ["docs"]})


def test_who_may_retrain_whose_adapter_is_one_rule_for_the_cli_and_the_page(stale_pair, cli):
    """A member could retrain an admin's adapter through the CLI (`--retrain`), though the page offered
    her no button for it, and could start a second retrain of her own while an admin's retrain of it
    was queued. Now `runs.may_retrain` is the rule both use: an admin retrains any adapter, a member
    her own; and a retrain under way refuses another, whoever starts it."""
    from archivist import access as acc
    from archivist.finetune import runs

    ws = stale_pair
    refused = cli("finetune", "--retrain", "weekly", "--user", "alice", "--estimate-only")
    assert refused.returncode == 2 and "alice may not retrain weekly" in refused.stderr, (refused.returncode, refused.stderr)
    with pytest.raises(acc.AccessDenied, match="alice may not retrain weekly: a member retrains only the adapters"):
        runs.retrain_config(ws, "weekly", "alice")
    assert [runs.may_retrain(ws, u, n) for u, n in (("alice", "weekly"), ("alice", "alices"), ("admin", "alices"))] == \
        [False, True, True]
    # the admin's retrain of alice's adapter is queued: alice's own retrain of it is refused, naming it
    import dataclasses

    run = runs.create_run(ws, dataclasses.asdict(runs.retrain_config(ws, "alices", "admin")))
    with pytest.raises(ValueError, match="alices is already being retrained by another user's run; wait for it$"):
        runs.create_run(ws, dataclasses.asdict(runs.retrain_config(ws, "alices", "alice")))  # the admin's run is no run of hers
    with pytest.raises(ValueError, match=f"alices is already being retrained by run {run} \\(queued, as admin\\)"):
        runs.create_run(ws, dataclasses.asdict(runs.retrain_config(ws, "alices", "admin")))


@pytest.mark.slow  # two short real runs of the tiny recipe
def test_a_run_resumes_on_another_device_with_the_method_it_started_with(ws, tiny, cli, one_torch_thread):
    """`archivist finetune --resume RUN --device D` was refused whenever D differed from the run's
    recorded device ("auto" by default), though nothing in a checkpoint is tied to a device (tensors
    saved from the CPU, the optimizer's state moved to its parameters' device as it loads). Now the run
    moves (runs.move_run), its checkpoint records the device it trained on, and a run whose method is
    `auto` keeps the method it chose there. (CPU to GPU is the same path; this machine has no GPU.)"""
    import json
    import signal
    import threading
    import time

    from archivist import adapters
    from archivist.finetune import checkpoints, runs
    from archivist.finetune.train import FinetuneConfig, run

    cfg = FinetuneConfig(data=[str(tiny)], batch_size=1, max_steps=8, save_every=1, lr=1e-3, max_seq_len=256,
                         eval_limit=1, eval_max_new_tokens=4, name="moved", activate=False)  # device and method: auto
    latest = []

    def cancel_after_the_first_checkpoint() -> None:  # as `archivist runs --cancel` does: SIGTERM, it checkpoints
        deadline = time.time() + 300
        while time.time() < deadline and not latest:
            found = list((ws.home / "runs").glob("*/checkpoints/latest"))
            if found:
                latest.append(found[0])
                os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)

    watcher = threading.Thread(target=cancel_after_the_first_checkpoint)
    watcher.start()
    first = run(ws, cfg, progress=False, say=lambda m: None)
    watcher.join()
    assert first["status"] == "cancelled" and first["method"] == "lora", first
    run_id = first["run_id"]
    stopped_at = runs.read_metrics(ws, run_id)[-1]["step"]
    assert 1 <= stopped_at < 8 and runs.get_run(ws, run_id)["config"]["device"] == "auto"
    # a flag other than --device that differs from the run's own is still refused
    refused = cli("finetune", "--resume", run_id, "--max-steps", "9")
    assert refused.returncode != 0 and "continues the run with its own settings (max_steps 8)" in refused.stderr
    done = cli("finetune", "--resume", run_id, "--device", "cpu", "--json", "--quiet")
    assert done.returncode == 0, done.stderr  # before: refused, "(device 'auto'); leave out --device"
    result = json.loads(done.stdout)
    assert result["status"] == "done" and result["method"] == "lora"
    assert [m["step"] for m in runs.read_metrics(ws, run_id)] == list(range(1, 9))
    assert runs.get_run(ws, run_id)["config"]["device"] == "cpu"
    assert adapters.get(ws, "moved")["lineage"]["device"] == "cpu"
    # the checkpoint says where it trained: a resume elsewhere with method auto keeps lora (train.setup)
    assert checkpoints.latest_state(ws.home / "runs" / run_id / "checkpoints")["device"] == "cpu"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the refusal is for a machine without a GPU")
def test_a_run_asked_to_train_on_cuda_without_a_gpu_says_so_and_moves_back(ws, tiny, cli, one_torch_thread):
    """`--device cuda` on a machine without a GPU ended in torch's traceback (AttributeError:
    module 'torch._C' has no attribute '_cuda_setDevice'); a run moved there with `--resume RUN
    --device cuda` would too. Now a sentence, and the run resumes with `--device cpu`."""
    from archivist.finetune import runs

    args = ("--data", str(tiny), "--max-steps", "1", "--batch-size", "1", "--max-seq-len", "256", "--eval-limit", "1",
            "--eval-max-new-tokens", "2", "--name", "here", "--no-activate", "--quiet")
    failed = cli("finetune", *args, "--device", "cuda")
    assert failed.returncode == 2 and "--device cuda, but torch finds no CUDA GPU here" in failed.stderr, failed.stderr[-800:]
    assert "Traceback" not in failed.stderr
    (run,) = runs.list_runs(ws, "admin")
    assert run["status"] == "failed" and "no CUDA GPU" in run["error"]
    done = cli("finetune", "--resume", run["id"], "--device", "cpu", "--quiet")
    assert done.returncode == 0, done.stderr[-800:]
    assert runs.get_run(ws, run["id"])["adapter"] == "here"


def test_the_page_greys_a_member_s_retrain_while_an_admin_s_retrain_of_it_is_under_way(stale_pair):
    """The Fine-tune page greyed the Retrain button only for a retrain among the viewer's own runs: a
    member does not see an admin's runs, so hers stayed on while an admin's retrain of her adapter was
    queued. Now the page asks `runs.retrains_under_way`, as `create_run` does, and names the run."""
    import dataclasses

    from streamlit.testing.v1 import AppTest

    from archivist.finetune import runs

    ws = stale_pair
    auth.set_password(ws, "alice", "alice-pass-1")
    run = runs.create_run(ws, dataclasses.asdict(runs.retrain_config(ws, "alices", "admin")))
    os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["_token"] = auth.create_session(ws, "alice")
    at.run()
    at = at.switch_page("views/finetune.py").run()
    assert not at.exception, [e.value for e in at.exception]
    button = at.button(key="ft-retrain-alices")
    assert button.disabled and button.help == "Being retrained by another user's run"  # an admin's run is no run of hers
    assert run not in str(at.main)
    assert "ft-retrain-weekly" not in {b.key for b in at.button}  # the admin's adapter: not hers to retrain
