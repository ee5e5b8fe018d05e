"""Stored evaluations: each run's results as an `Evaluation` record of the user who ran it.

Nothing else touches the `evaluations` table. A member reads only their own runs, an admin all (the
questions, gold answers and cited documents of a set can be as secret as the documents), and a run
that drew on a collection the reader lost is withheld as the chat withholds an answer (`_withheld`).
`archivist erase` scrubs the erased text from them (`erase_text`). The metrics the results hold are
retrieval/evaluation.py's, which imports these so that callers import one module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from archivist import access, audit
from archivist.conversations import answer_sources, readable_sources
from archivist.workspace import Workspace, transaction

KINDS = ("retrieval", "answers")
WITHHELD_ADAPTER = "[withheld]"  # a withheld run's adapter (`_withheld`): no adapter's name holds brackets


@dataclass
class Evaluation:
    """One stored evaluation run."""

    id: int
    kind: str  # retrieval | answers
    set_name: str | None  # the question set's file name
    user: str | None  # who ran it; None once that account is deleted (then only admins see it)
    created_at: float  # seconds since the epoch
    results: dict  # what the runner returned (evaluate_retrieval / evaluate_answers)
    error: str | None = None  # set when the stored results do not parse; results is then {}


def store_evaluation(ws: Workspace, kind: str, set_name: str, results: dict, *, user: str | None) -> int:
    """Save a run's results as `user`'s (None: the acting user of the settings, else the local
    admin); returns the new evaluation's id. Raises ValueError for an unknown kind, or when a
    document the answers drew on (`results["documents"]`, ids) was erased or is being erased while
    the run went (its answers may quote it, and the erase scrubbed the evaluations stored before
    this one), AccessDenied for an unknown user."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    owner = access.current_user(ws, user)
    with transaction(ws.db):
        if erased := audit.erased_documents(ws, results.get("documents") or []):
            raise ValueError(f"evaluation not stored: {', '.join(sorted(set(erased.values())))} was erased while it ran, "
                             "and its answers may quote it; run it again")
        eid = ws.db.execute(
            "INSERT INTO evaluations(kind, set_name, results, user_id) "
            "VALUES (?, ?, ?, (SELECT id FROM users WHERE name = ?))",
            (kind, set_name, json.dumps(results, ensure_ascii=False, default=str), owner)).lastrowid
        audit.record(ws, "evaluation.stored", user=owner, target=str(eid), detail={"kind": kind, "set": set_name})
        return eid


_SELECT = ("SELECT e.id, e.kind, e.set_name, u.name, e.created_at, e.results "
           "FROM evaluations e LEFT JOIN users u ON u.id = e.user_id")


def _visible(ws: Workspace, user: str | None) -> tuple[str, list]:
    """The WHERE condition (and its argument) that leaves the evaluations `user` may read."""
    name = access.current_user(ws, user)
    if access.is_admin(ws, name):
        return "1", []
    return "u.name = ?", [name]


def list_evaluations(ws: Workspace, *, user: str | None, kind: str | None = None, limit: int = 200) -> list[Evaluation]:
    """The evaluations `user` may read (None: the acting user), newest first: a member's own, every
    one for an admin. A row whose results do not parse is kept, with `error` saying so.
    Raises AccessDenied for an unknown user."""
    where, args = _visible(ws, user)
    if kind:
        where, args = f"{where} AND e.kind = ?", [*args, kind]
    rows = ws.db.execute(f"{_SELECT} WHERE {where} ORDER BY e.created_at DESC, e.id DESC LIMIT ?",
                         [*args, int(limit)]).fetchall()
    readable, lineages = readable_sources(ws, user), {}  # read once for the list, not per run
    return [_withheld(ws, _record(r), readable, lineages) for r in rows]


def get_evaluation(ws: Workspace, evaluation_id: int, *, user: str | None) -> Evaluation:
    """One evaluation by id. Raises LookupError when there is none that `user` may read (another
    member's is answered like a missing one, so ids cannot be probed)."""
    where, args = _visible(ws, user)
    row = ws.db.execute(f"{_SELECT} WHERE e.id = ? AND {where}", [int(evaluation_id), *args]).fetchone()
    if row is None:
        raise LookupError(f"no evaluation #{evaluation_id}")
    return _withheld(ws, _record(row), readable_sources(ws, user))


def _run_time(ws: Workspace, run_id, otherwise: float) -> float:
    """When stored run `run_id` was made; `otherwise` when it is gone (or the id is not one)."""
    row = ws.db.execute("SELECT created_at FROM evaluations WHERE id = ?", (run_id,)).fetchone() \
        if isinstance(run_id, int) else None
    return row[0] if row else otherwise


def _withheld(ws: Workspace, ev: Evaluation, readable: set[str], lineages: dict | None = None) -> Evaluation:
    """`ev` as a user who may read `readable` (their collections) may still read it: a run that named
    documents or quoted answers of a collection the user can no longer read (its results' `collections`)
    keeps its questions and numbers, and gets `withheld` (those collections) in place of the answers,
    their key answers, cited documents and rankings, as conversations.messages withholds a chat answer;
    the collections its adapter learned from count too (`conversations.answer_sources`), and one of them lost,
    the adapter's name is WITHHELD_ADAPTER, as the chat drops it; so is the adapter its `comparison` names
    (the earlier run's) when that one learned from a collection lost. An extractive run's answers are
    quotes of its passages, which no model wrote: the adapter it names withholds only its name. (Runs
    stored before `collections` was kept are shown as they are.) `lineages`: kept across a list's runs
    (`answer_sources`), so each adapter name's registrations are read once."""
    listed = ev.results.get("collections")
    adapter = ev.results.get("adapter")
    writer = None if ev.results.get("mode") == "extractive" else adapter
    at = ev.created_at  # the adapter of that name registered then, not a later one given its name
    drawn = answer_sources(ws, map(str, listed), writer, lineages, at)[0] if isinstance(listed, list) else set()
    if isinstance(listed, list) and answer_sources(ws, (), adapter, lineages, at)[1] - readable:
        ev.results = {**ev.results, "adapter": WITHHELD_ADAPTER}  # `eval answers --compare` prints it, and keeps it
    lost = sorted(drawn - readable)
    if lost:
        note = f"[withheld: this run drew on {', '.join(lost)}, which you can no longer read]"
        rankings = [{k: ({**v, "top": []} if isinstance(v, dict) and "top" in v else v) for k, v in r.items()}
                    for r in ev.results.get("per_query") or [] if isinstance(r, dict)]
        answers = [{**r, "answer": note, "cited_documents": [], **({"key": ""} if "key" in r else {})}  # key: the passage's words
                   for r in ev.results.get("per_question") or [] if isinstance(r, dict)]
        ev.results = {**ev.results, "withheld": lost, **({"per_query": rankings} if "per_query" in ev.results else {}),
                      **({"per_question": answers} if "per_question" in ev.results else {})}
    compared = ev.results.get("comparison")  # the earlier run it was compared with names that run's adapter
    if isinstance(compared, dict) and compared.get("adapter") and answer_sources(
            ws, (), compared["adapter"], lineages, _run_time(ws, compared.get("with"), at))[1] - readable:
        ev.results = {**ev.results, "comparison": {**compared, "adapter": WITHHELD_ADAPTER}}
    return ev


def _record(row) -> Evaluation:
    ev = Evaluation(id=row[0], kind=row[1], set_name=row[2], user=row[3], created_at=row[4], results={})
    try:
        results = json.loads(row[5])
        ev.results = results if isinstance(results, dict) else {"value": results}
    except (TypeError, ValueError) as e:
        ev.error = f"results are not valid JSON: {e}"
    return ev


def erase_text(ws: Workspace, erased, owner: str | None = None) -> int:
    """Replace with "[erased]" every string in the stored evaluations' results that `erased(text)`
    says holds an erased document's text (a passage, a quote, an answer); returns how many
    evaluations changed. (`archivist erase`.) `owner`: only that user's evaluations (a member's
    erase); None, everyone's (an admin's)."""
    changed = 0
    with transaction(ws.db):
        for eid, raw, who in ws.db.execute("SELECT e.id, e.results, u.name FROM evaluations e "
                                           "LEFT JOIN users u ON u.id = e.user_id").fetchall():
            if owner not in (None, who):
                continue
            try:
                results = json.loads(raw)
            except (TypeError, ValueError):
                continue
            cleaned, n = _redact(results, erased)
            if n:
                ws.db.execute("UPDATE evaluations SET results = ? WHERE id = ?",
                              (json.dumps(cleaned, ensure_ascii=False, default=str), eid))
                changed += 1
    return changed


def _redact(value, erased) -> tuple[object, int]:
    if isinstance(value, str):
        return ("[erased]", 1) if erased(value) else (value, 0)
    if isinstance(value, list):
        pairs = [_redact(v, erased) for v in value]
        return [v for v, _ in pairs], sum(n for _, n in pairs)
    if isinstance(value, dict):
        pairs = {k: _redact(v, erased) for k, v in value.items()}
        out, n = {k: v for k, (v, _) in pairs.items()}, sum(n for _, n in pairs.values())
        # a row whose own text was erased loses its short copies of that text too, which erased() does
        # not see (shorter than erase.MIN_MATCH): its `key` ("EUR 4.2 million", copied from a passage)
        # and any other string found in an erased one (a gold answer); not a bare word like a status
        cut = [value[k] for k, (v, m) in pairs.items() if m and isinstance(value[k], str)]
        if cut:
            for k, v in out.items():
                if isinstance(v, str) and v != "[erased]" and v and (k == "key" or (
                        not v.isidentifier() and any(v in c for c in cut))):
                    out[k] = "[erased]"
                    n += 1
        return out, n
    return value, 0
