"""Request and response bodies. They follow OpenAI's shapes, plus archivist's extra fields
(`collection(s)`, `k`, `answer_mode` in; `citations`, `passages` out). Unknown request fields are
accepted and ignored, as OpenAI clients send many (temperature, top_p, seed ...): decoding here is
greedy, so runs repeat exactly; a near miss of an archivist field (`colection`) is refused, and
archivist's own bodies (search, feedback, keys) refuse every unknown field. Those whose effect a client relies on (tools, stop, logprobs ...) are
refused when they ask for it (api/chat.py, UNSUPPORTED).
"""

from __future__ import annotations

from difflib import get_close_matches
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from archivist.ingest.readers import LABELS

MAX_TOKENS = 2048  # most tokens one answer may ask for
MAX_INPUTS = 2048  # most texts in one embeddings request (OpenAI's limit too)
ROW_ID_MAX = 2**53 - 1  # the largest id taken: past SQLite's 2**63 one was an OverflowError (500); 2**53 is exact in JSON


def _json_int(v):
    """JSON Schema's integer: 5 and 5.0, never "5" or true (pydantic's lax mode would take those)."""
    if isinstance(v, (bool, str)):
        raise ValueError("must be an integer")
    return v


def _row_id(v):
    """An id within ROW_ID_MAX (a bigger one reached SQLite as an OverflowError, a 500)."""
    if isinstance(v, int) and v > ROW_ID_MAX:
        raise ValueError(f"{v} is no id: ids are at most {ROW_ID_MAX}")
    return v


def _conversation_ref(v):
    """A conversation's id or "new", as JSON gives them: never true (lax mode made it conversation 1,
    saving there) nor "5" nor another word (pydantic named its union's branches: `conversation.int`)."""
    whole = (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())
    if not (v is None or v == "new" or whole):
        got = repr(v)
        raise ValueError(f'must be the id of one of your conversations (an integer) or "new", got '
                         f'{got[:60]}{"…" if len(got) > 60 else ""}')
    return v


def _row_id_schema(schema: dict) -> None:
    """_row_id's bound in the schema of a field that is an id or something else (`"new"`)."""
    for branch in schema.get("anyOf", []):
        if branch.get("type") == "integer":
            branch["maximum"] = ROW_ID_MAX


Bool = StrictBool  # JSON 0 is not `false`: a client bug should be an error, not a guess
# A collection's name is not empty nor blank: api/deps.py requested_collections refuses one (422
# invalid_parameter, its own words); the schema says so, that a client generated from it knows
NAMED = {"minLength": 1, "pattern": r"\S"}
CollectionName = Annotated[str, Field(json_schema_extra=NAMED)]


def _unicode(v):
    """Refuse text that is not Unicode: JSON may spell a lone surrogate (`"\\ud800"`), which Python decodes
    into a str that no tokenizer, SQLite or UTF-8 writer takes (it was a 500 from the tokenizer)."""
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError(f"text must be valid Unicode: a lone surrogate {v[e.start]!r} at character {e.start}") from None
    elif isinstance(v, (list, tuple)):
        for x in v:
            _unicode(x)
    elif isinstance(v, dict):
        for x in v.values():
            _unicode(x)
    return v


NEAR_MISS = 0.85  # difflib's ratio (case ignored) from which an unknown field reads as a misspelled extra field:
# `colection` 0.95, `answer-mode` 0.91, `conversation_id` 0.89; not `correction` (0.8 to collection)
HINT = 0.6  # the ratio from which a refused field's nearest known one is suggested (difflib's default)


def _nearest(name: str, fields, cutoff: float) -> str | None:
    """The field of `fields` that `name` most likely misspells (case ignored), or None."""
    near = get_close_matches(name.lower(), list(fields), n=1, cutoff=cutoff)
    return near[0] if near else None


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")
    # archivist's extra fields of a body in OpenAI's shape, which accepts (ignores) unknown fields:
    # an unknown field that nearly spells one of these is refused, not ignored
    archivist_fields: ClassVar[tuple[str, ...]] = ()

    _text = field_validator("*", mode="before")(_unicode)  # every field of every request body

    @model_validator(mode="before")
    @classmethod
    def _unknown_fields(cls, data):
        """Refuse (422 naming the field and the nearest known one) an unknown field of a body that forbids
        them (archivist's own: search, feedback, keys), and on an OpenAI-shaped body one that nearly spells
        an archivist extra field (`colection`, `Collection`, `answer-mode`): ignored, a misspelled scope
        answered from every collection the caller may read. OpenAI's own fields are none of those near
        misses (tests/test_scopemend.py checks), so OpenAI clients' bodies pass as before."""
        if not isinstance(data, dict):
            return data
        forbid = cls.model_config.get("extra") == "forbid"
        errors = []
        for name in data:
            if name in cls.model_fields:
                continue
            near = _nearest(name, cls.model_fields if forbid else cls.archivist_fields, HINT if forbid else NEAR_MISS)
            if not (forbid or near):
                continue
            hint = f": did you mean {near!r}?" if near else ""
            why = (f"its fields: {', '.join(cls.model_fields)}" if forbid else
                   f"archivist's fields are spelled exactly: {', '.join(cls.archivist_fields)}")
            errors.append(InitErrorDetails(type=PydanticCustomError("unknown_field", f"not a field of this body{hint} ({why})"),
                                           loc=(name,), input=data[name]))
        if errors:  # a ValidationError keeps each field's loc: the 422 names the field (api/errors.py)
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return data


class ContentPart(_Open):
    type: str = Field(description="'text' parts are read; others (images) are refused")
    text: str | None = None


class ChatMessage(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None


class StreamOptions(_Open):
    include_usage: Bool = False


class ChatRequest(_Open):
    archivist_fields: ClassVar[tuple[str, ...]] = ("collection", "collections", "documents", "kinds", "k",
                                                   "answer_mode", "conversation", "verified_only")
    model: str = Field(description="the base model's name, an adapter's name, or 'archivist' (the active adapter)",
                       examples=["archivist"])
    messages: list[ChatMessage] = Field(min_length=1, description="the last must be the user's question; earlier turns are history",
                                        examples=[[{"role": "user", "content": "How many vacation days do employees get?"}]])
    stream: Bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    n: int | None = Field(None, ge=1, le=1, description="only 1 is supported")
    collection: CollectionName | None = Field(None, description="archivist: answer from this collection only")
    collections: list[CollectionName] | None = Field(None, description="archivist: answer from these collections only")
    # filtered as POST /v1/search filters: an unknown document is 404, an unknown kind 422
    documents: list[str] | None = Field(None, description="archivist: answer from these documents (names or ids) only")
    kinds: list[Literal[tuple(LABELS)]] | None = Field(None, description="archivist: answer from these file kinds only")
    k: int | None = Field(None, ge=1, le=20, description="archivist: passages given to the model")
    answer_mode: Literal["auto", "generate", "extractive"] | None = Field(
        None, description="archivist: auto (generate; quote the passages when unsupported) | generate | extractive")
    conversation: int | Literal["new"] | None = Field(
        None, json_schema_extra=_row_id_schema, description="archivist: save the question and the answer in this conversation of yours, or in a new one "
                          "(\"new\"); the response then names `conversation` and the answer's `message_id`, which "
                          "POST /v1/feedback rates. Default: nothing is saved")
    verified_only: Bool = Field(
        True, description="archivist: with `stream: true`, send only the checked answer (one content chunk when it is "
                          "ready); false streams the model's draft as it is written and, when the check changed it, a "
                          "final content chunk with the checked answer")

    _ints = field_validator("max_tokens", "max_completion_tokens", "n", "k", mode="before")(_json_int)
    _conversation = field_validator("conversation")(_row_id)
    _conversation_ref = field_validator("conversation", mode="before")(_conversation_ref)


class EmbeddingRequest(_Open):
    model: str = Field(examples=["all-minilm-l6-v2"])
    input: str | list[str] = Field(description="a text or a list of texts (token arrays are not supported)")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)

    _ints = field_validator("dimensions", mode="before")(_json_int)


class SearchRequest(_Open):
    model_config = ConfigDict(extra="forbid")  # archivist's own route: `colection` is a mistake, not OpenAI's field
    query: str = Field(min_length=1)
    k: int = Field(10, ge=1, le=100)
    collection: CollectionName | None = None
    collections: list[CollectionName] | None = None
    documents: list[str] | None = Field(None, description="restrict to these document names or ids")
    # a kind no reader has is refused (422), not a filter that silently finds nothing
    kinds: list[Literal[tuple(LABELS)]] | None = Field(None, description="restrict to these file kinds")
    mode: Literal["hybrid", "dense", "lexical"] = "hybrid"

    _ints = field_validator("k", mode="before")(_json_int)

    @field_validator("query")
    @classmethod
    def _words(cls, v: str) -> str:
        """A blank query (spaces, newlines) was answered 200 with no hits, which reads as "nothing in
        the documents": refused as the empty one is (422), so a client's bug is seen."""
        if not v.strip():
            raise ValueError("the query is blank: give words to search for")
        return v


# -- responses -------------------------------------------------------------------------------


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    kind: Literal["chat", "adapter", "embedding"]
    base_model: str | None = None
    active: bool = False
    adapter: str | None = Field(None, description="for 'archivist': the active adapter it stands for (null: the base model)")
    stale: str | None = Field(None, description="for an adapter or an adapted embedder: why it should be retrained (trained on a deleted document)")


class ModelDeleted(BaseModel):
    """DELETE /v1/models/{id}: OpenAI's shape, plus whether it was the active adapter."""

    id: str
    object: Literal["model"] = "model"
    deleted: bool = True
    was_active: bool = Field(False, description="it was the active adapter: the chat now uses the base model (an "
                                                "adapted embedder: every collection was re-embedded with the base)")
    notes: list[str] = Field(default_factory=list, description="what an admin must still do: an LLM server "
                                                                "(ARCHIVIST_LLM_URL) that could not be asked to unload it")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


class PassageOut(BaseModel):
    n: int
    document: str
    page: int | None = None
    chunk_id: int
    score: float
    heading: list[str] = Field(default_factory=list, description="archivist: the section the passage is in, its heading "
                                                                 "path, outermost first (the source's label)")


class CitationOut(PassageOut):
    """A cited passage: a passage of the prompt, with its text and how well it supports the answer."""

    text: str
    support: float
    weak: bool
    inferred: bool
    collection: str
    bbox: list[float] | None = Field(None, description="archivist: the passage's box on its page: [x0, y0, x1, y1] as "
                                                        "fractions of the page, origin top left (PDFs, scans, images)")
    boxes: list[list[float]] = Field(default_factory=list, description="archivist: the box of each of its lines, same units")


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    citations: list[CitationOut] = Field(description="archivist: the passages the answer cites, by their [n]")
    passages: list[PassageOut] = Field(description="archivist: every passage that was in the prompt, numbered from 1")
    not_found: bool = Field(description="archivist: the documents do not answer the question")
    answer_mode: str = Field(description="archivist: what produced the answer: generated | extractive | not_found")
    status: Literal["answered", "uncertain", "not_found"] = Field(
        description="archivist: answered (checked, confident) | uncertain (the closest passage, quoted as it stands "
                    "and not confirmed to answer; the answer text says so) | not_found")
    notice: str = Field("", description="archivist: the line the answer text starts with when it is not an answer "
                                         "(uncertain: the closest passage follows, not confirmed to answer), else empty")
    confidence: float = Field(description="archivist: the score the status was decided on")
    key: str = Field("", description="archivist: the short answer shown first, before a quote shown as the answer "
                                     "(a command, setting, number ...); empty when none is shown")
    invalid_citations: list[int] = Field(description="archivist: [n] marks the model wrote that point to no passage (removed)")
    conversation: int | None = Field(None, description="archivist: with `conversation` in the request, where it was saved")
    message_id: int | None = Field(None, description="archivist: with `conversation`, the saved answer's id (for POST /v1/feedback)")


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


class SearchHit(BaseModel):
    model_config = ConfigDict(extra="allow")
    chunk_id: int
    document_id: int
    document: str
    collection: str
    text: str
    score: float
    page: int | None = None
    heading: list[str]


class SearchResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[SearchHit]


class DocumentOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int
    object: Literal["document"] = "document"
    name: str
    collection: str
    kind: str
    pages: int | None = None
    size: int
    chunks: int
    status: str


PAGE_LIMIT, PAGE_MAX = 100, 1000  # items per page of a list: by default, at most


class Page(BaseModel):
    """The paging fields of a list, as OpenAI's lists have them: pass `last_id` as `?after=` for the next page."""

    object: Literal["list"] = "list"
    first_id: int | str | None = Field(None, description="the id of the first item of this page")
    last_id: int | str | None = Field(None, description="the id of the last item: `?after=` this for the next page")
    has_more: bool = Field(False, description="whether items follow this page")


def page(items: list[dict], limit: int) -> dict:
    """A list answer from up to `limit + 1` items, newest first (the extra one only says that more follow)."""
    data = items[:limit]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": len(items) > limit}


class DocumentList(Page):
    data: list[DocumentOut]


class UploadResult(BaseModel):
    object: Literal["document"] = "document"
    id: int | None
    name: str
    collection: str
    status: str = Field(description="added | updated | unchanged")
    chunks: int
    seconds: float
    reread: str | None = Field(None, description="set, beside status updated, when the file had not changed and was "
                                                  "read again only because its reader is newer (\"html reader 6 -> 7\")")


class IngestJob(BaseModel):
    object: Literal["ingest_job"] = "ingest_job"
    id: str
    name: str
    collection: str
    status: str = Field(description="running | added | updated | unchanged | failed")
    document_id: int | None = None
    chunks: int = 0
    reread: str | None = Field(None, description="set, beside status updated, when the file had not changed and was "
                                                  "read again only because its reader is newer (\"html reader 6 -> 7\")")
    reason: str | None = Field(None, description="why the document could not be ingested (status failed)")
    created: int
    finished: int | None = None
    seconds: float | None = None


class IngestJobList(Page):
    data: list[IngestJob]


class Deleted(BaseModel):
    id: int
    object: Literal["document"] = "document"
    name: str
    collection: str
    deleted: bool = True


def dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")
