"""Retrieval and answer quality of the latest evaluation runs (`archivist eval`), as tables and charts.

A member sees the runs they made, an admin everyone's (archivist.retrieval.evaluation.list_evaluations);
the runs of others an admin is shown are on the audit log (`evaluation.read`).
"""

from __future__ import annotations

import shlex

import pandas as pd
import streamlit as st

from archivist import audit
from archivist.retrieval.evaluation import format_comparison, list_evaluations
from archivist.ui import core, metrics

user = core.require_user()
ws = core.workspace()
st.title("Evaluation")

runs = list_evaluations(ws, user=user)
everyone = core.is_admin(user)  # an admin sees everyone's runs, and whose each was
# other users' runs an admin is shown are on the audit log (`evaluation.read`), as `eval answers --compare`
# records them: each run once per session, not on every rerun of the page
recorded = st.session_state.setdefault("_evaluations_read", set())
if unseen := [(r.id, r.user) for r in runs if r.id not in recorded]:
    audit.others_read(ws, user, "app", "evaluation", unseen)
    recorded.update(i for i, _ in unseen)
if not runs:
    # what the page is for first: a member reaches it from the menu with nothing on it and no command line at hand
    st.markdown("An evaluation asks a set of questions whose answers are known, and measures how often search finds "
                "the right passages and how often the chat answers right, with which sources. Compare search "
                "settings, or a fine-tuned adapter with the base model, before everyone's chat uses it.")
    who = "" if user == "admin" else f"--user {shlex.quote(user)} "  # the CLI acts as the local admin unless told
    st.info(("No evaluation has run on this workspace yet." if everyone else
             "No evaluation has run under your name yet (you see the runs you made).")
            + " Evaluations run on the server's command line, with a question set (a JSONL file of questions and "
            + ("their answers), e.g.\n\n" if everyone else
               "their answers); someone with access to the server runs them under your name, and they show here:\n\n")
            + f"`archivist {who}eval retrieval --set samples/QUESTIONS.jsonl`  \n"
            + f"`archivist {who}eval answers --set samples/QUESTIONS.jsonl`")
    st.stop()


def _model(run) -> str | None:
    """What answered an answers run ("base model", "adapter X"; None: not recorded); "" for other kinds."""
    return metrics.answered_by(run.results) if run.kind == "answers" else ""


def _fmt(value: float) -> str:
    return f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"


kinds = sorted({r.kind for r in runs}, key=lambda k: ({"retrieval": 0, "answers": 1}.get(k, 2), k))
for tab, kind in zip(st.tabs([k.capitalize() for k in kinds]), kinds):
    with tab:
        broken = [r for r in runs if r.kind == kind and r.error]
        if broken:
            st.warning(f"{len(broken)} stored run(s) could not be read: " + "; ".join(f"#{r.id}: {r.error}" for r in broken))
        these = [r for r in runs if r.kind == kind and not r.error]
        if not these:
            continue
        latest = these[0]
        # a change is shown against the previous run on the same set by the same model: answers written by
        # another adapter (or by one the run did not record) are another model's scores, not a change of this one
        model = _model(latest)
        known = model not in (None, metrics.HIDDEN_MODEL)  # a withheld run's model is not shown: compared, it would be told
        same_set = [r for r in these[1:] if r.set_name == latest.set_name]
        prev = next((r for r in same_set if known and _model(r) == model), None)
        mode, scores = metrics.headline(latest.results)
        _, prev_scores = metrics.headline(prev.results) if prev else (None, {})
        # the set's file name is whoever ran it's own choice (an admin sees everyone's): shown as plain text
        st.caption(f"Latest run #{latest.id} on {core.md_escape(latest.set_name or 'an unnamed set')}, {core.when(latest.created_at)}"
                   + (f" by {core.md_escape(latest.user or 'a deleted account')}" if everyone else "")
                   + (f" · answered by: {model}" if model else " · which model answered was not recorded" if kind == "answers" else "")
                   + (f" · {mode} search" if mode else "")
                   + (f" · change since run #{prev.id}" if prev else ""))
        if same_set and prev is not same_set[0]:
            other = same_set[0]
            st.caption(f"Not compared with run #{other.id} on the same set, "
                       + ("as this run does not record which model answered." if model is None else
                          "as which model answered this run is not shown." if not known else
                          f"answered by: {_model(other)}." if _model(other) else
                          "which does not record which model answered."))
        if scores:
            names = list(scores)[:8]
            cards = st.columns(min(4, len(names)))
            for i, name in enumerate(names):
                delta = round(scores[name] - prev_scores[name], 4) if name in prev_scores else None
                cards[i % len(cards)].metric(name, _fmt(scores[name]), delta)
        modes = metrics.mode_table(latest.results)
        if modes:
            table = pd.DataFrame(modes).T
            st.markdown("**Search modes compared**")
            st.dataframe(table, width="stretch")
            unit = [c for c in table.columns if table[c].between(0, 1).all() and not c.startswith("latency")]
            if unit:
                st.bar_chart(table[unit].T, stack=False)
            for name, comparison in (latest.results.get("comparisons") or {}).items():
                st.caption(format_comparison(name, comparison))  # mode names and numbers, written by `archivist eval`
        elif scores:
            unit = {n: v for n, v in scores.items() if 0.0 <= v <= 1.0}
            if unit:
                st.bar_chart(pd.DataFrame({"score": unit}), horizontal=True)
        history = [latest] + [r for r in same_set if known and _model(r) == model]
        if len(history) > 1 and scores:
            st.markdown("**Over time**")
            shown = st.multiselect("Scores", list(scores), default=list(scores)[:3], key=f"eval-metrics-{kind}")
            if shown:
                rows = [{"when": pd.to_datetime(r.created_at, unit="s"), **metrics.headline(r.results)[1]} for r in history]
                st.line_chart(pd.DataFrame(rows).set_index("when").sort_index().reindex(columns=shown))
        st.markdown("**All runs**")
        st.dataframe(core.plain_frame(pd.DataFrame([{"run": r.id, "set": r.set_name, "when": core.when(r.created_at),
                                    **({"by": r.user or "(deleted)"} if everyone else {}),
                                    **({"answered by": _model(r) or "(not recorded)"} if kind == "answers" else {}),
                                    **metrics.headline(r.results)[1]} for r in these])), hide_index=True, width="stretch")
        pick = st.selectbox("Questions of run", [r.id for r in these], key=f"eval-run-{kind}", format_func=lambda i: f"#{i}")
        rows = metrics.item_rows(next(r for r in these if r.id == pick).results)
        if rows:
            st.dataframe(core.plain_frame(pd.DataFrame(rows)), hide_index=True, width="stretch")
        else:
            st.caption("This run stored no per-question results.")
