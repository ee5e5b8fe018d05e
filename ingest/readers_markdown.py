"""The Markdown reader: headings, paragraphs, list items, fenced code and pipe tables as Blocks, and
raw HTML in the text read as a browser shows it (hidden elements dropped, tags stripped).

It takes a path and returns `Extracted`; it raises `ReadError` for input it cannot use.
`read()` in `readers.py` has already checked that the file exists, is not empty and is not too big.
"""

from __future__ import annotations

import re
from pathlib import Path

from archivist.records import Block, Extracted

from .readers_base import HeadingPath, clean, clean_code, decode_text, table_blocks, table_heading
from .readers_html import hidden_attrs
from .readers_text import strip_terminal

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)*\|?\s*$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|(\d{1,9}[.)]))\s+(.*)$")
_RULE = re.compile(r"^ {0,3}([-*_])(\s*\1){2,}\s*$")
_QUOTE = re.compile(r"^\s*>\s?")
_HTML_COMMENT = re.compile(r"<!--.{0,5000}?-->", re.S)
# Inline patterns have bounded spans: unbounded ones go quadratic on a long paragraph full of
# unmatched markers ("[[[[" or "** ** **"), and real links and emphasis are short.
_IMAGE = re.compile(r"!\[([^\]]{0,500})\]\([^)]{0,2000}\)")
_LINK = re.compile(r"\[([^\]]{1,500})\]\([^)]{0,2000}\)")
_EMPHASIS = re.compile(r"(\*\*|__)(?=\S)(.{1,1000}?)(?<=\S)\1")
_INLINE_CODE = re.compile(r"`+([^`]{1,1000})`+")


def _inline(text: str) -> str:
    """Markdown inline markup -> plain text: links and images keep their text, ** __ ` markers go.
    Single * and _ stay: they are too often real characters (5 * 3, snake_case)."""
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _INLINE_CODE.sub(r"\1", text)
    text = _EMPHASIS.sub(r"\2", text)
    return clean(text)


def _split_row(line: str) -> list[str]:
    """One markdown table line -> its cells (outer pipes optional, \\| is a literal pipe)."""
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    return [_inline(_strip_tags(c.replace("\\|", "|"))) for c in re.split(r"(?<!\\)\|", line)]


# Raw HTML in Markdown renders as HTML: an element hidden there (`hidden_attrs`), or a <script>, <style>,
# <template> or <noscript> that opens an HTML block, is no text of the document (`_drop_unseen_html`).
# An attribute's quoted value may hold a ">" (title="a>b"), not a "<": a tag's match ends by the next
# "<", so a long line of them is no quadratic scan. A tag may run over lines (joined first).
_MD_TAG = re.compile(r"""<(/?)([A-Za-z][A-Za-z0-9-]{0,30})((?:\s(?:[^<>"']|"[^"<]{0,2000}"|'[^'<]{0,2000}'){0,2000})?)>""")
_MD_TAG_OPEN_AT_END = re.compile(r"<[A-Za-z][A-Za-z0-9-]{0,30}(?:\s[^<>]{0,2000})?$")  # a tag the next line goes on with
_MD_ATTR = re.compile(r"""([^\s=/>"']+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?""")
# Hidden only where they open an HTML block (CommonMark's kinds 1 and 7); in running text ("put the
# snippet in a <script> tag") they are words, as GitHub's tag filter shows them.
_MD_UNSEEN = frozenset(("script", "style", "template", "noscript"))
_MD_VOID = frozenset("area base br col embed hr img input link meta source track wbr".split())
# a block element's hidden content runs on over blank lines to its closing tag; an inline one's ends with its paragraph
_MD_BLOCK = frozenset(
    "address article aside blockquote details dialog div dl fieldset figure footer form header main nav ol "
    "section table ul".split())
_MD_CODE_SPAN = re.compile(r"(`{1,16})[^`]{0,2000}?\1")  # bounded: no quadratic scan of a line of backticks
_MD_PRE_START = re.compile(r" {0,3}<pre(?:[\s>]|$)", re.I)  # an HTML block of kind 1: shown as written, to </pre>
_MD_LIST_MARK = re.compile(r"^(\s*)([-*+]|\d{1,9}[.)])( +|\t|$)")
MAX_TAG_LINES = 10  # a tag split over more lines than this is taken as text
MAX_UNCLOSED = 20  # elements left open that are retried as ending with their block; after that all are


def _masked(line: str) -> str:
    """`line` with its comments (one left open runs to the end) and code spans blanked out, the same
    length: HTML there is shown as text, or dropped as a comment, not rendered."""
    out, pos = [], 0
    while (a := line.find("<!--", pos)) != -1:
        b = line.find("-->", a + 4)
        b = len(line) if b == -1 else b + 3
        out += [line[pos:a], "\0" * (b - a)]
        pos = b
    out.append(line[pos:])
    return _MD_CODE_SPAN.sub(lambda m: "\0" * len(m.group(0)), "".join(out))


def _unseen_open(m: re.Match, block_start: bool) -> bool:
    """Whether an opening tag (`_MD_TAG` match) starts an element nobody sees; `block_start`: the tag
    opens an HTML block (it starts a line that is no paragraph's continuation)."""
    if m.group(1):
        return False
    name = m.group(2).lower()
    if name in _MD_UNSEEN:
        return block_start
    attrs = {a.lower(): next((v for v in vals if v is not None), "") for a, *vals in _MD_ATTR.findall(m.group(3) or "")}
    return hidden_attrs(attrs)


def _indent(line: str) -> int:
    """The width of a line's leading white space, a tab to the next multiple of 4."""
    stripped = line.lstrip(" \t")
    return len(line[:len(line) - len(stripped)].expandtabs(4))


def _drop_unseen_html(lines: list[str]) -> list[str]:
    """Markdown source lines without the raw HTML elements a browser would not show (`_unseen_open`),
    their content included: to the matching closing tag, or, left open, to the end of the paragraph
    or HTML block they start in (a blank line). A block element (`_MD_BLOCK`) or a <script> opening
    an HTML block runs over blank lines to its closing tag when the file has one.
    Fenced and indented code, <pre> blocks, `code spans` and comments are left as they are. A line
    emptied by it goes."""
    out: list[str] = []
    unclosed: set[tuple[int, int]] = set()  # (line, column) of block elements found left open at the end
    # fence: the marker of the fenced block we are in; pre: in a <pre> block; code: in indented code;
    # list_indent: where the current list item's text starts (-1: no list); blank / para / html: the
    # line before was blank / a paragraph's / an HTML block's
    state = dict(fence="", comment=False, pre=False, code=False, list_indent=-1, blank=True, para=False, html=False)
    hidden: list = []  # [tag name, depth, runs over blank lines?, (line, column), what to restore there]
    i = 0
    while i < len(lines) or (hidden and hidden[2]):
        if i >= len(lines):  # a block element the file never closes: read again from it, as ending with its block
            (i, column), (kept_out, state, hidden) = hidden[3], hidden[4]
            unclosed.add((i, column))
            del out[kept_out:]
        line, s = lines[i], state
        if s["fence"]:
            if not hidden:
                out.append(line)
            close = line.strip()
            if close.startswith(s["fence"][0] * len(s["fence"])) and not close.strip(s["fence"][0]):
                s["fence"] = ""
            i += 1
            continue
        if s["comment"] or s["pre"]:
            out.append(line)
            if s["comment"]:
                s["comment"] = "-->" not in line
            else:
                s["pre"] = "</pre>" not in line.lower()
            i += 1
            continue
        # this line read again if an element opened here is never closed (none opens on a line without "<")
        restore = (len(out), dict(s), [*hidden]) if "<" in line else None
        blank = not line.strip()
        if hidden and blank and not hidden[2]:
            hidden = []  # an inline element, or one left open, ends with its paragraph
        if not blank:
            width, item = _indent(line), _MD_LIST_MARK.match(line)
            if s["code"] or s["blank"]:
                s["code"] = width >= max(s["list_indent"], 0) + 4  # indented code: shown as written
            if not s["code"] and s["blank"] and width < s["list_indent"] and not item:
                s["list_indent"] = -1  # a paragraph after the list ends it
            if not s["code"] and item:
                rest = len(item.group(3).expandtabs(4))
                gap = rest if 0 < rest <= 4 else 1  # more than 4 spaces after the marker: code in the item
                s["list_indent"] = len(item.group(1).expandtabs(4)) + len(item.group(2)) + gap
        if blank or s["code"]:
            if not hidden:
                out.append(line)
            s.update(blank=blank, para=False, html=False)
            i += 1
            continue
        opened = _FENCE.match(line)
        if opened and not (opened.group(1)[0] == "`" and "`" in opened.group(2)):
            if hidden and not hidden[2]:
                hidden = []  # a fence ends the paragraph
            s["fence"] = opened.group(1)
            if not hidden:
                out.append(line)
            s.update(blank=False, para=False, html=False)
            i += 1
            continue
        block_start = not s["para"] or s["html"]  # a tag starting this line starts (or is in) an HTML block
        if not hidden and block_start and _MD_PRE_START.match(line):
            m = _MD_TAG.match(line.lstrip(" "))
            if not (m and _unseen_open(m, True)):
                out.append(line)
                s["pre"] = "</pre>" not in line.lower()
                s.update(blank=False, para=False, html=False)
                i += 1
                continue
        # A tag left open at the end of the line goes on on the next one: read them as one.
        end, chunk, masked = i + 1, line, _masked(line)
        while (end < len(lines) and end - i < MAX_TAG_LINES and lines[end].strip() and not _FENCE.match(lines[end])
               and _MD_TAG_OPEN_AT_END.search(masked)):
            chunk += "\n" + lines[end]
            end, masked = end + 1, _masked(chunk)
        if end > i + 1 and not _MD_TAG.search(masked):  # no tag after all: the lines are read one by one
            end, chunk, masked = i + 1, line, _masked(line)
        start = len(chunk) - len(chunk.lstrip(" "))
        kept, pos, first = [], 0, None
        for m in _MD_TAG.finditer(masked):
            first = m.start() if first is None else first
            if hidden:
                if m.group(2).lower() == hidden[0] and not m.group(3).rstrip().endswith("/"):
                    hidden[1] += -1 if m.group(1) else 1
                    if not hidden[1]:
                        hidden, pos = [], m.end()
                continue
            name = m.group(2).lower()
            # a <script> or <style> at a line's start opens a block even after a paragraph line (kind 1)
            at_start = m.start() == start <= 3 and (block_start or name in ("script", "style"))
            if _unseen_open(m, at_start):
                kept.append(chunk[pos:m.start()])
                pos = m.end()
                if name not in _MD_VOID and not m.group(3).rstrip().endswith("/"):
                    runs_on = ((name in _MD_BLOCK or name in _MD_UNSEEN) and (i, m.start()) not in unclosed
                               and len(unclosed) < MAX_UNCLOSED)
                    hidden = [name, 1, runs_on, (i, m.start()), restore]
        if not hidden:
            kept.append(chunk[pos:])
        if len(kept) == 1 and pos == 0:
            out.extend(chunk.split("\n"))  # nothing hidden here
        else:
            out.extend(part for part in "".join(kept).split("\n") if part.strip())
        s["comment"] = not hidden and chunk.rfind("<!--") > chunk.rfind("-->")  # a comment that goes on below
        s.update(blank=False, para=not _ATX.match(chunk) and not _RULE.match(chunk),
                 html=s["html"] or (block_start and first == start <= 3))  # an HTML block runs to a blank line
        i = end
    return out


# HTML elements whose raw tags in Markdown are markup, not text: the browser shows their content
# alone. A tag of another name ("List<String>", "<your-name>") is left as written.
_MD_ELEMENTS = frozenset(
    "a abbr address article aside b bdi bdo big blockquote br caption center cite code col colgroup dd del details dfn "
    "div dl dt em figcaption figure font footer h1 h2 h3 h4 h5 h6 header hr i img ins kbd li main mark nav ol p picture "
    "pre q s samp section small source span strike strong sub summary sup table tbody td tfoot th thead tr tt u ul "
    "var wbr".split())
_MD_BREAKING = frozenset("address article aside blockquote br caption dd details div dl dt figcaption figure footer h1 h2 "
                         "h3 h4 h5 h6 header hr li main nav ol p pre section summary table tbody td tfoot th thead tr "
                         "ul".split())


def _strip_tags(text: str) -> str:
    """Markdown text without its raw HTML tags (`_MD_ELEMENTS`), their content kept: "<dl><dt>Quiet
    room</dt><dd>Booked ...</dd></dl>" is "Quiet room Booked ..." (a block element's tag is a space,
    an inline one's nothing: "<b>V</b>PN" is "VPN"). Tags inside code spans and comments stay."""
    if "<" not in text:
        return text
    masked, out, pos = _masked(text), [], 0
    for m in _MD_TAG.finditer(masked):
        name = m.group(2).lower()
        if name in _MD_ELEMENTS:
            out += [text[pos:m.start()], " " if name in _MD_BREAKING else ""]
            pos = m.end()
    return "".join(out) + text[pos:] if out else text


def read_markdown(path: Path) -> Extracted:
    """Markdown: `#` (and underlined) headings build the heading path and become Block(kind="heading");
    paragraphs split on blank lines, list items are one Block each, fenced code stays whole
    (kind="code", newlines kept), tables become one Block(kind="row") per row with the header.
    A leading YAML front matter is skipped; its `title:` (or else the first h1) is the title.
    Terminal formatting (a coloured log pasted in) is dropped, as read_text drops it.
    """
    text = strip_terminal(decode_text(path.read_bytes())).replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    title = None

    i = 0
    if lines and lines[0].strip() == "---":  # front matter
        for j in range(1, min(len(lines), 200)):
            if lines[j].strip() in ("---", "..."):
                for meta in lines[1:j]:
                    key, _, value = meta.partition(":")
                    if key.strip().lower() == "title" and value.strip():
                        title = clean(value.strip().strip("\"'"))
                i = j + 1
                break

    lines[i:] = _drop_unseen_html(lines[i:])
    blocks: list[Block] = []
    headings = HeadingPath()
    para: list[str] = []

    def flush() -> None:
        if para:
            body = _inline(_strip_tags(_HTML_COMMENT.sub("", " ".join(para))))
            if body:
                blocks.append(Block(body, heading=headings.path))
            para.clear()

    def heading(level: int, raw: str) -> None:
        nonlocal title
        text = _inline(_strip_tags(_HTML_COMMENT.sub("", raw)))
        if not text:
            return
        path_ = headings.enter(level, text)
        blocks.append(Block(text, heading=path_, kind="heading"))
        if title is None and level == 1:
            title = text

    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence and not (fence.group(1)[0] == "`" and "`" in fence.group(2)):
            flush()
            marker = fence.group(1)
            body = []
            i += 1
            while i < len(lines):
                close = lines[i].strip()
                if close.startswith(marker[0] * len(marker)) and not close.strip(marker[0]):
                    break
                body.append(lines[i])
                i += 1
            code = clean_code("\n".join(body))
            if code:
                blocks.append(Block(code, heading=headings.path, kind="code"))
            i += 1  # past the closing fence (or the end)
            continue

        if line.lstrip().startswith("<!--"):  # a hidden comment block: skip to its end
            flush()
            while i < len(lines) and "-->" not in lines[i]:
                i += 1
            rest = lines[i].split("-->", 1)[1] if i < len(lines) else ""
            if rest.strip():
                para.append(rest)
            i += 1
            continue

        atx = _ATX.match(line)
        if atx:
            flush()
            heading(len(atx.group(1)), atx.group(2) or "")
            i += 1
            continue

        if not line.strip():
            flush()
            i += 1
            continue

        # A table: a row with pipes followed by a |---|---| separator line.
        if "|" in line and not para and i + 1 < len(lines) and "|" in lines[i + 1] and _TABLE_SEP.match(lines[i + 1]):
            rows = [_split_row(line)]
            i += 2
            while i < len(lines) and "|" in lines[i] and lines[i].strip():
                rows.append(_split_row(lines[i]))
                i += 1
            flush()
            blocks.extend(table_blocks(rows, heading=table_heading(blocks, headings.path)))
            continue

        # Setext heading: a paragraph line underlined with === (h1) or --- (h2).
        setext = _SETEXT.match(line)
        if setext and para and len(para) == 1:
            raw = para.pop()
            heading(1 if setext.group(1)[0] == "=" else 2, raw)
            i += 1
            continue

        if _RULE.match(line):
            flush()
            i += 1
            continue

        item = _LIST_ITEM.match(line)
        if item:
            flush()  # each list item is its own block; ordered items keep their number
            para.append(f"{item.group(1)} {item.group(2)}" if item.group(1) else item.group(2))
            i += 1
            continue

        para.append(_QUOTE.sub("", line))
        i += 1
    flush()
    return Extracted(blocks, title=title, kind="markdown")
