"""Readers: each format on a real file (exact blocks, pages, headings, rows), the bundled samples,
and every kind of bad input ending in a ReadError with the expected reason."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from archivist.ingest.readers import ReadError, detect_kind, read
from archivist.records import Block
from conftest import SAMPLE_DOCS

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
DATA = Path(__file__).resolve().parent / "data"


def triples(extracted) -> list[tuple]:
    """Blocks as (text, page, heading, kind) tuples, for exact comparison."""
    return [(b.text, b.page, b.heading, b.kind) for b in extracted.blocks]


def reason(path: Path, **kwargs) -> str:
    """The ReadError message read() gives for `path` (fails the test if it reads fine)."""
    with pytest.raises(ReadError) as info:
        read(path, **kwargs)
    return str(info.value)


# ---------------------------------------------------------------------------------------------
# Builders for small real files


def make_pdf(path: Path, pages: list[list[tuple[int, str]]], title: str | None = None) -> Path:
    """A PDF whose pages hold (font size, text) items; bigger sizes are bold headings, every item
    is a multi_cell followed by a paragraph gap."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_creation_date(dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc))
    if title:
        pdf.set_title(title)
    for items in pages:
        pdf.add_page()
        for size, text in items:
            pdf.set_font("Helvetica", "B" if size > 11 else "", size)
            pdf.multi_cell(0, size * 0.55, text, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(4)
    pdf.output(str(path))
    return path


LONG = (
    "Core hours run from 10:00 to 15:00 on working days. This sentence is long enough to wrap onto a "
    "second line of the page, so the reader has to join the lines of one paragraph with a space."
)


@pytest.fixture
def simple_pdf(tmp_path) -> Path:
    return make_pdf(
        tmp_path / "simple.pdf",
        [
            [(18, "Intro"), (11, LONG), (11, "A second paragraph."), (14, "Details"), (11, "Third paragraph.")],
            [(11, "Page two: SKU NW-4410 costs EUR 18950.")],
        ],
        title="Test handbook",
    )


def make_docx(path: Path) -> Path:
    import docx

    d = docx.Document()
    d.core_properties.title = "Travel rules"
    d.add_heading("Travel", 1)
    d.add_paragraph("Book   trains\tfirst.")
    d.add_paragraph("")  # empty paragraphs are dropped
    d.add_heading("Per diem", 2)
    table = d.add_table(rows=3, cols=3)
    for r, row in enumerate([["Country", "Rate", "Note"], ["France", "EUR 53", ""], ["Portugal", "EUR 36", "coast"]]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    d.add_paragraph("After the table.")
    d.add_heading("Hotels", 1)
    d.add_paragraph("Caps apply.")
    d.save(str(path))
    return path


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def make_zeros_zip(path: Path, member: str, megabytes: int) -> Path:
    """A zip holding `megabytes` MB of zeros in one member, written in 1 MB pieces so the test never
    holds the expanded data; the file itself stays under 1 MB."""
    chunk = bytes(1024 * 1024)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        with zf.open(member, "w", force_zip64=True) as out:
            for _ in range(megabytes):
                out.write(chunk)
    return path


# ---------------------------------------------------------------------------------------------
# Each reader on a real file


def test_pdf_pages_paragraphs_and_headings(simple_pdf):
    extracted = read(simple_pdf)
    assert extracted.kind == "pdf"
    assert extracted.pages == 2
    assert extracted.title == "Test handbook"
    assert triples(extracted) == [
        ("Intro", 1, ("Intro",), "heading"),
        (LONG, 1, ("Intro",), "paragraph"),
        ("A second paragraph.", 1, ("Intro",), "paragraph"),
        ("Details", 1, ("Intro", "Details"), "heading"),
        ("Third paragraph.", 1, ("Intro", "Details"), "paragraph"),
        ("Page two: SKU NW-4410 costs EUR 18950.", 2, ("Intro", "Details"), "paragraph"),
    ]


def manual_pdf(path: Path) -> Path:
    """A small manual with what real ones have (bench/RESULTS.md, finding 48): a title page whose
    title is also every other page's running header, a table of contents with dot leaders, a
    running footer naming the chapter and the page, a chapter heading with parentheses from the
    Symbol font (their boxes are taller than Helvetica's at the same size), section headings at 13
    and 13.4 pt, and a large decoration and a large formula inside a chapter."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_creation_date(dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc))
    pdf.set_auto_page_break(False)
    pdf.add_font("DejaVu", "", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    body = "The operator checks every item before the shift starts and writes the result in the log."

    def text(size: float, line: str, style: str = "", font: str = "Helvetica", gap: float = 4) -> None:
        pdf.set_font(font, style, size)
        pdf.multi_cell(0, size * 0.55, line, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(gap)

    def page() -> None:
        pdf.add_page()
        text(9, "Field Manual")

    def footer(chapter: str) -> None:
        pdf.set_y(-20)
        text(9, f"{chapter} {pdf.page}")

    pdf.add_page()
    text(24, "Field Manual", "B")
    text(16, "Contents", "B")
    for entry in ("1 Setup (SET) . . . . . . . . 2", "1.1 Power . . . . . . . . 2", "2 Operation . . . . . . . . 4",
                  "Cables, see also Power . . . . . . 2, 3"):  # an index's entry, to two pages
        text(11, entry, gap=1)
    for number, (chapter, sections) in enumerate([("Setup", ["1.1 Power", "1.2 Cables"]), ("Operation", [])], 1):
        for n, size in enumerate((13, 13.4)[: len(sections)] or [None]):
            page()
            if n == 0:
                pdf.set_font("Helvetica", "B", 16)
                pdf.cell(pdf.get_string_width(f"{number} {chapter} "), 9, f"{number} {chapter} ")
                if chapter == "Setup":
                    for piece, font in (("(", "Symbol"), ("SET", "Helvetica"), (")", "Symbol")):
                        pdf.set_font(font, "B" if font == "Helvetica" else "", 16)
                        pdf.cell(pdf.get_string_width(piece), 9, piece)
                pdf.ln(13)
            if sections:
                text(size, sections[n], "B")
            text(11, body)
            if number == 1 and n == 1:
                text(40, "✡ ✠", font="DejaVu")
                text(30, "x = y + 2")
                text(11, "After the figure the section goes on.")
            footer(f"Chapter {number}: {chapter}")
    page()
    text(11, "Switch the unit off at the end of the shift.")
    footer("Chapter 2: Operation")
    pdf.output(str(path))
    return path


def test_pdf_headings_furniture_and_contents_of_a_real_manual(tmp_path):
    blocks = read(manual_pdf(tmp_path / "manual.pdf")).blocks
    headings = [(b.text, b.page, b.heading) for b in blocks if b.kind == "heading"]
    top = "Field Manual"
    assert headings == [
        (top, 1, (top,)),  # kept on page 1, where it is the title, though it runs atop every other page
        ("Contents", 1, (top, "Contents")),
        ("1 Setup (SET)", 2, (top, "1 Setup (SET)")),  # the parentheses' taller boxes make no level of their own
        ("1.1 Power", 2, (top, "1 Setup (SET)", "1.1 Power")),
        ("1.2 Cables", 3, (top, "1 Setup (SET)", "1.2 Cables")),  # 13.4 pt beside 13: a sibling
        ("2 Operation", 4, (top, "2 Operation")),  # the 40 pt decoration and formula head nothing
    ]
    texts = [b.text for b in blocks]
    assert not any("Chapter" in t or ". . ." in t or t == top for t in texts[1:])  # footers, header, contents
    assert "After the figure the section goes on." in texts
    assert blocks[-1].text == "Switch the unit off at the end of the shift." and blocks[-1].heading == (top, "2 Operation")


def test_large_lines_that_run_on_are_a_paragraph_not_a_heading(tmp_path):
    # A scanned page set larger than the others came in as one heading of 1,151 characters, the
    # heading path of everything after it (and cut from each chunk's vector by the embedder's window).
    big = " ".join([LONG] * 3)
    pages = [[(18, "Intro")] + [(11, LONG)] * 5, [(14, big), (11, "The end.")]]
    blocks = read(make_pdf(tmp_path / "mixed.pdf", pages)).blocks
    assert [(b.kind, b.heading) for b in blocks] == [("heading", ("Intro",))] + [("paragraph", ("Intro",))] * 7
    assert blocks[6].text == big


def test_tex_hyphenation_marks_are_undone(tmp_path):
    from archivist.ingest.layout import join_lines

    # pdfium marks TeX's hyphenation U+FFFE (or \x02), at a line end or inside a line it joined
    assert join_lines(["Distinguished Encoding Rules (DER) manip\ufffeulation.", "Copyright"]) == \
        "Distinguished Encoding Rules (DER) manipulation. Copyright"
    assert join_lines(["structures man\ufffe", "agement"]) == "structures management"
    assert join_lines(["extension NW\x02", "4410 today"]) == "extension NW-4410 today"  # a code keeps its hyphen


def test_pdf_without_text_layer(tmp_path):
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.rect(20, 20, 100, 60, style="F")  # a "scan": marks on the page but no text
    pdf.output(str(tmp_path / "scan.pdf"))
    assert reason(tmp_path / "scan.pdf") == "no text layer, and no scanned image on its pages to OCR"


def test_docx_body_order_headings_and_table_rows(tmp_path):
    extracted = read(make_docx(tmp_path / "t.docx"))
    assert extracted.kind == "docx"
    assert extracted.title == "Travel rules"
    assert triples(extracted) == [
        ("Travel", None, ("Travel",), "heading"),
        ("Book trains first.", None, ("Travel",), "paragraph"),
        ("Per diem", None, ("Travel", "Per diem"), "heading"),
        ("Country: France; Rate: EUR 53", None, ("Travel", "Per diem"), "row"),
        ("Country: Portugal; Rate: EUR 36; Note: coast", None, ("Travel", "Per diem"), "row"),
        ("After the table.", None, ("Travel", "Per diem"), "paragraph"),
        ("Hotels", None, ("Hotels",), "heading"),
        ("Caps apply.", None, ("Hotels",), "paragraph"),
    ]


def test_html_drops_furniture_and_keeps_structure(tmp_path):
    page = tmp_path / "p.html"
    page.write_text(
        "<!doctype html><html><head><title>IT  rules</title><style>p{}</style></head><body>"
        "<header>Site header</header><nav>Menu</nav>"
        "<main><h1>Security</h1><p>Use the <a href='/vpn'>VPN</a>.</p>"
        "<h2>Office <em>hours</em>!</h2><ul><li>Mon to Fri</li><li>07:00 to 20:00</li></ul>"
        "<table><tr><th>Class</th><th>Who</th></tr>"
        "<tr><td>Inter<b>nal</b></td><td><p>All</p><p>staff</p></td></tr></table>"
        "<pre>vpn connect\n  --fast</pre><script>alert('x')</script></main>"
        "<aside>Related links</aside><footer>Copyright</footer></body></html>",
        encoding="utf-8",
    )
    extracted = read(page)
    assert extracted.kind == "html"
    assert extracted.title == "IT rules"
    assert triples(extracted) == [
        ("Security", None, ("Security",), "heading"),
        ("Use the VPN.", None, ("Security",), "paragraph"),
        ("Office hours!", None, ("Security", "Office hours!"), "heading"),  # inline tags add no spaces
        ("Mon to Fri", None, ("Security", "Office hours!"), "paragraph"),
        ("07:00 to 20:00", None, ("Security", "Office hours!"), "paragraph"),
        ("Class: Internal; Who: All staff", None, ("Security", "Office hours!"), "row"),
        ("vpn connect\n  --fast", None, ("Security", "Office hours!"), "code"),
    ]


def test_html_messy_markup_from_data_folder():
    extracted = read(DATA / "messy.html")
    assert extracted.title == "Messy page"
    texts = [b.text for b in extracted.blocks]
    assert texts[:3] == [
        "Loose text in a div",
        "First paragraph with a line break and bold text.",
        "Unclosed second paragraph",
    ]
    # Nested list items are separate blocks, not duplicated inside their parent.
    assert texts[4:7] == ["Item one", "Nested item", "Item two"]
    # colspan repeats the header so values stay under it; empty cells are left out.
    assert "Name: Ana; Contact: ext 12; Contact: ana@example.com" in texts
    assert "Name: Ben; Contact: ben@example.com" in texts
    # An h3 after an h4 closes the h4.
    by_text = {b.text: b for b in extracted.blocks}
    assert by_text["Under deep."].heading == ("Section A", "Deep heading")
    assert by_text["Sub B"].heading == ("Section A", "Sub B")
    assert by_text["indented code\n  more"].kind == "code"  # <pre> keeps relative indentation
    joined = " ".join(texts)
    for furniture in ("Home | About", "not text", "comment", "Copyright footer"):
        assert furniture not in joined


def test_html_row_headed_and_headerless_tables_and_permalinks(tmp_path):
    # Apache httpd's manual, as Debian's apache2-doc ships it: every directive has a box whose rows
    # are a <th> label and a <td> value, and every heading ends in a permalink "¶". Read as a
    # table with its first row for header, the box became "Description:: Syntax:; Enables ...:
    # RewriteEngine on|off", and every heading path ended in "¶".
    page = tmp_path / "mod_rewrite.html"
    page.write_text(
        "<html><body><div id='page-content'>"
        "<h2 id='rewriteengine'><span>RewriteEngine</span> Directive "
        "<a title='Permanent link' href='#rewriteengine' class='permalink'>&para;</a></h2>"
        "<table class='directive'>"
        "<tr><th><a href='directive-dict.html#Description'>Description:</a></th>"
        "<td>Enables or disables runtime rewriting engine</td></tr>"
        "<tr><th><a href='directive-dict.html#Syntax'>Syntax:</a></th><td><code>RewriteEngine on|off</code></td></tr>"
        "<tr><th>Default:</th><td><code>RewriteEngine off</code></td></tr>"
        "<tr><th>Override:</th><td></td></tr></table>"
        "<p>See <a href='#top'>#</a> the <a href='#flags'>flags</a>.</p>"
        # A matrix (a header row, then rows labelled by a <th>) keeps its header over the columns.
        "<table><tr><th></th><th>Prefork</th><th>Event</th></tr>"
        "<tr><th>Threads</th><td>no</td><td>yes</td></tr></table>"
        # No <th>, no <thead>: every row is data (Apache's index "Anonymous | mod_authn_anon"; Python's
        # collections table had come in as "namedtuple(): deque; factory function ...: list-like ...").
        "<table class='qref'><tr><td><a href='a.html'>Anonymous</a></td><td>mod_authn_anon</td></tr>"
        "<tr><td>Alias</td><td>mod_alias</td></tr></table>"
        "<table><tr><td>Syntax:</td><td>listen address</td></tr><tr><td>Default:</td><td>listen *:80</td></tr></table>"
        # ... unless its first row is all bold: then it is the header.
        "<table><tr><td><b>Directive</b></td><td><strong>Module</strong></td></tr>"
        "<tr><td>Alias</td><td>mod_alias</td></tr></table>"
        "</div></body></html>",
        encoding="utf-8",
    )
    heading = ("RewriteEngine Directive",)
    assert triples(read(page)) == [
        ("RewriteEngine Directive", None, heading, "heading"),
        ("Description: Enables or disables runtime rewriting engine", None, heading, "row"),
        ("Syntax: RewriteEngine on|off", None, heading, "row"),
        ("Default: RewriteEngine off", None, heading, "row"),
        ("See the flags.", None, heading, "paragraph"),
        ("Threads; Prefork: no; Event: yes", None, heading, "row"),
        ("Anonymous; mod_authn_anon", None, heading, "row"),
        ("Alias; mod_alias", None, heading, "row"),
        ("Syntax: listen address", None, heading, "row"),
        ("Default: listen *:80", None, heading, "row"),
        ("Directive: Alias; Module: mod_alias", None, heading, "row"),
    ]


def test_markdown_headings_code_tables_and_lists(tmp_path):
    md = tmp_path / "notes.md"
    md.write_text(
        "---\ntitle: Runbook\n---\n\n"
        "# On call\n\nFirst **bold** line\ncontinues here with a [link](http://x.example).\n\n"
        "## Escalation\n\n- Call extension 4417\n- Wait 45 minutes\n\n"
        "```bash\nnwctl status --cluster prod-eu\n  --verbose\n\n# not a heading\n```\n\n"
        "| Severity | Response |\n|---|:---:|\n| SEV1 | 15 minutes |\n| SEV2 | 1 hour |\n\n"
        "<!-- a hidden\n\nnote -->\nSetext title <!-- inline -->\n============\n\nLast paragraph.\n",
        encoding="utf-8",
    )
    extracted = read(md)
    assert extracted.kind == "markdown"
    assert extracted.title == "Runbook"  # front matter beats the first h1
    assert triples(extracted) == [
        ("On call", None, ("On call",), "heading"),
        ("First bold line continues here with a link.", None, ("On call",), "paragraph"),
        ("Escalation", None, ("On call", "Escalation"), "heading"),
        ("Call extension 4417", None, ("On call", "Escalation"), "paragraph"),
        ("Wait 45 minutes", None, ("On call", "Escalation"), "paragraph"),
        ("nwctl status --cluster prod-eu\n  --verbose\n\n# not a heading", None, ("On call", "Escalation"), "code"),
        ("Severity: SEV1; Response: 15 minutes", None, ("On call", "Escalation"), "row"),
        ("Severity: SEV2; Response: 1 hour", None, ("On call", "Escalation"), "row"),
        ("Setext title", None, ("Setext title",), "heading"),
        ("Last paragraph.", None, ("Setext title",), "paragraph"),
    ]


def test_text_paragraphs_and_encodings(tmp_path):
    utf8 = tmp_path / "a.txt"
    utf8.write_bytes("Caf\u00e9 opens at  08:00.\nSecond line.\n\n  \n\nNext\tparagraph.\n".encode("utf-8"))
    assert triples(read(utf8)) == [
        ("Caf\u00e9 opens at 08:00. Second line.", None, (), "paragraph"),
        ("Next paragraph.", None, (), "paragraph"),
    ]
    cp1252 = tmp_path / "b.txt"
    cp1252.write_bytes("\u201cQuoted\u201d price: 5 \u20ac, na\u00efve".encode("cp1252"))
    assert [b.text for b in read(cp1252).blocks] == ["\u201cQuoted\u201d price: 5 \u20ac, na\u00efve"]
    latin1 = tmp_path / "c.txt"
    latin1.write_bytes(b"Gr\xfc\xdfe \x81")  # 0x81 is undefined in cp1252: latin-1 takes it
    assert [b.text for b in read(latin1).blocks] == ["Gr\u00fc\u00dfe"]  # U+0081 is a control: dropped
    bom = tmp_path / "d.txt"
    bom.write_bytes("\ufeffWith BOM".encode("utf-8"))
    assert [b.text for b in read(bom).blocks] == ["With BOM"]
    utf16 = tmp_path / "e.txt"
    utf16.write_bytes("Wide text\n\nTwo".encode("utf-16"))
    assert [b.text for b in read(utf16).blocks] == ["Wide text", "Two"]


def test_csv_rows_with_header_and_sniffed_dialect(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text('SKU;Product;Price\nNW-1;"Mover; large";18950.00\nNW-2;;99\n\n', encoding="utf-8")
    extracted = read(path)
    assert extracted.kind == "csv"
    assert triples(extracted) == [
        ("SKU: NW-1; Product: Mover; large; Price: 18950.00", None, ("prices.csv",), "row"),
        ("SKU: NW-2; Price: 99", None, ("prices.csv",), "row"),
    ]


def test_xlsx_sheets_header_and_values(tmp_path):
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Prices"
    ws.append([])  # the header is the first NON-empty row
    ws.append(["SKU", "Price", "Since"])
    ws.append(["A-1", 12.0, dt.datetime(2025, 3, 1)])
    ws.append(["B-2", 7.5, None])
    ws.append([None, None, None])
    staff = wb.create_sheet("Staff")
    staff.append(["Name", "Role", "Active"])
    staff.append(["Ana", "CTO", True])
    wb.save(tmp_path / "book.xlsx")
    extracted = read(tmp_path / "book.xlsx")
    assert extracted.kind == "xlsx"
    assert extracted.pages == 2
    assert triples(extracted) == [
        ("SKU: A-1; Price: 12; Since: 2025-03-01", 1, ("Prices",), "row"),
        ("SKU: B-2; Price: 7.5", 1, ("Prices",), "row"),
        ("Name: Ana; Role: CTO; Active: TRUE", 2, ("Staff",), "row"),
    ]


@pytest.mark.slow
def test_office_file_that_expands_past_the_sandbox_size_gets_the_time_limit(tmp_path):
    """A small XLSX is read in-process; one whose XML expands past SANDBOX_ABOVE_MB goes to the child
    process and its time limit, however small the file on disk."""
    import openpyxl

    from archivist.ingest.readers import MB, SANDBOX_ABOVE_MB

    wb = openpyxl.Workbook(write_only=True)
    sheet = wb.create_sheet("Log")
    sheet.append(["When", "Host", "Event", "Detail"])
    for i in range(40_000):
        sheet.append([f"2025-01-{i % 28 + 1:02d}", f"host-{i % 50}", "restart", f"job {i} finished"])
    wb.save(tmp_path / "log.xlsx")
    path = tmp_path / "log.xlsx"
    with zipfile.ZipFile(path) as zf:
        unzipped = sum(i.file_size for i in zf.infolist())
    assert path.stat().st_size < SANDBOX_ABOVE_MB * MB < unzipped
    assert reason(path, timeout=0.01) == "took longer than 0.01 s to read (XLSX parsing stopped)"
    rows = read(path).blocks
    assert len(rows) == 40_000 and rows[-1].text == "When: 2025-01-16; Host: host-49; Event: restart; Detail: job 39999 finished"
    small = tmp_path / "small.xlsx"
    wb = openpyxl.Workbook()
    wb.active.append(["Name", "Role"])
    wb.active.append(["Ana", "CTO"])
    wb.save(small)
    assert read(small, timeout=0.01).blocks[0].text == "Name: Ana; Role: CTO"  # in-process: no child to time out


def test_pptx_one_block_per_slide(tmp_path):
    from pptx import Presentation
    from pptx.util import Inches

    prs = Presentation()
    s1 = prs.slides.add_slide(prs.slide_layouts[1])
    s1.shapes.title.text = "Roadmap 2025"
    s1.placeholders[1].text_frame.text = "Ship firmware 3.2\nOpen   Rotterdam hub"
    s1.notes_slide.notes_text_frame.text = "Mention the budget."
    s2 = prs.slides.add_slide(prs.slide_layouts[5])
    s2.shapes.title.text = "Numbers"
    table = s2.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(4), Inches(1)).table
    for (r, c), value in {(0, 0): "Metric", (0, 1): "Value", (1, 0): "Robots", (1, 1): "412"}.items():
        table.cell(r, c).text = value
    s3 = prs.slides.add_slide(prs.slide_layouts[6])  # blank layout: no title
    s3.shapes.add_textbox(Inches(1), Inches(1), Inches(3), Inches(1)).text_frame.text = "Thanks"
    prs.save(tmp_path / "deck.pptx")
    extracted = read(tmp_path / "deck.pptx")
    assert extracted.kind == "pptx"
    assert extracted.pages == 3
    assert extracted.title == "Roadmap 2025"
    assert triples(extracted) == [
        (
            "Roadmap 2025\nShip firmware 3.2\nOpen Rotterdam hub\nNotes: Mention the budget.",
            1, ("Roadmap 2025",), "slide",
        ),
        ("Numbers\nMetric: Robots; Value: 412", 2, ("Numbers",), "slide"),
        ("Thanks", 3, (), "slide"),
    ]


# ---------------------------------------------------------------------------------------------
# Detection: content first, extension only as a tie-break


def test_detect_kind_by_content(tmp_path, simple_pdf):
    def kind(name: str, data: bytes | None = None, source: Path | None = None) -> str | None:
        path = tmp_path / name
        path.write_bytes(source.read_bytes() if source else data)
        return detect_kind(path, path.read_bytes()[:8192])

    docx_file = make_docx(tmp_path / "src.docx")
    assert kind("report.txt", source=simple_pdf) == "pdf"  # a PDF with the wrong extension
    assert kind("report", source=docx_file) == "docx"  # no extension at all
    assert kind("page.txt", b"<!DOCTYPE html><html><body>x</body></html>") == "html"
    assert kind("frag.html", b"<p>fragment</p>") == "html"  # text: the extension decides
    assert kind("notes.md", b"# Title\n\ntext") == "markdown"
    assert kind("data.csv", b"a,b\n1,2\n") == "csv"
    assert kind("README", b"just words") == "text"
    assert kind("image.txt", b"\x89PNG\r\n\x1a\n" + bytes(50)) == "image"  # read by OCR (ingest/ocr.py)
    assert kind("old.doc", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500)) is None
    assert kind("archive.zip", make_zip(tmp_path / "z.zip", {"a.txt": b"hi"}).read_bytes()) is None
    assert kind("blob", bytes(range(256)) * 4) is None


# ---------------------------------------------------------------------------------------------
# Bad input: a ReadError with a clear reason, never another exception, never a hang


def test_empty_files(tmp_path):
    (tmp_path / "zero.txt").write_bytes(b"")
    assert reason(tmp_path / "zero.txt") == "empty file (0 bytes)"
    (tmp_path / "blank.md").write_text("  \n\n\t\n")
    assert reason(tmp_path / "blank.md") == "empty file (no text)"
    (tmp_path / "header-only.html").write_text("<html><body><nav>menu</nav><script>x()</script></body></html>")
    assert reason(tmp_path / "header-only.html") == "empty file (no text)"


def test_missing_file_directory_and_fifo(tmp_path):
    assert reason(tmp_path / "nope.pdf") == "file not found"
    assert reason(tmp_path) == "is a directory, not a file"
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe.txt")  # opening it for reading would block forever
        assert reason(tmp_path / "pipe.txt") == "not a regular file"


def test_over_max_mb(tmp_path):
    big = tmp_path / "big.txt"
    big.write_bytes(b"word " * (300 * 1024))  # 1.5 MB
    assert reason(big, max_mb=1) == "file too large: 1.5 MB (limit 1 MB)"
    assert read(big, max_mb=2).blocks[0].text.startswith("word word")


def test_unsupported_binary(tmp_path):
    png = tmp_path / "photo.pdf"  # the extension does not fool detection: a PNG is an image, read by OCR
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    assert reason(png) == "corrupt image: not a readable PNG, JPEG, TIFF, BMP, WebP or GIF"
    blob = tmp_path / "blob.dat"
    blob.write_bytes(bytes(range(256)) * 4)
    assert reason(blob) == "unsupported file type (looks like binary data)"
    archive = make_zip(tmp_path / "photos.zip", {"a.jpg": b"\xff\xd8\xff"})
    assert reason(archive) == "unsupported file type (looks like a ZIP archive that is not a DOCX, XLSX or PPTX)"


def test_binary_content_in_text_file(tmp_path):
    path = tmp_path / "log.txt"
    path.write_bytes(b"hello\x00world")
    assert reason(path) == "binary file (contains NUL bytes), not text"


def test_encrypted_pdf(tmp_path, simple_pdf):
    pypdf = pytest.importorskip("pypdf")
    writer = pypdf.PdfWriter(clone_from=str(simple_pdf))
    writer.encrypt(user_password="secret", owner_password="owner")
    writer.write(str(tmp_path / "locked.pdf"))
    assert reason(tmp_path / "locked.pdf") == "encrypted PDF (needs a password)"
    # Only an owner password (permissions, no open password): readable like any PDF.
    writer = pypdf.PdfWriter(clone_from=str(simple_pdf))
    writer.encrypt(user_password="", owner_password="owner")
    writer.write(str(tmp_path / "restricted.pdf"))
    assert read(tmp_path / "restricted.pdf").blocks[1].text == LONG


def test_truncated_pdf(tmp_path, simple_pdf):
    data = simple_pdf.read_bytes()
    (tmp_path / "cut.pdf").write_bytes(data[: len(data) // 2])
    assert reason(tmp_path / "cut.pdf") == "corrupt PDF: damaged or truncated file structure"
    (tmp_path / "header-only.pdf").write_bytes(b"%PDF-1.7\n")
    assert reason(tmp_path / "header-only.pdf").startswith("corrupt PDF")


def test_truncated_docx(tmp_path):
    data = make_docx(tmp_path / "t.docx").read_bytes()
    (tmp_path / "cut.docx").write_bytes(data[: len(data) // 2])
    assert reason(tmp_path / "cut.docx") == "corrupt DOCX: not a complete zip archive (truncated or damaged)"


def test_docx_with_broken_parts(tmp_path):
    # A zip that claims to be a document but lacks the package parts python-docx needs.
    missing = make_zip(tmp_path / "parts.docx", {"word/document.xml": b"<w:document/>"})
    assert reason(missing).startswith("corrupt DOCX: ")
    # A complete package whose main XML is garbage.
    good = make_docx(tmp_path / "good.docx")
    with zipfile.ZipFile(good) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    members["word/document.xml"] = b"<w:document><unclosed"
    assert reason(make_zip(tmp_path / "garbled.docx", members)).startswith("corrupt DOCX: ")


def test_encrypted_or_legacy_office(tmp_path):
    # Password-protected OOXML is stored as an OLE2 compound file, like legacy .doc.
    path = tmp_path / "secret.docx"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(1024))
    assert reason(path).startswith("encrypted or legacy Office file (")


@pytest.mark.slow
def test_zip_bomb_total_size(tmp_path):
    bomb = make_zeros_zip(tmp_path / "bomb.docx", "word/document.xml", 600)
    assert bomb.stat().st_size < 2 * 1024 * 1024
    started = time.monotonic()
    assert reason(bomb) == "zip bomb suspected: expands to 600 MB (limit 500 MB)"
    assert time.monotonic() - started < 2  # decided from the directory, nothing decompressed


def test_zip_bomb_compression_ratio(tmp_path):
    bomb = make_zeros_zip(tmp_path / "ratio.xlsx", "xl/workbook.xml", 50)
    message = reason(bomb)  # 50 MB is under the size limit, but the ratio gives it away
    assert message.startswith("zip bomb suspected: xl/workbook.xml expands ")
    assert message.endswith("x to 50 MB")
    assert reason(bomb, max_unzipped_mb=10) == "zip bomb suspected: expands to 50 MB (limit 10 MB)"


def test_pdf_timeout_kills_the_parser(simple_pdf):
    started = time.monotonic()
    assert reason(simple_pdf, timeout=0.01) == "took longer than 0.01 s to read (PDF parsing stopped)"
    assert time.monotonic() - started < 5


def test_pdf_child_limits_its_address_space():
    # The limit the PDF child sets on itself: a big allocation fails with MemoryError.
    code = (
        "from archivist.ingest.readers import _limit_address_space\n"
        "_limit_address_space(256)\n"
        "try:\n    b = bytearray(1024 * 1024 * 1024)\nexcept MemoryError:\n    print('limited')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "limited"


@pytest.mark.parametrize("name", [
    "employee-handbook.pdf", "travel-expense-policy.docx", "it-security-policy.html",
    "oncall-runbook.md", "price-list-2025.csv",
])
@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.97])
def test_truncated_samples_never_escape_as_other_errors(tmp_path, name, fraction):
    data = (SAMPLES / name).read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: max(1, int(len(data) * fraction))])
    try:
        extracted = read(path, timeout=30)
    except ReadError as exc:
        assert str(exc)  # a reason, whatever it is
    else:
        assert all(b.text == b.text.strip() and b.text for b in extracted.blocks)


# ---------------------------------------------------------------------------------------------
# The bundled samples

SAMPLE_FILES = [p.name for p in SAMPLE_DOCS]


@pytest.fixture(scope="module")
def sample_reads() -> dict:
    """Each sample read once for the module: the scan and the picture go through OCR, the costly part."""
    return {name: read(SAMPLES / name) for name in SAMPLE_FILES}


@pytest.fixture(scope="module")
def sample_texts(sample_reads) -> dict[str, str]:
    return {name: "\n".join(b.text for b in doc.blocks) for name, doc in sample_reads.items()}


def test_samples_kinds_and_size(sample_reads, sample_texts):
    kinds = {name: doc.kind for name, doc in sample_reads.items()}
    assert kinds == {
        "customer-support-faq.html": "html",
        "employee-handbook.pdf": "pdf",
        "it-security-policy.html": "html",
        "leadership-meeting-2025-03-12.docx": "docx",
        "oncall-runbook.md": "markdown",
        "price-list-2025.csv": "csv",
        "product-meeting-2025-04-02.md": "markdown",
        "travel-expense-policy.docx": "docx",
        "warehouse-safety-memo-scan.pdf": "pdf",  # an image-only PDF: read by OCR
        "visitor-badge-notice.png": "image",
        "regional-sales-2024.pdf": "pdf",  # a ruled table
    }
    words = sum(len(t.split()) for t in sample_texts.values())
    assert 2500 <= words <= 6000  # "roughly 3,000-6,000": small enough to embed in under ~80 chunks


def test_sample_questions_cite_exactly_one_document(sample_texts):
    questions = [json.loads(line) for line in (SAMPLES / "QUESTIONS.jsonl").read_text().splitlines() if line.strip()]
    answered = [q for q in questions if q["answer"] is not None]
    assert len(answered) >= 20
    assert {q["document"] for q in answered} == set(SAMPLE_FILES)  # every file is covered
    for q in answered:
        holders = [name for name, text in sample_texts.items() if q["answer"] in text]
        assert holders == [q["document"]], q
    unanswered = [q for q in questions if q["answer"] is None]
    assert len(unanswered) == 3 and all(q["document"] is None for q in unanswered)
    everything = " ".join(sample_texts.values()).lower()
    for word in ("ticker", "lyon", "dental"):
        assert word not in everything


def test_sample_handbook_pdf_structure():
    extracted = read(SAMPLES / "employee-handbook.pdf")
    assert (extracted.pages, extracted.title) == (4, "Northwind Robotics Employee Handbook")
    parental = next(b for b in extracted.blocks if "20 weeks" in b.text)
    assert parental.page == 2
    assert parental.heading == ("Northwind Robotics Employee Handbook", "3. Leave", "3.2 Parental leave (policy HR-17)")
    assert parental.text.startswith("Under policy HR-17, every parent, regardless of gender, receives 20 weeks")
    assert not any("Employee Handbook - page" in b.text for b in extracted.blocks)  # running footer dropped


def test_sample_docx_html_md_csv_structure():
    travel = read(SAMPLES / "travel-expense-policy.docx")
    assert Block(
        "Country: France; Full-day rate: EUR 53; Partial-day rate: EUR 35; Hotel cap per night: EUR 160",
        None, ("Travel and Expense Policy (FIN-08)", "2. Daily allowances"), "row",
    ) in travel.blocks
    security = read(SAMPLES / "it-security-policy.html")
    vpn = next(b for b in security.blocks if "07:00 to 20:00 CET" in b.text)
    assert vpn.heading == ("IT Security Policy (IT-12)", "3. Remote access", "3.1 VPN support")
    text = " ".join(b.text for b in security.blocks)
    assert "Intranet build" not in text and "analytics" not in text and "Search the intranet" not in text
    runbook = read(SAMPLES / "oncall-runbook.md")
    assert Block(
        "nwctl status --cluster prod-eu\nnwctl queue lag --topic telemetry --max 500",
        None, ("Platform On-Call Runbook", "First checks"), "code",
    ) in runbook.blocks
    prices = read(SAMPLES / "price-list-2025.csv")
    assert prices.blocks[0] == Block(
        "SKU: NW-4410; Product: PalletPilot 400 autonomous pallet mover; Category: Robots; "
        "Price (EUR): 18950.00; Warranty (months): 24; Lead time (weeks): 8",
        None, ("price-list-2025.csv",), "row",
    )
    assert len(prices.blocks) == 12


def test_make_samples_is_deterministic_and_matches_committed(tmp_path):
    spec = importlib.util.spec_from_file_location("make_samples", REPO / "scripts" / "make_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    builders = {
        "employee-handbook.pdf": module.make_handbook,
        "travel-expense-policy.docx": module.make_travel_policy,
        "leadership-meeting-2025-03-12.docx": module.make_leadership_meeting,
    }
    for name, build in builders.items():
        first, second = tmp_path / f"1-{name}", tmp_path / f"2-{name}"
        build(first)
        build(second)
        assert first.read_bytes() == second.read_bytes(), name
        # The committed file says the same thing as freshly generated text (bytes may differ
        # across library versions, the extracted text may not).
        assert triples(read(first)) == triples(read(SAMPLES / name)), name


# ---------------------------------------------------------------------------------------------
# Command line


def test_cli_prints_json_and_reasons(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    out = subprocess.run(
        [sys.executable, "-m", "archivist.ingest.readers", str(SAMPLES / "oncall-runbook.md"), str(empty)],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 1
    data = json.loads(out.stdout)
    assert data["kind"] == "markdown" and data["title"] == "Platform On-Call Runbook"
    assert data["blocks"][0] == {
        "text": "Platform On-Call Runbook", "page": None, "heading": ["Platform On-Call Runbook"], "kind": "heading",
        "boxes": [],
    }
    assert out.stderr.strip() == f"{empty}: empty file (0 bytes)"


@pytest.mark.slow
def test_large_files_of_any_kind_are_read_in_the_bounded_child(tmp_path):
    """Past SANDBOX_ABOVE_MB a Markdown file is parsed in the child process that PDFs use, so its
    time (and memory) is bounded; smaller files stay in-process."""
    from archivist.ingest.readers import MB, SANDBOX_ABOVE_MB

    para = "The quarterly report lists every warehouse and the stock it holds.\n\n"
    big = tmp_path / "big.md"
    big.write_text("# Stock\n\n" + para * ((SANDBOX_ABOVE_MB + 1) * MB // len(para)))
    small = tmp_path / "small.md"
    small.write_text("# Stock\n\n" + para * 20)
    with pytest.raises(ReadError, match=r"took longer than 0.01 s to read \(Markdown parsing stopped\)"):
        read(big, timeout=0.01)  # only a child process can be stopped in the middle of a parse
    assert read(small, timeout=0.01).blocks  # read in-process: no child, no time limit
    extracted = read(big, timeout=120)
    assert extracted.kind == "markdown" and sum(len(b.text) for b in extracted.blocks) > SANDBOX_ABOVE_MB * MB


def test_a_large_csv_is_read_in_process_row_by_row(tmp_path):
    """A CSV past SANDBOX_ABOVE_MB stays in-process (the child would send every row back as JSON):
    a time limit that stops any child still lets it through, and its rows come out in order."""
    from archivist.ingest.readers import MB, SANDBOX_ABOVE_MB

    rows = (SANDBOX_ABOVE_MB + 1) * MB // 24
    big = tmp_path / "ledger.csv"
    with open(big, "w") as f:
        f.write("id,name,amount\n")
        for i in range(rows):
            f.write(f"{i},item-{i % 977:04d},{i % 9973:05d}\n")
    assert big.stat().st_size > SANDBOX_ABOVE_MB * MB
    extracted = read(big, timeout=0.01)
    assert extracted.kind == "csv" and len(extracted.blocks) == rows
    assert extracted.blocks[7].text == "id: 7; name: item-0007; amount: 00007"
    assert extracted.blocks[-1].heading == ("ledger.csv",)
