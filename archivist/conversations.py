"""Chat history per user: conversations and their messages, so a chat survives a reload.

Assistant messages keep the citations shown with them (JSON, the `answer_json` shape) and the
adapter that wrote them. A user only ever sees their own conversations, and of those only what
they may still read: an answer drawn from a collection whose access they lost since is withheld
(`messages`), on every surface and in the history a follow-up question is asked with.
"""

from __future__ import annotations

import json

from archivist import access, audit
from archivist.workspace import Workspace, transaction

TITLE_CHARS = 80
WITHHELD = "[withheld: this answer came from {}, which you can no longer read]"


def _uid(ws: Workspace, user: str | None) -> int:
    who = access.current_user(ws, user)
    return ws.db.execute("SELECT id FROM users WHERE name = ?", (who,)).fetchone()[0]


def start_conversation(ws: Workspace, user: str | None, title: str | None = None) -> int:
    """A new, empty conversation of `user`; returns its id. The title is cut to 80 characters."""
    uid = _uid(ws, user)
    title = " ".join((title or "").split())[:TITLE_CHARS] or None
    with transaction(ws.db):
        return ws.db.execute("INSERT INTO conversations(user_id, title) VALUES (?, ?)", (uid, title)).lastrowid


def list_conversations(ws: Workspace, user: str | None, limit: int = 50) -> list[dict]:
    """`user`'s conversations, most recently active first: [{id, title, created_at, messages, last_at}]."""
    uid = _uid(ws, user)
    rows = ws.db.execute(
        "SELECT c.id, c.title, c.created_at, COUNT(m.id) AS messages, COALESCE(MAX(m.created_at), c.created_at) AS last_at "
        "FROM conversations c LEFT JOIN messages m ON m.conversation_id = c.id WHERE c.user_id = ? "
        "GROUP BY c.id ORDER BY last_at DESC, c.id DESC LIMIT ?", (uid, int(limit))).fetchall()
    return [dict(r) for r in rows]


def own(ws: Workspace, conversation_id: int, user: str | None) -> None:
    """Raise LookupError unless conversation `conversation_id` is `user`'s (another user's and a
    missing one read alike)."""
    row = ws.db.execute("SELECT user_id FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
    if row is None or row[0] != _uid(ws, user):
        raise LookupError(f"no conversation {conversation_id}")


def add_message(ws: Workspace, conversation_id: int, user: str | None, role: str, content: str,
                citations: list | None = None, adapter: str | None = None, meta: dict | None = None) -> int:
    """Append a message to one of `user`'s conversations; returns its id.

    role: "user" | "assistant". citations: JSON-able list (assistant messages). meta: extra facts
    about the answer (not_found, passages) stored beside the citations. The first user message
    becomes the title of an untitled conversation. Raises LookupError / ValueError.
    """
    if role not in ("user", "assistant"):
        raise ValueError(f"role must be user or assistant, got {role!r}")
    own(ws, conversation_id, user)
    stored = None
    if citations is not None or meta:
        stored = json.dumps({"citations": citations or [], **(meta or {})}, ensure_ascii=False, default=str)
    with transaction(ws.db):
        mid = ws.db.execute("INSERT INTO messages(conversation_id, role, content, citations, adapter) VALUES (?,?,?,?,?)",
                            (conversation_id, role, content, stored, adapter)).lastrowid
        if role == "user":
            ws.db.execute("UPDATE conversations SET title = ? WHERE id = ? AND title IS NULL",
                          (" ".join(content.split())[:TITLE_CHARS], conversation_id))
    return mid


def messages(ws: Workspace, conversation_id: int, user: str | None) -> list[dict]:
    """The messages of one of `user`'s conversations in order: [{id, role, content, citations, adapter,
    created_at, ...meta}]. Raises LookupError when it is not theirs."""
    own(ws, conversation_id, user)
    readable = set(access.readable_collections(ws, user))
    out = []
    for r in ws.db.execute("SELECT id, role, content, citations, adapter, created_at FROM messages "
                           "WHERE conversation_id = ? ORDER BY id", (conversation_id,)):
        d = dict(r)
        extra = json.loads(d.pop("citations")) if r["citations"] else {}
        if isinstance(extra, list):  # a plain citation list, as other writers may store it
            extra = {"citations": extra}
        d["citations"] = extra.pop("citations", [])
        d.update(extra)
        lost = sorted(_collections(d) - readable)
        if lost:  # access revoked since: the answer, its passages and its claims quote that collection
            d = {k: d[k] for k in ("id", "role", "created_at", "adapter", "question", "collection") if k in d}
            d.update(content=WITHHELD.format(", ".join(lost)), citations=[], passages=[], withheld=lost, status="withheld")
        out.append(d)
    return out


def _collections(message: dict) -> set[str]:
    """The collections an assistant message drew on: those of its citations and passages, and the
    one it was asked in."""
    found = {x.get("collection") for key in ("citations", "passages") for x in message.get(key) or [] if isinstance(x, dict)}
    found.add(message.get("collection"))
    return {c for c in found if c}


def history(ws: Workspace, conversation_id: int, user: str | None, turns: int = 6) -> list[dict]:
    """The last `turns` messages as [{"role", "content"}], the shape `ask(history=...)` takes."""
    return [{"role": m["role"], "content": m["content"]} for m in messages(ws, conversation_id, user)[-turns:]]


def delete_conversation(ws: Workspace, conversation_id: int, user: str | None) -> None:
    """Remove one of `user`'s conversations with its messages. Raises LookupError when it is not theirs."""
    own(ws, conversation_id, user)
    with transaction(ws.db):
        n = ws.db.execute("SELECT COUNT(*) FROM messages WHERE conversation_id = ?", (conversation_id,)).fetchone()[0]
        ws.db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
        # that it happened and how much, not the words (they are what was deleted)
        audit.record(ws, "conversation.deleted", user=access.current_user(ws, user), target=str(conversation_id),
                     detail={"messages": n})


def erase_document(ws: Workspace, document: str, erased, collection: str | None = None, owner: str | None = None) -> int:
    """Chat messages that cite document `document` of `collection` or hold its text (`erased(text) ->
    bool`) keep their place in the conversation with their text and citations replaced by
    "[erased]"; returns how many. (`archivist erase`.) `owner`: text is looked for only in that
    user's conversations (a member's erase must not match, and so reveal, what others asked and
    were told); None, in everyone's (an admin's). A citation of the document counts in anyone's;
    one that names another collection is another document of the same name."""
    n = 0
    with transaction(ws.db):
        for mid, content, stored, who in ws.db.execute(
                "SELECT m.id, m.content, m.citations, u.name FROM messages m JOIN conversations c ON c.id = m.conversation_id "
                "LEFT JOIN users u ON u.id = c.user_id").fetchall():
            cites = document in (stored or "") and any(
                isinstance(c, dict) and c.get("document") == document and c.get("collection") in (None, collection)
                for c in _citations(stored))
            if cites or (owner in (None, who) and (erased(content or "") or erased(stored or ""))):
                ws.db.execute("UPDATE messages SET content = '[erased]', citations = NULL WHERE id = ?", (mid,))
                n += 1
    return n


def _citations(stored: str | None) -> list:
    try:
        return (json.loads(stored) or {}).get("citations") or []
    except (ValueError, AttributeError):
        return []
