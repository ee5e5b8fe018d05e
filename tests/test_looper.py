"""What an ML engineer running the weekly loop (feedback -> fine-tune -> verdict -> activate, several
times in one workspace) tripped on: a cancelled run listed without the step it reached, a resumed
run whose summary and lineage counted only the steps after the resume, a run cancelled, then
resumed after an erase of a document it had learned registering fresh instead of stale,
`--retrain` dropping the flags given with it (--max-steps, --collection ...) without a word, and a
rollback to a stale adapter without a warning."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest

from archivist import adapters
from archivist.cli import build_parser, main
from archivist.finetune import runs
from archivist.finetune.cli import _retrain_config
from archivist.finetune.train import FinetuneConfig
from conftest import ingest_texts

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LEAVE = ("# Leave\n\nFull-time employees receive 30 days of paid annual leave per calendar year. "
         "Parental leave is 16 weeks at full pay.\n")
PAY = ("# Pay\n\nSalaries are paid on the 25th of each month. The meal allowance is EUR 12 per working day.\n")
TRAVEL = ("# Travel\n\nTrain journeys over 4 hours may be booked in first class. Hotels are refunded up to EUR 140 "
          "per night.\n")
ONCALL = ("# On-call\n\nEach engineer on call receives an allowance of EUR 250 per week. "
          "A page must be acknowledged within 15 minutes.\n")


def test_a_cancelled_run_shows_its_step_and_its_resume_reports_the_whole_run(ws, tiny, capsys):
    cfg = FinetuneConfig(data=[str(tiny)], method="lora", batch_size=1, max_steps=12, save_every=100, lr=1e-3,
                         max_seq_len=256, warmup_steps=1, eval_limit=1, eval_max_new_tokens=4, threads=1, device="cpu",
                         activate=False)
    run_id = runs.start_run_background(ws, cfg)
    metrics = runs.run_dir(ws, run_id) / "metrics.jsonl"
    deadline = time.time() + 300
    while not (metrics.exists() and metrics.read_text().strip()):  # cancel once it trains
        log = runs.run_dir(ws, run_id) / "log.txt"
        assert time.time() < deadline and runs.get_run(ws, run_id)["status"] in ("queued", "running"), log.read_text()
        time.sleep(0.1)
    assert main(["runs", "--cancel", run_id]) == 0
    out, err = capsys.readouterr()
    cut = runs.read_metrics(ws, run_id)[-1]["step"]
    assert 1 <= cut < 12 and runs.get_run(ws, run_id)["status"] == "cancelled"
    # before: "<id> cancelled  step     - loss       -       - tok/s", and no word on how to go on
    assert out.split()[:5] == [run_id, "cancelled", "step", str(cut), "loss"] and "-" not in out.split()[5]
    assert f"continue it from its checkpoint with `archivist finetune --resume {run_id}`" in err

    assert main(["finetune", "--resume", run_id, "--json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    rows = runs.read_metrics(ws, run_id)
    assert [r["step"] for r in rows] == list(range(1, 13))  # it went on from the cut, not from step 0
    # before: first_loss was step cut+1's loss and tokens only the steps after the resume
    for train in (result["train"], adapters.get(ws, result["adapter"]["name"])["lineage"]["train"]):
        assert train["steps"] == 12
        assert train["first_loss"] == rows[0]["loss"] and train["last_loss"] == pytest.approx(rows[-1]["loss"], abs=1e-5)
        assert train["tokens"] == sum(r["tokens"] for r in rows)
        assert train["seconds"] == pytest.approx(sum(r["step_s"] for r in rows), abs=0.5)


def _cancel_after_first_step(ws, cfg) -> str:
    """A background run of `cfg`, cancelled (SIGTERM: it checkpoints) once it has trained a step."""
    run_id = runs.start_run_background(ws, cfg)
    metrics = runs.run_dir(ws, run_id) / "metrics.jsonl"
    deadline = time.time() + 300
    while not (metrics.exists() and metrics.read_text().strip()):
        log = runs.run_dir(ws, run_id) / "log.txt"
        assert time.time() < deadline and runs.get_run(ws, run_id)["status"] in ("queued", "running"), log.read_text()
        time.sleep(0.1)
    assert runs.cancel_run(ws, run_id)["status"] == "cancelled"
    return run_id


def test_a_run_resumed_after_an_erase_of_a_document_it_learned_registers_stale(ws, embedder, tmp_path, capsys):
    ingest_texts(ws, embedder, tmp_path / "src", {"hr": {"leave.md": LEAVE, "oncall.md": ONCALL, "pay.md": PAY,
                                                           "travel.md": TRAVEL}})
    # one passage per prompt: the erase then takes out only the examples of the erased document
    cfg = FinetuneConfig(data=["docs"], passages=1, method="lora", batch_size=1, max_steps=4, save_every=100,
                         eval_limit=1, eval_max_new_tokens=4, threads=1, device="cpu", eval_fraction=0.25)
    run_id = _cancel_after_first_step(ws, cfg)
    dataset = runs.get_run(ws, run_id)["config"]["dataset"]
    manifest = json.loads((ws.home / "datasets" / dataset / "manifest.json").read_text())
    learned = next(d for d in manifest["documents"] if d["split"] == "train" and d["examples"])
    assert main(["erase", str(learned["id"])]) == 0  # out of the dataset, but not out of the checkpoint's weights
    capsys.readouterr()

    assert main(["finetune", "--resume", run_id, "--json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    rec = adapters.get(ws, result["adapter"]["name"])
    # before: stale None and the lineage without the document, so a better one would have been activated
    assert rec["stale"] == f"trained on a deleted document: {learned['path']}" and not rec["active"]
    assert learned["id"] in [d["id"] for d in rec["lineage"]["documents"]]


@pytest.fixture
def weekly(ws, embedder, tmp_path):
    """hr and ops documents, and adapter `weekly` registered with the settings of a whole-corpus run
    of 40 steps (its weights are not what is tested: the retrain's config is)."""
    ingest_texts(ws, embedder, tmp_path / "src", {"hr": {"leave.md": LEAVE}, "ops": {"oncall.md": ONCALL}})
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    settings = dataclasses.asdict(FinetuneConfig(data=["docs"], max_steps=40, user="admin"))
    adapters.register(ws, "weekly", folder, ws.settings.llm, {"better": False, "reason": "test"},
                      {"dataset": {"name": "d"}, "collections": ["hr", "ops"], "settings": settings}, activate=False)
    return ws


def test_retrain_keeps_the_recorded_settings_but_takes_the_flags_given(weekly, capsys):
    kept = _retrain_config(build_parser().parse_args(["finetune", "--retrain", "weekly"]))
    assert (kept.name, kept.max_steps, kept.collections, kept.data, kept.dataset) == ("weekly-r2", 40, None, ["docs"], None)
    # before: --max-steps 2, --collection hr and --no-activate were dropped: 40 steps on every collection, activated
    given = _retrain_config(build_parser().parse_args(
        ["finetune", "--retrain", "weekly", "--max-steps", "2", "--collection", "hr", "--no-activate"]))
    assert (given.name, given.max_steps, given.collections, given.activate, given.data) == ("weekly-r2", 2, ["hr"], False, ["docs"])

    assert main(["finetune", "--retrain", "weekly", "--collection", "hr", "--prepare-only", "--json"]) == 0
    built = json.loads(capsys.readouterr().out)
    manifest = json.loads((weekly.home / "datasets" / built["dataset"] / "manifest.json").read_text())
    assert manifest["collections"] == ["hr"] and [d["path"].rsplit("/", 1)[-1] for d in manifest["documents"]] == ["leave.md"]

    assert main(["finetune", "--retrain", "weekly", "--dataset", built["dataset"]]) != 0
    assert "rebuilds its dataset from the current documents; leave out --dataset" in capsys.readouterr().err


def test_rolling_back_to_a_stale_adapter_says_it_is_stale(ws, tmp_path, capsys, monkeypatch):
    from archivist.workspace import transaction

    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    for name in ("week-1", "week-2"):
        adapters.register(ws, name, folder, ws.settings.llm, {"better": True, "reason": "better"}, {"dataset": {"name": "d"}})
    with transaction(ws.db):  # what `archivist erase price-list.csv` does to the adapters that learned it
        adapters.mark_stale(ws, ["week-1"], "trained on a deleted document: price-list.csv")
    assert main(["activate", "week-1"]) == 0
    out, err = capsys.readouterr()
    # before: "the chat now uses adapter week-1" and not a word on stderr
    assert out.strip() == "the chat now uses adapter week-1"
    assert err.strip() == ("warning: week-1 is stale (trained on a deleted document: price-list.csv): its weights may "
                           "repeat what was erased; retrain it with `archivist finetune --retrain week-1`")
    assert main(["activate", "week-2"]) == 0 and capsys.readouterr().err == ""  # a fresh one: no warning

    monkeypatch.setenv("ARCHIVIST_STALE_ADAPTERS", "block")
    assert main(["activate", "week-1"]) == 0
    assert "stale adapters are blocked (stale_adapters=block), so the chat answers with the base model" in capsys.readouterr().err


def test_a_dataset_an_erase_emptied_is_named_not_called_too_long(ws, capsys):
    from archivist.finetune.dataset_store import Example, save_dataset

    held = Example(messages=[{"role": "user", "content": "Pay day?"}, {"role": "assistant", "content": "The 25th [1]."}],
                   source="docs:extractive", group="doc:2", question="Pay day?", answer="The 25th")
    save_dataset(ws, "after-erase", [], [held], {"owner": "admin", "collections": [], "documents": [], "erased": [1]})
    assert main(["finetune", "--dataset", "after-erase", "--max-steps", "1"]) != 0
    err = capsys.readouterr().err
    # before: "no training example fits in --max-seq-len 1024 (0 longer ones left out)"
    assert "dataset after-erase has no training examples left (1 held out)" in err and "max-seq-len" not in err


def test_resuming_a_run_that_is_queued_or_running_says_so_in_a_sentence(ws, capsys):
    run_id = runs.create_run(ws, dataclasses.asdict(FinetuneConfig(data=["docs"])))  # queued, as --background leaves it
    # before: a traceback ending in archivist.jobs.JobError, for both
    assert main(["finetune", "--resume", run_id, "--background"]) == 2
    assert capsys.readouterr().err.strip() == (f"archivist: error: job {run_id} is queued; only an interrupted, failed "
                                               "or cancelled job can be resumed")
    runs.update_run(ws, run_id, "running")  # a live process (this one) took it
    assert main(["finetune", "--resume", run_id]) == 2
    assert capsys.readouterr().err.strip() == f"archivist: error: job {run_id} is running; it cannot be started"
    assert runs.get_run(ws, run_id)["status"] == "running"  # and it is left running, not marked failed


def test_exporting_a_stale_adapter_warns_that_the_copy_holds_what_was_erased(ws, tmp_path, capsys):
    from archivist.catalog import resolve_llm
    from archivist.finetune.lora import add_lora, load_base
    from archivist.workspace import transaction

    model, _ = load_base(str(resolve_llm(ws.settings.llm, ws.settings.cache)), "lora", "cpu")
    add_lora(model, 4, 8, 0.0, "all-linear", False).save_pretrained(str(tmp_path / "adapter"), safe_serialization=True)
    adapters.register(ws, "week-1", tmp_path / "adapter", ws.settings.llm, {"better": True, "reason": "better"},
                      {"dataset": {"name": "d"}})
    with transaction(ws.db):
        adapters.mark_stale(ws, ["week-1"], "trained on a deleted document: price-list.csv")
    capsys.readouterr()
    assert main(["export", "week-1", "--merged", str(tmp_path / "merged")]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"merged model written to {tmp_path / 'merged'}")
    # before: no warning (stderr held at most the weights' loading bar)
    assert (err.strip().splitlines() or [""])[-1] == (f"warning: week-1 is stale (trained on a deleted document: price-list.csv): its weights may "
                           f"repeat what was erased, and the merged model in {tmp_path / 'merged'} holds them too, where "
                           "no erase reaches; retrain it with `archivist finetune --retrain week-1`")



def test_feedback_named_twice_as_a_source_is_learned_once(ws, embedder, tmp_path):
    from archivist.feedback import record_feedback
    from archivist.finetune.datasets import build_dataset
    from archivist.records import Citation
    from archivist.retrieval.hits import load_hits

    ingest_texts(ws, embedder, tmp_path / "src", {"hr": {"leave.md": LEAVE}})
    [h] = load_hits(ws, [r[0] for r in ws.db.execute("SELECT id FROM chunks")]).values()
    shown = [Citation(n=1, document=h.document, page=h.page, chunk_id=h.chunk_id, score=0.5, text=h.text, collection="hr")]
    record_feedback(ws, None, "How long is parental leave?", "16 weeks [1].", rating=1, citations=shown)
    record_feedback(ws, None, "How many days of annual leave?", "20 days [1].", correction="30 days per calendar year [1].",
                    citations=shown)
    twice = build_dataset(ws, ["feedback", "feedback"], embedder=embedder)
    # before: 4 examples, each answer twice, while the manifest said 2 rows were used
    assert sorted(e.answer for e in twice.train + twice.eval) == ["16 weeks.", "30 days per calendar year."]
    assert twice.manifest["feedback"]["used"] == [1, 2] and twice.manifest["sources"] == ["feedback"]


def test_activating_says_who_keeps_the_base_model(ws, tmp_path, capsys):
    from archivist import access

    for c in ("hr", "ops"):
        access.create_collection(ws, c)
    for user, grants in (("alice", ["hr"]), ("bob", ["hr", "ops"])):
        access.add_user(ws, user)
        for c in grants:
            access.grant(ws, user, c, "read")
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    adapters.register(ws, "week-1", folder, ws.settings.llm, {"better": True, "reason": "better"},
                      {"dataset": {"name": "d"}, "collections": ["hr", "ops"]}, activate=False)
    assert main(["activate", "week-1"]) == 0
    # before: nothing said that alice's chat goes on answering with the base model
    assert capsys.readouterr().err.strip() == ("note: 1 user(s) may not read every collection week-1 learned from "
                                               "(hr, ops), so their chat keeps the base model: alice")
    assert adapters.resolve(ws, "alice", "active") is None and adapters.resolve(ws, "bob", "active") is not None
    access.grant(ws, "alice", "ops", "read")
    assert main(["activate", "week-1"]) == 0 and capsys.readouterr().err == ""  # it answers everyone now


def test_resume_refuses_a_flag_that_differs_from_the_run_s_own_settings(ws, capsys):
    run_id = runs.create_run(ws, dataclasses.asdict(FinetuneConfig(data=["docs"], max_steps=6, lr=1e-3)))
    # before: `--max-steps 2` was dropped without a word and the run went on to its 6 steps
    assert main(["finetune", "--resume", run_id, "--max-steps", "2", "--lr", "0.001"]) == 2
    assert capsys.readouterr().err.strip() == (f"archivist: error: --resume {run_id} continues the run with its own "
                                               "settings (max_steps 6); leave out --max-steps, or start a new run with them")
    # the same command line again, with --resume added, is fine (here the run is still queued)
    assert main(["finetune", "--resume", run_id, "--max-steps", "6", "--lr", "0.001", "--background"]) == 2
    assert "is queued; only an interrupted, failed or cancelled job can be resumed" in capsys.readouterr().err
