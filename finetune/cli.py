"""CLI: archivist finetune | adapters [delete] | embedders [delete] | rerankers [delete] | activate | export | runs,
and `archivist doctor --finetune`."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from archivist.cli import CLIError, command, emit_json, list_or_json, open_ws, settings_from
from archivist.finetune import train
from archivist.finetune.datasets import DEFAULT_SOURCES

_SHARED = ("user", "device")  # fields the common options already carry (--user, --device)
_SET_BY_RETRAIN = ("replaces",)  # `--retrain ADAPTER` fills it in


def register(sub, common) -> None:
    p = common(sub.add_parser("finetune", help="fine-tune the chat model with LoRA/QLoRA, evaluate it, register the adapter",
                              description="Build a dataset (documents, feedback, JSONL files), train a LoRA or QLoRA "
                                          "adapter, evaluate it against the base on held-out documents and register it."))
    add_config_args(p, skip=_SHARED + _SET_BY_RETRAIN)
    p.add_argument("--target", choices=["llm", "retriever", "reranker"], default="llm",
                   help="llm: a LoRA adapter of the chat model (the default); retriever: adapt the embedder to the "
                        "documents, then re-embed them (finetune/retriever.py; --collection, --seed, --eval-fraction, "
                        "--lr, --epochs, --batch-size, --max-seq-len, --name and --no-activate apply); reranker: learn the "
                        "reranker's weights from the same synthetic questions (finetune/reranker.py; used with "
                        "`archivist eval retrieval --reranker NAME`, never switched on by itself)")
    p.add_argument("--max-chunks", type=int, default=None, help="retriever: most training chunks (default 4000)")
    p.add_argument("--questions", default=None, help="retriever: extractive,sentence (the default) or one of them")
    p.add_argument("--resume", metavar="RUN", default=None, help="continue run RUN from its latest checkpoint "
                                                                 "(--target retriever: finish switching to embedder RUN, or 'base')")
    p.add_argument("--retrain", metavar="ADAPTER", default=None,
                   help="train ADAPTER again with its settings on the current documents (a stale one, say)")
    p.add_argument("--background", action="store_true", help="run in a background process; print the run id and return")
    p.add_argument("--estimate-only", action="store_true", help="print the memory estimate and whether it fits, then stop")
    p.add_argument("--prepare-only", action="store_true", help="build and save the dataset, then stop")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="the result as JSON on stdout")
    p.set_defaults(func=cmd_finetune)

    p = command(sub, common, "adapters", cmd_adapters, "registered adapters with their metrics", json=True)
    actions = p.add_subparsers(dest="adapters_command", metavar="ACTION")
    d = command(actions, common, "delete", cmd_delete, "delete an adapter: its weights and row (admins; what it "
                                                       "learned stays on its old answers, withheld as before)")
    # SUPPRESS: unset here, `adapters --json delete NAME` keeps the --json given before the action (a
    # default of False overwrote it, and the delete printed text)
    d.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="the result as JSON on stdout")
    d.add_argument("name", metavar="NAME")
    d.add_argument("--force", action="store_true", help="even the active adapter (the chat then uses the base model)")

    for kind, run, more in (("embedders", cmd_embedders, "; the active one needs --force: every collection is "
                                                          "re-embedded with the base embedder first"),
                            ("rerankers", cmd_rerankers, "")):
        p = command(sub, common, kind, run, f"adapted {kind} (finetune --target {'retriever' if kind == 'embedders' else 'reranker'}) "
                                            "you may see", json=True)
        actions = p.add_subparsers(dest=f"{kind}_command", metavar="ACTION")
        d = command(actions, common, "delete", run, f"delete one: its folder goes (admins){more}")
        d.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="the result as JSON on stdout")
        d.add_argument("name", metavar="NAME")
        if kind == "embedders":
            d.add_argument("--force", action="store_true", help="even the active embedder (re-embeds with the base first)")
            d.add_argument("--quiet", "-q", action="store_true", help="no progress bar for the re-embed")

    p = command(sub, common, "activate", cmd_activate, "choose the adapter the chat uses ('none': the base model)", json=True)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--force", action="store_true", help="even when it was trained on another base than the chat model")

    p = command(sub, common, "export", cmd_export, "write an adapter merged into its base as a standalone model")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--merged", metavar="OUT", required=True, help="output folder (safetensors, tokenizer, chat template)")

    p = command(sub, common, "runs", cmd_runs, "fine-tuning runs and their progress", json=True)
    p.add_argument("--cancel", metavar="RUN", default=None, help="stop a running fine-tune (it checkpoints first)")

    doctor = sub.choices.get("doctor")
    if doctor is not None:  # `archivist doctor --finetune method=qlora,batch_size=8,max_seq_len=2048`
        doctor.add_argument("--finetune", nargs="?", const="", default=None, metavar="KEY=VALUE,...",
                            help="also estimate a fine-tune's peak memory (keys: base, method, batch_size, "
                                 "max_seq_len, rank, grad_checkpointing)")
        doctor.set_defaults(doctor_extra=doctor_finetune)


def add_config_args(parser, skip: tuple = ()) -> None:
    """Add --field-name options for every FinetuneConfig field (help and defaults from the dataclass),
    except those in `skip` (the archivist CLI's common options already carry --user and --device)."""
    for f in dataclasses.fields(train.FinetuneConfig):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "").replace("%", "%%")
        if f.name == "data":
            help_text = (f"{help_text}; default: {' and '.join(DEFAULT_SOURCES)} (the documents, plus the chat's feedback "
                         "when there is any)")
        if f.name in ("data", "collections"):
            flags = ["--data"] if f.name == "data" else ["--collection", "-c"]
            parser.add_argument(*flags, dest=f.name, action="append", default=None, metavar=f.name[:-1].upper() if f.name == "collections" else "SRC",
                                help=help_text)
        elif f.type in ("bool", bool):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            shown = f" (default {f.default})" if f.default is not None else ""
            parser.add_argument(flag, dest=f.name, type=kind, default=None, help=help_text + shown)


def given_fields(args) -> dict:
    """The FinetuneConfig fields given as flags ({field: value}; a flag left out is None, or absent)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(train.FinetuneConfig) if getattr(args, f.name, None) is not None}


def config_from_args(args, **overrides) -> "train.FinetuneConfig":
    """A FinetuneConfig from parsed flags: fields the user did not give keep their defaults, except
    the data, which defaults to the documents plus the chat's feedback (DEFAULT_SOURCES)."""
    values = given_fields(args)
    values.setdefault("data", list(DEFAULT_SOURCES))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return train.FinetuneConfig(**values)


def _config(args):
    return config_from_args(args, user=getattr(args, "user", None), device=getattr(args, "device", None))


def _estimate(settings, cfg):
    from archivist.finetune.memory import plan

    return plan(settings, cfg.base, cfg.method, cfg.device, cfg.batch_size, cfg.max_seq_len, cfg.rank,
                cfg.grad_checkpointing, cfg.dropout, cfg.target_modules, unpadded=cfg.unpadded)


def doctor_finetune(args, settings) -> dict:
    """The doctor hook: parse KEY=VALUE pairs into a FinetuneConfig and return its memory estimate."""
    import dataclasses

    from archivist.finetune.train import FinetuneConfig

    if args.finetune is None:
        return {}
    kinds = {f.name: {"int": int, "float": float}.get(str(f.type), str) for f in dataclasses.fields(FinetuneConfig)}
    values = {}
    for pair in filter(None, (s.strip() for s in args.finetune.split(","))):
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in kinds:
            raise CLIError(f"--finetune: {pair!r} is not KEY=VALUE with KEY one of base, method, batch_size, max_seq_len, rank, grad_checkpointing")
        values[key] = kinds[key](value.strip())
    values.setdefault("device", settings.device)
    est = _estimate(settings, FinetuneConfig(**values))
    return {"finetune_estimate": est.as_dict()}


def cmd_finetune(args) -> int:
    from archivist import jobs
    from archivist.finetune import dataset_store, datasets, memory, runs, train

    if args.target == "retriever":
        return cmd_finetune_retriever(args)
    if args.target == "reranker":
        return cmd_finetune_reranker(args)
    settings = settings_from(args)
    if args.resume:
        with open_ws(args) as ws:
            # the run goes on with its own settings (its learning rate and data order are functions of
            # its steps and seed): a flag that differs from them would be ignored, so it is refused;
            # all but --device, which moves the run (runs.move_run: a checkpoint is not tied to a device)
            own = runs.get_run(ws, args.resume, getattr(args, "user", None))["config"] or {}
            given = given_fields(args)
            differ = sorted(k for k, v in given.items() if k not in ("user", "device") and own.get(k) != v)
            if differ:
                raise CLIError(f"--resume {args.resume} continues the run with its own settings ("
                               + ", ".join(f"{k} {own.get(k)!r}" for k in differ) + "); leave out "
                               + ", ".join("--" + k.replace("_", "-") for k in differ) + ", or start a new run with them")
            try:
                if given.get("device", own.get("device")) != own.get("device"):
                    runs.move_run(ws, args.resume, given["device"], getattr(args, "user", None))
                if args.background:
                    return _started(args, runs.resume_run(ws, args.resume, getattr(args, "user", None)))
                result = train.run(ws, train.FinetuneConfig(), run_id=args.resume, resume=True, progress=not args.quiet)
            # JobError: the run is queued or running (in the background, say): a sentence, not a traceback
            except (memory.WontFit, dataset_store.DatasetError, jobs.JobError) as e:
                raise CLIError(str(e)) from None
        return _report(args, result)
    try:
        cfg = _retrain_config(args) if args.retrain else _config(args)
    except ValueError as e:
        raise CLIError(str(e)) from None
    if args.estimate_only:
        est = _estimate(settings, cfg)
        if args.json:
            emit_json(est.as_dict())
        else:
            print(est.message)
        return 0 if est.fits else 1
    with open_ws(args) as ws:
        if cfg.dataset:  # refuse here, not in a background process: the dataset must be one the user may use
            dataset_store.check_reviewed(ws, dataset_store.load_dataset(ws, cfg.dataset, cfg.user))
        try:
            if args.prepare_only:
                ds = datasets.build_dataset(ws, cfg.data, user=cfg.user, collections=cfg.collections, generator=cfg.generator,
                                            seed=cfg.seed, eval_fraction=cfg.eval_fraction, passages=cfg.passages,
                                            progress=not (args.quiet or args.json))
                if args.json:
                    emit_json({"dataset": ds.name, "path": str(ds.path), **ds.manifest["counts"]})
                else:
                    print(f"dataset {ds.name}: {len(ds.train)} train, {len(ds.eval)} eval examples in {ds.path}")
                    print(f"train on it with: archivist finetune --dataset {ds.name}")
                return 0
            if args.background:
                return _started(args, runs.start_run_background(ws, cfg))
            result = train.run(ws, cfg, progress=not (args.quiet or args.json))
        except (memory.WontFit, dataset_store.DatasetError) as e:
            raise CLIError(str(e)) from None
    return _report(args, result)


def _retrain_config(args) -> "train.FinetuneConfig":
    """`--retrain ADAPTER`'s config (runs.retrain_config, as the acting user): the flags given on the
    command line (--max-steps, --collection, --name, --no-activate ...) win over the recorded settings."""
    from archivist import access
    from archivist.finetune import runs

    with open_ws(args, check_index=False) as ws:
        return runs.retrain_config(ws, args.retrain, access.current_user(ws, getattr(args, "user", None)), given_fields(args))


def cmd_finetune_retriever(args) -> int:
    """`archivist finetune --target retriever`: train, evaluate, register, and (when better) re-embed."""
    from archivist.finetune import embedders, retriever

    given = {k: getattr(args, k, None) for k in ("collections", "eval_fraction", "lr", "batch_size", "max_seq_len",
                                                 "seed", "name", "max_chunks", "questions")}
    if getattr(args, "epochs", None) is not None:
        given["epochs"] = max(1, round(args.epochs))
    if getattr(args, "activate", None) is False:
        given["activate"] = "never"
    with open_ws(args) as ws:
        try:
            if args.resume:  # a killed re-embed: the staged vectors are kept, the rest embedded, then the switch
                result = embedders.activate(ws, args.resume, getattr(args, "user", None), progress=not args.quiet)
                report = {"name": args.resume, "activated": True, "reembed": {"chunks": result.chunks,
                                                                             "seconds": round(result.seconds, 1)}}
            else:
                cfg = retriever.RetrieverConfig(**{k: v for k, v in given.items() if v is not None})
                report = retriever.finetune_retriever(ws, cfg, getattr(args, "user", None), progress=not (args.quiet or args.json))
        except (ValueError, LookupError, FileExistsError) as e:
            raise CLIError(str(e)) from None
    if args.json:
        emit_json(report)
        return 0
    ev = report.get("evaluation")
    if ev:
        print(f"held-out documents: {ev['questions']} synthetic questions over {ev['corpus']} chunks   {'base':>7} {'adapted':>8}")
        for label, side in (("hybrid (decides)", ev), ("dense alone", ev.get("dense"))):
            for m in ("hit@5", "mrr@10") if side else ():
                d = side["difference"][m]
                print(f"  {label:16} {m:8} {side['base'][m]:>41.3f} {side['adapted'][m]:>8.3f}   "
                      f"diff {d['diff']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]")
    state = "active: the collections were re-embedded with it" if report.get("activated") else report.get("note", "not activated")
    print(f"embedder {report['name']}: {state}")
    if report.get("reembed"):
        print(f"re-embedded {report['reembed']['chunks']} chunks in {report['reembed']['seconds']} s")
    return 0


def cmd_finetune_reranker(args) -> int:
    """`archivist finetune --target reranker`: learn, evaluate and register a reranker (finetune/reranker.py)."""
    from archivist.finetune import reranker

    given = {k: getattr(args, k, None) for k in ("collections", "eval_fraction", "seed", "name", "questions")}
    with open_ws(args) as ws:
        try:
            cfg = reranker.RerankerConfig(**{k: v for k, v in given.items() if v is not None})
            report = reranker.finetune_reranker(ws, cfg, getattr(args, "user", None))
        except (ValueError, LookupError, FileExistsError) as e:
            raise CLIError(str(e)) from None
    if args.json:
        emit_json(report)
        return 0
    ev = report["evaluation"]
    docs = ev["difference"]["mrr@10"].get("groups")
    print(f"held-out documents: {ev['questions']} synthetic questions   {'fused':>7} {'reranked':>9}"
          + (f"   (95% intervals drawing whole documents, {docs} of them)" if docs else ""))
    for m in ("hit@5", "mrr@10"):
        d = ev["difference"][m]
        print(f"  {m:8} {ev['base'][m]:>29.3f} {ev['adapted'][m]:>9.3f}   diff {d['diff']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]")
    print(f"reranker {report['name']}: weights " + ", ".join(f"{k} {v:+.2f}" for k, v in report["weights"].items())
          + f"; measure it with `archivist eval retrieval --set FILE --reranker {report['name']}`")
    return 0


def _started(args, run_id: str) -> int:
    if args.json:
        emit_json({"run_id": run_id, "status": "queued"})
    else:
        print(f"started run {run_id} in the background; follow it with `archivist runs`, "
              f"stop it with `archivist runs --cancel {run_id}`")
    return 0


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def _two(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def print_evaluation(report: dict) -> None:
    """Base and adapter side by side."""
    if not report or not report.get("base"):
        print(report.get("reason", "not evaluated") if report else "not evaluated")
        return
    b, a = report["base"], report["adapter"]
    of = f" of {report['held_out']}" if report.get("held_out", report["n"]) != report["n"] else ""
    print(f"held-out evaluation ({report['n']}{of} examples)   {'base':>10} {'adapter':>10}")
    for key, label in (("accuracy", "answer accuracy (gold contained)"), ("f1", "token F1"),
                       ("citations", "citation correctness"), ("perplexity", "perplexity of gold answers"),
                       ("seconds", "seconds")):
        print(f"  {label:34} {_fmt(b.get(key)):>10} {_fmt(a.get(key)):>10}")
    for source, k in (report.get("by_source") or {}).items():  # people's questions apart from generated ones
        print(f"  {'score, ' + source + ' (' + str(k['n']) + ')':34} {_fmt(k['base']):>10} {_fmt(k['adapter']):>10}")


def _report(args, result: dict) -> int:
    if args.json:
        emit_json(result)
        return 0 if result.get("status") == "done" else 1
    t = result.get("train", {})
    print(f"run {result['run_id']}: {result.get('status')} after {t.get('steps')} steps, "
          f"loss {_fmt(t.get('first_loss'))} -> {_fmt(t.get('last_loss'))}, {t.get('tokens_per_s')} tokens/s, "
          f"padding {100 * (t.get('padding') or 0):.1f}%")
    if result.get("status") != "done":
        return 1
    print_evaluation(result.get("evaluation"))
    rec = result["adapter"]
    state = "active" if rec["active"] else "registered, not active"
    print(f"adapter {rec['name']}: {state} ({rec['note']})")
    if rec["active"]:
        with open_ws(args, check_index=False) as ws:
            left_out = _kept_on_the_base(ws, rec["name"], getattr(args, "user", None))
        if left_out:
            print(left_out, file=sys.stderr)
    return 0


def cmd_adapters(args) -> int:
    from archivist import adapters

    with open_ws(args, check_index=False) as ws:
        rows = adapters.list_for(ws, getattr(args, "user", None))
    if not list_or_json(rows, args.json, "no adapters yet (train one with `archivist finetune`)"):
        return 0
    print(f"  {'name':28} {'base':16} {'acc':>11} {'F1':>11} {'cite':>11}  note")
    for r in rows:
        m = r["metrics"] or {}
        b, a = m.get("base") or {}, m.get("adapter") or {}
        cols = [f"{_two(b.get(k))}→{_two(a.get(k))}" for k in ("accuracy", "f1", "citations")]
        note = f"STALE: {r['stale']}" if r.get("stale") else r["note"] or ""
        if (r["lineage"] or {}).get("replaces"):  # a retrain: which adapter it learned again
            note = f"retrains {r['lineage']['replaces']}; {note}"
        print(f"{'*' if r['active'] else ' '} {r['name']:28} {r['base_model']:16} {cols[0]:>11} {cols[1]:>11} {cols[2]:>11}  {note}")
    return 0


def cmd_delete(args) -> int:
    from archivist import adapters

    with open_ws(args, check_index=False) as ws:
        rec = adapters.delete(ws, args.name, force=args.force, user=getattr(args, "user", None))
    if args.json:
        emit_json({"name": rec["name"], "deleted": True, "was_active": rec["active"], "notes": rec["notes"]})
    else:
        print(f"deleted adapter {rec['name']}" + (": the chat now uses the base model" if rec["active"] else ""))
    for note in rec["notes"]:
        print(f"note: {note}", file=sys.stderr)
    return 0


def cmd_embedders(args) -> int:
    """`archivist embedders [delete NAME [--force]]`: the adapted embedders, or delete one (embedders.delete)."""
    from archivist.finetune import embedders

    with open_ws(args, check_index=False) as ws:
        if getattr(args, "embedders_command", None) == "delete":
            gone = embedders.delete(ws, args.name, force=args.force, user=getattr(args, "user", None),
                                    progress=not (args.quiet or args.json))
        else:
            rows = embedders.list_embedders(ws, getattr(args, "user", None))
    if getattr(args, "embedders_command", None) == "delete":
        return _deleted(args, "embedder", gone, ": every collection was re-embedded with the base embedder "
                        f"({gone['reembed']['chunks'] if gone['reembed'] else 0} chunks) first")
    if list_or_json(rows, args.json, "no adapted embedders yet (train one with `archivist finetune --target retriever`)"):
        for r in rows:
            stale = f"STALE: {r['stale']}" if r.get("stale") else ""
            print(f"{'*' if r['active'] else ' '} {r['name']:28} {r.get('base', ''):20} {', '.join(r.get('collections') or []):30} {stale}".rstrip())
    return 0


def cmd_rerankers(args) -> int:
    """`archivist rerankers [delete NAME]`: the learned rerankers, or delete one (rerank.delete_learned)."""
    from archivist.retrieval import rerank

    with open_ws(args, check_index=False) as ws:
        if getattr(args, "rerankers_command", None) == "delete":
            rerank.delete_learned(ws, args.name, getattr(args, "user", None))
            return _deleted(args, "reranker", {"name": args.name, "was_active": False, "notes": []}, "")
        rows = rerank.list_learned(ws, getattr(args, "user", None))
    if list_or_json(rows, args.json, "no learned rerankers yet (train one with `archivist finetune --target reranker`)"):
        for r in rows:
            print(f"  {r['name']:28} {', '.join(r.get('collections') or []):30} archivist eval retrieval --reranker {r['name']}")
    return 0


def _deleted(args, kind: str, gone: dict, was_active: str) -> int:
    """What `embedders delete` and `rerankers delete` print: the deletion, then its notes on stderr."""
    if args.json:
        emit_json({**gone, "deleted": True})
    else:
        print(f"deleted {kind} {gone['name']}" + (was_active if gone["was_active"] else ""))
    for note in gone["notes"]:
        print(f"note: {note}", file=sys.stderr)
    return 0


def cmd_activate(args) -> int:
    from archivist import adapters

    with open_ws(args, check_index=False) as ws:
        if args.name.lower() == "none":
            rec = adapters.deactivate(ws, getattr(args, "user", None))
        else:
            rec = adapters.activate(ws, args.name, force=args.force, user=getattr(args, "user", None))
        blocked = ws.settings.stale_adapters == "block"
        left_out = _kept_on_the_base(ws, rec["name"], getattr(args, "user", None)) if rec else None
    if args.json:
        emit_json({"active": rec["name"] if rec else None})
    else:
        print(f"the chat now uses adapter {rec['name']}" if rec else "the chat now uses the base model alone")
    metrics = (rec or {}).get("metrics") or {}
    if metrics.get("better") is False:  # allowed (an admin's call), but never silently
        print(f"warning: {rec['name']}'s held-out evaluation did not find it better than the base: "
              f"{metrics.get('reason') or 'no reason recorded'}", file=sys.stderr)
    if (rec or {}).get("stale"):  # a rollback to an adapter that learned a document erased since: never silently
        _warn_stale(rec, "; stale adapters are blocked (stale_adapters=block), so the chat answers with the base model"
                    if blocked else "")
    if left_out:
        print(left_out, file=sys.stderr)
    return 0


def _kept_on_the_base(ws, name: str, by: str | None) -> str | None:
    """Who the active adapter `name` does not answer, in words: the users who may not read every
    collection it learned from get the base model in their chat (adapters.resolve), with nothing
    there to say so; the admin `by` who switched it on should know. None when it answers everyone."""
    from archivist import access, adapters

    users = [u["name"] for u in access.list_users(ws, by=by) if not adapters.may_use(ws, u["name"], name)]
    if not users:
        return None
    return (f"note: {len(users)} user(s) may not read every collection {name} learned from "
            f"({', '.join(sorted(adapters.trained_on(ws, name) or ()))}), so their chat keeps the base model: "
            f"{', '.join(users[:10])}" + (f" and {len(users) - 10} more" if len(users) > 10 else ""))


def _warn_stale(rec: dict, more: str = "") -> None:
    """Say on stderr that adapter `rec` is stale (it learned a document erased since), with `more`."""
    print(f"warning: {rec['name']} is stale ({rec['stale']}): its weights may repeat what was erased{more}; "
          f"retrain it with `archivist finetune --retrain {rec['name']}`", file=sys.stderr)


def cmd_export(args) -> int:
    from archivist import adapters
    from archivist.finetune.registry import export_merged

    with open_ws(args, check_index=False) as ws:
        try:
            out = export_merged(ws, args.name, args.merged, user=getattr(args, "user", None))
        except FileExistsError as e:
            raise CLIError(str(e)) from None
        rec = adapters.get(ws, args.name)
    print(f"merged model written to {out} (load it with AutoModelForCausalLM.from_pretrained, or --llm {out})")
    if rec.get("stale"):  # the merged copy is beyond any later erase's reach (docs/governance.md)
        _warn_stale(rec, f", and the merged model in {out} holds them too, where no erase reaches")
    return 0


def cmd_runs(args) -> int:
    from archivist.finetune import runs

    hint = None
    with open_ws(args, check_index=False) as ws:
        if args.cancel:
            run = runs.cancel_run(ws, args.cancel, getattr(args, "user", None))
            rows = [run]
            if run["status"] == "cancelled":  # how to go on, as the run's own log says it
                start = "from its checkpoint" if runs.has_checkpoint(ws, run["id"]) else "from step 0 (it saved no checkpoint)"
                hint = f"continue it {start} with `archivist finetune --resume {run['id']}`"
        else:
            rows = runs.list_runs(ws, getattr(args, "user", None))
    if args.json:
        emit_json(rows)
        return 0
    for r in rows:
        last = r.get("last") or {}
        print(f"{r['id']:22} {r['status']:10} step {last.get('step', '-'):>5} loss {_fmt(last.get('loss')):>7} "
              f"{last.get('tokens_per_s', '-'):>7} tok/s  {r.get('adapter') or ''} {r.get('error') or ''}".rstrip())
    if not rows:
        print("no runs yet", file=sys.stderr)
    if hint:
        print(hint, file=sys.stderr)
    return 0

