"""The DOCX reader: paragraphs in body order (content controls and tracked insertions included,
tracked deletions not), Word's list numbers, headings from the `Heading n`/`Title` styles,
tables as rows under their headers (nested tables kept in their cell, two-row headers joined), and
the headers' and footers' text once.

`read()` in `readers.py` calls `check_zip` (readers_office.py) first; library exceptions escape
`read_docx`, and `read()` turns them into ReadError("corrupt DOCX: ...").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from archivist.records import Block, Extracted

from .readers_base import MAX_HEADER_ROWS, HeadingPath, clean, table_blocks, table_heading

W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_P, _TBL, _SDT, _CUSTOM = f"{{{W}}}p", f"{{{W}}}tbl", f"{{{W}}}sdt", f"{{{W}}}customXml"
_R_ID = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
MAX_COLUMNS = 64  # Word allows 63; a larger span or offset is damage and is capped
# Runs whose text is not shown: tracked deletions and moves away, and text boxes anchored in the
# paragraph (Word stores each twice, as DrawingML and as a VML fallback; `_with_text_boxes` reads
# their text once, as paragraphs of their own).
# Runs formatted hidden (w:vanish, Word's Font > Hidden) are not shown: text planted there must not answer questions.
_SHOWN_RUNS = (".//w:r[not(ancestor::w:del or ancestor::w:moveFrom or ancestor::w:txbxContent)]"
               "[not(w:rPr/w:vanish[not(@w:val) or not(@w:val='0' or @w:val='false' or @w:val='off')])]")


def _hide_styled_runs(document) -> None:
    """Mark hidden (w:vanish) the runs a style hides, in the body and every part it relates to
    (headers, notes), so `_SHOWN_RUNS`, which reads a run's own properties, leaves them out too: a
    character style or the paragraph's style (or one it is based on) set to Font > Hidden had
    hidden nothing from the index. The run's own setting wins, then its character style's, then its
    paragraph style's. Only the in-memory copy is changed."""
    styles = {s.get(f"{{{W}}}styleId"): s for s in _xpath(document.styles.element, "w:style")}

    def hides(style_id: str | None) -> bool | None:
        for _ in range(10):  # basedOn chains are short; the bound guards against a loop
            style = styles.get(style_id)
            if style is None:
                return None
            if (vanish := _xpath(style, "w:rPr/w:vanish")):
                return vanish[0].get(f"{{{W}}}val", "true") not in ("0", "false", "off")
            style_id = _val(style, "w:basedOn")
        return None

    if not any(hides(style_id) for style_id in styles):
        return
    parts = [document.part, *document.part.related_parts.values()]
    for root in [part.element for part in parts if hasattr(part, "element")]:
        for r in _xpath(root, ".//w:r[not(w:rPr/w:vanish)]"):
            hidden = hides(_val(r, "w:rPr/w:rStyle"))
            if hidden is None:
                hidden = hides(_val(r, "ancestor::w:p[1]/w:pPr/w:pStyle"))
            if hidden:
                r.get_or_add_rPr().get_or_add_vanish()


def _shown(element, path: str = _SHOWN_RUNS) -> list:
    """`path` (written with `ancestor::w:txbxContent`: not inside a text box) under `element`, which may
    itself stand in a text box (then: in no text box deeper than it)."""
    depth = int(_xpath(element, "count(ancestor-or-self::w:txbxContent)"))
    if depth:
        path = path.replace("ancestor::w:txbxContent", f"count(ancestor::w:txbxContent) > {depth}")
    return _xpath(element, path)


def _xpath(element, path: str) -> list:
    """XPath with the w: prefix on any element: python-docx's own classes and the plain lxml
    elements it leaves unwrapped (numbering levels)."""
    from lxml import etree

    return etree._Element.xpath(element, path, namespaces={"w": W})


class ParagraphStyles:
    """The paragraph styles of styles.xml by id, read once. python-docx's Paragraph.style finds the
    default style by parsing every style, for each paragraph: 3 ms a paragraph, 90% of reading a
    long document (45 s for 8,000 paragraphs, near the reader's timeout)."""

    def __init__(self, document) -> None:
        from docx.styles import BabelFish

        self._styles: dict[str, tuple[str, str | None, str | None]] = {}  # id -> (name, basedOn, outlineLvl)
        self._default = None
        for style in _xpath(document.styles.element, "w:style[@w:type='paragraph']"):
            style_id = style.get(f"{{{W}}}styleId")
            self._styles[style_id] = (BabelFish.internal2ui(_val(style, "w:name", "")), _val(style, "w:basedOn"),
                                      _val(style, "w:pPr/w:outlineLvl"))
            if style.get(f"{{{W}}}default") in ("1", "true", "on"):
                self._default = style_id

    def chain(self, p) -> list[tuple[str, str | None]]:
        """(name, outline level) of paragraph `p`'s style ("Heading 1", "toc 2"; the default style
        when it names none, or one missing from styles.xml, as Word does), then of those it is based on."""
        style_id, out = _val(p, "w:pPr/w:pStyle"), []
        if style_id not in self._styles:
            style_id = self._default
        for _ in range(10):  # basedOn chains are short; the bound guards against a loop
            if style_id not in self._styles:
                break
            name, style_id, outline = self._styles[style_id]
            out.append((name, outline))
        return out

    def name(self, p) -> str:
        """Paragraph `p`'s style name, "" when styles.xml has neither it nor a default."""
        chain = self.chain(p)
        return chain[0][0] if chain else ""


# Word's table of contents and index ("toc 1", "TOC Heading", "index 2"): page numbers pointing at
# headings, no text to cite; in PDFs they are dropped too (layout._TOC_ENTRY). They had made a chunk
# of every heading name that outranked the sections themselves.
_CONTENTS_STYLE = re.compile(r"(?i)(?:toc|index) (?:\d+|heading)")


def _heading_level(p, styles: ParagraphStyles) -> int | None:
    """0 for paragraph `p` in the Title style, n in "Heading n", None for body text. A style based
    on "Heading n" is level n too (not one based on Title: templates base Subtitle on it), and so
    is a paragraph or style with an outline level (Word's Paragraph > Outline level, what its
    navigation pane lists: n-1 for level n): company templates define their own heading styles
    ("ACME Heading 1") either way, and their sections had been read as body text."""
    own = _val(p, "w:pPr/w:outlineLvl")
    if own is not None:
        return _outline_level(own)
    chain = styles.chain(p)
    if chain and chain[0][0] == "Title":
        return 0
    for name, outline in chain:
        if name.startswith("Heading ") and name[len("Heading "):].strip().isdigit():
            return int(name[len("Heading "):])
        if outline is not None:
            return _outline_level(outline)
    return None


def _outline_level(value: str) -> int | None:
    """The heading level of a w:outlineLvl value: "0" to "8" are levels 1 to 9, "9" is body text."""
    return int(value) + 1 if value.isdigit() and int(value) < 9 else None


def _block_items(parent):
    """The paragraphs (w:p) and tables (w:tbl) of a body or table cell in document order, including
    those inside block-level content controls (w:sdt: cover pages, template fields) and custom XML,
    which python-docx's iter_inner_content skips."""
    for child in parent.iterchildren():
        if child.tag in (_P, _TBL):
            yield child
        elif child.tag == _SDT:
            for content in child.iterchildren(f"{{{W}}}sdtContent"):
                yield from _block_items(content)
        elif child.tag == _CUSTOM:
            yield from _block_items(child)


_MC_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"


def _text_boxes(p) -> list:
    """The text boxes (w:txbxContent) anchored in paragraph `p`, each once: Word stores a text box
    twice, as DrawingML (mc:Choice) and as a VML copy (mc:Fallback), and only the first is taken;
    a text box inside another one is read with that one; one in deleted text is not shown."""
    found = []
    for box in _xpath(p, ".//w:txbxContent[not(ancestor::w:del or ancestor::w:moveFrom)]"):
        node = box.getparent()
        while node is not None and node is not p and node.tag != _MC_FALLBACK and node.tag != f"{{{W}}}txbxContent":
            node = node.getparent()
        if node is p:
            found.append(box)
    return found


def _with_text_boxes(items):
    """Block items (`_block_items`) with the contents of each paragraph's text boxes right after it:
    a text box (a call-out, a sidebar) is text the reader sees, placed by its anchor."""
    for item in items:
        yield item
        if item.tag == _P:
            for box in _text_boxes(item):
                yield from _with_text_boxes(_block_items(box))


def _part_root(part):
    """The XML root of a part the document relates to (notes, a header), or None when it is damaged
    XML: the document is read without it. python-docx parses the parts it knows when it opens the
    file; one stored under another content type reaches here as bytes."""
    from docx.oxml import parse_xml
    from lxml import etree

    try:
        return part.element if hasattr(part, "element") else parse_xml(part.blob)
    except etree.XMLSyntaxError:
        return None


class Notes:
    """Footnotes and endnotes (footnotes.xml, endnotes.xml) by id, each given to the paragraph that
    refers to it as "Footnote: ..." ("Endnote: ..."). Not numbered: the paragraph's text carries no
    reference mark to match, and Word's own numbers (formats, restarts, notes in table cells, which
    are not read) are not modelled."""

    def __init__(self, document) -> None:
        from docx.opc.constants import RELATIONSHIP_TYPE as RT

        self._texts: dict[tuple[str, str], str] = {}
        for kind, reltype in (("footnote", RT.FOOTNOTES), ("endnote", RT.ENDNOTES)):
            try:
                part = document.part.part_related_by(reltype)
            except KeyError:  # a document without notes
                continue
            root = _part_root(part)
            if root is None:  # damaged notes lose the notes, not the document (read before they were)
                continue
            for note in _xpath(root, f"w:{kind}[not(@w:type) or @w:type='normal']"):
                text = clean(" ".join(_paragraph_text(q) for q in _xpath(note, ".//w:p")))
                if text:
                    self._texts[(kind, note.get(f"{{{W}}}id"))] = text

    def of(self, p) -> list[str]:
        """The notes paragraph `p` refers to (in runs it shows), labelled, in order."""
        out = []
        if not self._texts:
            return out
        for ref in _shown(p, ".//w:r[not(ancestor::w:del or ancestor::w:moveFrom or ancestor::w:txbxContent)]"
                             "/*[self::w:footnoteReference or self::w:endnoteReference]"):
            kind = "footnote" if ref.tag.endswith("footnoteReference") else "endnote"
            text = self._texts.get((kind, ref.get(f"{{{W}}}id")))
            if text:
                out.append(f"{kind.capitalize()}: {text}")
        return out


def _paragraph_text(p) -> str:
    """The text a paragraph shows: every run, inside hyperlinks, fields, inline content controls and
    tracked insertions (w:ins) too, but not tracked deletions. python-docx's Paragraph.text reads
    only direct runs and hyperlinks, so it loses inserted text."""
    return "".join(r.text for r in _shown(p))


# Page-number fields: their text ("Page 1 of 3") is the count of the one rendering Word saved, true of
# no page in particular; a footer holding only that is no passage.
_PAGE_FIELDS = ("PAGE", "NUMPAGES", "SECTIONPAGES")


def _furniture_text(paragraphs) -> str:
    """The text `paragraphs` of a header or footer show (as `_paragraph_text`), joined, without the
    results of page-number fields, simple (w:fldSimple) or complex (w:fldChar begin, w:instrText,
    separate, the result's runs, end); "" when such a field leaves at most two words ("Page of")."""
    out, paged = [], False
    for p in paragraphs:
        fields: list[list] = []  # open complex fields: [instruction, in its result]
        for r in _shown(p):
            for child in r.iterchildren(f"{{{W}}}fldChar", f"{{{W}}}instrText"):
                kind = child.get(f"{{{W}}}fldCharType")
                if child.tag.endswith("instrText") and fields:
                    fields[-1][0] += child.text or ""
                elif kind == "begin":
                    fields.append(["", False])
                elif kind == "separate" and fields:
                    fields[-1][1] = True
                elif kind == "end" and fields:
                    fields.pop()
            instructions = [i for i, result in fields if result] + _xpath(r, "ancestor::w:fldSimple/@w:instr")
            if any((str(i).split() or [""])[0].upper() in _PAGE_FIELDS for i in instructions):
                paged = True
            else:
                out.append(r.text)
        out.append(" ")
    text = clean("".join(out))
    return "" if paged and len(text.split()) <= 2 else text


def _furniture(document) -> dict[str, list[str]]:
    """{"Header": lines, "Footer": lines}: the text of the headers and footers the document shows
    (a first-page one where the section has a distinct first page, even-page ones where the document
    has them), each line once: a header repeats on every page, and indexed once per section or page
    its document number or "CONFIDENTIAL" would fill the search. A paragraph is a line, and so is a
    table row (its cells joined by " | "); a text box's paragraphs are lines too, except in a cell
    (as in the body)."""
    even = document.settings.odd_and_even_pages_header_footer
    found: dict[str, list[str]] = {"Header": [], "Footer": []}
    seen = set()
    for sect in _xpath(document.element.body, "w:p/w:pPr/w:sectPr | w:sectPr"):  # each section's properties, in order
        first = bool(_xpath(sect, "w:titlePg")) and _val(sect, "w:titlePg", "true") not in ("0", "false", "off")
        for ref in _xpath(sect, "w:headerReference | w:footerReference"):
            which = ref.get(f"{{{W}}}type", "default")
            part = document.part.related_parts.get(ref.get(_R_ID))
            if part is None or part in seen or (which == "first" and not first) or (which == "even" and not even):
                continue
            seen.add(part)
            if (root := _part_root(part)) is None:  # a damaged header loses the header, not the document
                continue
            lines = found["Header" if ref.tag.endswith("headerReference") else "Footer"]
            for item in _with_text_boxes(_block_items(root)):
                if item.tag == _TBL:
                    rows = [[_furniture_text(_xpath(tc, ".//w:p[not(ancestor::w:txbxContent)]"))
                             for tc in _xpath(tr, "w:tc | w:sdt/w:sdtContent/w:tc")]
                            for tr in _xpath(item, "w:tr | w:sdt/w:sdtContent/w:tr")]
                else:
                    rows = [[_furniture_text([item])]]
                for cells in rows:
                    line = " | ".join(text for text in cells if text)
                    if line and line not in lines:
                        lines.append(line)
    return found


def _roman(n: int) -> str:
    out = ""
    for value, letters in ((1000, "m"), (900, "cm"), (500, "d"), (400, "cd"), (100, "c"), (90, "xc"),
                           (50, "l"), (40, "xl"), (10, "x"), (9, "ix"), (5, "v"), (4, "iv"), (1, "i")):
        count, n = divmod(n, value)
        out += letters * count
    return out


def _list_number(n: int, fmt: str) -> str:
    """A list counter in a Word numFmt: decimal, decimalZero, lower/upperLetter (z, aa, bb), lower/upperRoman;
    other formats (ordinal words, Asian counting systems) fall back to decimal."""
    if fmt in ("lowerLetter", "upperLetter") and n > 0:
        text = chr(ord("a") + (n - 1) % 26) * ((n - 1) // 26 + 1)
    elif fmt in ("lowerRoman", "upperRoman") and n > 0:
        text = _roman(n)
    elif fmt == "decimalZero":
        text = f"{n:02d}"
    else:
        return str(n)
    return text.upper() if fmt.startswith("upper") else text


def _val(element, path: str, default: str | None = None) -> str | None:
    """The w:val of the first element at `path` under `element`, or `default`."""
    found = _xpath(element, f"{path}/@w:val")
    return str(found[0]) if found else default


def _count(element, path: str, default: int, most: int = 10_000) -> int:
    """The w:val at `path` as a count from 0 to `most`; `default` when absent or not a number (one
    bad attribute should not fail the whole file, nor a huge span fill memory)."""
    text = _val(element, path)
    return min(int(text), most) if text is not None and text.isdigit() else default


class ListNumbers:
    """The numbers Word shows before numbered list paragraphs ("1.", "2.", "a)", "1.2."), counted in
    document order from numbering.xml.

    A paragraph is numbered by its own w:numPr or by its style's (and the styles it is based on).
    Counters belong to the abstract list, so lists that share one continue each other as in Word; a
    w:startOverride restarts a level the first time its list instance is used; a level resets when
    a higher level counts on. Bullets count but show no label (their glyph carries no text).
    Not modelled: w:lvlRestart, legal numbering (isLgl), level overrides that redefine a whole
    level, and lists linked through numbering styles.
    """

    def __init__(self, document) -> None:
        from docx.opc.constants import RELATIONSHIP_TYPE as RT

        self._levels: dict[str, dict[str, tuple[int, str, str]]] = {}  # abstract id -> ilvl -> (start, numFmt, lvlText)
        self._instances: dict[str, tuple[str, dict[str, int]]] = {}  # numId -> (abstract id, start overrides)
        self._counts: dict[str, dict[int, int]] = {}
        self._started: set[tuple[str, str]] = set()
        self._styles = document.styles.element
        try:
            numbering = document.part.part_related_by(RT.NUMBERING).element
        except KeyError:  # a document without lists
            return
        for abstract in _xpath(numbering, "w:abstractNum"):
            self._levels[abstract.get(f"{{{W}}}abstractNumId")] = {
                lvl.get(f"{{{W}}}ilvl"): (_count(lvl, "w:start", 0), _val(lvl, "w:numFmt", "decimal"),
                                          _val(lvl, "w:lvlText", ""))
                for lvl in _xpath(abstract, "w:lvl")
            }
        for num in _xpath(numbering, "w:num"):
            overrides = {o.get(f"{{{W}}}ilvl"): _count(o, "w:startOverride", 1) for o in _xpath(num, "w:lvlOverride")
                         if _val(o, "w:startOverride") is not None}
            self._instances[num.get(f"{{{W}}}numId")] = (_val(num, "w:abstractNumId"), overrides)

    def _num_pr(self, p) -> tuple[str, str] | None:
        """(numId, ilvl) from the paragraph's own properties, else from its style chain."""
        num_id, ilvl = _val(p, "w:pPr/w:numPr/w:numId"), _val(p, "w:pPr/w:numPr/w:ilvl")
        style_id = _val(p, "w:pPr/w:pStyle")
        for _ in range(10):  # basedOn chains are short; the bound guards against a loop
            if num_id is not None or style_id is None:
                break
            style = _xpath(self._styles, f'w:style[@w:styleId="{style_id}"]') if '"' not in style_id else []
            if not style:
                break
            num_id, ilvl = _val(style[0], "w:pPr/w:numPr/w:numId"), ilvl or _val(style[0], "w:pPr/w:numPr/w:ilvl")
            style_id = _val(style[0], "w:basedOn")
        if num_id is None or num_id == "0":  # numId 0 switches numbering off
            return None
        return num_id, ilvl or "0"

    def label(self, p) -> str:
        """Count the paragraph if it is numbered and return its label ("3.", "b)"), else "". A
        paragraph deleted whole in tracked changes (its text and its mark) is not counted: Word
        numbers the list without it ("3. Lock the door." had followed "1." once step 2 was deleted)."""
        if _xpath(p, "w:pPr/w:rPr/w:del") and not _paragraph_text(p).strip():
            return ""
        found = self._num_pr(p)
        if found is None or found[0] not in self._instances:
            return ""
        num_id, ilvl = found
        abstract, overrides = self._instances[num_id]
        levels = self._levels.get(abstract, {})
        if ilvl not in levels or not ilvl.isdigit():
            return ""
        counts = self._counts.setdefault(abstract, {})
        level, start = int(ilvl), overrides.get(ilvl, levels[ilvl][0])
        if ilvl in overrides and (num_id, ilvl) not in self._started:
            counts.pop(level, None)  # this list instance restarts the count
        self._started.add((num_id, ilvl))
        counts[level] = counts[level] + 1 if level in counts else start
        for deeper in [k for k in counts if k > level]:
            del counts[deeper]
        _, fmt, text = levels[ilvl]
        if fmt in ("bullet", "none"):
            return ""
        for k in range(level + 1):
            k_start, k_fmt, _ = levels.get(str(k), (1, "decimal", ""))
            text = text.replace(f"%{k + 1}", _list_number(counts.get(k, k_start), k_fmt))
        return clean(text)


@dataclass
class _Row:
    """A DOCX table row laid on the table grid: `texts` has one entry per grid column (a cell
    spanning columns repeats its text; one continuing a vertical merge has the text above),
    `cells` the (first column, span) of each cell, `repeat` Word's "repeat as header row" mark,
    `bold` whether all its text is bold."""
    texts: list[str]
    cells: list[tuple[int, int]]
    repeat: bool
    bold: bool


def _bold(tr) -> bool:
    """Whether every run with text in the row is set bold directly (w:b not switched off)."""
    runs = [r for r in _shown(tr) if r.text.strip()]
    return bool(runs) and all(_val(r, "w:rPr/w:b", "true") not in ("0", "false", "off") and _xpath(r, "w:rPr/w:b")
                              for r in runs)


def _table_rows(tbl, numbers: ListNumbers) -> list[_Row]:
    """A table's rows on its grid, rows and cells inside content controls included; rows without
    text are left out."""
    rows: list[_Row] = []
    above: list[str] = []
    for tr in _xpath(tbl, "w:tr | w:sdt/w:sdtContent/w:tr"):
        texts: list[str] = [""] * _count(tr, "w:trPr/w:gridBefore", 0, MAX_COLUMNS)
        cells = []
        for tc in _xpath(tr, "w:tc | w:sdt/w:sdtContent/w:tc"):
            start, span = len(texts), max(_count(tc, "w:tcPr/w:gridSpan", 1, MAX_COLUMNS), 1)
            merge = _xpath(tc, "w:tcPr/w:vMerge")
            if merge and merge[0].get(f"{{{W}}}val", "continue") == "continue":
                text = above[start] if start < len(above) else ""
            else:
                text = _tc_text(tc, numbers)
            texts += [text] * span
            cells.append((start, span))
        above = texts
        if any(texts):
            repeat = _val(tr, "w:trPr/w:tblHeader", "none") not in ("none", "0", "false", "off")
            rows.append(_Row(texts, cells, repeat, _bold(tr)))
    return rows


def _tc_text(tc, numbers: ListNumbers) -> str:
    """A cell's paragraphs, one per line, and the text of any table nested in it (`_nested_text`)."""
    parts = []
    for item in _block_items(tc):
        if item.tag == _TBL:
            parts.append(_nested_text(item, numbers))
        else:
            parts.append(" ".join(filter(None, (numbers.label(item), clean(_paragraph_text(item))))))
    return "\n".join(part for part in parts if part)


def _nested_text(tbl, numbers: ListNumbers) -> str:
    """A table inside a cell as one line: each row "first cell: other cells" (a merged cell once),
    rows joined by "; ", e.g. "CPU: 8 cores; RAM: 32 GB".

    It stays inside the outer cell rather than becoming rows of its own because a nested table is
    nearly always a detail of its outer row (the specs of an item, the steps of a task): kept in
    that row's block, "Laptop" and "RAM: 32 GB" are found together. Small nested tables are mostly
    label/value lists, which this reads right; one with a header row reads "Part: Qty; Pen: 2".
    """
    lines = []
    for row in _table_rows(tbl, numbers):
        values = [clean(t) for i, t in enumerate(row.texts) if clean(t) and (i == 0 or t != row.texts[i - 1])]
        if values:
            lines.append(f"{values[0]}: {', '.join(values[1:])}" if len(values) > 1 else values[0])
    return "; ".join(lines)


def _splits(above: _Row, below: _Row) -> bool:
    """Whether `below` divides a cell of `above` that spans several (but not all) columns: the sub-
    headers under a group header ("2024" over "Hires | Leavers")."""
    width = len(above.texts)
    starts = {start for start, _ in below.cells}
    return any(1 < span < width and any(start < s < start + span for s in starts) for start, span in above.cells)


def _title_row(row: _Row) -> bool:
    """A row that is one cell across the whole table: a title inside the table, not a header."""
    return len(row.cells) == 1 and row.cells[0][1] > 1


def docx_table(tbl, numbers: ListNumbers) -> tuple[str, list[list[str]]]:
    """A DOCX table as (caption, rows with the header first) for `table_blocks`.

    Leading rows that are one cell across the whole table are its caption. The header is the
    first row, and the next one too (up to MAX_HEADER_ROWS) when it divides a cell of the row above
    that spans several columns ("2024" over "Hires | Leavers"), or when both rows are marked
    "repeat as header row", or when both are all bold and the data rows are not. A column's header
    joins its header rows' texts, a vertically merged one once: "Team", "2024 Hires",
    "2024 Leavers". Any other table keeps its first row as the header.
    """
    rows = _table_rows(tbl, numbers)
    captions = []
    while len(rows) > 2 and _title_row(rows[0]):
        captions.append(clean(rows.pop(0).texts[0]))
    n = 1
    while n < min(MAX_HEADER_ROWS, len(rows) - 1):
        above, below = rows[n - 1], rows[n]
        if not (_splits(above, below) or (above.repeat and below.repeat)
                or (above.bold and below.bold and not all(r.bold for r in rows[n + 1:]))):
            break
        n += 1
    width = max((len(r.texts) for r in rows), default=0)
    header = []
    for col in range(width):
        parts: list[str] = []
        for row in rows[:n]:
            text = clean(row.texts[col]) if col < len(row.texts) else ""
            if text and (not parts or parts[-1] != text):
                parts.append(text)
        header.append(" ".join(parts))
    return " ".join(captions), [header] + [r.texts for r in rows[n:]]


def read_docx(path: Path) -> Extracted:
    """DOCX: body paragraphs and tables in document order, content controls (w:sdt) included.

    A paragraph's text includes tracked insertions and leaves tracked deletions out; a numbered
    list paragraph starts with the number Word shows ("2. Scan them.", `ListNumbers`). "Title" and
    "Heading n" paragraphs (and outline levels, `_heading_level`) become Block(kind="heading") and
    set the heading path (the Title is its outermost level); runs a style hides are not read
    (`_hide_styled_runs`); each table data row becomes Block(kind="row") as "Header1: v1; Header2: v2"
    (`docx_table`: one- or two-row headers, title rows as caption, nested tables inside their
    cell). A text box's paragraphs follow the paragraph it is anchored in (`_with_text_boxes`), and
    footnotes and endnotes the paragraph that refers to them, "Footnote: ..." (`Notes`). The table of
    contents and the index are dropped (`_CONTENTS_STYLE`). The headers' distinct lines come first, as
    one block "Header: ...", and the footers' last, "Footer: ..." (`_furniture`). Comments are not
    read (reviewers' notes, often outdated or personal, are not what the document says), nor text
    boxes and notes inside table cells. The title is the core
    property, else the first Title paragraph.
    """
    import docx

    document = docx.Document(str(path))
    _hide_styled_runs(document)
    styles, numbers = ParagraphStyles(document), ListNumbers(document)
    notes = Notes(document)
    title = clean(document.core_properties.title or "") or None
    headings = HeadingPath()
    blocks: list[Block] = []
    for item in _with_text_boxes(_block_items(document.element.body)):
        if item.tag == _TBL:
            caption, rows = docx_table(item, numbers)
            blocks.extend(table_blocks(rows, heading=table_heading(blocks, headings.path, caption=caption)))
            continue
        label = numbers.label(item)  # counted even when empty: Word numbers empty list paragraphs too
        text = clean(_paragraph_text(item))
        if text and _CONTENTS_STYLE.fullmatch(styles.name(item)):
            continue  # the contents or the index
        if text:
            text = f"{label} {text}" if label else text
            level = _heading_level(item, styles)
            if level is None:
                blocks.append(Block(text, heading=headings.path))
            else:
                blocks.append(Block(text, heading=headings.enter(level, text), kind="heading"))
                if level == 0 and title is None:
                    title = text
        # A note goes right after the paragraph that refers to it, in its section.
        blocks.extend(Block(note, heading=headings.path) for note in notes.of(item))
    # under the document's title: "who owns the password policy?" finds "Header: ... owner: IT Security"
    furniture, above = _furniture(document), (title,) if title else ()
    header, footer = ([Block(f"{kind}: " + "; ".join(furniture[kind]), heading=above)] if furniture[kind] else []
                      for kind in ("Header", "Footer"))
    return Extracted(header + blocks + footer, title=title, kind="docx")
