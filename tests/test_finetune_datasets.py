"""Fine-tuning datasets: answer spans, retrieval-aware prompts, the split by document, access rules,
feedback and JSONL sources, and the manifest (archivist.finetune.qa / datasets)."""

from __future__ import annotations

import hashlib
import json

import pytest

from archivist import access
from archivist.finetune import datasets
from archivist.finetune.dataset_store import DatasetError, load_dataset
from archivist.finetune.datasets import build_dataset, examples_from_file
from archivist.finetune.qa import extractive_pairs, find_span, parse_llm_reply
from archivist.ingest.pipeline import ingest_paths
from archivist.retrieval.hits import load_hits

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DOCS = {
    "handbook.md": "# Leave\n\nFull-time employees receive 30 days of paid annual leave per calendar year. "
                   "Under policy HR-17, every parent receives 20 weeks of fully paid parental leave.\n\n"
                   "# Pay\n\nEvery employee has a personal learning budget of EUR 1,500 per year for courses and books.\n",
    "runbook.md": "# On call\n\nThe on-call engineer answers every page within 15 minutes. Handover happens every "
                  "Monday at 10:30 in the platform channel.\n\n# Escalation\n\nIf the incident is not under control "
                  "after 45 minutes, the duty manager escalates to the Head of Platform, Jonas Brandt.\n",
    "travel.md": "# Travel\n\nUse of a private car for business trips is reimbursed at EUR 0.30 per km. Submit every "
                 "expense claim within 21 days after the trip ends.\n",
    "security.md": "# Passwords\n\nPasswords must be at least 14 characters long and unique to each service. "
                   "Forward suspicious emails to phish@example.com and then delete them.\n",
    "prices.csv": "SKU,Product,Price (EUR)\nNW-4410,PalletPilot 400,18950.00\nNW-1180,ChargeDock,2150.00\n",
}
SECRET = {"salaries.md": "# Salaries\n\nThe chief executive earns EUR 410,000 per year, paid on the last working day of each month.\n"}


@pytest.fixture
def corpus(ws, embedder, tmp_path):
    """Five documents in collection 'hr', one in 'secret'; member bob may read 'hr' only."""
    src = tmp_path / "docs"
    src.mkdir()
    for name, text in {**DOCS, **SECRET}.items():
        (src / name).write_text(text)
    ingest_paths(ws, [src / n for n in DOCS], collection="hr", embedder=embedder, progress=False)
    ingest_paths(ws, [src / n for n in SECRET], collection="secret", embedder=embedder, progress=False)
    access.add_user(ws, "bob", "member")
    access.grant(ws, "bob", "hr", "read")
    return ws


def test_extractive_pairs_are_exact_spans_with_readable_questions():
    text = ("2. Working hours\n\nThe standard working week is 38 hours, Monday to Friday. You are available during "
            "the core hours from 10:00 to 15:00 on working days.\n\nSKU: NW-4410; Product: PalletPilot 400; Price (EUR): 18950.00")
    pairs = extractive_pairs(text, max_pairs=5)
    got = [(p.question, p.answer) for p in pairs]
    assert got == [
        ("The standard working week is how many hours, Monday to Friday?", "38 hours"),
        ("You are available during the core hours from what time on working days?", "10:00 to 15:00"),
        ("What is the Product for SKU NW-4410?", "PalletPilot 400"),
    ]
    for p in pairs:
        assert text[p.start:p.end] == p.answer and p.answer in p.sentence and p.answer not in p.question


def test_llm_replies_are_kept_only_when_the_answer_is_in_the_chunk():
    chunk = "Passwords must be at least 14 characters long and unique to each service."
    good = parse_llm_reply(chunk, "Question: How long must passwords be?\nAnswer: 14 characters")
    assert good and chunk[good.start:good.end] == "14 characters" and good.sentence == chunk
    assert parse_llm_reply(chunk, "Question: How long must passwords be?\nAnswer: 12 characters") is None  # not in the chunk
    assert parse_llm_reply(chunk, "Question: Are 14 characters enough?\nAnswer: 14 characters") is None  # gives it away
    assert parse_llm_reply(chunk, "Passwords are long.") is None
    assert find_span("a  B\nc d", "b c") == (3, 6)


def test_split_is_by_document_and_prompts_hold_the_source_among_distractors(corpus, embedder):
    ws = corpus
    ds = build_dataset(ws, ["docs"], eval_fraction=0.4, passages=3, seed=1, embedder=embedder, name="t")
    train_docs = {e.document_id for e in ds.train}
    eval_docs = {e.document_id for e in ds.eval}
    assert train_docs and eval_docs and not train_docs & eval_docs
    chunks = dict(ws.db.execute("SELECT id, document_id FROM chunks").fetchall())
    texts = dict(ws.db.execute("SELECT id, text FROM chunks").fetchall())
    from archivist.retrieval.answer import build_messages

    for split, docs in (("train", train_docs), ("eval", eval_docs)):
        for e in getattr(ds, split):
            # the answer is an exact span of its source chunk, and the source is passage [cite]
            assert texts[e.chunk_id][e.span[0]:e.span[1]] == e.answer
            assert e.passages[e.cite - 1] == e.chunk_id and len(e.passages) >= 2
            # no text of the other split ever appears in a prompt
            assert {chunks[c] for c in e.passages} <= docs
            # the prompt is exactly what serving builds, and the target cites the right passage
            hits = load_hits(ws, e.passages)
            assert e.messages[:-1] == build_messages(e.question, [hits[c] for c in e.passages])
            target = e.messages[-1]["content"]
            assert e.answer in target and target.endswith(f"[{e.cite}].")
            # distractors never hold the answer, so the citation is unambiguous
            assert all(e.answer.lower() not in texts[c].lower() for c in e.passages if c != e.chunk_id)
    m = ds.manifest
    assert {d["id"] for d in m["documents"] if d["split"] == "eval"} == eval_docs
    hashes = dict(ws.db.execute("SELECT id, content_hash FROM documents").fetchall())
    assert all(d["content_hash"] == hashes[d["id"]] for d in m["documents"])
    for split in ("train", "eval"):
        assert hashlib.sha256((ds.path / f"{split}.jsonl").read_bytes()).hexdigest() == m[f"{split}_sha256"]
    again = load_dataset(ws, "t", None)
    assert again.train == ds.train and again.eval == ds.eval and again.manifest == m
    # the same documents and seed give the same split
    assert build_dataset(ws, ["docs"], eval_fraction=0.4, passages=3, seed=1, embedder=embedder, name="t2").eval == ds.eval


def test_only_collections_the_user_may_read_are_used(corpus, embedder):
    ws = corpus
    secret_doc = ws.db.execute("SELECT id FROM documents WHERE path LIKE '%salaries.md'").fetchone()[0]
    admin_ds = build_dataset(ws, ["docs"], embedder=embedder, name="as-admin")
    assert secret_doc in {e.document_id for e in admin_ds.train + admin_ds.eval}  # the admin reads everything
    ds = build_dataset(ws, ["docs"], user="bob", embedder=embedder, name="as-bob")
    hr = {r[0] for r in ws.db.execute("SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id "
                                      "JOIN collections k ON k.id = d.collection_id WHERE k.name = 'hr'")}
    examples = ds.train + ds.eval
    assert examples and all(set(e.passages) <= hr for e in examples)
    assert all("410,000" not in m["content"] for e in examples for m in e.messages)
    assert {d["collection"] for d in ds.manifest["documents"]} == {"hr"}
    with pytest.raises(access.AccessDenied, match="secret"):
        build_dataset(ws, ["docs"], user="bob", collections=["secret"], embedder=embedder, name="nope")
    with pytest.raises(LookupError, match="nothere"):
        build_dataset(ws, ["docs"], collections=["nothere"], embedder=embedder, name="nope2")


def test_feedback_rated_up_and_corrections_become_examples(corpus, embedder):
    from archivist.feedback import record_feedback, review_correction

    ws = corpus
    hits = load_hits(ws, [r[0] for r in ws.db.execute("SELECT id FROM chunks ORDER BY id")])
    leave = next(h for h in hits.values() if "30 days" in h.text)
    oncall = next(h for h in hits.values() if "15 minutes" in h.text)
    secret = next(h for h in hits.values() if "410,000" in h.text)
    cites = [{"n": 2, "chunk_id": leave.chunk_id, "document": leave.document, "text": leave.text},
             {"n": 4, "chunk_id": oncall.chunk_id, "document": oncall.document, "text": oncall.text}]
    up = record_feedback(ws, "bob", "How many days of leave?", "You get 30 days [2].", rating=1, citations=cites, collection="hr")
    fixed = record_feedback(ws, "bob", "How fast are pages answered?", "Within an hour [4].", rating=-1,
                            correction="Pages are answered within 15 minutes [4].", citations=cites, collection="hr")
    review_correction(ws, None, fixed, approve=True)  # a member's correction is learned once an admin approved it
    record_feedback(ws, "bob", "Who is on call?", "Nobody [2].", rating=-1, citations=cites, collection="hr")  # no correction: skipped
    record_feedback(ws, "bob", "What does the CEO earn?", "EUR 410,000 [1].", rating=1, collection="secret",  # read access since revoked
                    citations=[{"n": 1, "chunk_id": secret.chunk_id, "text": secret.text}])
    examples, stats = datasets.examples_from_feedback(ws, user="bob", embedder=embedder)
    assert stats["used"] == [up, fixed] and stats["skipped"] == {"collection not readable": 1}
    a, b = examples
    # passages renumbered from 1 in their cited order, and the marks in the target follow
    assert a.messages[-1]["content"] == "You get 30 days [1]." and "[1] (" in a.messages[1]["content"]
    assert b.messages[-1]["content"] == "Pages are answered within 15 minutes [2]."
    assert b.group == f"doc:{leave.document_id}" and b.answer == "Pages are answered within 15 minutes."


def test_a_member_learns_from_their_own_feedback_and_an_admin_from_everyones(corpus, embedder):
    """What people asked and wrote is theirs, as their conversations are: a member's fine-tune (and
    its dataset preview) never shows a colleague's question, answer or correction; an admin's does.
    A thumbs up on an uncertain answer teaches its quote, not the app's notice above it."""
    from archivist.feedback import record_feedback
    from archivist.retrieval.answer import UNCERTAIN

    ws = corpus
    leave = next(h for h in load_hits(ws, [r[0] for r in ws.db.execute("SELECT id FROM chunks")]).values() if "30 days" in h.text)
    cites = [{"n": 1, "chunk_id": leave.chunk_id, "document": leave.document, "text": leave.text}]
    mine = record_feedback(ws, "bob", "How many days of leave?", "You get 30 days [1].", rating=1, citations=cites, collection="hr")
    theirs = record_feedback(ws, None, "Can I carry leave over?", f"{UNCERTAIN}\nYou get 30 days [1].", rating=1,
                             correction="Ask HR about carrying leave over [1].", citations=cites, collection="hr")
    quoted = record_feedback(ws, None, "How long is annual leave?", f"{UNCERTAIN}\nYou get 30 days [1].", rating=1,
                             citations=cites, collection="hr")
    examples, stats = datasets.examples_from_feedback(ws, user="bob", embedder=embedder)
    assert stats["used"] == [mine] and all("carry" not in m["content"] for e in examples for m in e.messages)
    examples, stats = datasets.examples_from_feedback(ws, embedder=embedder)  # the local admin
    assert stats["used"] == [mine, theirs, quoted]
    assert [e.messages[-1]["content"] for e in examples] == [
        "You get 30 days [1].", "Ask HR about carrying leave over [1].", "You get 30 days [1]."]


def test_jsonl_files_are_validated_line_by_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "Hi", "completion": "Hello"}\n'
                   '{"prompt": "Hi"\n'
                   '\n'
                   '{"messages": [{"role": "user", "content": "Q"}]}\n'
                   '{"messages": [{"role": "wizard", "content": "Q"}, {"role": "assistant", "content": "A"}]}\n'
                   '[1, 2]\n'
                   '{"question": "Q", "answer": "A"}\n')
    with pytest.raises(DatasetError) as e:
        examples_from_file(bad)
    msg = str(e.value)
    assert f"{bad}:2: not valid JSON" in msg
    assert f"{bad}:4: the last message must be the assistant's answer" in msg
    assert f"{bad}:5: message 1 needs a \"role\" of system, user or assistant" in msg
    assert f"{bad}:6: expected a JSON object, got list" in msg
    assert f"{bad}:7: expected {{\"messages\": [...]}} or {{\"prompt\": ..., \"completion\": ...}}" in msg
    assert f"{bad}:1:" not in msg and "5 bad line(s)" in msg
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"prompt": "Capital of France?", "completion": "Paris."}) + "\n" +
                    json.dumps({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
                                             {"role": "assistant", "content": "4 [1]."}], "document": "math"}) + "\n")
    ex = examples_from_file(good)
    assert [e.messages[-1]["content"] for e in ex] == ["Paris.", "4 [1]."]
    assert [e.group for e in ex] == ["file:good.jsonl:1", "file:math"] and ex[1].answer == "4."
    with pytest.raises(DatasetError, match="no such file"):
        examples_from_file(tmp_path / "missing.jsonl")


def test_llm_generator_keeps_answers_found_in_the_chunk_and_drops_repeats():
    from archivist.finetune.qa import llm_pairs

    chunk = "Passwords must be at least 14 characters long. Laptops are replaced every four years."
    replies = iter(["Question: How long must passwords be?\nAnswer: 14 characters",  # both in one reply
                    "How long must passwords be?", "14 characters",  # the same question again, in two asks
                    "When are laptops replaced?", "Every five years."])  # an answer not in the chunk
    asked = []

    def generate(messages):
        asked.append(messages[-1]["content"])
        return next(replies)

    pairs = llm_pairs(chunk, generate, max_pairs=3)
    assert [(p.question, p.answer) for p in pairs] == [("How long must passwords be?", "14 characters")]
    assert chunk in asked[0] and "Ask about a different fact than: How long must passwords be?" in asked[1]
    assert "Question: How long must passwords be?" in asked[2] and len(asked) == 5


@pytest.mark.long
def test_llm_generated_dataset_from_the_real_model(corpus, embedder):
    ws = corpus
    ds = build_dataset(ws, ["docs"], generator="both", collections=["hr"], embedder=embedder, name="llm")
    texts = dict(ws.db.execute("SELECT id, text FROM chunks").fetchall())
    examples = ds.train + ds.eval
    # the 135M model's questions rarely survive the grounding check (that is why extractive is the
    # default); every pair that is kept, from either generator, is a span of its chunk
    for e in examples:
        assert texts[e.chunk_id][e.span[0]:e.span[1]] == e.answer and e.question.endswith("?")
    assert any(e.source == "docs:extractive" for e in examples)
    assert ds.manifest["generator"] == "both" and ds.manifest["settings"]["llm"] == ws.settings.llm
