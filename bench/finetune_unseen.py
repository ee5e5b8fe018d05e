"""Does `archivist finetune` help on documents it never saw? Train on a public corpus's training
documents, answer the held-out split's questions (whose pages were kept out of training), base
against adapter (issue 18, items 5 and 6).

    python bench/finetune_unseen.py --corpus python                 # prepare, fine-tune, evaluate, report
    python bench/finetune_unseen.py --corpus python --stage prepare   # or finetune / evaluate / report

Split by document (`split_pages`): the held-out documents are the pages the held-out split's
questions point to (`relevant`); the training documents are all the others. One workspace
(bench/data/ws/unseen-<corpus>) holds both, in two collections, `train` and `heldout`, so that

  finetune   is the real command, `archivist finetune --data docs --collection train` (the
             extractive question generator over the training documents only; its distractors come
             from the same documents), default settings except `--max-steps` (a whole epoch takes
             hours on a shared 2-core CPU), `--eval-limit` (its own check on 20% of the training
             documents, halved) and `--no-activate`;
  evaluate   asks every held-out question with `archivist.retrieval.answer.ask` over all documents
             (both collections), in modes auto and generate, with the base model and with the
             adapter, max_new_tokens capped by `--max-new-tokens`. Generation is greedy, so the two
             modes would generate the same text from the same prompt: a `SharedDrafts` wrapper
             generates it once per (prompt, adapter) and gives it to both modes' `ask`; everything
             after generation (claim check, quote fallback, status) runs per mode as in the CLI.
             Extractive mode (no model) is run once as the reference.

Reported per mode and model: key-answer accuracy (*answered* and holds the gold), gold contained
whatever the status, token F1, confident misses (*answered* and wrong), uncertain and not found on
answerable questions, not found on unanswerable ones; and the adapter's paired bootstrap gain over
the base (questions resampled; `archivist.retrieval.evaluation.paired_difference`). Nothing here is
chosen on the held-out questions: the settings are the code's defaults.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from answers import FOLDERS, build_corpus  # noqa: E402
from common import DATA, EVALSETS, REPO, log, machine, md_table, names_gold, open_ws, report  # noqa: E402

MODES = ("auto", "generate")  # the modes that generate; extractive is run once, as the reference
STEPS = 12  # optimizer steps of the fine-tune (the default, one epoch, is hundreds of steps here)
EVAL_LIMIT = 4  # the command's own base-vs-adapter check (default 16 examples), for CPU time
MAX_NEW_TOKENS = 48  # the settings' default is 200; finetune's own evaluation uses 48 (a flag, a name, a number)


def split_pages(questions: Sequence[dict], pages: Sequence[str]) -> tuple[list[str], list[str]]:
    """(training pages, held-out pages) of a corpus: held out are the pages that the held-out
    split's questions name in `relevant`; every other page trains. Pages are file names.

    Raises ValueError when a held-out question names a page the corpus does not have (the split
    would silently train on nothing or leak), or when the two lists share a page.
    """
    have = set(pages)
    held = sorted({p for q in questions if q.get("split") == "heldout" for p in q.get("relevant") or []})
    missing = [p for p in held if p not in have]
    if missing:
        raise ValueError(f"held-out questions name pages the corpus does not have: {', '.join(missing[:5])}")
    train = sorted(have - set(held))
    if set(train) & set(held):  # cannot happen by construction; the benchmark's claim rests on it
        raise ValueError("a held-out page is among the training pages")
    return train, held


def evalset(corpus: str) -> list[dict]:
    return [json.loads(line) for line in (EVALSETS / f"{corpus}.jsonl").read_text().splitlines() if line.strip()]


def home_of(corpus: str) -> Path:
    return DATA / "ws" / f"unseen-{corpus}"


def prepare(corpus: str) -> dict:
    """Split the corpus's pages into bench/data/unseen/<corpus>/{train,heldout} and ingest each into
    its own collection of one workspace (ingest skips what is already there)."""
    from archivist.ingest.pipeline import ingest_paths

    source = build_corpus(corpus)
    train, held = split_pages(evalset(corpus), sorted(p.name for p in source.iterdir()))
    out = DATA / "unseen" / corpus
    for name, pages in (("train", train), ("heldout", held)):
        folder = out / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for p in pages:
            shutil.copy2(source / p, folder / p)
    ws = open_ws(home_of(corpus))
    try:
        for name in ("train", "heldout"):
            t0 = time.perf_counter()
            ingest_paths(ws, [out / name], collection=name, progress=False)
            log(f"{corpus}/{name}: ingested in {time.perf_counter() - t0:.0f} s")
        counts = {name: ws.db.execute("SELECT count(*) FROM documents d JOIN collections k ON k.id = d.collection_id "
                                      "WHERE k.name = ?", (name,)).fetchone()[0] for name in ("train", "heldout")}
        chunks = {name: ws.db.execute("SELECT count(*) FROM chunks c JOIN documents d ON d.id = c.document_id JOIN "
                                      "collections k ON k.id = d.collection_id WHERE k.name = ?", (name,)).fetchone()[0]
                  for name in ("train", "heldout")}
    finally:
        ws.close()
    info = {"pages": {"train": len(train), "heldout": len(held)}, "documents": counts, "chunks": chunks}
    log(f"{corpus}: {json.dumps(info)}")
    return info



def finetune(corpus: str, steps: int, name: str, eval_limit: int = EVAL_LIMIT, dataset: str | None = None) -> dict:
    """Run the real command on the training collection; returns its --json result (run id, dataset,
    training figures, its own held-out evaluation, the registered adapter). `dataset`: train on one
    an earlier run of this command built (the same documents and settings) instead of building it
    again. Raises RuntimeError when the command fails."""
    data = ["--dataset", dataset] if dataset else ["--data", "docs", "--collection", "train"]
    cmd = [str(Path(sys.executable).parent / "archivist"), "finetune", "--home", str(home_of(corpus)), *data,
           "--max-steps", str(steps), "--eval-limit", str(eval_limit), "--name", name,
           "--no-activate", "--json"]
    log(" ".join(cmd))
    t0 = time.perf_counter()
    logfile = DATA / "results" / f"finetune-unseen-{corpus}.log"  # the command's stderr, to follow it
    with logfile.open("w") as err:
        done = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=err, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"archivist finetune failed ({done.returncode}): {logfile.read_text()[-2000:]}")
    result = json.loads(done.stdout)
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    return result


def training_documents(ws, dataset: str) -> set[str]:
    """File names of every document whose text reached the dataset (sources and distractors): the
    benchmark's check that no held-out page was trained on."""
    manifest = json.loads((ws.home / "datasets" / dataset / "manifest.json").read_text())
    return {Path(d["path"]).name for d in manifest["documents"]}


class SharedDrafts:
    """An LLM wrapper that generates once per (prompt, adapter, max_new_tokens) and replays the text
    to later calls: with greedy decoding, `ask` in auto and in generate mode would generate the same
    draft, and on this CPU each draft costs tens of seconds. Everything else is the wrapped LLM's."""

    def __init__(self, llm):
        self.llm, self.drafts = llm, {}
        self.last = ""  # the latest draft handed out: what the model said, before any check

    def __getattr__(self, name):
        return getattr(self.llm, name)

    def stream(self, messages, max_new_tokens: int, adapter=None, stats: dict | None = None, **kw):
        key = (json.dumps(messages, sort_keys=True), getattr(adapter, "name", adapter), max_new_tokens)
        if key not in self.drafts:
            st: dict = {}
            self.drafts[key] = ("".join(self.llm.stream(messages, max_new_tokens=max_new_tokens, adapter=adapter,
                                                        stats=st, **kw)), st)
        text, st = self.drafts[key]
        self.last = text
        if stats is not None:
            stats.update(st)
        yield text


def questions(corpus: str, split: str):
    from archivist.retrieval.evaluate import load_set

    return [q for q in load_set(EVALSETS / f"{corpus}.jsonl", "answers") if q.extra.get("split") == split]


def rows_folder(corpus: str, split: str) -> Path:
    return DATA / "results" / f"finetune-unseen-{corpus}-{split}"


def load_rows(corpus: str, split: str) -> dict[str, dict[str, dict]]:
    """{"<model>/<mode>": {question id: row}} from every evaluate process's file."""
    out: dict = {}
    for f in sorted(rows_folder(corpus, split).glob("*.jsonl")):
        for line in f.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                out.setdefault(row["key"], {})[row["id"]] = row
    return out


def evaluate(corpus: str, adapter: str, split: str, max_new_tokens: int, runs: Sequence[str],
             shard: tuple[int, int] = (0, 1), reverse: bool = False) -> None:
    """Answer the split's questions (those of `shard` i of n: every n-th from the i-th) for each of
    `runs` ("extractive": the reference, no model; "base"; "adapter": both in MODES), over all
    documents of the workspace, one question at a time in both modes. Each row is appended to
    rows_folder() as it comes, and rows already there are skipped: a stopped run goes on where it
    stopped, and several processes can share the questions (`reverse`: a second process on the same
    shard from its end, the two meeting in the middle)."""
    from archivist.retrieval.evaluate import evaluate_answers
    from archivist.retrieval.llm import llm_for

    folder = rows_folder(corpus, split)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{'-'.join(runs)}-{shard[0]}of{shard[1]}{'-reversed' if reverse else ''}.jsonl"
    ws = open_ws(home_of(corpus), max_new_tokens=max_new_tokens)
    qs = questions(corpus, split)[shard[0]::shard[1]]
    qs = qs[::-1] if reverse else qs
    try:
        llm = SharedDrafts(llm_for(ws.settings))
        plan = [("none", "extractive", None)] if "extractive" in runs else []
        plan += [(m, mode, a) for m, a in (("base", None), ("adapter", adapter)) if m in runs for mode in MODES]
        for model, chosen in dict.fromkeys((m, a) for m, _, a in plan):
            t0, n = time.perf_counter(), 0
            for q in qs:
                done = load_rows(corpus, split)  # again for each question: another process may have answered it
                for mode in [md for m, md, _ in plan if m == model]:
                    key = f"{model}/{mode}"
                    if "draft" in done.get(key, {}).get(q.extra["id"], {}):
                        continue
                    llm.last = ""
                    row = evaluate_answers(ws, [q], user=None, adapter=chosen, llm=llm, mode=mode)["per_question"][0]
                    row.update(key=key, id=q.extra["id"], kind=q.extra.get("kind"), answers=q.answers, adapter=chosen,
                               draft=llm.last)
                    with out.open("a") as f:
                        f.write(json.dumps(row, default=str) + "\n")
                    n += 1
            log(f"{corpus} {split} {model}: {n} answers in {time.perf_counter() - t0:.0f} s")
    finally:
        ws.close()


def metrics(rows: Sequence[dict]) -> dict:
    """The issue's rates: over answerable questions, key accuracy (answered and holds the gold),
    gold contained whatever the status, token F1, confident misses, uncertain, not found, and gold in
    the model's draft before any check (generating modes); over unanswerable ones, not found."""
    from archivist.retrieval.evaluation import score_answer

    ans = [r for r in rows if r["gold"] is not None]
    una = [r for r in rows if r["gold"] is None]
    out: dict = {"answerable": len(ans), "unanswerable": len(una)}
    if ans:
        n = len(ans)
        drafts = [score_answer(r["gold"], r.get("draft") or "", r.get("answers", [])[1:]) for r in ans]
        out.update(key_accuracy=sum(key_right(r) for r in ans) / n,
                   draft_contained=sum(d.contained for d in drafts) / n,
                   contained=sum(bool(r["contains_gold"]) for r in ans) / n,
                   token_f1=sum(r["token_f1"] for r in ans) / n,
                   confident_miss=sum(r["status"] == "answered" and not names_gold(r) for r in ans) / n,
                   uncertain=sum(r["status"] == "uncertain" for r in ans) / n,
                   not_found=sum(r["status"] == "not_found" for r in ans) / n,
                   seconds=sorted(r["seconds"] for r in ans)[n // 2])
    if una:
        out["unanswerable_not_found"] = sum(r["status"] == "not_found" for r in una) / len(una)
    return out


def key_right(row: dict) -> float:
    return float(row["status"] == "answered" and names_gold(row))


def gains(base: Sequence[dict], adapted: Sequence[dict]) -> dict:
    """The adapter's paired bootstrap lead over the base on the answerable questions, per metric."""
    from archivist.retrieval.evaluation import paired_difference, score_answer

    pairs = [(b, a) for b, a in zip(base, adapted) if b["gold"] is not None]
    per = {"key accuracy": key_right, "gold contained": lambda r: float(bool(r["contains_gold"])),
           "gold in draft": lambda r: float(score_answer(r["gold"], r.get("draft") or "", r.get("answers", [])[1:]).contained),
           "token F1": lambda r: r["token_f1"],
           "confident misses": lambda r: float(r["status"] == "answered" and not names_gold(r))}
    return {m: paired_difference([f(a) for _, a in pairs], [f(b) for b, _ in pairs]) for m, f in per.items()}


def render(corpus: str, split: str, state: dict) -> str:
    """The finding's tables from the saved state (prepare, finetune and evaluate results)."""
    runs = state["rows"]  # {"<model>/<mode>": {question id: row}}
    common = set.intersection(*(set(r) for r in runs.values())) if runs else set()
    order = [q.extra["id"] for q in questions(corpus, split) if q.extra["id"] in common]
    rows = {key: [r[i] for i in order] for key, r in sorted(runs.items())}
    table = []
    for key, rs in rows.items():
        m = metrics(rs)
        table.append([key.replace("/", " "), m["answerable"], m["key_accuracy"], m["contained"], m["draft_contained"],
                      m["token_f1"],
                      m["confident_miss"], m["uncertain"], m["not_found"],
                      m.get("unanswerable_not_found", float("nan")),
                      m["seconds"]])
    lead = []
    for mode in MODES:
        if f"base/{mode}" in rows and f"adapter/{mode}" in rows:
            for metric, g in gains(rows[f"base/{mode}"], rows[f"adapter/{mode}"]).items():
                lead.append([mode, metric, g["diff"], f"[{g['low']:+.3f}, {g['high']:+.3f}]", g["better"], g["worse"]])
    ft = state.get("finetune") or {}
    t = ft.get("train") or {}
    prep = state.get("prepare") or {}
    lines = [f"Corpus {corpus}: {json.dumps(prep)}. Split {split}: {len(order)} questions answered in every run "
             f"(of {len(questions(corpus, split))}), {machine()['date']}.",
             f"Fine-tune: run {ft.get('run_id')}, dataset {ft.get('dataset')}, {t.get('steps')} steps, loss "
             f"{t.get('first_loss') or 0:.3f} -> {t.get('last_loss') or 0:.3f}, {t.get('tokens_per_s')} tokens/s, "
             f"{ft.get('wall_s')} s in all; "
             f"held-out pages among the dataset's documents: {state.get('leak', '?')}.", "",
             md_table(["model mode", "answerable", "key accuracy", "gold contained", "gold in draft", "token F1", "confident misses",
                       "uncertain", "not found", "unanswerable not found", "median s"], table), "",
             "Adapter - base (paired bootstrap over the answerable questions, 95%):", "",
             md_table(["mode", "metric", "diff", "interval", "better", "worse"], lead)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default="python", choices=sorted(FOLDERS))
    ap.add_argument("--stage", default="all", choices=["all", "prepare", "finetune", "evaluate", "report"])
    ap.add_argument("--split", default="heldout", choices=["heldout", "tuning"],
                    help="questions to answer (tuning: their pages may have been trained on)")
    ap.add_argument("--steps", type=int, default=STEPS, help=f"fine-tune optimizer steps (default {STEPS})")
    ap.add_argument("--max-new-tokens", type=int, default=MAX_NEW_TOKENS)
    ap.add_argument("--shard", default="0/1", help="evaluate: questions i::n of the split (I/N), for parallel processes")
    ap.add_argument("--reverse", action="store_true", help="evaluate: the shard's questions from the last one")
    ap.add_argument("--dataset", default=None, help="finetune: train on this saved dataset (an earlier run's)")
    ap.add_argument("--runs", default="extractive,base,adapter",
                    help="what evaluate answers with: extractive (reference), base, adapter (comma-separated)")
    args = ap.parse_args(argv)
    path = DATA / "results" / f"finetune-unseen-{args.corpus}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    load = lambda: json.loads(path.read_text()) if path.exists() else {}  # noqa: E731

    def update(key: str, value) -> None:
        """Set one key of the saved state, read again first: stages may run in parallel processes."""
        state = load()
        state[key] = value
        path.write_text(json.dumps(state, indent=1, default=str))

    name = f"unseen-{args.corpus}-{args.steps}"
    if args.stage in ("all", "prepare"):
        update("prepare", prepare(args.corpus))
    if args.stage in ("all", "finetune"):
        result = finetune(args.corpus, args.steps, name, dataset=args.dataset)
        ws = open_ws(home_of(args.corpus))
        try:
            held = split_pages(evalset(args.corpus), [p.name for p in build_corpus(args.corpus).iterdir()])[1]
            leak = len(training_documents(ws, result["dataset"]) & set(held))
        finally:
            ws.close()
        update("finetune", result)
        update("leak", leak)
    if args.stage in ("all", "evaluate"):
        adapter = (load().get("finetune") or {}).get("adapter", {}).get("name", name)
        i, n = (int(x) for x in args.shard.split("/"))
        evaluate(args.corpus, adapter, args.split, args.max_new_tokens, args.runs.split(","), (i, n), args.reverse)
    if args.stage in ("all", "evaluate", "report"):
        state, rows = load(), load_rows(args.corpus, args.split)
        if rows:
            report(f"finetune-unseen-{args.corpus}-{args.split}", "Fine-tuning on unseen documents",
                   render(args.corpus, args.split, {**state, "rows": rows}), {"state": state, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
