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
    created_at, ...meta}]; an answer drawn from a collection `user` can no longer read (its passages',
    the one it was asked in, or its adapter's: `answer_sources`) withheld. Raises LookupError when it is not theirs."""
    own(ws, conversation_id, user)
    readable = readable_sources(ws, user)
    lineages: dict = {}  # each adapter's lineage read once per conversation
    out, shown, rows = [], [], []  # shown: each answer's passages, marked now for all at once
    for r in ws.db.execute("SELECT id, role, content, citations, adapter, created_at FROM messages "
                           "WHERE conversation_id = ? ORDER BY id", (conversation_id,)):
        d = dict(r)
        extra = _stored(d.pop("citations"))
        d["citations"] = extra.pop("citations", [])
        d.update(extra)
        rows.append(d)
    _recall_collections(ws, *rows)
    for d in rows:
        drawn, taught = answer_sources(ws, collections_of(d), d["adapter"], lineages, d["created_at"])
        lost = sorted(drawn - readable)
        if lost:  # access revoked since: the answer, its passages and its claims quote that collection
            if taught - readable:  # nor the name of an adapter they may no longer use (adapters.may_use)
                d["adapter"] = None
            d = {k: d[k] for k in ("id", "role", "created_at", "adapter", "question", "collection") if k in d}
            d.update(content=WITHHELD.format(", ".join(lost)), citations=[], passages=[], withheld=lost, status="withheld")
        else:
            shown.append(([x for key in ("citations", "passages") for x in d.get(key) or []], d.get("collection")))
        out.append(d)
    mark_all(ws, shown)
    return out


def _stored(text: str | None) -> dict:
    """An assistant message's stored facts (its `citations` column): {"citations", "passages", ...}."""
    extra = json.loads(text) if text else {}
    return {"citations": extra} if isinstance(extra, list) else extra  # a plain citation list, as other writers store it


# What an answer of an adapter whose lineage is unknown drew on (one deleted before schema migration 15
# kept deleted adapters' lineage): no collection's name (access.check_name allows no apostrophe), shown in WITHHELD
UNKNOWN_LINEAGE = "a deleted adapter's unrecorded training data"


def answer_sources(ws: Workspace, collections, adapter: str | None, lineages: dict | None = None,
                   at: float | None = None) -> tuple[set[str], set[str]]:
    """Which collections one answer drew on, as every surface withholds it (the chat, feedback, a
    fine-tune's examples, a stored evaluation, an answer about to be sent): `collections` (those of its
    passages, cited or not, and the one it was asked in) and those the adapter that wrote it was trained
    on: the registration of that name live at `at`, when the answer was written (None: now, an answer
    being written), registered or deleted since (`adapters.answered_from`; none for the base model). An
    adapter is a copy of what it learned (docs/access.md), so its answer is drawn from those too. An
    adapter of no known lineage counts as UNKNOWN_LINEAGE, which only a reader of every collection may
    read (`readable_sources`): it learned from some of them at most, and naming them would tell a member
    which collections exist. Returns (all of them, the adapter's alone): a lost collection of the
    adapter's withholds its name too. `lineages`: a dict kept across calls over many answers, so each
    adapter name's registrations are read once."""
    lineages = {} if lineages is None else lineages
    key = adapter if isinstance(adapter, str) and adapter else None  # a stored run's results may hold anything
    if key is None:
        return set(collections), set()
    from archivist import adapters

    if key not in lineages:
        lineages[key] = adapters.registrations(ws, key)
    learned = adapters.answered_from(lineages[key], at)
    learned = {UNKNOWN_LINEAGE} if learned is None else learned
    return set(collections) | learned, learned


def readable_sources(ws: Workspace, user: str | None) -> set[str]:
    """What `user` may still be shown answers drawn from (`answer_sources`): the collections they may
    read, and UNKNOWN_LINEAGE when those are all the workspace's (collections are never deleted, so an
    adapter of unknown lineage learned from none they cannot read: an admin still sees its answers)."""
    readable = set(access.readable_collections(ws, user))
    return readable | {UNKNOWN_LINEAGE} if readable >= set(ws.collections()) else readable


def stored_answer_sources(ws: Workspace, message_ids) -> dict[int, set[str]]:
    """The collections each stored answer of `message_ids` drew on, by message id, as `messages` decides
    what to withhold: its citations', its passages' (cited or not) and the one it was asked in (not its
    adapter's: `answer_sources` adds those). Feedback keeps only the passages an answer cited, so it
    asks here to withhold what the conversation withholds."""
    ids = sorted({int(i) for i in message_ids if i is not None})
    out: dict[int, dict] = {}  # each answer's stored facts, their passages' collections then recalled at once
    for at in range(0, len(ids), 500):
        part = ids[at:at + 500]
        for mid, stored in ws.db.execute(f"SELECT id, citations FROM messages WHERE role = 'assistant' AND id IN "
                                         f"({','.join('?' * len(part))})", part):
            out[mid] = _stored(stored)
    _recall_collections(ws, *out.values())
    return {mid: collections_of(extra) for mid, extra in out.items()}


CURRENT, CHANGED, DELETED = "current", "changed", "deleted"


def mark_now(ws: Workspace, passages: list, collection: str | None = None, cache: dict | None = None) -> None:
    """Give each stored passage (a citation or passage of an answer, as a chat message or a feedback
    row keeps it: a dict with chunk_id, document, collection, text) `now`: whether its text is still
    in the documents. CURRENT: its chunk is still there (chunk ids are never reused), or its document
    holds the same text in (or within) a chunk of a later version; CHANGED: its document (same collection, else
    `collection`, and name) was re-ingested since and no longer holds that text; DELETED: its
    document is gone. The stored text is what the answer was written from, so it stays; `now` says
    whether it is still the document's (a re-ingest replaces every chunk, so an old chunk id alone
    says nothing); a passage found again that way gets its chunk's id, page and boxes of today. A
    passage whose chunk is gone and whose collection is not known gets no `now`.
    `cache`: a dict kept across calls over many rows (a feedback list), so each document is read once."""
    items = [x for x in passages if isinstance(x, dict) and x.get("chunk_id") is not None]

    def chunk_id(x) -> int | None:  # what a client stored through the API may be anything
        v = x["chunk_id"]
        return v if isinstance(v, int) and not isinstance(v, bool) and 0 < v < 2 ** 63 else None

    ids = sorted({i for i in map(chunk_id, items) if i is not None})
    live: set[int] = set()
    for at in range(0, len(ids), 500):
        part = ids[at:at + 500]
        live |= {r[0] for r in ws.db.execute(f"SELECT id FROM chunks WHERE id IN ({','.join('?' * len(part))})", part)}
    # (collection, document) -> its chunks by text: (id, page, boxes); None: no such document
    texts: dict[tuple[str, str], dict[str, tuple] | None] = {} if cache is None else cache
    for x in items:
        if chunk_id(x) in live:
            x["now"] = CURRENT
            continue
        known = x.get("collections") or []  # conversations._recall_collections: an old passage's possible ones
        where = (str(x.get("collection") or collection or (known[0] if len(known) == 1 else "")), str(x.get("document") or ""))
        if not where[0]:
            continue  # whose document it was is not known: nothing to look up (another collection's may share its name)
        if where not in texts:
            rows = ws.db.execute(
                "SELECT c.text, c.id, c.page, c.boxes FROM documents d JOIN collections k ON k.id = d.collection_id "
                "LEFT JOIN chunks c ON c.document_id = d.id WHERE d.path = ? AND k.name = ?", (where[1], where[0])).fetchall()
            texts[where] = {r[0]: tuple(r[1:]) for r in rows if r[0] is not None} if rows else None
        held = texts[where]
        now = _found(held, str(x.get("text") or "")) if held else None
        x["now"] = DELETED if held is None else CHANGED if now is None else CURRENT
        if now is not None:  # the same text in a later version: where it stands now (a page view draws today's file)
            boxes = [list(b) for b in json.loads(now[2])] if now[2] else []
            x.update(chunk_id=now[0], page=now[1], boxes=boxes)
            if "bbox" in x:
                x["bbox"] = [min(b[0] for b in boxes), min(b[1] for b in boxes),
                             max(b[2] for b in boxes), max(b[3] for b in boxes)] if boxes else None


def mark_all(ws: Workspace, answers: list[tuple[list, str | None]]) -> None:
    """`mark_now` over the passages of many answers (a conversation's messages, a feedback list), each
    given as (its passages, the collection it was asked in): one look-up of the live chunks per 500
    passages and per such collection, and each document's chunks read once, where a call per answer
    made a query per row (a conversation of 1,000 messages, a list of 20,000 feedback rows)."""
    by: dict[str | None, list] = {}
    for passages, collection in answers:  # mark_now reads a collection as str(it), and any empty one as none
        by.setdefault(str(collection) if collection else None, []).extend(passages)
    cache: dict = {}
    for collection, passages in by.items():
        mark_now(ws, passages, collection, cache)


def _found(held: dict[str, tuple], text: str) -> tuple | None:
    """The chunk of `held` (a document's chunks by text) that holds `text`: the one of the same text,
    else the first that contains it whole. A newer reader's chunking joins pieces an older one kept
    apart (a heading with no text of its own opens the chunk under it, docs/documents.md), so after
    such an upgrade 200 of 202 passages whose text was no longer a chunk's were still, word for word,
    inside one."""
    if text in held:
        return held[text]
    return next((place for chunk, place in held.items() if text and text in chunk), None)


def _recall_collections(ws: Workspace, *messages: dict) -> None:
    """Give a stored passage that names no collection (answers stored before retrieval/answer.py
    `stored_answer` kept each passage's collection: only their citations named one) its collection:
    its chunk's, else what the answer itself says: the collection it was asked in (it searched only
    there), the collection of its citation when it is one (the same chunk id); else the
    collections holding a document of its name that still hold its text, and only when none does,
    `collections`: every collection holding a document of its name (withheld when any of them is one
    the user may not read: the passage's text may be that one's). Guessing from the name first named
    collections the user never read, and withheld their own answer, whenever another collection held
    a file of the same name (two uploads of `policy.pdf`). Many `messages` (a conversation, the answers
    a feedback list rates) are recalled at once: their chunks read 500 a query, each document's name and
    text looked for once, where each passage of an answer stored before asked its own queries."""
    ids = sorted({x["chunk_id"] for m in messages for x in m.get("passages") or [] if isinstance(x, dict)
                  and not x.get("collection") and isinstance(x.get("chunk_id"), int) and 0 < x["chunk_id"] < 2 ** 63})
    of_chunk: dict[int, str] = {}  # chunk id -> its collection
    for at in range(0, len(ids), 500):
        part = ids[at:at + 500]
        of_chunk.update(ws.db.execute("SELECT c.id, k.name FROM chunks c JOIN documents d ON d.id = c.document_id "
                                      f"JOIN collections k ON k.id = d.collection_id WHERE c.id IN ({','.join('?' * len(part))})",
                                      part).fetchall())
    found: dict[tuple[str, str], tuple[str, object]] = {}  # (document, text) -> ("collection", it) or ("collections", them)
    for message in messages:
        # chunk id -> collection, of the answer's citations: a passage of a cited chunk is that citation's
        cited = {c["chunk_id"]: str(c["collection"]) for c in message.get("citations") or []
                 if isinstance(c, dict) and isinstance(c.get("chunk_id"), int) and c.get("collection")}
        for x in message.get("passages") or []:
            if not isinstance(x, dict) or x.get("collection"):
                continue
            cid, document = x.get("chunk_id"), str(x.get("document") or "")
            if isinstance(cid, int) and cid in of_chunk:
                x["collection"] = of_chunk[cid]
            elif message.get("collection"):
                x["collection"] = message["collection"]
            elif isinstance(cid, int) and cid in cited:
                x["collection"] = cited[cid]
            elif document:
                where = (document, str(x.get("text")))
                if where not in found:
                    holding = [r[0] for r in ws.db.execute(
                        "SELECT DISTINCT k.name FROM documents d JOIN collections k ON k.id = d.collection_id "
                        "JOIN chunks c ON c.document_id = d.id WHERE d.path = ? AND c.text = ?", where)]
                    found[where] = ("collection", holding[0]) if len(holding) == 1 else ("collections", holding or [
                        r[0] for r in ws.db.execute("SELECT DISTINCT k.name FROM documents d JOIN collections k "
                                                    "ON k.id = d.collection_id WHERE d.path = ?", (document,))])
                key, value = found[where]
                x[key] = list(value) if isinstance(value, list) else value


def collections_of(message: dict) -> set[str]:
    """The collections an assistant message (or a feedback row, which keeps its cited passages) quotes:
    those of its citations and passages, and the one it was asked in; `answer_sources` adds its adapter's."""
    found = {x.get("collection") for key in ("citations", "passages") for x in message.get(key) or [] if isinstance(x, dict)}
    found |= {c for x in message.get("passages") or [] if isinstance(x, dict) for c in x.get("collections") or []}
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


def erase_document(ws: Workspace, document: str, erased, collection: str | None = None, owner: str | None = None,
                   left: list[int] | None = None) -> int:
    """Chat messages that cite document `document` of `collection` (or were written from one of its
    passages) or hold its text (`erased(text) -> bool`) keep their place in the conversation with
    their text and citations replaced by "[erased]"; returns how many. (`archivist erase`.) `owner`:
    text is looked for only in that user's conversations (a member's erase must not match, and so
    reveal, what others asked and were told); None, in everyone's (an admin's). A citation of the
    document counts in anyone's; one that names another collection is another document of the same
    name. A message that does not cite it and holds its text only where another document holds it
    too (`erased.shared(text)`, see ingest/erase.py `matcher`: an answer citing the other copy) is
    that document's and stays; its id is added to `left`."""
    n = 0
    shared = getattr(erased, "shared", lambda s: False)
    with transaction(ws.db):
        for mid, content, stored, who in ws.db.execute(
                "SELECT m.id, m.content, m.citations, u.name FROM messages m JOIN conversations c ON c.id = m.conversation_id "
                "LEFT JOIN users u ON u.id = c.user_id").fetchall():
            # a passage (shown, maybe not cited) names its collection since answers kept it; one without is left to the text
            cites = document in (stored or "") and (any(
                isinstance(c, dict) and c.get("document") == document and c.get("collection") in (None, collection)
                for c in _citations(stored)) or any(
                isinstance(c, dict) and c.get("document") == document and c.get("collection") == collection
                for c in _passages(stored)))
            if cites or (owner in (None, who) and (erased(content or "") or erased(stored or ""))):
                ws.db.execute("UPDATE messages SET content = '[erased]', citations = NULL WHERE id = ?", (mid,))
                n += 1
            elif left is not None and owner in (None, who) and (shared(content or "") or shared(stored or "")):
                left.append(mid)
    return n


def passages_of(ws: Workspace, document: str, collection: str) -> list[str]:
    """The texts of the passages of document `document` of `collection` that stored answers cite or
    were written from, in everyone's conversations: its earlier versions' text among them, which the
    documents table no longer holds (`archivist erase` looks for those copies too)."""
    out = []
    for (stored,) in ws.db.execute("SELECT citations FROM messages WHERE citations LIKE ?", (f"%{document}%",)):
        try:
            data = json.loads(stored)
        except ValueError:
            continue
        if isinstance(data, dict):
            _recall_collections(ws, data)  # an old passage's collection, as messages() decides it
        items = data if isinstance(data, list) else [x for key in ("citations", "passages") for x in data.get(key) or []]
        out += stored_texts(items, document, collection)
    return list(dict.fromkeys(out))


def stored_texts(items: list, document: str, collection: str) -> list[str]:
    """The texts of stored passages `items` (an answer's or a feedback row's) that are `document` of
    `collection`: by their collection, or, for a passage that names none, by the collections
    `_recall_collections` found for it (none found: it counts)."""
    return [x["text"] for x in items if isinstance(x, dict) and x.get("document") == document
            and isinstance(x.get("text"), str) and (x["collection"] == collection if x.get("collection")
                                                    else collection in (x.get("collections") or [collection]))]


def _citations(stored: str | None) -> list:
    try:
        return (json.loads(stored) or {}).get("citations") or []
    except (ValueError, AttributeError):
        return []


def _passages(stored: str | None) -> list:
    """The passages an answer was written from, as stored beside its citations (`add_message` meta)."""
    try:
        found = (json.loads(stored) or {}).get("passages") or []
    except (ValueError, AttributeError):
        return []
    return found if isinstance(found, list) else []
