"""Who may see and use a fine-tuning dataset, and the lineage an adapter records: every passage of
every example (cited or distractor) names its collection, taken from what was recorded when the
feedback was given, so an adapter is usable only by those who may read all it trained on
(archivist.finetune.datasets, archivist.feedback, archivist.finetune.registry.lineage)."""

from __future__ import annotations

import json

import pytest

from archivist import access, adapters
from archivist.feedback import record_feedback
from archivist.finetune import datasets, registry
from archivist.finetune.dataset_store import list_datasets, load_dataset
from archivist.finetune.datasets import build_dataset
from archivist.ingest.pipeline import delete_document, ingest_paths
from archivist.records import Citation
from archivist.retrieval.hits import load_hits
from conftest import ingest_texts

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CANTEEN = ("# Canteen\n\nThe canteen opens at 11:30 on working days. A lunch costs EUR 4.50 for employees. "
           "Leftovers are donated to the food bank every Friday.\n")
FINANCE = ("# Board notes\n\nThe launch code for project Kestrel is ZEBRA-7731. The acquisition target is "
           "Norwind GmbH, for EUR 42 million.\n")
# no fact the extractive generator asks about: it can only ever be a distractor
MINUTES = ("# Minutes\n\nThe board discussed the canteen, the lunch menu and the opening of the new kitchen "
           "with the works council and agreed to talk again later.\n")


@pytest.fixture
def office(ws, embedder, tmp_path):
    """canteen.md in `canteen`, finance.md in `finance`; member-a reads finance, member-b writes
    canteen, member-c has no grants (the roles of issue 17)."""
    src = ingest_texts(ws, embedder, tmp_path / "src", {"canteen": {"canteen.md": CANTEEN}, "finance": {"finance.md": FINANCE}})
    for name in ("member-a", "member-b", "member-c"):
        access.add_user(ws, name, "member")
    access.grant(ws, "member-a", "finance", "read")
    access.grant(ws, "member-b", "canteen", "write")
    ws.src = src
    return ws


def _hit(ws, needle: str):
    ids = [r[0] for r in ws.db.execute("SELECT id FROM chunks ORDER BY id")]
    return next(h for h in load_hits(ws, ids).values() if needle in h.text)


def _cite(n: int, h) -> Citation:
    """The citation the chat shows (and stores with the feedback) for passage [n]."""
    return Citation(n=n, document=h.document, page=h.page, chunk_id=h.chunk_id, score=0.5, text=h.text,
                    collection=h.collection)


def _register(ws, ds, name: str) -> dict:
    """An adapter registered with the lineage training writes for dataset `ds` (no weights trained:
    the lineage and the access rule are what is tested)."""
    folder = ws.home / "fake-adapter"
    folder.mkdir(exist_ok=True)
    (folder / "adapter_config.json").write_text("{}")
    lineage = registry.lineage(ws, base=ws.settings.llm, base_path="base", base_hash="0", dataset=ds, config={},
                               method="lora", device="cpu", run_id=None, train={})
    return adapters.register(ws, name, folder, ws.settings.llm, {"better": False, "reason": "test"}, lineage, activate=False)


def test_an_example_citing_two_collections_puts_both_in_the_lineage(office, embedder):
    ws = office
    canteen, finance = _hit(ws, "11:30"), _hit(ws, "ZEBRA-7731")
    record_feedback(ws, None, "When does the canteen open, and what is the launch code?",
                    "It opens at 11:30 [1]; the code is ZEBRA-7731 [2].", rating=1,
                    citations=[_cite(1, canteen), _cite(2, finance)])
    ds = build_dataset(ws, ["feedback"], name="mixed", eval_fraction=0, embedder=embedder)
    rec = _register(ws, ds, "mixed-v1")
    assert not adapters.may_use(ws, "member-b", "mixed-v1")  # reads canteen, not finance
    assert not adapters.may_use(ws, "member-a", "mixed-v1")  # reads finance, not canteen
    assert adapters.may_use(ws, None, "mixed-v1")  # the admin reads both
    assert rec["lineage"]["collections"] == ["canteen", "finance"]
    (example,) = ds.train
    assert example.collections == ["canteen", "finance"] and ds.manifest["collections"] == ["canteen", "finance"]
    assert {d["collection"] for d in ds.manifest["documents"]} == {"canteen", "finance"}


@pytest.mark.parametrize("change", ["deleted", "re-ingested"])
def test_feedback_on_a_document_changed_since_keeps_its_collection_in_the_lineage(office, embedder, change):
    ws = office
    finance = _hit(ws, "ZEBRA-7731")
    record_feedback(ws, None, "What is the launch code?", "The launch code is ZEBRA-7731 [1].", rating=1,
                    citations=[_cite(1, finance)])
    if change == "deleted":
        delete_document(ws, finance.document_id)
    else:
        (ws.src / "finance.md").write_text(FINANCE.replace("42 million", "45 million"))
        ingest_paths(ws, [ws.src / "finance.md"], collection="finance", embedder=embedder, progress=False)
    assert not load_hits(ws, [finance.chunk_id])  # the passage shown is gone from the chunks table
    ds = build_dataset(ws, ["feedback"], name="gone", eval_fraction=0, embedder=embedder)
    rec = _register(ws, ds, "gone-v1")
    assert not adapters.may_use(ws, "member-c", "gone-v1")
    assert not adapters.may_use(ws, "member-b", "gone-v1")
    assert adapters.may_use(ws, "member-a", "gone-v1")
    assert rec["lineage"]["collections"] == ["finance"]
    (example,) = ds.train
    assert "ZEBRA-7731" in example.messages[1]["content"]  # the text that was shown is kept
    assert example.collections == ["finance"] and ds.manifest["collections"] == ["finance"]


def test_feedback_whose_passage_collection_was_not_recorded_is_left_out_with_a_reason(office, embedder):
    ws = office
    finance = _hit(ws, "ZEBRA-7731")
    shown = {"n": 1, "chunk_id": finance.chunk_id, "document": finance.document, "text": finance.text}  # no collection
    record_feedback(ws, None, "What is the launch code?", "ZEBRA-7731 [1].", rating=1, citations=[shown])
    canteen = _hit(ws, "11:30")
    record_feedback(ws, None, "When does the canteen open?", "At 11:30 [1].", rating=1, collection="canteen",
                    citations=[{"n": 1, "chunk_id": canteen.chunk_id, "document": canteen.document, "text": canteen.text}])
    stored = json.loads(ws.db.execute("SELECT citations FROM feedback ORDER BY id DESC LIMIT 1").fetchone()[0])
    assert stored[0]["collection"] == "canteen"  # the question's collection, recorded with the passage
    delete_document(ws, finance.document_id)
    examples, stats = datasets.examples_from_feedback(ws, embedder=embedder)
    assert [e.collections for e in examples] == [["canteen"]]
    assert stats["skipped"] == {"a passage's collection was not recorded": 1}


def test_feedback_without_recorded_passages_counts_only_when_asked_in_one_collection(office, embedder):
    ws = office
    # asked across every collection, nothing cited: the answer's text may come from finance
    record_feedback(ws, None, "What does lunch cost?", "ZEBRA-7731 is the code; lunch is EUR 4.50.", rating=1)
    asked = record_feedback(ws, None, "What does lunch cost?", "A lunch costs EUR 4.50.", rating=1, collection="canteen")
    examples, stats = datasets.examples_from_feedback(ws, collections=["canteen"], embedder=embedder)
    assert stats["used"] == [asked] and stats["skipped"] == {"no passage recorded and no collection asked in": 1}
    (example,) = examples
    assert example.collections and set(example.collections) == {"canteen"}  # passages found in canteen now


def test_distractors_collections_are_in_the_lineage(office, embedder):
    ws = office
    (ws.src / "minutes.md").write_text(MINUTES)
    ingest_paths(ws, [ws.src / "minutes.md"], collection="board", embedder=embedder, progress=False)
    ds = build_dataset(ws, ["docs"], name="docs", collections=["canteen", "board"], eval_fraction=0, passages=3,
                       embedder=embedder)
    board_doc = _hit(ws, "works council").document_id
    assert ds.train and board_doc not in {e.document_id for e in ds.train}  # board is never a source ...
    access.grant(ws, "member-c", "canteen", "read")
    rec = _register(ws, ds, "docs-v1")
    assert not adapters.may_use(ws, "member-c", "docs-v1")  # ... but its passage was in the prompts
    assert rec["lineage"]["collections"] == ["board", "canteen"]
    assert any("board" in e.collections for e in ds.train)
    assert ds.manifest["collections"] == ["board", "canteen"]
    assert "board" in {d["collection"] for d in ds.manifest["documents"]}


def test_a_dataset_is_seen_and_loaded_only_by_its_owner_or_an_admin_who_may_read_it(office, embedder):
    ws = office
    build_dataset(ws, ["docs"], user="member-a", name="finance-qa", eval_fraction=0, embedder=embedder)
    build_dataset(ws, ["docs"], user="member-b", name="canteen-qa", eval_fraction=0, embedder=embedder)
    assert [d["name"] for d in list_datasets(ws, "member-b")] == ["canteen-qa"]
    assert [d["name"] for d in list_datasets(ws, "member-a")] == ["finance-qa"]
    assert [d["name"] for d in list_datasets(ws, "member-c")] == []
    assert sorted(d["name"] for d in list_datasets(ws, None)) == ["canteen-qa", "finance-qa"]  # the admin
    assert list_datasets(ws, "member-a")[0] | {"owner": "member-a", "collections": ["finance"]} == list_datasets(ws, "member-a")[0]
    # another member's dataset answers like one that does not exist
    with pytest.raises(LookupError, match="no dataset named 'finance-qa'") as refused:
        load_dataset(ws, "finance-qa", "member-b")
    with pytest.raises(LookupError) as missing:
        load_dataset(ws, "no-such-set", "member-b")
    assert str(refused.value).replace("finance-qa", "X") == str(missing.value).replace("no-such-set", "X")
    assert "ZEBRA-7731" in json.dumps([e.messages for e in load_dataset(ws, "finance-qa", None).train])
    assert load_dataset(ws, "finance-qa", "member-a").name == "finance-qa"
    # the owner loses the dataset with the collection, and is told why
    access.revoke(ws, "member-a", "finance")
    assert list_datasets(ws, "member-a") == []
    with pytest.raises(access.AccessDenied, match="finance"):
        load_dataset(ws, "finance-qa", "member-a")
    # by folder path too
    with pytest.raises(LookupError):
        load_dataset(ws, str(ws.home / "datasets" / "finance-qa"), "member-b")


def test_training_loads_the_dataset_through_the_check(office, embedder, capsys):
    from archivist.cli import main
    from archivist.finetune import runs
    from archivist.finetune.train import FinetuneConfig, run

    ws = office
    build_dataset(ws, ["docs"], user="member-a", name="finance-qa", eval_fraction=0, embedder=embedder)
    with pytest.raises(LookupError, match="no dataset named 'finance-qa'"):
        run(ws, FinetuneConfig(dataset="finance-qa", user="member-b", max_steps=1, device="cpu"), progress=False,
            say=lambda m: None)
    (row,) = runs.list_runs(ws)
    assert row["status"] == "failed"
    capsys.readouterr()
    assert main(["finetune", "--dataset", "finance-qa", "--user", "member-b", "--background", "--json"]) != 0
    assert "no dataset named 'finance-qa'" in capsys.readouterr().err
    assert len(runs.list_runs(ws)) == 1  # refused before a run was started


def test_the_default_fine_tune_data_is_documents_plus_feedback_when_there_is_any(office, embedder, capsys):
    from archivist.cli import main

    ws = office
    assert main(["finetune", "--prepare-only", "--json"]) == 0
    first = load_dataset(ws, json.loads(capsys.readouterr().out)["dataset"], None)
    assert {e.source for e in first.train + first.eval} == {"docs:extractive"}  # no feedback yet: documents alone
    canteen = _hit(ws, "11:30")
    record_feedback(ws, None, "Is there lunch on Sundays?", "No, the canteen opens on working days only [1].",
                    rating=1, citations=[_cite(1, canteen)])
    assert main(["finetune", "--prepare-only", "--json"]) == 0
    ds = load_dataset(ws, json.loads(capsys.readouterr().out)["dataset"], None)
    assert ds.manifest["sources"] == ["docs", "feedback"]
    assert {e.source for e in ds.train + ds.eval} == {"docs:extractive", "feedback"}
    assert main(["finetune", "--prepare-only", "--json", "--data", "docs"]) == 0  # an explicit --data still wins
    only = load_dataset(ws, json.loads(capsys.readouterr().out)["dataset"], None)
    assert only.manifest["sources"] == ["docs"]
