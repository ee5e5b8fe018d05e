"""Structure-aware chunking by embedder tokens.

The document's extracted text is its blocks joined by BLOCK_SEP; every chunk is an exact slice of
that text (`text == doc_text[start:end]`). Chunks never cross a page or a heading-path change,
never cut a word, prefer to end at a block, then a sentence, then a word boundary, and overlap
by about `overlap` tokens inside one section. Table rows are a section of their own (a table never
shares a chunk with the text around it), are cut only between rows (unless one row alone is longer
than a chunk) and do not overlap: every row carries its headers, so it needs no context.
A chunk keeps the boxes of the lines it covers on its page (readers of PDFs and images give them).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from archivist.records import Block, Chunk

BLOCK_SEP = "\n\n"

# A tokenizer here is anything that maps text to the character spans of its tokens.
TokenSpans = Callable[[str], list[tuple[int, int]]]

_SENTENCE_END = re.compile(r"[.!?;:][\"')\]]?\s")


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


def hf_token_spans(tokenizer) -> TokenSpans:
    """Token character spans from a Hugging Face fast tokenizer (no special tokens, no length limit)."""
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    if backend is not None:
        backend.no_truncation()

        def spans(text: str) -> list[tuple[int, int]]:
            return [o for o in backend.encode(text, add_special_tokens=False).offsets if o[1] > o[0]]

        return spans

    def slow(text: str) -> list[tuple[int, int]]:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        return [tuple(o) for o in enc["offset_mapping"] if o[1] > o[0]]

    return slow


def chunk_blocks(blocks: Sequence[Block], token_spans: TokenSpans, size: int = 256, overlap: int = 32) -> tuple[str, list[Chunk]]:
    """Split a document's blocks into chunks of at most `size` tokens.

    Returns the document text and its chunks in order. A single word longer than `size` tokens
    is kept whole (a chunk may then exceed `size`); nothing else does.
    """
    if size < 8 or not 0 <= overlap < size // 2:
        raise ValueError(f"bad chunk size/overlap: {size}/{overlap}")
    text, spans = join_blocks(blocks)
    chunks: list[Chunk] = []
    # Sections: runs of consecutive blocks with the same page and heading path, rows apart from the rest.
    i = 0
    while i < len(blocks):
        j = i
        while (j + 1 < len(blocks) and blocks[j + 1].page == blocks[i].page and blocks[j + 1].heading == blocks[i].heading
               and (blocks[j + 1].kind == "row") == (blocks[i].kind == "row")):
            j += 1
        s0, s1 = spans[i][0], spans[j][1]
        block_ends = {spans[k][1] for k in range(i, j + 1)}
        rows = blocks[i].kind == "row"
        for start, end, n in _split_section(text, s0, s1, block_ends, token_spans, size, 0 if rows else overlap, rows):
            chunks.append(Chunk(seq=len(chunks), text=text[start:end], start=start, end=end,
                                page=blocks[i].page, heading=tuple(blocks[i].heading), n_tokens=n,
                                boxes=_boxes(blocks[i:j + 1], spans[i:j + 1], start, end)))
        i = j + 1
    return text, chunks


def _boxes(blocks: Sequence[Block], spans, start: int, end: int, slack: int = 12) -> tuple:
    """The boxes of the lines of `blocks` that the chunk text[start:end] covers. A block's line boxes
    share its characters in proportion to their widths (the lines' own text is not kept), so the
    chunk's range is widened by `slack` characters: the boxes cover at least the chunk's words."""
    out = []
    for block, (b0, b1) in zip(blocks, spans):
        if not block.boxes or b1 <= start - slack or b0 >= end + slack:
            continue
        widths = [max(x1 - x0, 1e-6) for x0, _, x1, _ in block.boxes]
        total, pos = sum(widths), float(b0)
        for box, width in zip(block.boxes, widths):
            line_end = pos + (b1 - b0) * width / total
            if line_end > start - slack and pos < end + slack:
                out.append(tuple(round(min(max(v, 0.0), 1.0), 4) for v in box))
            pos = line_end
    return tuple(dict.fromkeys(out))


def _split_section(text, s0, s1, block_ends, token_spans, size, overlap, rows=False):
    """Yield (start, end, n_tokens) covering text[s0:s1]; `rows`: cut only at block ends when any fits."""
    toks = [(a + s0, b + s0) for a, b in token_spans(text[s0:s1])]
    if not toks:
        return
    n = len(toks)
    i = 0
    while i < n:
        if n - i <= size:
            yield toks[i][0], toks[-1][1], n - i
            return
        # Rows are shared out evenly over the chunks the table needs: no short last chunk of a few rows.
        limit = i + (-(-(n - i) // -(-(n - i) // size)) if rows else size)
        j = _best_cut(text, toks, i, limit, block_ends, rows)  # chunk is toks[i:j]
        yield toks[i][0], toks[j - 1][1], j - i
        # Overlap: step back about `overlap` tokens, to the start of a word.
        k = max(j - overlap, i + 1)
        while k > i + 1 and not _word_start(text, toks, k):
            k -= 1
        if not _word_start(text, toks, k):  # no word start inside the overlap: no overlap
            k = j
        i = k


def _word_start(text: str, toks, k: int) -> bool:
    """Token k begins a word (whitespace before it in the text)."""
    a = toks[k][0]
    return a == 0 or text[a - 1].isspace()


def _best_cut(text, toks, i: int, limit: int, block_ends: set[int], rows: bool = False) -> int:
    """The token index j (i < j <= limit) to end the chunk before: a block end, else a sentence end,
    else a word end in the last half; never inside a word. With `rows` (a table), any block end
    in the window comes first, so a row is cut only when it alone is longer than the window."""
    lo = i + max(1, (limit - i) // 2)
    if rows:
        for j in range(limit, i, -1):
            if toks[j - 1][1] in block_ends:
                return j
    for good in (
        lambda j: toks[j - 1][1] in block_ends,
        lambda j: _SENTENCE_END.match(text, toks[j - 1][1] - 1) is not None and _word_start(text, toks, j),
        lambda j: _word_start(text, toks, j),
    ):
        for j in range(limit, lo - 1, -1):
            if good(j):
                return j
    # A word longer than the whole window: extend to the end of that word.
    j = limit
    while j < len(toks) and not _word_start(text, toks, j):
        j += 1
    return j
