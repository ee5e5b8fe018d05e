"""Fine-tune: build a dataset from collections and/or feedback and preview it, see whether training
fits in memory, start and cancel runs in a background process, watch loss and tokens/s live,
compare adapters with their base, choose the adapter the chat uses, and (admins) delete one; adapt the
retriever, and (admins) delete an adapted embedder."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from archivist import access, jobs
from archivist import adapters as adapter_registry  # `adapters` below is the listing
from archivist.api.errors import without_paths
from archivist.finetune import dataset_store, datasets, runs
from archivist.finetune.memory import plan
from archivist.finetune.train import FinetuneConfig
from archivist.ui import core, metrics

user = core.require_user()
ws = core.workspace()
s = core.settings()
admin = core.is_admin(user)


def shown(text: str | None) -> str | None:
    """A run's error or log as this user may see it: an admin runs the server and reads its paths
    whole; a member in a browser gets `<workspace>`, `<model cache>`, `<server path>` (the API's rule)."""
    return text if admin else without_paths(text, s)


st.title("Fine-tune")
st.caption("Teach the chat model your documents' facts and your users' corrections with a LoRA adapter. "
           "Training runs in its own process: it keeps going when you leave or reload this page.")

train_tab, runs_tab, adapters_tab, retriever_tab = st.tabs(["Train", "Runs", "Adapters", "Retriever"])

# -- train ---------------------------------------------------------------------------------------

with train_tab:
    readable = access.readable_collections(ws, user)
    st.header("1. Data")
    left, right = st.columns(2)
    sources = left.multiselect("Learn from", ["docs", "feedback"], default=list(datasets.DEFAULT_SOURCES), key="ft-sources",
                               format_func={"docs": "questions generated from documents", "feedback": "chat feedback and corrections"}.get,
                               help="By default the documents, plus the chat's feedback (answers rated up and corrections) "
                                    "when there is any")
    chosen = right.multiselect("Collections", readable, default=readable, key="ft-collections",
                               help="Only collections you may read; the dataset records which documents it used")
    generator = left.radio("Questions from documents", ["extractive", "llm", "both"], horizontal=True, key="ft-generator",
                           help="extractive: fast, from the documents' own sentences; llm: the chat model writes them (slow on a CPU)")
    saved = dataset_store.list_datasets(ws, user)  # the user's own (all for an admin), while they may read what they draw on
    use = right.selectbox("Or train on a saved dataset", [None] + [d["name"] for d in saved], key="ft-dataset",
                          format_func=lambda n: "— build a new one —" if n is None else n)
    if st.button("Build and preview the dataset", key="ft-build", disabled=not sources or not chosen):
        try:
            with st.spinner("Building the dataset…"):
                ds = datasets.build_dataset(ws, sources, user=user, collections=chosen, generator=generator,
                                            llm=core.models()[0] if generator != "extractive" else None)
        except (ValueError, LookupError, access.AccessDenied) as e:  # DatasetError is a ValueError
            st.error(core.md_escape(e))
        else:
            st.session_state["ft-dataset-built"] = ds.name
            st.session_state.pop("ft-dataset", None)  # the selectbox picks the new one up below
            st.rerun()
    preview_name = use or st.session_state.get("ft-dataset-built")
    dataset_error = None
    if preview_name:
        try:
            ds = dataset_store.load_dataset(ws, preview_name, user)
        except (LookupError, ValueError, access.AccessDenied) as e:  # DatasetError is a ValueError
            dataset_error = str(e)
            st.error(dataset_error)  # a dataset's name is letters, digits and . _ - (dataset_store._NAME)
        else:
            counts = ds.manifest.get("counts", {})
            sourced = sum(1 for d in ds.manifest.get("documents", []) if d.get("examples"))
            st.markdown(f"**Dataset {core.md_escape(ds.name)}** · {counts.get('train', len(ds.train))} training and "
                        f"{counts.get('eval', len(ds.eval))} held-out examples from {sourced} documents · sources: "
                        f"{core.md_escape(', '.join(ds.manifest.get('sources', [])))} · collections: "
                        f"{core.md_escape(', '.join(ds.manifest.get('collections') or []) or 'none')}")
            rows = [{"split": split, "question": e.question, "answer": e.answer, "source": e.source, "cites": e.cite}
                    for split, part in (("train", ds.train), ("eval", ds.eval)) for e in part[:50]]
            st.dataframe(core.plain_frame(pd.DataFrame(rows)), hide_index=True, width="stretch")
            if ds.train:
                with st.expander("One training example as the model sees it"):
                    for m in ds.train[0].messages:
                        st.caption(m["role"])
                        st.text(m["content"])

    st.header("2. Training")
    a, b, c, d = st.columns(4)
    method = a.selectbox("Method", ["auto", "lora", "qlora"], key="ft-method",
                         help="qlora: 4-bit base (needs a CUDA GPU); auto: qlora on a GPU, lora on the CPU")
    rank = b.select_slider("LoRA rank", [4, 8, 16, 32, 64], value=16, key="ft-rank")
    max_steps = c.number_input("Steps (0: one epoch)", 0, 100_000, 30, step=10, key="ft-steps")
    batch = d.number_input("Batch size", 1, 64, 2, key="ft-batch")
    a2, b2, c2, d2 = st.columns(4)
    seq_len = a2.select_slider("Longest example (tokens)", [256, 512, 1024, 2048, 4096], value=1024, key="ft-seq")
    lr = b2.number_input("Learning rate", 1e-6, 1e-2, 5e-4, format="%.0e", key="ft-lr")
    name = c2.text_input("Adapter name", placeholder="ft-<run id>", key="ft-name").strip() or None
    activate = d2.checkbox("Activate if better than the base", value=admin, disabled=not admin, key="ft-activate",
                           help="Only admins change the adapter everyone's chat uses")
    if not admin:  # why the switch is off, in words (a tooltip is hover-only, and no help on a phone)
        d2.caption("Only an admin makes an adapter the one everyone's chat uses. Yours can be tried in the chat "
                   "(the sidebar's Adapter) by you and anyone who may read its collections.")

    try:
        est = plan(s, None, method, s.device, int(batch), int(seq_len), int(rank))
    except Exception as e:  # no model files yet, unknown base …: say so, do not break the page
        est = None
        st.warning(f"No memory estimate: {core.md_escape(e)}")
    if est is not None:
        parts = {k: getattr(est, k) / 2**30 for k in ("weights", "lora", "activations", "logits", "overhead")}
        (st.success if est.fits else st.error)(est.message)
        st.bar_chart(pd.DataFrame({"GB": parts}), horizontal=True, height=180)

    cfg_error = None
    try:
        cfg = FinetuneConfig(data=list(sources) or list(datasets.DEFAULT_SOURCES), dataset=preview_name, collections=list(chosen) or None, user=user,
                             generator=generator, method=method, rank=int(rank), alpha=2 * int(rank), max_steps=int(max_steps),
                             batch_size=int(batch), max_seq_len=int(seq_len), lr=float(lr), name=name,
                             activate=bool(activate and admin), device=s.device)
    except ValueError as e:
        cfg, cfg_error = None, str(e)
        st.error(core.md_escape(cfg_error))  # it quotes the adapter name typed in
    # without a saved dataset the run builds one from the chosen collections: none chosen, nothing to learn
    # (and `collections=None` would mean every readable one)
    nothing = None if preview_name or chosen else (
        "No collection is shared with you, so there is nothing to train on." if not readable else
        "Choose at least one collection, or a saved dataset, to train on.")
    st.caption(nothing or (f"Trains on dataset {core.md_escape(preview_name)}." if preview_name else
                           "Builds a dataset from the data chosen above when the run starts."))
    if st.button("Start training", type="primary", key="ft-start", disabled=cfg is None or nothing is not None
                 or dataset_error is not None or (est is not None and not est.fits)):
        run_id = runs.start_run_background(ws, cfg, user=user)
        st.session_state["ft-run"] = run_id
        st.success(f"Run {run_id} started in the background. Follow it on the Runs tab.")

# -- runs ----------------------------------------------------------------------------------------

with runs_tab:
    all_runs = runs.list_runs(ws, user)  # their own runs; an admin: every run
    if not all_runs:
        st.caption("No runs yet.")
    else:
        st.dataframe(core.plain_frame(pd.DataFrame([{
            "run": r["id"], "status": r["status"], "adapter": r["adapter"] or "", "started": core.when(r["started_at"]),
            "step": (r["last"] or {}).get("step"), "loss": (r["last"] or {}).get("loss"),
            "tokens/s": (r["last"] or {}).get("tokens_per_s"), "error": shown(r["error"]) or ""} for r in all_runs])),
            hide_index=True, width="stretch")
        ids = [r["id"] for r in all_runs]
        default = st.session_state.get("ft-run")
        pick = st.selectbox("Run", ids, index=ids.index(default) if default in ids else 0, key="ft-run-pick")

        def show_run() -> None:
            run = runs.get_run(ws, pick, user)
            live = run["status"] in ("queued", "running")
            st.markdown(f"**Run {core.md_escape(run['id'])}** · {run['status']}"
                        + (f" · adapter {core.md_escape(run['adapter'])}" if run["adapter"] else ""))
            if run["error"]:
                st.error(core.md_escape(shown(run["error"])))  # an admin sees every member's runs
            rows = runs.read_metrics(ws, pick)
            if rows:
                frame = pd.DataFrame(rows).set_index("step")
                left, right = st.columns(2)
                left.markdown("Loss")
                left.line_chart(frame[["loss"]])
                if "tokens_per_s" in frame:
                    right.markdown("Tokens per second")
                    right.line_chart(frame[["tokens_per_s"]])
            elif live:
                st.caption("Waiting for the first step (loading the model and the data)…")
            log = runs.run_dir(ws, pick) / "log.txt"
            if log.exists():
                with st.expander("Log"):
                    st.code(shown("\n".join(log.read_text(errors="replace").splitlines()[-30:])) or "(empty)", language=None)
            if live and st.button("Cancel run", key=f"ft-cancel-{pick}", icon=":material/stop:"):
                with st.spinner("Asking the run to save a checkpoint and stop…"):
                    runs.cancel_run(ws, pick, user)
                st.rerun()
            if run["status"] in ("failed", "cancelled", "interrupted") and st.button(
                    "Resume from its checkpoint" if runs.has_checkpoint(ws, pick) else "Run it again (it saved no checkpoint)",
                    key=f"ft-resume-{pick}"):
                try:
                    runs.resume_run(ws, pick, user)  # its own config, as its owner; without a checkpoint from step 0
                except LookupError as e:  # a retrain of an adapter deleted since it was cut short
                    st.error(core.md_escape(str(e)))
                else:
                    st.rerun()
            if st.session_state.get("_ft_live") and not live:
                st.session_state["_ft_live"] = False
                st.rerun(scope="app")  # finished: the table above and the adapters tab change too

        live_now = runs.get_run(ws, pick, user)["status"] in ("queued", "running")
        st.session_state["_ft_live"] = live_now
        st.fragment(show_run, run_every=2.0 if live_now else None)()
        if len(all_runs) > 1:
            with st.expander("Compare loss curves"):
                chosen_runs = st.multiselect("Runs", ids, default=ids[:2], key="ft-compare-runs")
                curves = {rid: pd.Series({m["step"]: m["loss"] for m in runs.read_metrics(ws, rid) if "loss" in m})
                          for rid in chosen_runs}
                curves = {k: v for k, v in curves.items() if len(v)}
                if curves:
                    st.line_chart(pd.DataFrame(curves))

# -- adapters ------------------------------------------------------------------------------------

with adapters_tab:
    adapters = adapter_registry.list_for(ws, user)
    if not adapters:
        st.caption("No adapters yet: a finished run registers one, with its evaluation against the base model.")
    else:
        rows = metrics.adapter_rows(adapters)
        st.dataframe(core.plain_frame(pd.DataFrame(rows)), hide_index=True, width="stretch")
        scores = metrics.adapter_scores(adapters)
        if not scores.empty:
            st.markdown("**Held-out evaluation: base model vs adapter**")
            st.bar_chart(scores, stack=False)
        retraining = runs.retrains_under_way(ws)  # one at a time, whoever started it (runs.create_run refuses another)
        for a in adapters:
            if a.get("stale"):
                st.warning(f"{core.md_escape(a['name'])} is **stale: {core.md_escape(a['stale'])}**. "
                           f"Retrain it: a new adapter learns its settings on the current documents "
                           f"(`archivist finetune --retrain {a['name']}`).")
                under_way = retraining.get(a["name"])
                if runs.may_retrain(ws, user, a["name"]) and st.button(
                        f"Retrain {a['name']}", key=f"ft-retrain-{a['name']}", disabled=under_way is not None,
                        help=under_way and f"Being retrained {runs.under_way_by(ws, under_way, user)}", icon=":material/replay:"):
                    try:
                        run_id = runs.start_run_background(ws, runs.retrain_config(ws, a["name"], user), user=user)
                    except (ValueError, LookupError, access.AccessDenied) as e:
                        st.error(core.md_escape(e))
                    else:
                        st.session_state["ft-run"] = run_id
                        st.success(f"Run {run_id} retrains {a['name']} in the background. Follow it on the Runs tab.")
            replaces = (a["lineage"] or {}).get("replaces")
            if a.get("note") or replaces:
                st.caption(f"{core.md_escape(a['name'])}: " + core.md_escape(
                    "; ".join(filter(None, [replaces and f"retrains {replaces}", a.get("note")]))))
        active = next((a["name"] for a in adapters if a["active"]), None)
        st.markdown(f"The chat uses **{core.md_escape(active) if active else 'the base model'}**.")
        if admin:
            options = [None] + [a["name"] for a in adapters]
            choice = st.selectbox("Adapter for the chat", options, index=options.index(active), key="ft-activate-pick",
                                  format_func=lambda n: "base model (no adapter)" if n is None else n)
            if choice != active and st.button("Use it", type="primary", key="ft-activate-go"):
                try:
                    if choice is None:
                        adapter_registry.deactivate(ws, user)
                    else:
                        adapter_registry.activate(ws, choice, user=user)
                except (ValueError, LookupError) as e:
                    st.error(core.md_escape(e))
                else:
                    st.rerun()
            with st.expander("Delete an adapter", icon=":material/delete:"):
                doomed = st.selectbox("Adapter to delete", [a["name"] for a in adapters], key="ft-delete-pick")
                st.caption("Its weights and files go for good (a bad fine-tune, or one trained on a collection that "
                           "must go). The answers it wrote stay withheld from whoever may not read what it learned.")
                # keyed on whether it is active too (':' is in no adapter name): a confirmation given before another
                # admin activated it is asked again, naming it active, instead of forcing the delete of the one the chat uses
                sure = st.checkbox(f"Yes, delete {core.md_escape(doomed)}" + (": it is the active adapter, so the chat then uses the base "
                                                              "model" if doomed == active else ""),
                                   key=f"ft-delete-sure-{doomed}" + ("" if doomed == active else ":not-active"))
                if st.button("Delete", key="ft-delete-go", disabled=not sure, icon=":material/delete:") and sure:
                    try:  # the confirmation above named it active: that is the force (adapters.delete)
                        gone = adapter_registry.delete(ws, doomed, force=doomed == active, user=user)
                    except (ValueError, LookupError, access.AccessDenied) as e:
                        st.error(core.md_escape(e))
                    else:
                        st.session_state["ft-deleted"] = (gone["name"], gone["notes"])
                        st.rerun()
        else:
            st.caption("An admin chooses the adapter the chat uses; you can try any of them in the chat's sidebar.")
    if admin and st.session_state.get("ft-deleted"):
        gone, notes = st.session_state.pop("ft-deleted")
        st.success(f"Deleted adapter {core.md_escape(gone)}.")
        for note in notes:
            st.warning(core.md_escape(note))

# -- retriever -----------------------------------------------------------------------------------

with retriever_tab:
    from archivist.finetune import retriever
    from archivist.finetune.embedders import list_embedders

    st.caption("Adapt the search embedder to your documents: synthetic questions from the collections you may read, "
               "hard negatives from BM25 and the current embedder, a before/after check on held-out documents "
               "with hybrid search as the chat uses it (BM25 and the embedder, fused with this workspace's settings); "
               "when hybrid search is better an admin's run re-embeds every collection (search keeps working meanwhile). "
               "Same as `archivist finetune --target retriever`.")
    r_chosen = st.multiselect("Collections", access.readable_collections(ws, user), default=access.readable_collections(ws, user),
                              key="rt-collections", help="Only collections you may read; the embedder records them as its lineage")
    r_chunks = st.number_input("Training chunks (most)", min_value=64, max_value=100000, value=4000, step=500, key="rt-chunks")
    if not admin:
        st.caption("Only an admin can switch search to an adapted embedder (it changes every user's search): "
                   "one you adapt is measured and listed below, for an admin to switch to when it is better.")
    if st.button("Adapt the retriever", type="primary", key="rt-start", disabled=not r_chosen):
        try:
            job_id = retriever.start_background(ws, user, r_chosen, int(r_chunks))
        except ValueError as e:  # one live run per user
            st.error(core.md_escape(e))
        else:  # the log's path is on the server: of use to an admin there, not to a member in a browser
            st.success(f"Started in the background as job {job_id} (`archivist jobs`; stop it with `archivist jobs cancel "
                       f"{job_id}`): the embedder is listed below when it is done (on a CPU this can take a long while)."
                       + (f" Its log: {retriever.log_of(ws, job_id)}" if admin else ""))
    r_jobs = jobs.list_jobs(ws, user, ("retriever",), limit=20)  # her own; an admin: everyone's
    if r_jobs:
        st.dataframe(core.plain_frame(pd.DataFrame([{
            "job": j.id, **({"owner": j.owner} if admin else {}), "state": j.state,
            "started": core.when(j.started_at),
            "message": shown(j.error or j.message or (j.result or {}).get("name")) or ""} for j in r_jobs])),
            hide_index=True, width="stretch")
    r_live = [j.id for j in r_jobs if j.live]
    if r_live:
        r_stop = st.selectbox("Queued or running retriever job", r_live, key="rt-job-pick")
        if st.button("Cancel job", key="rt-cancel", icon=":material/stop:"):
            with st.spinner("Stopping it…"):  # its process gets SIGTERM; it keeps no checkpoint
                jobs.cancel(ws, r_stop, user, wait=10)
            st.rerun()
    embedders = list_embedders(ws, user)
    if embedders:
        st.dataframe(core.plain_frame(pd.DataFrame([{"name": e["name"], "active": e["active"], "stale": e.get("stale") or "",
                                    "trained on": ", ".join(e["collections"]),
                                    "questions": e.get("questions", {}).get("train"),
                                    # embedders adapted before the evaluation ranked hybrid were scored on dense alone
                                    "scored on": "hybrid" if "dense" in e["evaluation"] else "dense",
                                    "hit@5 base→adapted": "{:.3f}→{:.3f}".format(e["evaluation"]["base"]["hit@5"], e["evaluation"]["adapted"]["hit@5"]),
                                    "MRR@10 base→adapted": "{:.3f}→{:.3f}".format(e["evaluation"]["base"]["mrr@10"], e["evaluation"]["adapted"]["mrr@10"]),
                                    "MRR@10 gain (95% interval)": "{diff:+.3f} [{low:+.3f}, {high:+.3f}]".format(**e["evaluation"]["difference"]["mrr@10"])}
                                   for e in embedders if e.get("evaluation")])), hide_index=True, width="stretch")
    else:
        st.caption("No adapted embedder yet.")
    if admin and embedders:
        from archivist.finetune import embedders as embedder_registry  # `embedders` above is the listing

        with st.expander("Delete an adapted embedder", icon=":material/delete:"):
            doomed = st.selectbox("Embedder to delete", [e["name"] for e in embedders], key="rt-delete-pick")
            in_use = next((e["name"] for e in embedders if e["active"]), None)
            st.caption("Its weights go for good (a bad fine-tune, or one trained on a collection that must go).")
            # keyed on whether it is active, as the adapters' delete: a confirmation given before another admin
            # switched search to it is asked again, naming the re-embed, rather than forcing one
            sure = st.checkbox(f"Yes, delete {core.md_escape(doomed)}" + (
                ": it is the active embedder, so every collection is re-embedded with the base embedder first (search "
                "keeps working meanwhile; on a CPU this can take a long while)" if doomed == in_use else ""),
                key=f"rt-delete-sure-{doomed}" + ("" if doomed == in_use else ":not-active"))
            if st.button("Delete", key="rt-delete-go", disabled=not sure, icon=":material/delete:") and sure:
                try:  # the confirmation above named the re-embed: that is the force (embedders.delete)
                    with st.spinner(f"Deleting {doomed}…"):
                        gone = embedder_registry.delete(ws, doomed, force=doomed == in_use, user=user, progress=False)
                except (ValueError, LookupError, access.AccessDenied) as e:
                    st.error(core.md_escape(e))
                else:
                    st.session_state["rt-deleted"] = (gone["name"], gone["notes"])
                    st.rerun()
    if admin and st.session_state.get("rt-deleted"):
        gone, notes = st.session_state.pop("rt-deleted")
        st.success(f"Deleted embedder {core.md_escape(gone)}.")
        for note in notes:
            st.warning(core.md_escape(note))
