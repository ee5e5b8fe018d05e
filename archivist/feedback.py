"""What users thought of answers: thumbs up/down and corrections, kept for fine-tuning.

Each row holds the question, the answer shown, the passages it cited (JSON), the adapter and
collection it came from, the chat message it rates, a rating (+1, -1 or 0) and optionally the
answer the user says is right. `archivist.finetune` builds training examples from these rows.

Feedback is its author's: a member sees, and fine-tunes on, their own rows; an admin sees and
fine-tunes on everyone's (the questions people asked and what they wrote are theirs, like their
conversations).

A correction is training data only once an admin approved it (`review_correction`, `archivist feedback
review`): the adapter an admin trains answers everyone, and one member's unread words would teach it
to all. An admin's own corrections are approved as written; a changed correction waits again.

Every passage is stored with its text, document and collection as they were when the answer was
given: an adapter trained on the feedback names those collections in its lineage even after the
document is deleted or re-ingested, and who may use the adapter follows from them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass

from archivist import access, audit
from archivist.conversations import (WITHHELD, answer_sources, collections_of, mark_all, readable_sources,
                                     stored_answer_sources, stored_texts)
from archivist.workspace import Workspace, transaction

RATINGS = (-1, 0, 1)

# The longest correction taken: a correction is the answer the user says is right, and the longest answer the
# API writes (api/schemas.MAX_TOKENS, 2,048 tokens) is about 8,000 characters of English. A longer text is a paste
# gone wrong, and it would become one oversized example of every fine-tuning set built from feedback. Checked
# here (`check_correction`), so the chat page, the API and any other caller refuse it in the same words.
MAX_CORRECTION = 16_000


def _citations_json(citations, collection: str | None) -> str | None:
    """The shown passages as stored: each with its document and collection (a passage that names
    none gets the collection the question was asked in, when it was asked in one; without either,
    fine-tuning leaves the row out rather than guess)."""
    if citations is None:
        return None
    out = []
    for c in citations:
        d = asdict(c) if is_dataclass(c) else dict(c)
        if "heading" in d:
            d["heading"] = list(d["heading"] or [])
        d["document"] = d.get("document") or ""
        d["collection"] = d.get("collection") or collection or ""
        out.append(d)
    return json.dumps(out, ensure_ascii=False)


def record_feedback(
    ws: Workspace,
    user: str | None,
    question: str,
    answer: str,
    rating: int = 0,
    correction: str | None = None,
    citations: Sequence | None = None,
    adapter: str | None = None,
    collection: str | None = None,
    message_id: int | None = None,
) -> int:
    """Store one piece of feedback on an answer; returns its id.

    rating: +1 (thumbs up), -1 (thumbs down) or 0 (only a correction). citations: the passages shown,
    as Citation records or dicts with chunk_id, n, document, collection and text (stored as JSON).
    collection: the collection the question was asked in, if one. message_id: the chat message rated.
    Raises ValueError for an empty question, a bad rating, a correction too long or feedback carrying nothing;
    AccessDenied for an unknown user; LookupError for a message that is not in one of the user's
    own conversations (the same words whether it exists or not).
    """
    who = access.current_user(ws, user)
    rating = _check(question, rating, correction)
    check_correction(correction)
    correction = correction.strip() if correction and correction.strip() else None
    if rating == 0 and correction is None:
        raise ValueError("feedback needs a rating (+1 or -1) or a correction")
    with transaction(ws.db):
        uid = ws.db.execute("SELECT id FROM users WHERE name = ?", (who,)).fetchone()[0]
        if message_id is not None and ws.db.execute(
                "SELECT 1 FROM messages m JOIN conversations c ON c.id = m.conversation_id "
                "WHERE m.id = ? AND c.user_id = ?", (message_id, uid)).fetchone() is None:
            raise LookupError(f"no message {message_id} in {who!r}'s conversations")
        fid = ws.db.execute(
            "INSERT INTO feedback(user_id, collection, question, answer, rating, correction, citations, adapter, message_id) "
            "VALUES (?,?,?,?,?,?,?,?,?)",
            (uid, collection, question, answer or "", rating, correction, _citations_json(citations, collection), adapter,
             message_id)).lastrowid
        _review_anew(ws, fid, who, correction)
        # what was given, not its words: the question and correction stay in the feedback table
        audit.record(ws, "feedback.given", user=who, target=str(fid), detail={
            "rating": rating, "correction": correction is not None, "collection": collection, "message_id": message_id})
        return fid


def update_feedback(ws: Workspace, feedback_id: int, user: str | None, rating: int | None = None,
                    correction: str | None = None, message_id: int | None = None) -> None:
    """Change the rating and/or correction of feedback `user` gave earlier (a second click on a thumb).

    message_id: the chat message it was found for; feedback stored before it was recorded (an older
    release's, migration 11) is linked to it, so it is that message's from then on.
    Raises LookupError when there is no such feedback of this user, ValueError for a bad rating or a
    correction too long (`check_correction`).
    """
    who = access.current_user(ws, user)
    row = ws.db.execute("SELECT f.question, f.rating, f.correction FROM feedback f JOIN users u ON u.id = f.user_id "
                        "WHERE f.id = ? AND u.name = ?", (feedback_id, who)).fetchone()
    if row is None:
        raise LookupError(f"no feedback {feedback_id} from {who!r}")
    check_correction(correction)
    new_rating = row["rating"] if rating is None else _check(row["question"], rating, correction)
    new_correction = row["correction"] if correction is None else (correction.strip() or None)
    with transaction(ws.db):
        ws.db.execute("UPDATE feedback SET rating = ?, correction = ?, message_id = COALESCE(message_id, ?) WHERE id = ?",
                      (new_rating, new_correction, message_id, feedback_id))
        if new_correction != row["correction"]:  # an approval was of the words approved, not of these
            _review_anew(ws, feedback_id, who, new_correction)
        if (new_rating, new_correction) != (row["rating"], row["correction"]):  # the same again changes nothing
            audit.record(ws, "feedback.changed", user=who, target=str(feedback_id),
                         detail={"rating": new_rating, "correction": new_correction is not None})


def _review_anew(ws: Workspace, feedback_id: int, who: str, correction: str | None) -> None:
    """Forget the review of a correction just written or changed: it waits for an admin's review, unless
    its author is an admin (approved by them) or it is gone."""
    ws.db.execute("DELETE FROM feedback_reviews WHERE feedback_id = ?", (feedback_id,))
    if correction and access.is_admin(ws, who):
        ws.db.execute("INSERT INTO feedback_reviews(feedback_id, review, reviewed_by) "
                      "SELECT ?, 'approved', id FROM users WHERE name = ?", (feedback_id, who))


def pending_corrections(ws: Workspace, user: str | None = None) -> list[dict]:
    """The corrections awaiting an admin's review, oldest first, as `list_feedback` shows them to admin `user`.
    Raises AccessDenied for a member: reviewing is an admin's."""
    who = access.require_admin(ws, user, "review corrections")
    ids = [r[0] for r in ws.db.execute(
        "SELECT f.id FROM feedback f LEFT JOIN feedback_reviews r ON r.feedback_id = f.id "
        "WHERE r.feedback_id IS NULL AND trim(COALESCE(f.correction, '')) != ''")]
    return sorted(list_feedback(ws, who, ids=ids), key=lambda f: f["id"])


class CorrectionChanged(LookupError):
    """The correction an admin decides on is no longer the one they read (`review_correction`'s `expect`)."""


def correction_digest(correction: str | None) -> str:
    """A short fingerprint of a correction's words: the CLI's listing prints it and `--expect` gives it back, so a
    decision is of the words the admin read, not of an edit a member made between the listing and the decision."""
    return hashlib.sha256((correction or "").encode("utf-8")).hexdigest()[:12]


def review_correction(ws: Workspace, user: str | None, feedback_id: int, approve: bool,
                      expect: str | None = None) -> None:
    """Admin `user` approves (training may use it) or rejects (it may not) the correction of feedback
    `feedback_id`; a second decision replaces the first. `expect`: the `correction_digest` of the words the
    admin read. Raises AccessDenied for a member, LookupError when the feedback does not exist or holds no
    correction, CorrectionChanged when its words are no longer those of `expect`."""
    who = access.require_admin(ws, user, "review corrections")
    review = "approved" if approve else "rejected"
    with transaction(ws.db):  # read and decided at once: a member's edit lands before the check or after the decision
        row = ws.db.execute("SELECT correction FROM feedback WHERE id = ?", (feedback_id,)).fetchone() \
            if 0 < feedback_id < 2 ** 63 else None  # past SQLite's integers: no such row, not an OverflowError
        if row is None or not (row["correction"] or "").strip():
            raise LookupError(f"feedback {feedback_id} holds no correction to review" if row else f"no feedback {feedback_id}")
        if expect is not None and correction_digest(row["correction"]) != expect:
            raise CorrectionChanged(f"the correction of feedback {feedback_id} was changed or removed since it was "
                                    "read (its digest is not " + repr(expect) + "): list it again and read it")
        ws.db.execute("INSERT OR REPLACE INTO feedback_reviews(feedback_id, review, reviewed_by) "
                      "SELECT ?, ?, id FROM users WHERE name = ?", (feedback_id, review, who))
        audit.record(ws, "feedback.reviewed", user=who, target=str(feedback_id), detail={"review": review})


def check_correction(correction: str | None) -> None:
    """Raise ValueError for a correction longer than MAX_CORRECTION characters (why: see MAX_CORRECTION)."""
    if correction is not None and len(correction) > MAX_CORRECTION:
        raise ValueError(f"a correction is at most {MAX_CORRECTION} characters (got {len(correction)}): "
                         "write the answer that is right, not a pasted document")


def _check(question: str, rating: int, correction: str | None) -> int:
    if not question or not question.strip():
        raise ValueError("feedback needs the question it is about")
    try:
        rating = int(rating)
    except (TypeError, ValueError):
        raise ValueError(f"rating must be -1, 0 or 1, got {rating!r}") from None
    if rating not in RATINGS:
        raise ValueError(f"rating must be -1, 0 or 1, got {rating!r}")
    return rating


def rate_message(ws: Workspace, user: str | None, message: dict, rating: int | None = None,
                 correction: str | None = None) -> tuple[int, bool]:
    """Feedback on an answer of `user`'s conversations (`message` as conversations.messages shows it,
    with its `question`), as the chat page and POST /v1/feedback give it: the first rating or
    correction makes a row (the answer as the user read it, without an uncertain answer's notice),
    later ones change that row. Returns (feedback id, whether the row is new). Raises ValueError
    for a rating or correction `_check` or `check_correction` refuses."""
    from archivist.records import under_notice

    question = message.get("question") or ""
    prior = find_feedback(ws, user, question, message["content"], message_id=message.get("id"))
    if prior:
        update_feedback(ws, prior["id"], user, rating=rating, correction=correction, message_id=message.get("id"))
        return prior["id"], False
    return record_feedback(ws, user, question, under_notice(message["content"], message.get("notice", "")),
                           rating=rating or 0, correction=correction, citations=message.get("citations"),
                           adapter=message.get("adapter"), collection=message.get("collection"),
                           message_id=message.get("id")), True


def list_feedback(ws: Workspace, user: str | None = None, limit: int | None = None, mine_only: bool = False,
                  ids: Sequence[int] | None = None) -> list[dict]:
    """Feedback rows, newest first, with citations decoded: [{id, user, collection, question, answer,
    rating, correction, citations, adapter, created_at, message_id, review}]; each citation has `now`
    (conversations.mark_now: current, changed or deleted since); review: of the correction, 'approved',
    'rejected' or None (awaiting an admin's, or no correction), so its author can see where it stands.
    `ids`: only those rows.

    An admin sees everyone's feedback (unless mine_only); a member sees their own only. A row from a
    collection the viewer can no longer read (its own, its passages', one the answer it rates drew on,
    cited or not: `conversations.stored_answer_sources`, or its adapter's: `answer_sources`) keeps its
    id, question, rating and dates, and gets `withheld` (those collections) in place of the answer,
    correction and passages, as conversations.messages withholds the answer it rates.
    """
    who = access.current_user(ws, user)
    sql = ("SELECT f.id, u.name AS user, f.collection, f.question, f.answer, f.rating, f.correction, f.citations, "
           "f.adapter, f.created_at, f.message_id, COALESCE(m.created_at, f.created_at) AS answered_at, r.review "
           "FROM feedback f LEFT JOIN users u ON u.id = f.user_id LEFT JOIN messages m ON m.id = f.message_id "
           "LEFT JOIN feedback_reviews r ON r.feedback_id = f.id")
    where, params = [], []
    if mine_only or not access.is_admin(ws, who):
        where.append("u.name = ?")
        params.append(who)
    if ids is not None:
        where.append(f"f.id IN ({','.join('?' * len(ids))})" if ids else "0")
        params += [int(i) for i in ids]
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY f.created_at DESC, f.id DESC"
    if limit:
        sql += f" LIMIT {int(limit)}"
    readable = readable_sources(ws, who)
    rows = [dict(r) for r in ws.db.execute(sql, params)]
    # the rated answer's uncited passages too: the row keeps only its citations, the conversation withholds by all
    drew = stored_answer_sources(ws, [d["message_id"] for d in rows])
    out, shown, lineages = [], [], {}  # shown: each row's passages, marked at once (mark_all); lineages read once
    for d in rows:
        d["citations"] = json.loads(d["citations"]) if d["citations"] else []
        drawn, taught = answer_sources(ws, collections_of(d) | drew.get(d["message_id"], set()), d["adapter"], lineages,
                                       d.pop("answered_at"))  # the adapter that wrote the answer, not its name's later one
        lost = sorted(drawn - readable)
        if lost:  # access revoked since: the answer, its passages and a correction quoting them are that collection's
            d.update(answer=WITHHELD.format(", ".join(lost)), correction=None, citations=[], withheld=lost)
            if taught - readable:  # nor the name of an adapter they may no longer use, as in the conversation
                d["adapter"] = None
        else:  # each passage: still the document's text, or changed or deleted since
            shown.append((d["citations"], d["collection"]))
        out.append(d)
    mark_all(ws, shown)
    return out


def passages_of(ws: Workspace, document: str, collection: str) -> list[str]:
    """The texts of the passages of document `document` of `collection` that everyone's feedback rows
    recorded: its earlier versions' text among them (`archivist erase` looks for those copies too)."""
    out = []
    for (stored,) in ws.db.execute("SELECT citations FROM feedback WHERE citations LIKE ?", (f"%{document}%",)):
        try:
            items = json.loads(stored)
        except ValueError:
            continue
        out += stored_texts(items, document, collection) if isinstance(items, list) else []
    return list(dict.fromkeys(out))


def training_feedback(ws: Workspace, user: str | None = None) -> list[dict]:
    """The feedback rows a fine-tune by `user` can learn from (a thumbs up, or a correction), oldest
    first: [{id, collection, question, answer, rating, correction, citations, message_id, adapter,
    answered_at (when the rated answer was written, for `conversations.answer_sources`), review (of its
    correction: 'approved', 'rejected' or None, awaiting one)}]. A
    member's own rows only; an admin's, everyone's. Callers also check access per row (finetune.datasets.
    examples_from_feedback keeps only rows whose passages, and what the rated answer drew on, the user may read)."""
    who = access.current_user(ws, user)
    sql = ("SELECT f.id, f.collection, f.question, f.answer, f.rating, f.correction, f.citations, f.message_id, "
           "f.adapter, COALESCE(m.created_at, f.created_at) AS answered_at, r.review FROM feedback f "
           "LEFT JOIN feedback_reviews r ON r.feedback_id = f.id "
           "LEFT JOIN messages m ON m.id = f.message_id LEFT JOIN users u ON u.id = f.user_id WHERE (f.rating > 0 OR (f.correction IS NOT NULL AND trim(f.correction) != ''))")
    params: list = []
    if not access.is_admin(ws, who):
        sql += " AND u.name = ?"
        params.append(who)
    return [dict(r) for r in ws.db.execute(sql + " ORDER BY f.id", params).fetchall()]


def find_feedback(ws: Workspace, user: str | None, question: str, answer: str,
                  message_id: int | None = None) -> dict | None:
    """The latest feedback `user` gave on chat message `message_id` ({id, rating, correction, review}), or None;
    without a message id, or for feedback stored before it was recorded, on this exact question and
    answer. Lets the chat show a thumb already given when the conversation is opened again, and where its
    correction stands (review: 'approved', 'rejected' or None, awaiting an admin's); a new answer to the same
    question starts unrated.
    """
    who = access.current_user(ws, user)
    if message_id is not None:
        where, params = "(f.message_id = ? OR (f.message_id IS NULL AND f.question = ? AND f.answer = ?))", (message_id, question, answer)
    else:
        where, params = "f.question = ? AND f.answer = ?", (question, answer)
    row = ws.db.execute("SELECT f.id, f.rating, f.correction, r.review FROM feedback f JOIN users u ON u.id = f.user_id "
                        "LEFT JOIN feedback_reviews r ON r.feedback_id = f.id "
                        f"WHERE u.name = ? AND {where} ORDER BY f.id DESC LIMIT 1", (who, *params)).fetchone()
    return dict(row) if row else None


def erase_document(ws: Workspace, document: str, collection: str, erased, keep_ratings: bool = False,
                   owner: str | None = None) -> dict:
    """Feedback that cites document `document` of `collection`, or holds its text (`erased(text) -> bool`),
    goes: deleted, or with `keep_ratings` kept as its rating alone (question, answer, correction and
    passages replaced by "[erased]"). Returns {"deleted", "anonymized", "left"}. (`archivist erase`.)
    `owner`: text is looked for only in that user's feedback (a member's erase: the text of another
    user's feedback is theirs to erase, and matching it would tell the member what they wrote);
    None, in everyone's (an admin's). Feedback citing the document goes whoever gave it; feedback
    that does not cite it and holds its text only where another document holds it too
    (`erased.shared(text)`, see ingest/erase.py `matcher`) is that document's, stays, and is counted
    under "left"."""
    out = {"deleted": 0, "anonymized": 0, "left": 0}
    shared = getattr(erased, "shared", lambda s: False)
    with transaction(ws.db):
        for row in ws.db.execute("SELECT f.id, f.question, f.answer, f.correction, f.citations, u.name AS user "
                                 "FROM feedback f LEFT JOIN users u ON u.id = f.user_id").fetchall():
            try:
                cited = json.loads(row["citations"] or "[]")
            except ValueError:
                cited = []
            hit = any(isinstance(c, dict) and c.get("document") == document and c.get("collection") == collection
                      for c in cited)
            texts = [row["question"], row["answer"], row["correction"]] + [
                c.get("text") for c in cited if isinstance(c, dict)]
            if not hit and owner in (None, row["user"]):
                hit = any(erased(t or "") for t in texts)
                out["left"] += not hit and any(shared(t or "") for t in texts)
            if not hit:
                continue
            if keep_ratings:
                ws.db.execute("UPDATE feedback SET question = '[erased]', answer = '[erased]', correction = NULL, "
                              "citations = '[]' WHERE id = ?", (row["id"],))
                out["anonymized"] += 1
            else:
                ws.db.execute("DELETE FROM feedback WHERE id = ?", (row["id"],))
                out["deleted"] += 1
    return out
