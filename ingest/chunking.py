"""Structure-aware chunking by embedder tokens.

The document's extracted text is its blocks joined by BLOCK_SEP; every chunk is an exact slice of
that text (`text == doc_text[start:end]`). Chunks never cross a page or a heading-path change (but
headings with no text of their own open the chunk of the section after them, on the next page after
a heading at a page's foot, and headings that end the document close the chunk before), never cut a word,
prefer to end at a block, then a sentence, then a word boundary, and overlap by about `overlap`
tokens inside one section. Table rows are a section of their own (a table never shares a chunk
with the text around it but the headings over it), are cut only between rows (unless one row
alone is longer than a chunk) and do not overlap: every row carries its headers, so it needs no
context.
A chunk keeps the boxes of the lines it covers on its page (readers of PDFs and images give them).

Memory: a section is tokenized a block (or a PIECE_CHARS piece of a long block) at a time, and only
the tokens of the chunk being cut are held; a table section is counted in a first pass (its rows are
shared out evenly). A CSV of a million rows is never a list of its ten million tokens.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence

from archivist.records import Block, Chunk
from archivist.retrieval.folding import CJK, CJK_CHAR

BLOCK_SEP = "\n\n"

# A tokenizer here is anything that maps text to the character spans of its tokens.
TokenSpans = Callable[[str], list[tuple[int, int]]]

_SENTENCE_END = re.compile(r"[.!?;:][\"')\]]?\s|[。！？][」』）”]?")  # Chinese and Japanese need no space after
# Chinese and Japanese put no space between words: a chunk may end between two of their characters (or
# after their punctuation, before one), else a paragraph of them would be one "word" and one chunk of
# any length, its text past the embedder's 256 tokens never embedded.
_CJK_BEFORE = re.compile(f"[{CJK}\u3000-\u303f\uff01\uff09\uff0c\uff1a\uff1b\uff1f]")


def join_blocks(blocks: Sequence[Block]) -> tuple[str, list[tuple[int, int]]]:
    """The document text and each block's (start, end) in it."""
    spans, parts, pos = [], [], 0
    for i, b in enumerate(blocks):
        if i:
            parts.append(BLOCK_SEP)
            pos += len(BLOCK_SEP)
        parts.append(b.text)
        spans.append((pos, pos + len(b.text)))
        pos += len(b.text)
    return "".join(parts), spans


_UNTRUNCATED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer -> its chunking copy


def hf_token_spans(tokenizer) -> TokenSpans:
    """Token character spans from a Hugging Face fast tokenizer (no special tokens, no length limit).

    A fast tokenizer's truncation is state of its Rust backend, and the embedder sets it (to its
    256 tokens) on every encode. Ingestion chunks the next file while it embeds the last one, with
    the embedder's own tokenizer, so the spans here come from a private copy of the backend, made
    once per tokenizer, whose truncation nothing else turns back on. Before, a block chunked while
    a batch was embedded lost every token past the 256th: its text was in no chunk, or in one
    32 KB chunk that counted 250 tokens."""
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    if backend is not None:
        copy = _UNTRUNCATED.get(tokenizer)
        if copy is None:
            from tokenizers import Tokenizer

            copy = _UNTRUNCATED[tokenizer] = Tokenizer.from_str(backend.to_str())
            copy.no_truncation()
            copy.no_padding()

        def spans(text: str) -> list[tuple[int, int]]:
            return [o for o in copy.encode(text, add_special_tokens=False).offsets if o[1] > o[0]]

        return spans

    def slow(text: str) -> list[tuple[int, int]]:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        return [tuple(o) for o in enc["offset_mapping"] if o[1] > o[0]]

    return slow


def chunk_blocks(blocks: Sequence[Block], token_spans: TokenSpans, size: int = 256, overlap: int = 32) -> tuple[str, list[Chunk]]:
    """Split a document's blocks into chunks of at most `size` tokens.

    Returns the document text and its chunks in order. A single word longer than `size` tokens
    is kept whole (a chunk may then exceed `size`) up to WORD_WINDOWS * `size` tokens of at most
    TOKEN_CHARS characters; nothing else exceeds `size`.
    """
    if size < 8 or not 0 <= overlap < size // 2:
        raise ValueError(f"bad chunk size/overlap: {size}/{overlap}")
    text, spans = join_blocks(blocks)
    chunks: list[Chunk] = []
    last_text = max((k for k, b in enumerate(blocks) if b.kind != "heading"), default=-1)
    i = 0
    while i < len(blocks):
        j = _section_end(blocks, i)
        # A section of headings alone (a page's title, a chapter's before its first subsection, a heading
        # over a table) is no chunk of its own: alone it took top-k places and was quoted as the answer
        # (bench/heading_chunks.py). It opens the chunk of the section after it, whatever that is: the
        # section under it (its heading path then names the headings joined), a sibling's after an empty
        # section ("3.2" with nothing under it, then "3.3": "3.2" is the chunk's first line), the text on
        # the next page under a heading at the foot of a PDF page. blocks[h], the first block of the last
        # section joined, gives the chunks their page, heading path and kind. Headings that end the
        # document close the chunk before them.
        h = i
        while j + 1 < len(blocks) and all(blocks[k].kind == "heading" for k in range(h, j + 1)):
            h = j + 1
            j = _section_end(blocks, h)
        if j >= last_text:
            j = len(blocks) - 1
        rows, page = blocks[h].kind == "row", blocks[h].page
        section = range(i, j + 1)
        # Only PDF and image pages carry boxes; looking for them over a table of a million rows, once
        # per chunk, would cost rows x chunks.
        boxed = any(blocks[k].boxes for k in section)
        total = sum(1 for k in section for _ in _block_tokens(text, spans[k], token_spans)) if rows else None
        tokens = (t for k in section for t in _block_tokens(text, spans[k], token_spans))
        for start, end, n in _split_section(text, tokens, total, size, 0 if rows else overlap, rows):
            chunks.append(Chunk(seq=len(chunks), text=text[start:end], start=start, end=end,
                                page=page, heading=tuple(blocks[h].heading), n_tokens=n,
                                boxes=_boxes(blocks[i:j + 1], spans[i:j + 1], start, end, page) if boxed else ()))
        i = j + 1
    return text, chunks


def _section_end(blocks: Sequence[Block], i: int) -> int:
    """The last block of the section that starts at blocks[i]: a run of blocks with the same page and
    heading path, table rows apart from the rest."""
    j = i
    while (j + 1 < len(blocks) and blocks[j + 1].page == blocks[i].page and blocks[j + 1].heading == blocks[i].heading
           and (blocks[j + 1].kind == "row") == (blocks[i].kind == "row")):
        j += 1
    return j


def chunk_groups(groups: Iterable[Sequence[Block]], token_spans: TokenSpans, size: int = 256,
                 overlap: int = 32) -> Iterator[list[Chunk]]:
    """`chunk_blocks` over a document read a group of blocks at a time (a big CSV, see
    `readers.read_stream`): each group is chunked as it comes and its chunks yielded, with the seq,
    start and end they have in the whole document (the groups' texts joined by BLOCK_SEP). A
    section is cut where a group ends, so a table's rows are shared out evenly within each group."""
    base = seq = 0
    for blocks in groups:
        text, chunks = chunk_blocks(blocks, token_spans, size, overlap)
        for c in chunks:
            c.seq, c.start, c.end = c.seq + seq, c.start + base, c.end + base
        seq += len(chunks)
        base += len(text) + len(BLOCK_SEP)
        yield chunks


def _boxes(blocks: Sequence[Block], spans, start: int, end: int, page: int | None, slack: int = 12) -> tuple:
    """The boxes of the lines of `blocks` that the chunk text[start:end] covers on its `page` (a heading
    from the foot of the page before is not drawn onto this one). A block's line boxes share its
    characters in proportion to their widths (the lines' own text is not kept), so the chunk's range is
    widened by `slack` characters: the boxes cover at least the chunk's words."""
    out = []
    for block, (b0, b1) in zip(blocks, spans):
        if not block.boxes or block.page != page or b1 <= start - slack or b0 >= end + slack:
            continue
        widths = [max(x1 - x0, 1e-6) for x0, _, x1, _ in block.boxes]
        total, pos = sum(widths), float(b0)
        for box, width in zip(block.boxes, widths):
            line_end = pos + (b1 - b0) * width / total
            if line_end > start - slack and pos < end + slack:
                out.append(tuple(round(min(max(v, 0.0), 1.0), 4) for v in box))
            pos = line_end
    return tuple(dict.fromkeys(out))


# A block longer than this is tokenized in pieces cut after whitespace (the embedders' tokenizers
# never join tokens across whitespace), so no token list of a huge paragraph is held at once.
PIECE_CHARS = 32 * 1024
# A "word" is kept whole in a chunk, but not past these bounds: a token of more characters is counted as
# several (one [UNK] of MiniLM's covered a 3 MB run without spaces, stored as one 13-token chunk of 3 MB
# that every search hit, API answer and page then carried), and a word of more tokens than
# WORD_WINDOWS chunks' worth is cut (a crafted document of one 200 MB word would be one chunk).
TOKEN_CHARS = 64
WORD_WINDOWS = 2


def _block_tokens(text: str, span: tuple[int, int], token_spans: TokenSpans):
    """(start, end, ends_block) of the tokens of the block at text[span[0]:span[1]], a piece at a time."""
    b0, b1 = span
    last = None
    a = b0
    while a < b1:
        b = b1
        if b1 - a > PIECE_CHARS:
            cut = max(text.rfind(" ", a, a + PIECE_CHARS), text.rfind("\n", a, a + PIECE_CHARS))
            if cut > a:
                b = cut + 1
        for s, e in token_spans(text[a:b]):
            if e - s > TOKEN_CHARS:  # rare: a token of a run without spaces counts once per TOKEN_CHARS
                for s in range(s, e - TOKEN_CHARS, TOKEN_CHARS):
                    if last is not None:
                        yield last[0], last[1], False
                    last = (s + a, s + TOKEN_CHARS + a)
                s += TOKEN_CHARS
            if last is not None:
                yield last[0], last[1], False
            last = (s + a, e + a)
        a = b
    if last is not None:
        yield last[0], last[1], True


def _split_section(text, tokens, total, size, overlap, rows=False):
    """Yield (start, end, n_tokens) covering a section from its tokens (start, end, ends_block), in
    order; `total`: how many there are (needed for `rows`, which cut only at block ends when any
    fits and share the rows out evenly). Holds only the tokens from the current chunk's start to
    `size` past it, so a table of a million rows is never a list of its tokens."""
    it = iter(tokens)
    toks: list[tuple[int, int, bool]] = []  # toks[0] is the current chunk's first token
    done = False
    used = 0  # tokens dropped from the front of `toks` so far

    def fill(n: int) -> None:
        nonlocal done
        while len(toks) < n and not done:
            t = next(it, None)
            if t is None:
                done = True
            else:
                toks.append(t)

    fill(size + 1)
    while toks:
        if done and len(toks) <= size:
            yield toks[0][0], toks[-1][1], len(toks)
            return
        # Rows are shared out evenly over the chunks the table needs: no short last chunk of a few rows.
        left = total - used if rows else 0
        limit = -(-left // -(-left // size)) if rows else size
        j = _best_cut(text, toks, 0, limit, rows)  # chunk is toks[:j]
        while j == len(toks) and not done:  # a word longer than the window: read on to its end
            if j >= WORD_WINDOWS * size:  # ... unless it goes on and on (cut, then)
                break
            fill(len(toks) + size)
            j = _word_end(text, toks, j)
        j = min(j, max(WORD_WINDOWS * size, limit))
        yield toks[0][0], toks[j - 1][1], j
        # Overlap: step back about `overlap` tokens, to the start of a word.
        k = max(j - overlap, 1)
        while k > 1 and not _word_start(text, toks, k):
            k -= 1
        if not _word_start(text, toks, k):  # no word start inside the overlap: no overlap
            k = j
        del toks[:k]
        used += k
        fill(size + 1)


def _word_start(text: str, toks, k: int) -> bool:
    """Token k begins a word: whitespace before it in the text, or a CJK character right after a CJK
    character or punctuation mark (never after a combining mark or variation selector: no grapheme
    is cut)."""
    a = toks[k][0]
    return a == 0 or text[a - 1].isspace() or (not text[a].isascii() and CJK_CHAR.match(text, a) is not None
                                                and _CJK_BEFORE.match(text, a - 1) is not None)


def _best_cut(text, toks, i: int, limit: int, rows: bool = False) -> int:
    """The token index j (i < j <= limit) to end the chunk before: a block end, else a sentence end,
    else a word end in the last half; never inside a word. With `rows` (a table), any block end
    in the window comes first, so a row is cut only when it alone is longer than the window."""
    lo = i + max(1, (limit - i) // 2)
    if rows:
        for j in range(limit, i, -1):
            if toks[j - 1][2]:
                return j
    for good in (
        lambda j: toks[j - 1][2],
        lambda j: _SENTENCE_END.match(text, toks[j - 1][1] - 1) is not None and _word_start(text, toks, j),
        lambda j: _word_start(text, toks, j),
    ):
        for j in range(limit, lo - 1, -1):
            if good(j):
                return j
    # A word longer than the whole window: extend to the end of that word.
    return _word_end(text, toks, limit)


def _word_end(text, toks, j: int) -> int:
    """The first token index from j that starts a word (or the end of `toks`)."""
    while j < len(toks) and not _word_start(text, toks, j):
        j += 1
    return j
