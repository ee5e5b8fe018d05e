"""Plain records passed between the stages. Framework objects become these at the edges."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Block:
    """One structural unit a reader found: a paragraph, a heading, a table row, a slide's text.

    `page` is the 1-based page, slide or sheet number where the format has one.
    `heading` is the heading path above the block, outermost first.
    `boxes` are where its text lies on the page (PDFs and images): (x0, y0, x1, y1) as fractions
    of the page's width and height, origin at the top left, one box per line.
    """

    text: str
    page: int | None = None
    heading: tuple[str, ...] = ()
    kind: str = "paragraph"  # paragraph | heading | row | slide | code
    boxes: tuple[tuple[float, float, float, float], ...] = ()


@dataclass
class Extracted:
    """What a reader returns: the document as ordered blocks."""

    blocks: list[Block]
    pages: int | None = None  # pages / slides / sheets, where the format has them
    title: str | None = None
    kind: str = "text"  # pdf, docx, html, markdown, text, csv, xlsx, pptx, image
    ocr: dict[int, float] = field(default_factory=dict)  # page -> mean OCR confidence, for pages read by OCR


@dataclass
class Chunk:
    """A piece of a document's extracted text, ready to embed.

    `start`/`end` are character offsets in the document's extracted text
    (blocks joined by BLOCK_SEP); `text` is exactly that slice.
    """

    seq: int
    text: str
    start: int
    end: int
    page: int | None
    heading: tuple[str, ...]
    n_tokens: int
    boxes: tuple[tuple[float, float, float, float], ...] = ()  # its blocks' boxes on `page` (see Block)


@dataclass
class Hit:
    """One retrieved chunk, with where it came from and how it ranked."""

    chunk_id: int
    document_id: int
    document: str  # the document's name (path as ingested)
    collection: str
    text: str
    score: float
    page: int | None = None
    heading: tuple[str, ...] = ()
    start: int = 0
    end: int = 0
    kind: str = ""
    dense_rank: int | None = None
    lexical_rank: int | None = None
    dense_score: float | None = None
    matched_terms: list[str] = field(default_factory=list)
    boxes: tuple[tuple[float, float, float, float], ...] = ()  # where its text lies on `page` (see Block)


@dataclass
class Citation:
    n: int
    document: str
    page: int | None
    chunk_id: int
    score: float
    text: str
    support: float = 0.0  # how well the cited sentences are backed by the passage (0..1)
    weak: bool = False
    collection: str = ""
    heading: tuple[str, ...] = ()
    inferred: bool = False  # the model cited nothing; attributed by support
    boxes: tuple[tuple[float, float, float, float], ...] = ()  # the passage's lines on `page` (see Block)

    @property
    def bbox(self) -> tuple[float, float, float, float] | None:
        """The box around all of `boxes` (page fractions, origin top left), None without boxes."""
        return box_union(self.boxes)


def box_union(boxes) -> tuple[float, float, float, float] | None:
    """The smallest box holding every (x0, y0, x1, y1) in `boxes`; None for none."""
    if not boxes:
        return None
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


@dataclass
class Answer:
    question: str
    answer: str
    citations: list[Citation]
    passages: list[Hit]  # every passage that was in the prompt, numbered from 1
    not_found: bool = False
    standalone_question: str | None = None
    adapter: str | None = None
    model: str = ""
    invalid_citations: list[int] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    mode: str = "generated"  # what produced the answer: generated | extractive | not_found
    status: str = "answered"  # answered (checked and confident) | uncertain (closest passages) | not_found
    confidence: float = 0.0  # the score `status` was decided on (retrieval/answer.py `settle`)
    claims: list[dict] = field(default_factory=list)  # retrieval/verify.py ClaimCheck per generated sentence
    generated: str | None = None  # the model's own text (a draft) when what is shown differs from it
    notice: str = ""  # the line `answer` starts with when it is not an answer (answer.UNCERTAIN, UNCHECKED), else ""
    key: str = ""  # the short answer shown first, before a quote shown as the answer (keyanswer.key_span); else ""

    @property
    def body(self) -> str:
        """What `answer` shows under its notice: the quote of an uncertain answer ("" after UNCHECKED)."""
        return under_notice(self.answer, self.notice)

    @property
    def unchecked(self) -> bool:
        """Generate mode, no sentence of the draft supported: the notice (answer.UNCHECKED) with nothing under it."""
        return bool(self.notice) and not self.body


def under_notice(text: str, notice: str) -> str:
    """What an answer's `text` shows under its `notice` (the whole text when there is none): for an
    Answer, and for a chat message stored with its notice."""
    return text[len(notice):].lstrip("\n") if notice else text
