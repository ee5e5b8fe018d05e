"""CLI: archivist search | ask."""

from __future__ import annotations

import os
import sys

from archivist import audit
from archivist.cli import check_collections, collection_arg, emit_json, open_ws


def positive_int(text: str) -> int:
    """-k: 1 or more. 0 or a negative number found nothing (or fell back to the default) with exit 0."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


KINDS = ("pdf", "docx", "html", "markdown", "text", "csv", "xlsx", "pptx", "image")  # ingest/readers.py LABELS


def register(sub, common) -> None:
    p = common(sub.add_parser("search", help="retrieval only: ranked chunks with document, page and score"))
    p.add_argument("query", help="what to look for; '-' reads it from standard input")
    p.add_argument("-k", type=positive_int, default=10, help="results (default 10)")
    _scope_arguments(p)
    p.add_argument("--mode", choices=["hybrid", "dense", "lexical"], default="hybrid")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_search)
    _dash_hint(p, "query")

    p = common(sub.add_parser("ask", help="an answer from your documents, with citations"))
    p.add_argument("question", help="the question; '-' reads it from standard input (echo QUESTION | archivist ask -)")
    _scope_arguments(p)
    p.add_argument("-k", type=positive_int, default=None, help="passages in the prompt (default 5)")
    p.add_argument("--adapter", default="active", help="adapter name, 'none' for the base model (default: the active one)")
    p.add_argument("--mode", choices=["auto", "generate", "extractive"], default=None,
                   help="auto: quote the passages when the generated answer is unsupported (default)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ask)
    _dash_hint(p, "question")


def _scope_arguments(parser) -> None:
    """-c, -d and --kind, the same for search and ask: both filter with retrieval.search.search's
    collections, documents and kinds, and _check_scope refuses a name the user may not read."""
    parser.add_argument("--collection", "-c", type=collection_arg, action="append", help="only this collection (repeatable)")
    parser.add_argument("--document", "-d", action="append", help="only this document, by name or id (repeatable)")
    parser.add_argument("--kind", action="append", choices=KINDS, metavar="KIND",
                        help="only this file kind: " + ", ".join(KINDS) + " (repeatable)")


def _dash_hint(parser, name: str) -> None:
    """Make `parser`'s "required: question" error say how to ask a question that starts with '-':
    argparse takes `archivist ask "--posix"` for an unknown option and the question for missing."""
    error = parser.error

    def hinted(message: str) -> None:
        if message.endswith(f"required: {name}"):
            message += f" (a {name} that starts with '-' goes after '--': {parser.prog} -- \"--posix\")"
        error(message)

    parser.error = hinted


def given_text(value: str, what: str) -> str:
    """The query or question as given, or read from standard input when it is '-' (a script's pipe).
    Raises CLIError when it is empty or blank: searching or asking nothing found nothing with exit 0."""
    from archivist.cli import CLIError

    if value == "-":
        value = sys.stdin.read().strip()  # echo's newline is no part of the question
        if not value:
            raise CLIError(f"the {what} is empty: nothing came on standard input ('-' reads it from there)")
    if not value.strip():
        raise CLIError(f"the {what} is empty")
    try:  # bytes that are not UTF-8 (a Latin-1 script or file) arrive as surrogates, which the tokenizer chokes on
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        byte = ord(value[e.start]) - 0xDC00 if 0xDC80 <= ord(value[e.start]) <= 0xDCFF else None
        raise CLIError(f"the {what} is not UTF-8 text" + (f" (byte 0x{byte:02x} at character {e.start + 1})" if byte else "")
                       + "; convert it first, e.g. with iconv -f latin1 -t utf-8") from None
    return value


def _check_scope(ws, args) -> None:
    """Say so when -c or -d names nothing this user may read: a typo there gave no hits (or "not
    found") with exit 0, which a script cannot tell from a real miss. A collection: check_collections;
    a document: an error, the same whether it exists in a collection they may not read or not at all,
    or outside the collections -c names (the search would look for it there alone)."""
    from archivist.cli import CLIError
    from archivist.retrieval.search import unreadable_document

    user = getattr(args, "user", None)
    check_collections(ws, user, args.collection)
    missing = unreadable_document(ws, user, args.collection, args.document)
    if missing is not None:
        raise CLIError(f"no document {missing!r} you may read (see `archivist documents`)")


def _say_if_empty(ws, args) -> None:
    """On stderr: the workspace holds no document this user may read, and where it is. A command run
    from another folder opens (and creates) ./archivist-data, and "not found" alone hid why."""
    from archivist import access

    readable = access.readable_collections(ws, getattr(args, "user", None))
    marks = ",".join("?" * len(readable))
    if not readable or not ws.db.execute(
            f"SELECT 1 FROM documents d JOIN collections c ON c.id = d.collection_id WHERE c.name IN ({marks}) LIMIT 1",
            readable).fetchone():
        print(f"archivist: the workspace {ws.home.resolve()} holds no document you may read "
              "(another one: --home DIR or ARCHIVIST_HOME; add some: archivist ingest PATH)", file=sys.stderr)


def cmd_search(args) -> int:
    from archivist.retrieval.answer import hit_json, source_label
    from archivist.retrieval.search import search

    args.query = given_text(args.query, "query")
    with open_ws(args) as ws:
        _check_scope(ws, args)
        hits = search(ws, args.query, k=args.k, user=getattr(args, "user", None), collections=args.collection,
                      documents=args.document, kinds=args.kind, mode=args.mode)
        audit.searched(ws, getattr(args, "user", None), "cli", args.query, hits, args.collection, args.document, args.kind)
        _say_if_empty(ws, args)
    if args.json:
        emit_json({"query": args.query, "hits": [hit_json(h) for h in hits]})
        return 0
    if not hits:
        print("no results", file=sys.stderr)
    for i, h in enumerate(hits, start=1):
        # named as `ask` names its sources (a CSV's heading is its file name: not said twice), with the
        # collection: two may hold one name
        where = f"{source_label(h.document, h.page, h.heading)} ({h.collection})"
        cos = f" cos={h.dense_score:.3f}" if h.dense_score is not None else ""
        print(f"{i:2}. {where}  [score={h.score:.4f}{cos}]")
        snippet = " ".join(h.text.split())
        print(f"    {snippet[:240]}{'…' if len(snippet) > 240 else ''}")
    return 0


STATUS_LINE = {
    "answered": "answered",
    "uncertain": "uncertain: not confirmed to answer the question",
    "not_found": "not found in the documents you may read",
}


def status_line(result, draft_shown: bool) -> str:
    """The line under a plain `ask` answer: how sure it is and where its text comes from. The model's
    sentences that the passages do not support are counted only where the user met that draft: a
    generated answer is the rest of it, and a draft shown while it was written (`Draft.shown`) was
    replaced. A quote after a draft nobody saw says nothing of it: "2 generated sentence(s) dropped"
    under a quote spoke of text the user never saw (--json keeps the claims either way). A quote says it
    plainly, with no count: "27 of its sentence(s)" under the README's demo answer read as a fault, where the
    draft of a small model had only not held up against the documents."""
    from archivist.ingest.folders import plural

    dropped = sum(1 for c in result.claims if c.get("claim", True) and not c["supported"])
    how = {"generated": "written by the model; every claim found in its sources", "extractive": "quoted from the documents",
           "not_found": "nothing relevant found"}[result.mode]
    if result.unchecked:
        how = "no sentence of the model's answer was found in the passages"
    if result.mode == "generated":
        how += (f"; {dropped} {plural(dropped, 'sentence')} the model wrote {'was' if dropped == 1 else 'were'} left out: "
                f"the documents do not support {'it' if dropped == 1 else 'them'}") if dropped else ""
    elif draft_shown:
        how += ("; the documents do not support the model's draft shown while it was written, so the passages are quoted "
                "instead" if dropped else "; the passages are quoted in place of the model's draft shown while it was written")
    return f"({STATUS_LINE[result.status]}; {how})"


class Draft:
    """The generated text shown while it is written, on a terminal only, and erased before the
    checked answer is printed: unverified text never stays on screen as the answer. Not on a dumb
    terminal (TERM=dumb: no cursor movement to erase it with); dimmed unless NO_COLOR is set."""

    def __init__(self, out):
        self.out, self.text = out, ""
        self.live = out.isatty() and os.environ.get("TERM") != "dumb"
        self.dim, self.plain = ("", "") if os.environ.get("NO_COLOR") else ("\x1b[2m", "\x1b[0m")  # no-color.org

    def __call__(self, piece: str) -> None:
        if self.live:
            if not self.text:
                self.out.write(self.dim + "(draft, being checked) ")
            self.text += piece
            self.out.write(piece)
            self.out.flush()

    @property
    def shown(self) -> bool:
        """Whether any draft text reached the screen (erased since, but seen)."""
        return self.live and bool(self.text)

    def erase(self) -> None:
        """Move the cursor back over the draft and clear it (wrapped lines counted at the terminal's width)."""
        if self.live and self.text:
            import shutil

            width = max(shutil.get_terminal_size().columns, 20)
            lines = sum(max(1, -(-len(line) // width)) for line in ("(draft, being checked) " + self.text).split("\n"))
            self.out.write(self.plain + "\r" + ("\x1b[1A" * (lines - 1)) + "\x1b[J")
            self.out.flush()


def cmd_ask(args) -> int:
    from archivist.retrieval.answer import answer_json, ask, source_label

    args.question = given_text(args.question, "question")
    adapter = None if args.adapter in ("none", "base") else args.adapter
    draft = Draft(sys.stdout)
    with open_ws(args) as ws:
        _check_scope(ws, args)
        try:
            result = ask(ws, args.question, user=getattr(args, "user", None), collections=args.collection,
                         documents=args.document, kinds=args.kind, k=args.k, adapter=adapter,
                         on_token=None if args.json else draft, mode=args.mode, surface="cli")
        finally:
            draft.erase()
        _say_if_empty(ws, args)
    if args.json:
        emit_json(answer_json(result))
        return 0
    print(result.answer)
    print("\n" + status_line(result, draft.shown))
    if result.citations:
        print("\nSources:")
        for c in result.citations:
            where = source_label(c.document, c.page, c.heading)
            flag = "  ⚠ weakly supported" if c.weak else ""
            print(f"  [{c.n}] {where} ({c.collection}; support {c.support:.2f}){flag}")  # the collection: two may hold one name
    elif not result.not_found and result.passages:
        print("\nClosest passages:" if result.status == "uncertain" else "\nPassages used:")
        for i, h in enumerate(result.passages, start=1):
            print(f"  [{i}] {source_label(h.document, h.page, h.heading)} ({h.collection})")
    if result.invalid_citations:
        print(f"  (removed citations to passages that were not in the prompt: {result.invalid_citations})")
    return 0
