"""POST /v1/chat/completions: grounded answers from the documents, streamed or whole.

The last message is the question, earlier user/assistant turns are the history (system messages
are not passed on: archivist's own system prompt is what keeps answers on the passages). `model`
picks the adapter; `collection` / `collections` / `documents` / `kinds` (search's filters) / `k` /
`answer_mode` are archivist's extra body fields. The answer cites passages as [n] in its text, and
the response carries them structured in `citations` (and every passage of the prompt in
`passages`); a stream sends them on its final chunk.

Each request becomes a job on the server's GenerationQueue and runs `ask` in a thread of its own
with its own SQLite connection; pieces come back to the event loop through an asyncio.Queue. When
the client goes away the job's stop event is set: a waiting job leaves the queue, a running one
stops generating after the current token.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import json
import threading
import time
import uuid
from dataclasses import dataclass

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from archivist.api import schemas as S
from archivist.api.deps import Server, requested_collections, user, workspace
from archivist.api.deps import server as server_of
from archivist.api.errors import APIError, error_body, internal_message, responses
from archivist.api.models import adapter_for_model
from archivist.api.queue import Ticket
from archivist.api.search import require_documents
from archivist.settings import Settings
from archivist.workspace import Workspace, transaction

POLL_S = 0.5  # how often a waiting request looks whether its client is still there
KEEPALIVE_S = 10.0  # an SSE comment this often while queued or writing a verified answer, so proxies keep the stream open
REPLACED = "\n\n(The draft above was not supported by the passages; the checked answer:) "


@dataclass
class ChatJob:
    settings: Settings  # the server's, with this request's max_new_tokens
    user: str
    question: str
    history: list[dict]
    collections: list[str] | None
    k: int | None
    adapter: str | None
    mode: str | None
    ticket: Ticket
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    conversation: int | str | None = None  # save the exchange there ("new": in a new one of the user's)
    saved: dict = dataclasses.field(default_factory=dict)  # then: {"conversation", "message_id"}
    authorization: str | None = None  # the request's `Authorization` header: its key is checked again as the answer is written
    documents: list[str] | None = None  # search's filters (POST /v1/search), checked before the queue
    kinds: list[str] | None = None


def message_text(m: S.ChatMessage) -> str:
    """The text of a message; content parts other than text are refused (this is a text model)."""
    if m.content is None:
        return ""
    if isinstance(m.content, str):
        return m.content
    texts = []
    for part in m.content:
        if part.type != "text":
            raise APIError(400, f"content parts of type {part.type!r} are not supported; send text", "unsupported_content", "messages")
        texts.append(part.text or "")
    return "\n".join(texts)


def split_messages(messages: list[S.ChatMessage]) -> tuple[str, list[dict]]:
    """(question, history): the last user message and the user/assistant turns before it."""
    turns = [{"role": m.role, "content": message_text(m)} for m in messages if m.role in ("user", "assistant")]
    if not turns or turns[-1]["role"] != "user":
        raise APIError(400, "the last user/assistant message must be the user's question", "no_question", "messages")
    question = turns[-1]["content"].strip()
    if not question:
        raise APIError(400, "the question (the last user message) is empty", "empty_question", "messages")
    return question, turns[:-1]


# OpenAI request fields whose effect a client relies on and that this server cannot give. Sent "off" (null,
# false, [], "none", {"type": "text"}) they are accepted, as OpenAI clients send some that way; asking for
# the effect is a 400 naming the field, not an answer that silently lacks it (the sampling settings,
# `temperature` and the like, are only ignored: greedy decoding is a fine answer to any of them).
UNSUPPORTED = {
    "tools": "tool calling is not supported: answers come from the documents, with citations",
    "functions": "function calling is not supported: answers come from the documents, with citations",
    "tool_choice": "tool calling is not supported: answers come from the documents, with citations",
    "function_call": "function calling is not supported: answers come from the documents, with citations",
    "logprobs": "logprobs are not supported: the answer is checked against the passages after it is written; "
                "`citations[].support` and `confidence` say how well it is supported",
    "top_logprobs": "logprobs are not supported; `citations[].support` and `confidence` say how well the answer is supported",
    "response_format": "structured (JSON) output is not supported: the answer is prose citing passages as [n], "
                       "checked against them",
    "stop": "stop sequences are not supported: an answer cut at your string would keep citations and a check made on "
            "text you never get; use max_tokens (the answer's `finish_reason` is then `length`)",
    "logit_bias": "logit_bias is not supported",
    "modalities": "output other than text is not supported",
    "audio": "audio output is not supported",
}


def _off(name: str, value) -> bool:
    """Whether an UNSUPPORTED field's value asks for nothing."""
    if value in (None, False, [], {}, ""):  # False also stands for 0 (top_logprobs)
        return True
    if name in ("tool_choice", "function_call"):
        return value in ("none", "auto")  # with no tools, "auto" calls none
    if name == "response_format":
        return isinstance(value, dict) and value.get("type") == "text"
    if name == "modalities":
        return value == ["text"]
    return False


def refuse_unsupported(body: S.ChatRequest) -> None:
    """Raise APIError 400 `unsupported_parameter`, naming the field, for the first UNSUPPORTED field that asks
    for its effect."""
    for name, value in (body.model_extra or {}).items():
        if name in UNSUPPORTED and not _off(name, value):
            raise APIError(400, f"{name}: {UNSUPPORTED[name]}", "unsupported_parameter", name)


def run_job(server, job: ChatJob, on_token) -> object | None:
    """Wait for the job's turn, then answer it; returns the Answer, or None when the client left
    while it waited. Always gives the queue slot back."""
    from archivist.retrieval.answer import ask, withhold_unsaved

    outcome = None  # what /health counts this generation as, once it started
    try:
        if not job.ticket.wait_turn(job.stop):
            return None
        outcome = "failed"  # unless it gets to the end below: an error, a refusal, the model's failure
        extra = {"mode": job.mode} if job.mode and "mode" in inspect.signature(ask).parameters else {}
        with server.workspace(job.settings) as ws:
            def piece(text: str) -> None:  # a key revoked meanwhile stops the answer before its next piece is handed on
                withhold_revoked(ws, job)
                on_token(text)

            answer = ask(ws, job.question, user=job.user, collections=job.collections, documents=job.documents,
                         kinds=job.kinds, k=job.k, adapter=job.adapter, history=job.history, on_token=piece,
                         stop=job.stop, surface="api", **extra)
            saving = job.conversation is not None and not job.stop.is_set()
            # an extractive answer has no pieces: its key is checked here too, before the transaction, as the
            # check records a refused key on the audit log, which that transaction's rollback would take back
            withhold_revoked(ws, job)
            with transaction(ws.db) if saving else contextlib.nullcontext():  # checked and saved at once
                withhold_unsaved(ws, job.user, answer.passages, answer.adapter)  # revoked (403) or erased (404) meanwhile: nothing saved
                if saving:
                    job.saved = save_exchange(ws, job, answer)
        outcome = "cancelled" if job.stop.is_set() else "completed"
        return answer
    finally:
        if outcome is not None:
            server.queue.mark(outcome)
        job.ticket.release()


def withhold_revoked(ws: Workspace, job: ChatJob) -> None:
    """Raise APIError 401 `invalid_api_key` when the key the request came with no longer opens the API for
    its user (revoked, or its user removed, while the answer was prepared): as a revoked grant ends an
    answer (retrieval.answer.withhold_lost), a revoked key ends it at its next piece, and nothing is saved.
    The check is the Guard's own (api/guard.authenticate): a hash and one indexed read per piece."""
    from archivist.api.guard import INVALID_KEY, authenticate

    if job.authorization is not None and authenticate(ws, job.authorization)[0] != job.user:
        raise APIError(401, f"{INVALID_KEY[0]}: the key was revoked while the answer was prepared; the answer is withheld",
                       INVALID_KEY[1], headers={"WWW-Authenticate": "Bearer"})  # as the Guard's 401


def save_exchange(ws: Workspace, job: ChatJob, answer) -> dict:
    """Save the question and its answer in the job's conversation (archivist/conversations.py), as the
    chat page saves them, so that the answer can be rated (POST /v1/feedback). Returns
    {"conversation", "message_id"} (the answer's id)."""
    from archivist import conversations
    from archivist.retrieval.answer import stored_answer

    conv = job.conversation
    if conv == "new":
        conv = conversations.start_conversation(ws, job.user)
    conversations.add_message(ws, conv, job.user, "user", job.question)
    one = job.collections[0] if job.collections and len(job.collections) == 1 else None
    mid = conversations.add_message(ws, conv, job.user, **stored_answer(answer, job.question, one))
    return {"conversation": conv, "message_id": mid}


def start(server, job: ChatJob) -> asyncio.Queue:
    """Run the job in a thread; its events arrive on the returned queue:
    ("token", str)*, then one of ("done", Answer), ("cancelled", None), ("error", exception)."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()

    def put(item):
        try:
            loop.call_soon_threadsafe(events.put_nowait, item)
        except RuntimeError:  # the event loop is gone (server shutting down): nobody to tell
            job.stop.set()

    def work():
        try:
            answer = run_job(server, job, lambda piece: put(("token", piece)))
            put(("cancelled", None) if answer is None else ("done", answer))
        except BaseException as e:  # handed to the request, which turns it into an error reply
            put(("error", e))

    threading.Thread(target=work, name="archivist-chat", daemon=True).start()
    return events


def completion_extras(answer) -> dict:
    """archivist's extra fields of a completion: citations, passages, not_found, answer_mode, status, notice,
    confidence, key, invalid_citations."""
    from archivist.retrieval.answer import answer_json

    j = answer_json(answer)
    mode = getattr(answer, "mode", None) or ("not_found" if answer.not_found else "generated")
    return {"citations": j["citations"], "passages": j["passages"], "not_found": answer.not_found, "answer_mode": mode,
            "status": j["status"], "notice": j["notice"], "confidence": j["confidence"], "key": j["key"],
            "invalid_citations": j["invalid_citations"]}


def finish_reason(answer, max_tokens: int) -> str:
    """'length' when the text the client gets is the model's and was cut at max_tokens; 'stop' otherwise, also
    when a cut draft was replaced by quoted passages (extractive): that text is whole, and a client that
    retries a 'length' with more tokens would only wait for the same quote again."""
    return "length" if answer.mode == "generated" and answer.completion_tokens >= max_tokens else "stop"


def usage(answer) -> dict:
    return {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens,
            "total_tokens": answer.prompt_tokens + answer.completion_tokens}


async def _error_reply(request: Request, exc: BaseException) -> Response:
    """The reply to `exc`, raised while the answer was prepared, streamed or not: the app's own handler's
    (api/errors.install: status, code, headers, a refusal on the audit log), as any route gets it, so a
    locked workspace is 503 `workspace_unavailable` in a stream too. A fault of the server there is
    `generation_failed` rather than `internal_error`, streamed or not, as /health counts it."""
    handlers = request.app.exception_handlers
    handler = next((handlers[c] for c in type(exc).__mro__ if c in handlers), handlers[Exception])
    reply = await handler(request, exc)  # a crash is logged there with its traceback
    if json.loads(reply.body)["error"]["code"] != "internal_error":
        return reply
    return JSONResponse(error_body(500, internal_message(exc, "generation failed"), "generation_failed"), status_code=500)


def _sse(obj) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


_STREAM_DOC = {200: {"description": "the completion; with `stream: true` a text/event-stream of chunks",
                     "content": {"text/event-stream": {"schema": {  # one server-sent event
                         "type": "object", "required": ["data"],
                         "properties": {"data": {"type": "string", "description": "a chat.completion.chunk as JSON, "
                                                 "an {\"error\": ...} object, or [DONE] at the end"},
                                        "event": {"type": "string"}}}}}}}

router = APIRouter(tags=["chat"])


@router.post("/v1/chat/completions", response_model=S.ChatResponse, responses={**responses(400, 403, 404, 429, 500), **_STREAM_DOC})
async def chat(body: S.ChatRequest, request: Request, ws: Workspace = Depends(workspace), who: str = Depends(user),
               server: Server = Depends(server_of)):
    """Answer the last user message from the documents the key's user may read, citing them as [n]."""
    from archivist.retrieval.answer import check_question

    refuse_unsupported(body)
    question, history = split_messages(body.messages)
    check_question(question, settings=server.settings)  # QuestionTooLong -> 400 before the queue, streaming or not
    adapter = adapter_for_model(ws, body.model, who)
    scope = requested_collections(ws, who, body.collection, body.collections)
    require_documents(ws, who, scope, body.documents)
    max_tokens = body.max_completion_tokens or body.max_tokens or server.settings.max_new_tokens
    if isinstance(body.conversation, int):  # one of the caller's, checked before the queue
        from archivist import conversations

        try:
            conversations.own(ws, body.conversation, who)
        except LookupError:
            raise APIError(404, f"no conversation {body.conversation} among yours", "conversation_not_found",
                           "conversation") from None
    job = ChatJob(settings=dataclasses.replace(server.settings, max_new_tokens=max_tokens), user=who,
                  question=question, history=history, collections=scope, documents=body.documents,
                  kinds=body.kinds, k=body.k, adapter=adapter,
                  mode=body.answer_mode, ticket=server.queue.admit(who),  # QueueFull, UserQueueFull -> 429 before anything runs
                  conversation=body.conversation, authorization=request.headers.get("authorization"))
    cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    try:
        events = start(server, job)
    except BaseException:
        job.ticket.release()
        raise
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(_stream(request, job, events, cid, created, body.model, max_tokens, include_usage,
                                         body.verified_only),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    finished = False
    try:
        while True:
            try:
                kind, value = await asyncio.wait_for(events.get(), POLL_S)
            except TimeoutError:
                if await request.is_disconnected():
                    return Response(status_code=499)  # nobody to read it; `finally` stops the job
                continue
            if kind == "token":
                continue
            finished = True
            if kind == "error":
                return await _error_reply(request, value)
            if kind == "cancelled":
                return Response(status_code=499)
            return {"id": cid, "object": "chat.completion", "created": created, "model": body.model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": value.answer},
                                 "finish_reason": finish_reason(value, max_tokens)}],
                    "usage": usage(value), **completion_extras(value), **job.saved}
    finally:
        if not finished:
            job.stop.set()


async def _stream(request: Request, job: ChatJob, events: asyncio.Queue, cid: str, created: int, model: str,
                  max_tokens: int, include_usage: bool, verified_only: bool = True):
    """The SSE body: a role chunk, content chunks, a final chunk with finish_reason and archivist's
    fields (citations, passages, not_found, answer_mode, status, answer), [usage], [DONE].

    verified_only: the content is the checked answer alone, sent when it is ready; otherwise the
    model's draft is streamed as it is written, followed by the checked answer when they differ."""

    def chunk(delta: dict, finish: str | None = None, **extra) -> str:
        return _sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra})

    finished = False
    streamed: list[str] = []
    try:
        yield chunk({"role": "assistant", "content": ""})
        last_sent = last_check = time.monotonic()
        while True:
            now = time.monotonic()
            if now - last_check > POLL_S:
                last_check = now
                if await request.is_disconnected():
                    return
            try:
                kind, value = await asyncio.wait_for(events.get(), POLL_S)
            except TimeoutError:
                if time.monotonic() - last_sent > KEEPALIVE_S:
                    last_sent = time.monotonic()
                    yield ": waiting for the model\n\n"
                continue
            if kind == "token":
                if not verified_only:
                    streamed.append(value)
                    last_sent = time.monotonic()
                    yield chunk({"content": value})
                elif time.monotonic() - last_sent > KEEPALIVE_S:  # the checked answer comes whole at the end
                    last_sent = time.monotonic()
                    yield ": writing the answer\n\n"
                continue
            finished = True
            if kind == "cancelled":
                return
            if kind == "error":
                yield _sse(json.loads((await _error_reply(request, value)).body))
                yield "data: [DONE]\n\n"
                return
            answer = value
            # A draft client saw the generated text; when the check changed it (sentences dropped, or
            # passages quoted instead), send the checked answer too, so the text holds what `citations` cite.
            if verified_only:
                yield chunk({"content": answer.answer})
            elif "".join(streamed).strip() != answer.answer:
                yield chunk({"content": REPLACED + answer.answer})
            yield chunk({}, finish_reason(answer, max_tokens), answer=answer.answer, **completion_extras(answer), **job.saved)
            if include_usage:
                yield _sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                            "choices": [], "usage": usage(answer)})
            yield "data: [DONE]\n\n"
            return
    finally:
        if not finished:  # the client went away (or the server is stopping): stop the generation
            job.stop.set()
