"""CLI: archivist eval retrieval | answers --set FILE. A stored run belongs to the acting user (--user)."""

from __future__ import annotations

import sys
from pathlib import Path

from archivist.cli import CLIError, check_collections, collection_arg, emit_json, open_ws
from archivist.retrieval.cli import positive_int


def register(sub, common) -> None:
    ev = sub.add_parser("eval", help="measure retrieval or answer quality on a question set")
    evsub = ev.add_subparsers(dest="eval_command", metavar="KIND")
    ev.set_defaults(func=lambda args: (ev.print_help(sys.stderr), 2)[1])

    p = common(evsub.add_parser("retrieval", help="hit@k, MRR, nDCG, recall for dense, lexical, hybrid, hybrid+rerank"))
    p.add_argument("--set", required=True, dest="set_path", help='JSONL: {"question": ..., "relevant": [document names or chunk ids]}')
    p.add_argument("-k", type=int, default=10, help="passages retrieved per question (default 10, at least 10: "
                                                    "the metrics are taken at 1, 5 and 10)")
    p.add_argument("--mode", action="append", choices=["dense", "lexical", "hybrid", "hybrid+rerank"],
                   help="only this mode (repeatable; default all four)")
    p.add_argument("--reranker", default="coverage",
                   help="for hybrid+rerank: 'coverage' (no model, default), the name of a learned reranker "
                        "(archivist finetune --target reranker), a local CrossEncoder folder, or 'none'")
    p.add_argument("--collection", "-c", type=collection_arg, action="append", help="only this collection (repeatable)")
    p.add_argument("--split", default=None, help="only questions whose \"split\" field is this (e.g. tuning, heldout)")
    p.add_argument("--limit", type=int, default=None, help="only the first N questions")
    p.add_argument("--no-store", action="store_true", help="do not save the results in the workspace")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval_retrieval)

    p = common(evsub.add_parser("answers", help="answer accuracy, token F1, citation precision, refusal rate"))
    p.add_argument("--set", required=True, dest="set_path", help='JSONL: {"question": ..., "answer": str or null}')
    p.add_argument("-k", type=positive_int, default=None, help="passages in the prompt (default: settings.top_k)")
    p.add_argument("--adapter", default="active", help="adapter name, 'none' for the base model (default: the active one)")
    p.add_argument("--answer-mode", choices=["auto", "generate", "extractive"], default=None,
                   help="how answers are made (default: settings.answer_mode)")
    p.add_argument("--split", default=None, help="only questions whose \"split\" field is this (e.g. tuning, heldout)")
    p.add_argument("--limit", type=int, default=None, help="only the first N questions")
    p.add_argument("--compare", type=int, default=None, metavar="RUN",
                   help="compare with stored answers run RUN (its id) of the same questions: a paired bootstrap "
                        "of each question's accuracy, key accuracy and token F1")
    p.add_argument("--no-store", action="store_true", help="do not save the results in the workspace")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval_answers)


def _questions(args, kind):
    from archivist.retrieval.evaluate import load_set

    if args.limit is not None and args.limit <= 0:
        raise CLIError(f"--limit must be positive, got {args.limit}")
    qs = load_set(args.set_path, kind)
    if getattr(args, "split", None):
        qs = [q for q in qs if q.extra.get("split") == args.split]
        if not qs:
            raise CLIError(f"{args.set_path}: no question has \"split\": {args.split!r}")
    qs = qs[: args.limit] if args.limit else qs
    first: dict[str, int] = {}
    repeats = [(q.line, first.setdefault(" ".join(q.question.lower().split()), q.line)) for q in qs]
    repeats = [(line, was) for line, was in repeats if line != was]
    if repeats:  # every line is a question of the means and the bootstrap: a repeat weighs twice
        print(f"archivist: warning: {len(repeats)} question(s) of {args.set_path} repeat an earlier one (line "
              f"{repeats[0][0]} repeats line {repeats[0][1]}); each repeat counts again in every figure", file=sys.stderr)
    return qs


def _stored_name(args) -> str:
    """The set's name as the run is stored: the file's name, with the split and --limit when given
    ("qs.jsonl (split heldout, first 20)"), so runs on different parts of a set are not shown as
    one set's changes over time."""
    parts = ([f"split {args.split}"] if getattr(args, "split", None) else []) + ([f"first {args.limit}"] if args.limit else [])
    return Path(args.set_path).name + (f" ({', '.join(parts)})" if parts else "")


def _bar(total: int, desc: str, quiet: bool):
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, file=sys.stderr, disable=quiet, dynamic_ncols=True, leave=False)

    def step(done, _total):
        bar.n = done
        bar.refresh()

    return bar, step


def cmd_eval_retrieval(args) -> int:
    from archivist.retrieval.evaluate import MODES, evaluate_retrieval
    from archivist.retrieval.evaluation import format_comparison, format_table, store_evaluation
    from archivist.retrieval.rerank import load_reranker

    if args.k < 10:  # the metrics are hit@1/5/10, MRR@10, nDCG@10: fewer passages were silently raised to 10
        raise CLIError(f"-k {args.k}: the metrics are taken at 1, 5 and 10 passages, so -k must be at least 10 "
                       "(hit@5 and recall@5 say how the first 5 passages do)")
    questions = _questions(args, "retrieval")
    modes = args.mode or list(MODES)
    with open_ws(args) as ws:
        check_collections(ws, getattr(args, "user", None), args.collection)  # a typo's run scored 0 everywhere, exit 0
        from archivist.models import embedder_for
        from archivist.retrieval.evaluate import QueryCache

        embedder = QueryCache(embedder_for(ws.settings))  # one query embedding serves every mode and the reranker
        reranker = load_reranker(args.reranker, ws, embedder, getattr(args, "user", None)) if "hybrid+rerank" in modes else None
        if reranker is None and "hybrid+rerank" in modes:
            modes = [m for m in modes if m != "hybrid+rerank"]
        if not modes:
            raise CLIError("no mode left to run (hybrid+rerank needs --reranker)")
        bar, step = _bar(len(questions) * len(modes), "eval retrieval", args.json)
        done = {"n": 0}

        def progress(i, n):
            done["n"] += 1
            step(done["n"], None)

        results = evaluate_retrieval(ws, questions, modes=modes, k=args.k, reranker=reranker, embedder=embedder,
                                     user=getattr(args, "user", None), collections=args.collection, progress=progress)
        bar.close()
        results["set"] = str(args.set_path)
        results["split"], results["limit"] = getattr(args, "split", None), args.limit
        if results["unsearchable"]:
            first = results["unsearchable"][0]
            print(f"archivist: warning: {len(results['unsearchable'])} question(s) of {args.set_path} name no document "
                  f"you may search (line {first['line']}: {', '.join(first['relevant'])}); they count as misses",
                  file=sys.stderr)
        if results["unknown_entries"]:
            first = results["unknown_entries"][0]
            print(f"archivist: warning: {len(results['unknown_entries'])} question(s) of {args.set_path} list a relevant "
                  f"entry that names no document you may search (line {first['line']}: {', '.join(first['entries'])}); "
                  "it is never found, so their recall and nDCG cannot reach 1", file=sys.stderr)
        if not args.no_store:
            results["id"] = store_evaluation(ws, "retrieval", _stored_name(args), results, user=getattr(args, "user", None))
    if args.json:
        emit_json({k: v for k, v in results.items()})
        return 0
    print(f"{results['questions']} questions from {args.set_path}, {results['k']} passages each"
          + (f", reranker {results['reranker']}" if results.get("reranker") else ""))
    print(format_table(results["modes"]))
    for name, comparison in results["comparisons"].items():
        print(format_comparison(name, comparison))
    if "id" in results:
        print(f"(saved as evaluation {results['id']})", file=sys.stderr)
    return 0


def _earlier_run(ws, args, questions):
    """The stored answers run `--compare` names, checked before any question is asked: one the
    acting user may read, of kind answers, with the same questions and gold answers in the same order."""
    from archivist import access, audit
    from archivist.retrieval.evaluation import different_questions, get_evaluation

    try:
        earlier = get_evaluation(ws, args.compare, user=getattr(args, "user", None))
    except LookupError as e:
        raise CLIError(f"--compare: {e}") from None
    # an admin comparing with another member's run reads it: on the audit log (`evaluation.read`)
    audit.others_read(ws, access.current_user(ws, getattr(args, "user", None)), "cli", "evaluation",
                      [(earlier.id, earlier.user)])
    if earlier.kind != "answers" or earlier.error or not isinstance(earlier.results.get("per_question"), list):
        raise CLIError(f"--compare: evaluation #{args.compare} is no answers run with per-question results"
                       + (f" ({earlier.error})" if earlier.error else f" (kind {earlier.kind})"))
    why = different_questions([{"question": q.question, "gold": q.answer} for q in questions],
                              earlier.results["per_question"])
    if why:
        raise CLIError(f"--compare: evaluation #{args.compare} ({earlier.set_name}) asked other questions than "
                       f"{_stored_name(args)}: {why}; a paired comparison needs the same questions")
    return earlier


def cmd_eval_answers(args) -> int:
    from archivist.retrieval.evaluate import evaluate_answers
    from archivist.retrieval.evaluation import (answer_intervals, compare_answer_runs, format_comparison, format_intervals,
                                                format_table, store_evaluation)

    questions = _questions(args, "answers")
    adapter = None if args.adapter in ("none", "base") else args.adapter
    with open_ws(args) as ws:
        earlier = _earlier_run(ws, args, questions) if args.compare is not None else None
        bar, step = _bar(len(questions), "eval answers", args.json)
        results = evaluate_answers(ws, questions, user=getattr(args, "user", None), adapter=adapter, k=args.k,
                                   mode=args.answer_mode, progress=step)
        bar.close()
        results["set"] = str(args.set_path)
        results["split"], results["limit"] = getattr(args, "split", None), args.limit
        results["intervals"] = answer_intervals(results["per_question"])
        if earlier is not None:
            results["comparison"] = {"with": earlier.id, "adapter": earlier.results.get("adapter"),
                                     "mode": earlier.results.get("mode"),
                                     "metrics": compare_answer_runs(results["per_question"], earlier.results["per_question"])}
        if not args.no_store:
            results["id"] = store_evaluation(ws, "answers", _stored_name(args), results, user=getattr(args, "user", None))
    if args.json:
        emit_json(results)
        return 0
    m = results["metrics"]
    print(f"{m['questions']} questions from {args.set_path} ({m['answerable']} answerable, {m['unanswerable']} not), "
          + ("in extractive mode (quotes, nothing generated)" if results["mode"] == "extractive" else
             f"answered by {'adapter ' + results['adapter'] if results['adapter'] else 'the base model'} in {results['mode']} mode"))
    shown = {k: v for k, v in m.items() if k not in ("questions", "answerable", "unanswerable")}
    print(format_table({"answers": shown}, first="set"))
    if results["intervals"]:
        print(format_intervals(results["intervals"]))
    if "comparison" in results:
        c = results["comparison"]
        who = ("extractive mode" if c["mode"] == "extractive" else
               f"{'adapter ' + c['adapter'] if c['adapter'] else 'the base model'} in {c['mode']} mode")
        print(format_comparison(f"this run vs evaluation #{c['with']} ({who})", c["metrics"])
              if c["metrics"] else f"this run vs evaluation #{c['with']}: no answerable question to compare")
    if "id" in results:
        print(f"(saved as evaluation {results['id']})", file=sys.stderr)
    return 0
