"""Answers and retrieval on public documents the project never tuned on (bench/evalsets/PUBLIC.md).

    python bench/answers.py [--corpus git,handbook,python] [--mode extractive,auto] [--split tuning|heldout|both]
    python bench/answers.py --corpus valgrind --split heldout --mode extractive,auto-quote   # measured once
    python bench/tune_quote.py --collect --fit  # choose the key-answer models and thresholds on the tuning splits

Each corpus (built by bench/corpora.py) is ingested once into bench/data/ws/public-<corpus> with the
default settings. Then, per corpus and split:

  retrieval   hit@1/5/10 and MRR@10 of dense, lexical and hybrid (`evaluate_retrieval`)
  answers     per answer mode: key-answer accuracy (status *answered* and the answer names the gold),
              confident misses (*answered* but wrong), uncertain and not-found rates on answerable
              questions, and not-found on unanswerable ones (`answer_metrics`)

Questions that yes or no answers (kind "yesno", the Valgrind set: bench/evalsets/VALGRIND.md) are
left out of the answer metrics (a quote never holds "yes" or "no") and reported apart: how often each
status was shown, as served and with the yes/no rule off (`keyanswer.key_status`'s yes_no ignored),
their rows kept for reading by hand.

Thresholds. The key-answer models and the answered / not-found thresholds (Settings.key_answered,
key_not_found) are chosen on the tuning splits alone by bench/tune_quote.py --fit; this benchmark
runs with the values in the code, and the held-out split is scored with them, never tuned on.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BENCH, DATA, EVALSETS, log, machine, md_table, names_gold, open_ws, report, save_result  # noqa: E402

CORPORA = ("git", "handbook", "python")
FOLDERS = {"git": "git", "handbook": "debian-handbook", "python": "python", "valgrind": "valgrind"}  # as bench/corpora.py
PUBLIC = DATA / "public"


def build_corpus(name: str) -> Path:
    folder = PUBLIC / FOLDERS[name]
    if not (folder.exists() and any(folder.iterdir())):
        subprocess.run([sys.executable, str(BENCH / "corpora.py"), "--out", str(PUBLIC), "--corpus", name], check=True)
    return folder


def workspace(name: str):
    """The corpus's workspace, ingested once. A marker file is written when ingestion ends, so a
    killed run is finished by the next (ingest skips what is stored) instead of being taken for a
    whole corpus."""
    from archivist.ingest.pipeline import ingest_paths

    home = DATA / "ws" / f"public-{name}"
    ws = open_ws(home)
    done = home / "ingested"
    if not done.exists():
        t0 = time.perf_counter()
        ingest_paths(ws, [build_corpus(name)], collection="default", progress=False)
        done.write_text(f"{time.perf_counter() - t0:.0f} s\n")
        log(f"{name}: ingested in {time.perf_counter() - t0:.0f} s")
    return ws


def workspace_copy(name: str, label: str) -> Path:
    """A fresh copy of the corpus's workspace at bench/data/ws/<label>-<name>, for a benchmark that
    changes it (re-embeds, adapts). The source is ingested first when missing, and otherwise never
    opened: opening a workspace may write to it (repairs, WAL)."""
    source = DATA / "ws" / f"public-{name}"
    if not (source / "ingested").exists():
        workspace(name).close()
    home = DATA / "ws" / f"{label}-{name}"
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(source, home)
    return home


def questions(name: str, split: str | None):
    from archivist.retrieval.evaluate import load_set

    qs = load_set(EVALSETS / f"{name}.jsonl", "answers")
    return [q for q in qs if split in (None, "both") or q.extra.get("split") == split]


class NoDraft:
    """The chat model, except that it drafts nothing: `ask` in auto mode then shows what it shows
    whenever its draft fails the claim check (the quote, read by the chat model). Finding 18: no
    draft of 58 passed the check on held-out documents, so this is auto's answer without the
    minute of generation per question on this CPU."""

    def __init__(self, llm):
        self.llm = llm

    def __getattr__(self, name):
        return getattr(self.llm, name)

    def stream(self, messages, max_new_tokens=200, stats=None, stop=None, *, adapter=None):
        return iter(())


def run_answers(ws, qs, mode: str) -> list[dict]:
    """Ask each question with the settings in the code; each row keeps the status it got.
    mode "auto-quote": auto mode with a NoDraft chat model."""
    from archivist.retrieval.evaluate import evaluate_answers
    from archivist.retrieval.llm import llm_for

    llm = NoDraft(llm_for(ws.settings)) if mode == "auto-quote" else None
    with key_sentences() as sentences:
        res = evaluate_answers(ws, qs, user=None, adapter=None, mode="auto" if llm else mode, llm=llm)
    rows = res["per_question"]
    for q, r, sentence in zip(qs, rows, sentences):
        r.update(id=q.extra.get("id"), kind=q.extra.get("kind"), split=q.extra.get("split"), answers=q.answers,
                 key_sentence=sentence)
    return rows


@contextmanager
def key_sentences():
    """A list that gets, for each question `ask` answers meanwhile, the sentence and question its key
    span was taken from (keyanswer.key_span's last call in that ask; None when none), so that a span
    rule can be scored offline on the rows (bench/key_span.py): in extractive mode the span decides
    nothing but what is shown first."""
    from unittest import mock

    from archivist.retrieval import answer, keyanswer

    got, last = [], []
    span, ask = keyanswer.key_span, answer.ask

    def recorded_span(sentence, question):
        last[:] = [[sentence, question]]
        return span(sentence, question)

    def recorded_ask(*args, **kwargs):
        last.clear()
        try:
            return ask(*args, **kwargs)
        finally:
            got.append(last[0] if last else None)

    with mock.patch.object(keyanswer, "key_span", recorded_span), mock.patch.object(answer, "ask", recorded_ask):
        yield got


def run_yes_no(ws, qs, mode: str) -> dict[str, list[dict]]:
    """The yes/no questions asked as served ("on") and with the yes/no rule off ("off")."""
    from unittest import mock

    from archivist.retrieval import answer, keyanswer

    def without_rule(*args, yes_no=False, **kwargs):
        return keyanswer.key_status(*args, **kwargs)

    served = run_answers(ws, qs, mode)
    with mock.patch.object(answer, "key_status", without_rule):
        off = run_answers(ws, qs, mode)
    return {"on": served, "off": off}


def metrics(rows: list[dict]) -> dict:
    ans = [r for r in rows if r["gold"] is not None]
    una = [r for r in rows if r["gold"] is None]
    st = [r["status"] for r in ans]
    out = {"answerable": len(ans), "unanswerable": len(una)}
    if ans:
        out["key_accuracy"] = sum(s == "answered" and names_gold(r) for s, r in zip(st, ans)) / len(ans)
        out["confident_miss"] = sum(s == "answered" and not names_gold(r) for s, r in zip(st, ans)) / len(ans)
        out["uncertain"] = st.count("uncertain") / len(ans)
        out["not_found"] = st.count("not_found") / len(ans)
        out["gold_in_quote"] = sum(bool(r["contains_gold"]) for r in ans) / len(ans)
    if una:
        out["unanswerable_not_found"] = sum(r["status"] == "not_found" for r in una) / len(una)
    out["seconds"] = sorted(r["seconds"] for r in rows)[len(rows) // 2] if rows else float("nan")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default=",".join(CORPORA))
    ap.add_argument("--mode", default="extractive", help="answer modes, comma-separated: extractive,auto,generate,auto-quote "
                    "(auto without drafting: its quote, see NoDraft)")
    ap.add_argument("--split", default="both", choices=["tuning", "heldout", "both"])
    ap.add_argument("--no-retrieval", action="store_true")
    ap.add_argument("--workspace", default="public", help="ask the workspace bench/data/ws/<this>-<corpus>: public (the "
                    "default, ingested here), or one another benchmark made from it (retriever: bench/retriever.py's, "
                    "with the adapted embedder it switched to)")
    args = ap.parse_args(argv)
    from archivist.retrieval.evaluate import evaluate_retrieval

    corpora = args.corpus.split(",")
    modes = args.mode.split(",")
    splits = ["tuning", "heldout"] if args.split == "both" else [args.split]
    raw: dict = {}
    retrieval_rows, answer_rows, yes_no_rows = [], [], []
    for name in corpora:
        ws = workspace(name) if args.workspace == "public" else open_ws(DATA / "ws" / f"{args.workspace}-{name}")
        defaults = (ws.settings.key_answered, ws.settings.key_not_found)
        for split in splits:
            qs = questions(name, split)
            if not qs:  # Valgrind's set is held out whole: it has no tuning split
                continue
            if not args.no_retrieval:
                rq = [q for q in qs if q.relevant]
                r = evaluate_retrieval(ws, rq, modes=["dense", "lexical", "hybrid"], k=10)
                for mode, m in r["modes"].items():
                    retrieval_rows.append([name, split, mode, len(rq), m["hit@1"], m["hit@5"], m["hit@10"], m["mrr@10"]])
            yes_no = [q for q in qs if q.extra.get("kind") == "yesno"]
            qs = [q for q in qs if q.extra.get("kind") != "yesno"]
            for mode in modes if yes_no else ():
                for rule, rows in run_yes_no(ws, yes_no, mode).items():
                    raw[f"{name}/{split}/{mode}/yesno-rule-{rule}"] = rows
                    st = [r["status"] for r in rows]
                    yes_no_rows.append([name, split, mode, rule, len(rows), st.count("answered"), st.count("uncertain"),
                                        st.count("not_found")])
            for mode in modes:
                t0 = time.perf_counter()
                rows = run_answers(ws, qs, mode)
                raw[f"{name}/{split}/{mode}"] = rows
                m = metrics(rows)
                log(f"{name} {split} {mode}: {len(qs)} questions in {time.perf_counter() - t0:.0f} s")
                answer_rows.append([name, split, mode, m["answerable"], m["key_accuracy"], m["confident_miss"],
                                    m["uncertain"], m["not_found"], m.get("unanswerable_not_found", float("nan")),
                                    m["gold_in_quote"], m["seconds"]])
        ws.close()
    label = "" if args.workspace == "public" else f"-{args.workspace}"
    save_result(f"answers-rows-{'-'.join(corpora)}-{args.split}{label}", raw)
    body = [f"Frozen sets (bench/evalsets/PUBLIC.md), workspaces {args.workspace}-<corpus>, default settings, thresholds from the code "
            f"(key_answered {defaults[0]}, key_not_found {defaults[1]}), {machine()['date']}.", ""]
    if retrieval_rows:
        body += ["Retrieval:", "", md_table(["corpus", "split", "mode", "questions", "hit@1", "hit@5", "hit@10", "MRR@10"],
                                            retrieval_rows), ""]
    body += ["Answers (rates over answerable questions; the last but one column over unanswerable ones; "
             "`gold in quote`: the quoted or generated text holds the gold whatever its status):", "",
             md_table(["corpus", "split", "mode", "answerable", "key accuracy", "confident misses", "uncertain",
                       "not found", "unanswerable not found", "gold in quote", "median s"], answer_rows)]
    if yes_no_rows:
        body += ["", "Questions that yes or no answers, left out above (rule: the yes/no rule of keyanswer.key_status):",
                 "", md_table(["corpus", "split", "mode", "rule", "questions", "answered", "uncertain", "not found"],
                              yes_no_rows)]
    report("answers", "Answers and retrieval on unseen public documents", "\n".join(body),
           {"retrieval": retrieval_rows, "answers": answer_rows, "yes_no": yes_no_rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
