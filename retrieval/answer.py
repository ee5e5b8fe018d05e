"""Grounded answers: retrieve → pack passages into the token budget → generate → check citations.

The prompt goes through the model's own chat template. The system message tells the model to
answer only from the numbered passages and cite them as [n]. After generation every [n] is checked
against the passages that were in the prompt, and each cited sentence gets a support score
against its passage; weak citations are flagged. When nothing relevant is found the answer says
plainly that the documents do not contain it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict

import numpy as np

from archivist import access, adapters, audit
from archivist.records import Answer, Citation, Hit
from archivist.retrieval.answerability import answerability
from archivist.retrieval.keyanswer import TermStats, key_answer, key_span, key_status, reading, term_stats
from archivist.retrieval.folding import plain
from archivist.retrieval.query import refers_back, stopwords, stopwords_of
from archivist.retrieval.quote import score as quote_score
from archivist.retrieval.search import search, statistics_scope
from archivist.retrieval.verify import asks_yes_no, parse_citations, replace_marks, sentences, verify_answer
from archivist.workspace import Workspace

SYSTEM_PROMPT = (
    "You are archivist, an assistant that answers questions about the user's documents. "
    "Answer only from the numbered passages in the user's message. "
    "After each fact, cite the passage it comes from as [n], for example [1]. "
    "If the passages do not contain the answer, reply exactly: "
    "\"The documents do not contain an answer to this question.\" Be brief."
)
NOT_FOUND = "The documents do not contain an answer to this question."
# An uncertain answer shows the closest passage as a passage: it claims neither that the passage answers
# nor that the documents hold nothing (the passage is often right, only not confirmed).
UNCERTAIN = "The closest passage in the documents, not confirmed to answer the question:"
# "generate" mode, when no sentence of the draft is supported: the passages are listed, nothing is quoted.
UNCHECKED = ("The model's answer could not be checked against the documents, so it is not shown. "
             "The closest passages are listed; they were not confirmed to answer the question.")
ANSWER_ROOM = 256  # tokens kept free for the answer when packing passages
MAX_CONTEXT = 2048  # cap on the prompt+answer window: prefill time grows with it on a CPU
# A longer question is refused, not cut: a cut question is a different question. 512 tokens
# (~2,000 characters of English) leaves most of the prompt to the passages; the character cap
# refuses megabytes before even the tokenizer reads them.
MAX_QUESTION_TOKENS = 512
MAX_QUESTION_CHARS = 16_000
CARRIED_WORDS = 24  # at most this many words of the previous turn join a follow-up's search query

_WORD = re.compile(r"\w+")
_REFERRING = {"it", "its", "this", "that", "these", "those", "they", "them", "their", "he", "she", "his", "her",
              "there", "then", "same", "also", "what about", "and"}


class QuestionTooLong(ValueError):
    """The question is longer than the prompt can hold; the message says how long it is and the
    limit. A ValueError: the CLI prints it, the app shows it, the API answers 400."""


def check_question(question: str, count_tokens: Callable[[str], int] | None = None, settings=None) -> int:
    """The question's length in the chat model's tokens, when it fits the prompt.

    count_tokens: the chat model's tokenizer count (e.g. `LLM.count_tokens`); when None, the
    tokenizer of `settings.llm` is loaded (once per process), not the model.
    Raises QuestionTooLong beyond MAX_QUESTION_CHARS characters (before tokenizing) or
    MAX_QUESTION_TOKENS tokens.
    """
    if len(question) > MAX_QUESTION_CHARS:
        raise QuestionTooLong(f"the question is {len(question):,} characters long; a question may hold at most "
                              f"{MAX_QUESTION_CHARS:,} characters and {MAX_QUESTION_TOKENS:,} tokens (about "
                              f"{MAX_QUESTION_TOKENS * 4:,} characters of English)")
    if count_tokens is None:
        from archivist.models import load_tokenizer

        tokenizer = load_tokenizer(settings.llm, str(settings.cache))
        count_tokens = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    n = count_tokens(question)
    if n > MAX_QUESTION_TOKENS:
        raise QuestionTooLong(f"the question is {n:,} tokens long; ask in at most {MAX_QUESTION_TOKENS:,} tokens "
                              f"(about {MAX_QUESTION_TOKENS * 4:,} characters): the rest of the prompt holds the passages")
    return n


def source_label(document: str, page: int | None = None, heading: Sequence[str] = ()) -> str:
    """How a passage's source is named, in the prompt and under an answer on every surface:
    "file.html — Section > Subsection" (", page n" after the file for paged documents). A heading
    that only repeats the file's name (a CSV's rows are headed by it) is not said twice."""
    heading = list(heading)
    if heading and heading[0] == document.rsplit("/", 1)[-1]:
        heading = heading[1:]
    return document + (f", page {page}" if page else "") + (f" — {' > '.join(heading)}" if heading else "")


def format_passage(n: int, hit: Hit) -> str:
    return f"[{n}] ({source_label(hit.document, hit.page, hit.heading)})\n{hit.text}"


def build_messages(question: str, passages: Sequence[Hit], system: str = SYSTEM_PROMPT) -> list[dict]:
    """The chat messages for a question and its numbered passages (1-based, in order).

    Fine-tuning datasets build their prompts with this same function, so training and serving agree.
    """
    body = "\n\n".join(format_passage(i, h) for i, h in enumerate(passages, start=1))
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": f"Passages:\n\n{body}\n\nQuestion: {question}"},
    ]


def pack(hits: Sequence[Hit], count_tokens: Callable[[str], int], budget: int, question: str = "",
         fixed: int | None = None) -> list[Hit]:
    """Whole passages, best first, while the whole prompt stays within `budget` tokens.

    fixed: the tokens of the prompt without passages, as the model sees it (chat template included);
    when None it is estimated from the system prompt and the question.
    """
    used = fixed if fixed is not None else count_tokens(SYSTEM_PROMPT) + count_tokens(question) + 24
    out = []
    for h in hits:
        cost = count_tokens(format_passage(len(out) + 1, h)) + 2
        if used + cost > budget:
            continue  # a shorter passage further down may still fit
        out.append(h)
        used += cost
    return out


def standalone_question(question: str, history: Sequence[dict] | None) -> str:
    """Make a follow-up self-contained for retrieval: when it refers back (a pronoun, or it is short),
    prepend the content words of the previous user turn. Deterministic and cheap on purpose: a
    135M model rewrites questions worse than this."""
    if not history:
        return question
    previous = [m["content"] for m in history if m.get("role") == "user"]
    if not previous:
        return question
    # read composed (`plain`): typed decomposed, "fu\u0308r" would be the words "fu" and "r", no stop words
    words = [w.lower() for w in _WORD.findall(plain(question))]
    stop = stopwords(words)  # the question's language's: "wo", "die" of a German one are no content
    content = [w for w in words if w not in stop]
    refers = any(w in _REFERRING for w in words) or refers_back(words) or len(content) <= 2
    if not refers:
        return question
    # Only the start of the previous turn, and a few of its words: a pasted page there must not become the query.
    before = plain(previous[-1][:MAX_QUESTION_CHARS])
    skip = stopwords_of(before).union(content)
    carry = [w for w in _WORD.findall(before) if w.lower() not in skip]
    carry = carry[:CARRIED_WORDS]
    return (" ".join(carry) + " " + question).strip() if carry else question


def token_overlap(claim: str, passage: str) -> float:
    """Share of the claim's content words that appear in the passage (0..1)."""
    words = _WORD.findall(claim.lower())
    stop = stopwords(words)  # the claim's language's
    words = [w for w in words if w not in stop]
    if not words:
        return 0.0
    have = set(_WORD.findall(passage.lower()))
    return sum(w in have for w in words) / len(words)


_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")


def support_scores(claims: Sequence[str], passages: Sequence[str], embedder) -> list[float]:
    """Support of each claim by its passage, 0..1: the mean of embedding cosine and the share of
    the claim's content words found in the passage, halved when the claim states a number the
    passage does not contain (the commonest hallucination of small models)."""
    if not claims:
        return []
    vecs = embedder.embed(list(claims) + list(passages))
    c, p = vecs[: len(claims)], vecs[len(claims):]
    cos = np.clip((c * p).sum(axis=1), 0.0, 1.0)
    out = []
    for a, cl, ps in zip(cos, claims, passages):
        score = 0.5 * float(a) + 0.5 * token_overlap(cl, ps)
        if set(_NUMBER.findall(cl)) - set(_NUMBER.findall(ps)):
            score *= 0.5
        out.append(round(score, 3))
    return out


def check_citations(answer: str, passages: Sequence[Hit], embedder, weak_below: float) -> tuple[str, list[Citation], list[int]]:
    """Validate the [n] marks of a generated answer against the passages in the prompt.

    Marks that point to no passage are removed from the text and returned as invalid. Each valid
    citation gets the support of the sentences citing it. When the model cited nothing, each
    sentence is attributed to its best-supporting passage if that support is strong, and marked.
    Returns (cleaned answer, citations ordered by n, invalid numbers).
    """
    invalid = sorted({n for n, _, _ in parse_citations(answer) if not 1 <= n <= len(passages)})
    if invalid:
        def fix(m):
            keep = [x for x in re.split(r"\s*[,;]\s*", m.group(1)) if 1 <= int(x) <= len(passages)]
            return f"[{', '.join(keep)}]" if keep else ""
        answer = replace_marks(answer, fix).strip()
    claims: dict[int, list[str]] = {}
    for s0, s1 in sentences(answer):
        sent = answer[s0:s1]
        marks = [n for n, _, _ in parse_citations(sent)]
        claim = replace_marks(sent).strip()
        for n in marks:
            claims.setdefault(n, []).append(claim or sent)
    inferred = False
    if not claims and answer.strip() and passages:
        inferred = True
        sents = [replace_marks(answer[a:b]).strip() for a, b in sentences(answer)]
        sents = [s for s in sents if len(_WORD.findall(s)) >= 2]
        if sents:
            vecs = embedder.embed(sents + [p.text for p in passages])
            sv, pv = vecs[: len(sents)], vecs[len(sents):]
            sims = sv @ pv.T
            for i, s in enumerate(sents):
                scores = [0.5 * float(sims[i, j]) + 0.5 * token_overlap(s, passages[j].text) for j in range(len(passages))]
                j = int(np.argmax(scores))
                if scores[j] >= max(weak_below, 0.5):
                    claims.setdefault(j + 1, []).append(s)
    order = sorted(claims)
    flat_claims = [" ".join(claims[n]) for n in order]
    support = support_scores(flat_claims, [passages[n - 1].text for n in order], embedder)
    citations = []
    for n, sup in zip(order, support):
        h = passages[n - 1]
        citations.append(Citation(n=n, document=h.document, page=h.page, chunk_id=h.chunk_id, score=round(h.score, 6),
                                  text=h.text, support=sup, weak=sup < weak_below, collection=h.collection,
                                  heading=h.heading, inferred=inferred, boxes=h.boxes))
    return answer, citations, invalid


def settle(result: Answer, question: str, passages: Sequence[Hit], text: str, mode: str, embedder, s, *,
           stats: TermStats | None = None, relevance: float = 1.0, reader=None) -> None:
    """Decide what the user sees, and how sure it is, from the generated text (or none, in extractive
    mode). Sets result.answer, status, mode, citations, claims and generated.

    A generated answer is checked claim by claim (retrieval/verify.py); sentences whose claims the
    cited passages do not hold are dropped from the answer (kept in result.claims and
    result.generated, never shown as answer text). What is left is *answered* when it scores at
    least `s.quote_answered` as an answer to the question and names something the question does not
    (keyanswer.key_span: an option, function, path, number ...). Otherwise (and in extractive mode) the
    key answer of the passages is shown (retrieval/keyanswer.py: the best sentence and its key
    span, copied): *not_found* when the probability that the documents answer the question is
    under `s.key_not_found`, *answered* when the probability that the quote is right reaches
    `s.key_answered` or its sentence scores `s.quote_answered` by retrieval/quote.py and the
    question is not one that yes or no answers (keyanswer.key_status), else *uncertain*:
    UNCERTAIN, then the closest sentences as they stand in their passage, without the key span in
    front (nothing is claimed to answer).
    In "generate" mode the quote is not used: an unverified answer is *uncertain* (UNCHECKED, with
    the passages listed and none cited).

    stats: the question's words and their rarity in the corpus (keyanswer.term_stats); relevance:
    the answerability gate's score for the question's hits; reader: the chat model's reading of the
    best candidates (keyanswer.key_answer), with its own thresholds (s.key_answered_read,
    s.key_not_found_read).
    """
    texts = [p.text for p in passages]
    kept: list = []
    if text:
        result.generated = text
        checks = verify_answer(text, texts, question)
        result.claims = [asdict(c) for c in checks]
        if "do not contain" not in text.lower():
            # A fenced code block found verbatim in a passage is supported but cites none (verify_answer):
            # it cannot stand as a cited claim, and reading its citation crashed the question.
            kept = [c for c in checks if c.claim and c.supported and c.cites]
    if kept:
        cands = [(c.cites[0], c.text, " > ".join(passages[c.cites[0] - 1].heading)) for c in kept]
        confidence = float(max(quote_score(question, cands, embedder)))
        # A verified draft answers only when it names something the question does not (its key span:
        # an option, function, path, number ...). A fine-tuned model learns the form "<the question>
        # ... [1]" and can fill it with the question's words and common ones ("... depends on the
        # encoding scheme used [1]"), which every claim check passes and the quote score rates high
        # for echoing the question (bench/RESULTS.md, finding 40).
        answers = confidence >= s.quote_answered and any(key_span(c.text, question) for c in kept)
        if answers or mode == "generate":
            shown = " ".join(text[c.start:c.end].strip() for c in kept)
            _show(result, shown, passages, embedder, s, "generated", "answered" if answers else "uncertain", confidence)
            return
    if mode == "generate":
        _show(result, "", [], embedder, s, "generated", "uncertain", 0.0, notice=UNCHECKED)
        return
    asked = result.standalone_question or question
    k = key_answer(asked, passages, embedder, stats or TermStats(), relevance, follow_up=question, reader=reader)
    read = k is not None and "read" in k.features
    status = "not_found" if k is None else key_status(
        k.answerable, k.right, k.features["top_quote"], not_found=s.key_not_found_read if read else s.key_not_found,
        answered=s.key_answered_read if read else s.key_answered, quote_answered=s.quote_answered,
        yes_no=asks_yes_no(asked))
    if status == "not_found":
        _show(result, NOT_FOUND, [], embedder, s, "not_found", "not_found", k.right if k else 0.0)
    elif status == "answered":
        _show(result, k.text, passages, embedder, s, "extractive", "answered", k.right)
        result.key = k.span
    else:
        _show(result, k.quote, passages, embedder, s, "extractive", "uncertain", k.right, notice=UNCERTAIN)


def _show(result: Answer, text: str, passages: Sequence[Hit], embedder, s, mode: str, status: str,
          confidence: float, notice: str = "") -> None:
    """Set what `result` shows: `text` with its citations checked, under `notice` when it is not an answer."""
    text, citations, invalid = check_citations(text, passages, embedder, s.weak_support) if passages else (text, [], [])
    result.notice = notice
    result.answer = "\n".join(t for t in (notice, text) if t)
    result.citations, result.invalid_citations = citations, invalid
    result.mode, result.status, result.confidence = mode, status, round(confidence, 4)
    result.not_found = status == "not_found"
    if result.generated is not None and result.generated.strip() == result.answer.strip():
        result.generated = None  # shown as it was generated: nothing was replaced


def ask(
    ws: Workspace,
    question: str,
    user: str | None = None,
    collections: Sequence[str] | None = None,
    documents: Sequence[str | int] | None = None,
    kinds: Sequence[str] | None = None,
    k: int | None = None,
    adapter: str | None = "active",
    history: Sequence[dict] | None = None,
    on_token: Callable[[str], None] | None = None,
    llm=None,
    embedder=None,
    mode: str | None = None,
    stop=None,
    surface: str = "cli",
) -> Answer:
    """Answer `question` from the documents `user` may read.

    adapter: "active" (the workspace's active adapter, if any), None (base model) or a name.
    history: earlier turns [{"role": "user"|"assistant", "content": ...}] of this conversation.
    documents, kinds: search's filters (retrieval.search.search), as POST /v1/search takes them.
    on_token: called with each generated piece as it arrives (streaming).
    mode: "auto" (default from settings: generate, then quote the passages instead when the
    generated answer has no well-supported citation), "generate" (the model's text only, as
    evaluation wants it) or "extractive" (quote the passages, no generation).
    stop: a threading.Event; once set, generation ends after the current token (client gone).
    surface: where the question came from (app | cli | api), for the audit record every answer gets.
    Raises AccessDenied for an unknown user, LookupError (one text for both) for an adapter that
    does not exist or that the user may not use, QuestionTooLong (a ValueError) for a question the
    prompt cannot hold.
    """
    from archivist.models import embedder_for
    from archivist.retrieval.llm import llm_for

    t0 = time.perf_counter()
    s = ws.settings
    mode = mode or s.answer_mode
    check_question(question, llm.count_tokens if llm else None, s)  # before any search or generation
    # Unknown and forbidden adapters fail before any work, with one message for both.
    chosen = adapters.resolve(ws, user, adapter)
    embedder = embedder or embedder_for(s)
    standalone = standalone_question(question, history)
    hits = search(ws, standalone, k=max(k or s.top_k, 1) * 2, user=user, collections=collections, documents=documents,
                  kinds=kinds, embedder=embedder)
    result = Answer(question=question, answer="", citations=[], passages=[], standalone_question=standalone, model=s.llm)
    # The gates' word statistics are those of the collections searched, not the whole workspace's:
    # a member's "not found" must not depend on what collections they cannot read hold.
    scope = statistics_scope(ws, user, collections)
    relevance = answerability(ws, standalone, hits, scope)
    if relevance < s.min_relevance:
        result.answer, result.not_found, result.mode, result.status = NOT_FOUND, True, "not_found", "not_found"
        if on_token:
            on_token(NOT_FOUND)
        result.seconds = time.perf_counter() - t0
        audit.question(ws, result, user, surface, collections, documents=documents, kinds=kinds)
        return result
    llm = llm or llm_for(s)
    budget = min(llm.context_window, MAX_CONTEXT) - min(s.max_new_tokens, ANSWER_ROOM)
    fixed = llm.count_tokens(llm.render(build_messages(question, [])))
    if fixed > budget:  # a model with a small window: not even the question fits
        raise QuestionTooLong(f"the question does not fit the prompt of {s.llm!r} ({fixed:,} of {budget:,} tokens)")
    passages = pack(hits, llm.count_tokens, budget, question, fixed=fixed)[: k or s.top_k]
    result.passages = list(passages)
    stats: dict = {}
    if mode == "extractive":
        text = ""
    else:
        pieces, lineages = [], {}
        result.adapter = chosen.name if chosen else None  # the adapter that really generates this answer
        if on_token:  # a draft is shown as it comes: recorded before its first token
            result.mode = mode
            audit.question(ws, result, user, surface, collections, started=True, documents=documents, kinds=kinds)
        for piece in llm.stream(build_messages(question, passages), max_new_tokens=s.max_new_tokens, stats=stats, stop=stop,
                                adapter=chosen):
            pieces.append(piece)
            if on_token:
                withhold_lost(ws, user, passages, result.adapter, lineages)  # a revoke stops the draft before its next piece
                on_token(piece)
        text = "".join(pieces).strip()
    reader = None
    if mode == "auto" and s.read_quotes:
        reader = lambda q, texts: reading(llm, q, texts)  # noqa: E731
    settle(result, question, passages, text, mode, embedder, s, stats=term_stats(ws, standalone, scope), relevance=relevance,
           reader=reader)
    result.prompt_tokens = stats.get("prompt_tokens", 0)
    result.completion_tokens = stats.get("completion_tokens", 0)
    result.seconds = time.perf_counter() - t0
    audit.question(ws, result, user, surface, collections, documents=documents, kinds=kinds)
    return result


def withhold_lost(ws: Workspace, user: str | None, passages: Sequence[Hit], adapter: str | None = None,
                  lineages: dict | None = None) -> None:
    """Raise AccessDenied when `user` (None: the acting user) can no longer read a collection one of
    `passages` came from, or one `adapter` (the one writing the answer) learned from: the grant was
    revoked while the answer was prepared. `ask` checks before each draft piece it hands to on_token,
    so a streamed draft stops at the revoke instead of reaching its end; the API and the chat page
    check the finished answer again before sending or saving it (`withhold_unsaved`), as
    `conversations.messages` withholds it afterwards. `lineages`: kept across a stream's pieces
    (`answer_sources`), so the adapter's lineage is read once, not before every token."""
    from archivist.conversations import answer_sources, readable_sources

    drawn, _ = answer_sources(ws, {p.collection for p in passages}, adapter, lineages)
    lost = sorted(drawn - readable_sources(ws, user))
    if lost:
        raise access.AccessDenied(f"user {access.current_user(ws, user)!r} lost read access to {', '.join(lost)} "
                                  "while the answer was prepared; the answer drew on it and is withheld")


def withhold_erased(ws: Workspace, passages: Sequence[Hit]) -> None:
    """Raise LookupError when a document one of `passages` came from was erased (`archivist erase`)
    while the answer was prepared, or is being erased (`audit.erased_documents`): erase scrubs the
    stored copies of its text that exist when it runs, so the answer must be neither sent nor saved.
    Check it in the transaction that saves the answer, so that an erase starting after that commit
    finds the saved copy."""
    erased = audit.erased_documents(ws, [p.document_id for p in passages])
    if erased:
        raise LookupError(f"{', '.join(sorted(set(erased.values())))} was erased while the answer was prepared; "
                          "the answer drew on it and is withheld")


def withhold_unsaved(ws: Workspace, user: str | None, passages: Sequence[Hit], adapter: str | None = None) -> None:
    """The check every surface makes before it sends or saves a finished answer drawn from `passages`
    (and written by `adapter`): raise AccessDenied when `user` lost read access to a collection they
    came from or the adapter learned from (`withhold_lost`),
    LookupError when a document they came from was erased meanwhile (`withhold_erased`). Call it in the
    transaction that saves the answer (the chat page, the API), so that neither an erase nor a revoke
    committed after it misses the saved copy."""
    withhold_lost(ws, user, passages, adapter)
    withhold_erased(ws, passages)


def stored_answer(answer: Answer, question: str, collection: str | None) -> dict:
    """The keyword arguments of `conversations.add_message` that store `answer` as the assistant's
    message, as the chat page shows it again (its passages' text, the status and notice, the claims
    dropped from a draft, the time) and feedback reads it (the question, the one collection asked)."""
    data = answer_json(answer)
    # each passage's collection too: who may still read the stored answer follows from it (conversations.messages)
    passages = [{**p, "text": h.text, "collection": h.collection} for p, h in zip(data["passages"], answer.passages)]
    return {"role": "assistant", "content": answer.answer, "citations": data["citations"], "adapter": answer.adapter,
            "meta": {"not_found": answer.not_found, "passages": passages, "mode": data.get("mode"),
                     "generated": data.get("generated"), "status": answer.status, "notice": answer.notice,
                     "confidence": answer.confidence, "claims": data.get("claims"), "question": question,
                     "collection": collection, "seconds": round(answer.seconds, 2)}}


def answer_json(a: Answer) -> dict:
    """The --json shape of DESIGN.md: answer, citations [{n, document, page, chunk_id, score, text}], and more."""
    return {
        "answer": a.answer,
        "citations": [{"n": c.n, "document": c.document, "page": c.page, "chunk_id": c.chunk_id, "score": c.score,
                       "heading": list(c.heading), "text": c.text, "support": c.support, "weak": c.weak, "inferred": c.inferred,
                       "collection": c.collection, "bbox": list(c.bbox) if c.bbox else None,
                       "boxes": [list(b) for b in c.boxes]} for c in a.citations],
        "not_found": a.not_found,
        "passages": [{"n": i, "document": h.document, "page": h.page, "chunk_id": h.chunk_id, "score": round(h.score, 6),
                      "heading": list(h.heading)} for i, h in enumerate(a.passages, start=1)],
        "invalid_citations": a.invalid_citations,
        "standalone_question": a.standalone_question,
        "adapter": a.adapter,
        "model": a.model,
        "mode": a.mode,
        "status": a.status,
        "notice": a.notice,
        "confidence": a.confidence,
        "key": a.key,
        "generated": a.generated,
        "claims": [{k: c[k] for k in ("text", "cites", "supported", "reason")} for c in a.claims if c.get("claim", True)],
        "usage": {"prompt_tokens": a.prompt_tokens, "completion_tokens": a.completion_tokens},
        "seconds": round(a.seconds, 3),
    }


def hit_json(h: Hit) -> dict:
    d = asdict(h)
    d["heading"] = list(h.heading)
    return d
