"""bench/finetune_unseen.py's split by document (no held-out page may be trained on), its draft
sharing between answer modes, and its metrics against hand-computed values. No model, no corpus."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.append(str(BENCH))  # appended: never shadows an installed module

import finetune_unseen as fu  # noqa: E402


@pytest.mark.parametrize("corpus", ["git", "handbook", "python"])
def test_split_keeps_every_held_out_page_out_of_training(corpus):
    qs = fu.evalset(corpus)
    named = {p for q in qs for p in q.get("relevant") or []}
    pages = sorted(named | {"only-in-the-corpus.html"})
    train, held = fu.split_pages(qs, pages)
    held_named = {p for q in qs if q["split"] == "heldout" for p in q.get("relevant") or []}
    assert set(held) == held_named and not set(train) & held_named
    assert set(train) | set(held) == set(pages)
    assert "only-in-the-corpus.html" in train
    # every held-out answerable question has all of its gold pages held out
    assert all(set(q["relevant"]) <= set(held) for q in qs if q["split"] == "heldout" and q.get("relevant"))


def test_split_refuses_a_held_out_page_missing_from_the_corpus():
    qs = [{"split": "heldout", "relevant": ["a.html", "gone.html"]}, {"split": "tuning", "relevant": ["b.html"]}]
    with pytest.raises(ValueError, match="gone.html"):
        fu.split_pages(qs, ["a.html", "b.html"])
    assert fu.split_pages(qs[:1] + qs[1:], ["a.html", "b.html", "gone.html"]) == (["b.html"], ["a.html", "gone.html"])


class CountingLLM:
    """Stands in for the chat model, which is not what is tested: counts generations."""

    context_window = 2048

    def __init__(self):
        self.calls = 0

    def stream(self, messages, max_new_tokens=200, stats=None, stop=None, *, adapter=None):
        self.calls += 1
        if stats is not None:
            stats.update(prompt_tokens=7, completion_tokens=3)
        yield f"draft {self.calls} for {adapter} "
        yield "[1]."


def test_shared_drafts_generate_once_per_prompt_and_adapter():
    inner = CountingLLM()
    llm = fu.SharedDrafts(inner)
    msgs = [{"role": "user", "content": "q"}]
    first, again = {}, {}
    a = "".join(llm.stream(msgs, max_new_tokens=8, stats=first))
    b = "".join(llm.stream(msgs, max_new_tokens=8, stats=again))
    assert a == b == "draft 1 for None [1]." and inner.calls == 1 and first == again == {"prompt_tokens": 7,
                                                                                         "completion_tokens": 3}
    assert "".join(llm.stream(msgs, max_new_tokens=8, adapter="ft")) == "draft 2 for ft [1]."
    assert "".join(llm.stream(msgs, max_new_tokens=16)) == "draft 3 for None [1]."
    assert llm.context_window == 2048  # everything else is the wrapped model's


def _row(gold, status, contains, f1=0.0):
    return {"gold": gold, "status": status, "contains_gold": contains if gold is not None else None,
            "token_f1": f1 if gold is not None else None, "seconds": 1.0}


def test_metrics_and_paired_gain_by_hand():
    base = [_row("x", "answered", False, 0.2), _row("y", "uncertain", True, 0.5), _row("z", "not_found", False),
            _row("w", "answered", True, 1.0), _row(None, "answered", None)]
    adapted = [_row("x", "answered", True, 0.6), _row("y", "answered", True, 0.5), _row("z", "uncertain", False),
               _row("w", "answered", True, 1.0), _row(None, "not_found", None)]
    m = fu.metrics(base)
    assert m["answerable"] == 4 and m["unanswerable"] == 1
    rates = (m["key_accuracy"], m["contained"], m["confident_miss"], m["uncertain"], m["not_found"])
    assert rates == (0.25, 0.5, 0.25, 0.25, 0.25)
    assert m["token_f1"] == pytest.approx(1.7 / 4) and m["unanswerable_not_found"] == 0.0
    assert fu.metrics(adapted)["unanswerable_not_found"] == 1.0
    g = fu.gains(base, adapted)
    assert g["key accuracy"]["diff"] == 0.5 and (g["key accuracy"]["better"], g["key accuracy"]["worse"]) == (2, 0)
    assert g["confident misses"]["diff"] == -0.25 and g["token F1"]["diff"] == pytest.approx(0.1)
    json.dumps(g)  # stored in the results file as is


def test_rows_of_parallel_processes_merge_by_run_and_question(tmp_path, monkeypatch):
    monkeypatch.setattr(fu, "DATA", tmp_path)
    folder = fu.rows_folder("python", "heldout")
    folder.mkdir(parents=True)
    (folder / "base-0of2.jsonl").write_text(json.dumps({"key": "base/auto", "id": "q1", "status": "uncertain"}) + "\n")
    (folder / "base-1of2.jsonl").write_text("\n".join(json.dumps(r) for r in (
        {"key": "base/auto", "id": "q2", "status": "answered"}, {"key": "adapter/auto", "id": "q2", "status": "not_found"},
        {"key": "base/auto", "id": "q1", "status": "answered"})) + "\n")  # a later row for q1 wins
    rows = fu.load_rows("python", "heldout")
    assert {k: {i: r["status"] for i, r in v.items()} for k, v in rows.items()} == {
        "base/auto": {"q1": "answered", "q2": "answered"}, "adapter/auto": {"q2": "not_found"}}
