"""Office documents as they come, not clean: a Word file's text boxes and footnotes, an HTML table with
cells spanning rows, raw HTML inside Markdown, a two-page PDF memo with a running header. Each is
built here and read through `read` (one also ingested and asked through the CLI): the text must be
there, once, in order, under the right headers, and nothing else."""

from __future__ import annotations

import json

from archivist.ingest.readers import read

W_NS = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
DRAWING_NS = (W_NS + ' xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006"'
              ' xmlns:wps="http://schemas.microsoft.com/office/word/2010/wordprocessingShape"'
              ' xmlns:wp="http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing"'
              ' xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" xmlns:v="urn:schemas-microsoft-com:vml"')


def texts(path) -> list[tuple[str, str]]:
    return [(b.kind, b.text) for b in read(path).blocks]


def add_xml(document, xml: str) -> None:
    """Raw WordprocessingML at the end of the body (before its w:sectPr): what python-docx cannot make."""
    from docx.oxml import parse_xml

    body = document.element.body
    body.insert(len(body) - 1, parse_xml(xml))


def text_box(text: str) -> str:
    """A run holding a text box as Word writes it: DrawingML, and the same text again as a VML fallback."""
    content = f"<w:txbxContent><w:p><w:r><w:t>{text}</w:t></w:r></w:p></w:txbxContent>"
    return ("<w:r><mc:AlternateContent><mc:Choice Requires=\"wps\"><w:drawing><wp:anchor><wp:docPr id=\"1\" name=\"Box\"/>"
            "<a:graphic><a:graphicData uri=\"http://schemas.microsoft.com/office/word/2010/wordprocessingShape\">"
            f"<wps:wsp><wps:txbx>{content}</wps:txbx></wps:wsp></a:graphicData></a:graphic></wp:anchor></w:drawing>"
            f"</mc:Choice><mc:Fallback><w:pict><v:shape><v:textbox>{content}</v:textbox></v:shape></w:pict>"
            "</mc:Fallback></mc:AlternateContent></w:r>")


def test_docx_text_box_is_read_once_after_its_paragraph(tmp_path):
    """A call-out in a text box is text the reader sees: it was not read at all (a question about the
    emergency number found nothing). It comes once (Word stores it twice) after the paragraph it is
    anchored in; a text box inside a tracked deletion is not shown and stays out."""
    import docx

    d = docx.Document()
    d.add_heading("Travel policy", 1)
    add_xml(d, f'<w:p {DRAWING_NS}><w:r><w:t xml:space="preserve">Before the box. </w:t></w:r>'
               f'{text_box("Emergency contact: call 555-0199 for the travel desk.")}<w:r><w:t>After the box.</w:t></w:r></w:p>')
    add_xml(d, f'<w:p {DRAWING_NS}>{text_box("Box anchored in an empty paragraph.")}</w:p>')
    add_xml(d, f'<w:p {DRAWING_NS}><w:r><w:t>Kept.</w:t></w:r><w:del w:id="1" w:author="a">{text_box("Deleted box.")}</w:del></w:p>')
    d.add_paragraph("Closing paragraph.")
    d.save(tmp_path / "travel.docx")
    assert texts(tmp_path / "travel.docx") == [
        ("heading", "Travel policy"),
        ("paragraph", "Before the box. After the box."),
        ("paragraph", "Emergency contact: call 555-0199 for the travel desk."),
        ("paragraph", "Box anchored in an empty paragraph."),
        ("paragraph", "Kept."),
        ("paragraph", "Closing paragraph."),
    ]
    assert all(b.heading == ("Travel policy",) for b in read(tmp_path / "travel.docx").blocks)


def test_docx_list_numbers_skip_a_step_deleted_in_tracked_changes(tmp_path):
    """A numbered step deleted with tracked changes (its text and its paragraph mark) still counted:
    the step after it read "3. Lock the door." where Word shows "2."; its text stays out."""
    import docx
    from docx.oxml import parse_xml

    d = docx.Document()
    d.add_paragraph("Switch off the lights.", style="List Number")
    step = d.add_paragraph("", style="List Number")._p
    step.append(parse_xml(f'<w:del {W_NS} w:id="5" w:author="a"><w:r><w:delText>Close the windows.</w:delText></w:r></w:del>'))
    step.get_or_add_pPr().append(parse_xml(f'<w:rPr {W_NS}><w:del w:id="6" w:author="a"/></w:rPr>'))
    d.add_paragraph("Lock the door.", style="List Number")
    d.add_paragraph("Set the alarm.", style="List Number")
    d.save(tmp_path / "closing.docx")
    assert [t for _, t in texts(tmp_path / "closing.docx")] == [
        "1. Switch off the lights.", "2. Lock the door.", "3. Set the alarm."]


def test_docx_table_of_contents_is_not_read(tmp_path):
    """Word's table of contents (a field in a content control, paragraphs styled "toc 1", "toc 2"
    under a "TOC Heading") was read as text: a chunk of every heading name with its page number,
    which outranked the sections themselves. It is dropped, as a PDF's dotted contents are; the
    headings and text it points to stay."""
    import docx
    from docx.enum.style import WD_STYLE_TYPE

    d = docx.Document()
    for name in ("toc 1", "toc 2"):
        d.styles.add_style(name, WD_STYLE_TYPE.PARAGRAPH)
    d.add_paragraph("Contents", style="TOC Heading")
    d.add_paragraph("Travel policy\t1", style="toc 1")
    d.add_paragraph("Hotels\t2", style="toc 2")
    d.add_heading("Travel policy", 1)
    d.add_paragraph("Book trains early.")
    d.add_heading("Hotels", 2)
    d.add_paragraph("Hotels are capped at 150 EUR.")
    d.save(tmp_path / "toc.docx")
    assert texts(tmp_path / "toc.docx") == [
        ("heading", "Travel policy"), ("paragraph", "Book trains early."),
        ("heading", "Hotels"), ("paragraph", "Hotels are capped at 150 EUR."),
    ]


def with_notes(path, footnotes: dict[str, str], endnotes: dict[str, str]) -> None:
    """Add footnotes.xml and endnotes.xml (id -> text, plus Word's separator notes) to a saved DOCX."""
    import docx
    from docx.opc.constants import RELATIONSHIP_TYPE as RT
    from docx.opc.packuri import PackURI
    from docx.opc.part import Part

    d = docx.Document(str(path))
    for kind, notes, reltype in (("footnote", footnotes, RT.FOOTNOTES), ("endnote", endnotes, RT.ENDNOTES)):
        xml = (f'<w:{kind}s {W_NS}><w:{kind} w:type="separator" w:id="-1"><w:p><w:r><w:separator/></w:r></w:p></w:{kind}>'
               + "".join(f'<w:{kind} w:id="{i}"><w:p><w:r><w:{kind}Ref/></w:r><w:r><w:t xml:space="preserve"> {t}</w:t></w:r>'
                         f'</w:p></w:{kind}>' for i, t in notes.items()) + f"</w:{kind}s>")
        part = Part(PackURI(f"/word/{kind}s.xml"),
                    f"application/vnd.openxmlformats-officedocument.wordprocessingml.{kind}s+xml", xml.encode(), d.part.package)
        d.part.relate_to(part, reltype)
    d.save(str(path))


def test_docx_footnotes_and_endnotes_follow_the_paragraph_that_refers_to_them(tmp_path):
    """Footnotes and endnotes were not read: "receipts under 10 EUR may be handwritten" answered no
    question. Each comes after the paragraph that refers to it, in its section; a note whose
    reference was deleted (tracked) is left out."""
    import docx

    d = docx.Document()
    d.add_heading("Expenses", 1)
    add_xml(d, f'<w:p {W_NS}><w:r><w:t>Taxis need a receipt.</w:t></w:r><w:r><w:footnoteReference w:id="2"/></w:r></w:p>')
    add_xml(d, f'<w:p {W_NS}><w:r><w:t>Trains are booked second class.</w:t></w:r>'
               '<w:del w:id="9" w:author="a"><w:r><w:footnoteReference w:id="3"/></w:r></w:del>'
               '<w:r><w:endnoteReference w:id="1"/></w:r></w:p>')
    d.add_heading("Meals", 1)
    add_xml(d, f'<w:p {W_NS}><w:r><w:t>Dinner is capped.</w:t></w:r><w:r><w:footnoteReference w:id="1"/></w:r></w:p>')
    d.save(tmp_path / "expenses.docx")
    with_notes(tmp_path / "expenses.docx",
               {"1": "The cap is 35 EUR in Paris.", "2": "Receipts under 10 EUR may be handwritten.", "3": "Withdrawn note."},
               {"1": "First class needs the director's approval."})
    blocks = read(tmp_path / "expenses.docx").blocks
    assert [(b.kind, b.text, b.heading) for b in blocks] == [
        ("heading", "Expenses", ("Expenses",)),
        ("paragraph", "Taxis need a receipt.", ("Expenses",)),
        ("paragraph", "Footnote: Receipts under 10 EUR may be handwritten.", ("Expenses",)),
        ("paragraph", "Trains are booked second class.", ("Expenses",)),
        ("paragraph", "Endnote: First class needs the director's approval.", ("Expenses",)),
        ("heading", "Meals", ("Meals",)),
        ("paragraph", "Dinner is capped.", ("Meals",)),
        ("paragraph", "Footnote: The cap is 35 EUR in Paris.", ("Meals",)),
    ]


def test_docx_with_damaged_footnotes_still_reads(tmp_path):
    """python-docx never parses footnotes.xml, so a DOCX whose notes are damaged read before notes were
    read; it still does, without them."""
    import zipfile

    import docx

    d = docx.Document()
    add_xml(d, f'<w:p {W_NS}><w:r><w:t>Taxis need a receipt.</w:t></w:r><w:r><w:footnoteReference w:id="1"/></w:r></w:p>')
    d.save(tmp_path / "notes.docx")
    with_notes(tmp_path / "notes.docx", {"1": "Receipts under 10 EUR may be handwritten."}, {})
    with zipfile.ZipFile(tmp_path / "notes.docx") as zin, zipfile.ZipFile(tmp_path / "damaged.docx", "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            zout.writestr(item, data[:len(data) // 2] if item.filename == "word/footnotes.xml" else data)
    assert texts(tmp_path / "notes.docx") == [("paragraph", "Taxis need a receipt."),
                                              ("paragraph", "Footnote: Receipts under 10 EUR may be handwritten.")]
    assert texts(tmp_path / "damaged.docx") == [("paragraph", "Taxis need a receipt.")]


FLEET = """<!doctype html><html><body><h1>Fleet</h1>
<table><tr><th>Plate</th><th>Model</th><th>Seats</th></tr>
<tr><td rowspan="2">AB-123</td><td>Zoe</td><td>5</td></tr>
<tr><td>Kangoo</td><td>2</td></tr>
<tr><td>CD-456</td><td rowspan="3">Transit</td><td>3</td></tr>
<tr><td>EF-789</td></tr>
<tr><td colspan="1">GH-012</td><td>9</td></tr>
</table></body></html>"""


def test_html_rowspan_keeps_each_value_under_its_header(tmp_path):
    """A cell spanning rows was laid only on its first row: the next row's cells moved one column
    left, "Plate: Kangoo; Model: 2", and the answer to "how many seats has the Kangoo" was wrong."""
    page = tmp_path / "fleet.html"
    page.write_text(FLEET)
    assert [t for kind, t in texts(page) if kind == "row"] == [
        "Plate: AB-123; Model: Zoe; Seats: 5",
        "Plate: AB-123; Model: Kangoo; Seats: 2",
        "Plate: CD-456; Model: Transit; Seats: 3",
        "Plate: EF-789; Model: Transit",
        "Plate: GH-012; Model: Transit; Seats: 9",
    ]


def test_html_two_header_rows_are_one_header(tmp_path):
    """A header of two rows of <th> ("2024" over "Hires | Leavers", "Team" spanning both) read its
    second row as data: "Team: Hires; 2024: Leavers". Its texts are joined per column; a lone <th>
    across the table under the header labels a group of rows, and stays a row."""
    page = tmp_path / "staff.html"
    page.write_text("<!doctype html><html><body><table>"
                    "<tr><th rowspan='2'>Team</th><th colspan='2'>2024</th></tr><tr><th>Hires</th><th>Leavers</th></tr>"
                    "<tr><td>Sales</td><td>12</td><td>3</td></tr><tr><td>Support</td><td>4</td><td>1</td></tr></table>"
                    "<table><tr><th>Name</th><th>Phone</th></tr><tr><th colspan='2'>Berlin office</th></tr>"
                    "<tr><td>Dana</td><td>220</td></tr></table></body></html>")
    assert [t for _, t in texts(page)] == [
        "Team: Sales; 2024 Hires: 12; 2024 Leavers: 3",
        "Team: Support; 2024 Hires: 4; 2024 Leavers: 1",
        "Name: Berlin office; Phone: Berlin office",
        "Name: Dana; Phone: 220",
    ]


def test_markdown_raw_html_tags_are_markup_not_text(tmp_path):
    """Raw HTML in Markdown shows its content, not its tags: "<dl><dt>Quiet room</dt>..." was stored
    and quoted tags and all. Tags in code spans and fenced code, and words in angle brackets that
    are no HTML element (List<String>), stay as written."""
    page = tmp_path / "kitchen.md"
    page.write_text("# Kitchen <small>(2nd floor)</small>\n\n"
                    "<dl><dt>Quiet room</dt><dd>Booked through the front desk, maximum two hours.</dd></dl>\n\n"
                    "Press <kbd>Ctrl</kbd>+<kbd>P</kbd>; write `<br>` for a break; a List<String> stays; <b>V</b>PN.\n\n"
                    "<details>\n<summary>Coffee machine</summary>\n\n"
                    "Descale it every <strong>Friday</strong>.<br>Filters are in drawer 3.\n</details>\n\n"
                    "```html\n<b>code</b>\n```\n\n"
                    "| Room | Equipment |\n|---|---|\n| Oak | Projector<br>Whiteboard |\n")
    assert texts(page) == [
        ("heading", "Kitchen (2nd floor)"),
        ("paragraph", "Quiet room Booked through the front desk, maximum two hours."),
        ("paragraph", "Press Ctrl+P; write <br> for a break; a List<String> stays; VPN."),
        ("paragraph", "Coffee machine"),
        ("paragraph", "Descale it every Friday. Filters are in drawer 3."),
        ("code", "<b>code</b>"),
        ("row", "Room: Oak; Equipment: Projector Whiteboard"),
    ]


def memo_pdf(path, header: str | None):
    """A two-page PDF: an optional running header and a page number on each page, a heading and a
    paragraph."""
    import datetime as dt

    from fpdf import FPDF

    class Memo(FPDF):
        def header(self):
            if header:
                self.set_font("Helvetica", "", 9)
                self.cell(0, 6, header, align="C", new_x="LMARGIN", new_y="NEXT")
                self.ln(4)

        def footer(self):
            self.set_y(-15)
            self.set_font("Helvetica", "", 9)
            self.cell(0, 10, f"Page {self.page_no()}", align="C")

    pdf = Memo(format="A4")
    pdf.set_creation_date(dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc))
    for first in ("Parking", "Visitors"):
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 16)
        pdf.multi_cell(0, 9, first, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 11)
        pdf.multi_cell(0, 6, f"{first}: passes are issued at reception and returned the same day.",
                       new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(path))
    return path


def test_two_page_pdf_running_header_is_dropped(tmp_path):
    """A two-page memo's running header was kept on both pages: on page 2 it made a chunk of its own
    that matched any question about the company. Dropped as on longer documents; a two-page PDF
    without one reads the same."""
    blocks = read(memo_pdf(tmp_path / "memo.pdf", "ACME Facilities - Confidential")).blocks
    assert [(b.page, b.kind, b.text) for b in blocks] == [
        (1, "heading", "Parking"), (1, "paragraph", "Parking: passes are issued at reception and returned the same day."),
        (2, "heading", "Visitors"), (2, "paragraph", "Visitors: passes are issued at reception and returned the same day."),
    ]
    plain = read(memo_pdf(tmp_path / "plain.pdf", None)).blocks
    assert [b.text for b in plain] == [b.text for b in blocks]


RULE = "Badges are returned at the same desk before leaving; a lost badge is reported to security at once."


def handbook_pdf(path, pages: int):
    """A PDF whose every page has a header of two lines and a footer of two (an address, then "Page n
    of N"), a numbered section heading and a rule: templated text that differs only in its numbers."""
    import datetime as dt

    from fpdf import FPDF

    class Handbook(FPDF):
        def header(self):
            self.set_font("Helvetica", "", 8)
            self.cell(0, 5, "ACME GmbH", new_x="LMARGIN", new_y="NEXT")
            self.cell(0, 5, "Facilities Handbook v3", new_x="LMARGIN", new_y="NEXT")
            self.ln(4)

        def footer(self):
            self.set_y(-20)
            self.set_font("Helvetica", "", 8)
            self.cell(0, 5, "ACME GmbH, Hauptstrasse 1, 10115 Berlin", align="C", new_x="LMARGIN", new_y="NEXT")
            self.cell(0, 5, f"Page {self.page_no()} of {{nb}}", align="C")

    pdf = Handbook(format="A4")
    pdf.set_creation_date(dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc))
    pdf.alias_nb_pages()
    for i in range(1, pages + 1):
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 14)
        pdf.cell(0, 8, f"Section {i}", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 11)
        pdf.multi_cell(0, 6, f"Rule {i}: visitors sign in at the front desk and wear a badge on floor {i}. {RULE}")
    pdf.output(str(path))
    return path


def test_pdf_header_and_footer_of_two_lines_are_dropped_whole(tmp_path):
    """Only the outermost line of a running header or footer was dropped: "Facilities Handbook v3" and
    the company's address stayed in every page's text (in every chunk, and quoted as an answer). Lines
    further in go when they recur word for word at the same height; text that differs only in its
    numbers ("Section 2", "Rule 2: ...") is content, and stays."""
    for pages in (2, 4):
        blocks = read(handbook_pdf(tmp_path / f"handbook{pages}.pdf", pages)).blocks
        assert [(b.page, b.kind, b.text) for b in blocks] == [
            row for i in range(1, pages + 1) for row in (
                (i, "heading", f"Section {i}"),
                (i, "paragraph", f"Rule {i}: visitors sign in at the front desk and wear a badge on floor {i}. {RULE}"))
        ], pages


def test_ask_quotes_the_row_under_a_rowspan_cell(tmp_path, cli):
    """The office manager's question, end to end: ingest the fleet page, ask in extractive mode; the
    answer quotes the Kangoo's row with its own seats and plate, and cites the page."""
    page = tmp_path / "fleet.html"
    page.write_text(FLEET)
    assert cli("ingest", page).returncode == 0
    run = cli("ask", "--json", "--mode", "extractive", "How many seats does the Kangoo have?")
    assert run.returncode == 0, run.stderr
    reply = json.loads(run.stdout)
    assert "Plate: AB-123; Model: Kangoo; Seats: 2" in reply["answer"]
    assert reply["citations"][0]["document"] == "fleet.html"
    assert "Model: Kangoo; Seats: 2" in reply["citations"][0]["text"]
