"""Office readers on files built here, read through `read`: DOCX content python-docx leaves out
(nested tables, content controls, tracked insertions, list numbers) and multi-row table headers,
XLSX sheets as people see them (title rows, merged cells, number formats, formulas, hidden
sheets), and PPTX text in reading order."""

from __future__ import annotations

import datetime as dt

from archivist.ingest.readers import read
from archivist.records import Block

W_NS = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'


def triples(extracted) -> list[tuple]:
    return [(b.text, b.page, b.heading, b.kind) for b in extracted.blocks]


def insert_before_section(document, xml: str) -> None:
    """Put raw WordprocessingML at the end of the body (before its w:sectPr), for what python-docx
    cannot make: content controls, tracked changes."""
    from docx.oxml import parse_xml

    body = document.element.body
    body.insert(len(body) - 1, parse_xml(xml))


# ---------------------------------------------------------------------------------------------
# DOCX


def test_docx_nested_table_is_kept_in_its_cell(tmp_path):
    import docx

    d = docx.Document()
    outer = d.add_table(rows=3, cols=2)
    for (r, c), text in {(0, 0): "Item", (0, 1): "Details", (1, 0): "Laptop", (2, 0): "Phone", (2, 1): "none"}.items():
        outer.cell(r, c).text = text
    inner = outer.cell(1, 1).add_table(rows=2, cols=2)
    for (r, c), text in {(0, 0): "CPU", (0, 1): "8 cores", (1, 0): "RAM", (1, 1): "32 GB"}.items():
        inner.cell(r, c).text = text
    d.save(tmp_path / "nested.docx")
    assert [b.text for b in read(tmp_path / "nested.docx").blocks] == [
        "Item: Laptop; Details: CPU: 8 cores; RAM: 32 GB",
        "Item: Phone; Details: none",
    ]


def test_docx_content_controls_and_tracked_changes(tmp_path):
    import docx

    d = docx.Document()
    d.add_heading("Policy", 1)
    insert_before_section(
        d,
        f"<w:sdt {W_NS}><w:sdtPr/><w:sdtContent>"
        "<w:p><w:r><w:t>The deadline is 14 March.</w:t></w:r></w:p>"
        "<w:tbl><w:tr><w:tc><w:p><w:r><w:t>Owner</w:t></w:r></w:p></w:tc></w:tr>"
        "<w:tr><w:tc><w:p><w:r><w:t>Finance</w:t></w:r></w:p></w:tc></w:tr></w:tbl>"
        "</w:sdtContent></w:sdt>",
    )
    insert_before_section(
        d,
        f'<w:p {W_NS}><w:r><w:t xml:space="preserve">Claims are paid </w:t></w:r>'
        '<w:ins w:id="1" w:author="a" w:date="2025-01-01T00:00:00Z"><w:r><w:t>within 10 days</w:t></w:r></w:ins>'
        '<w:del w:id="2" w:author="a" w:date="2025-01-01T00:00:00Z"><w:r><w:delText>monthly</w:delText></w:r></w:del>'
        "<w:r><w:t>.</w:t></w:r></w:p>",
    )
    d.save(tmp_path / "policy.docx")
    assert triples(read(tmp_path / "policy.docx")) == [
        ("Policy", None, ("Policy",), "heading"),
        ("The deadline is 14 March.", None, ("Policy",), "paragraph"),
        ("Owner: Finance", None, ("Policy",), "row"),
        ("Claims are paid within 10 days.", None, ("Policy",), "paragraph"),
    ]


def numbered(document, text: str, num_id: int, level: int) -> None:
    """A paragraph numbered by its own w:numPr (list instance `num_id`, `level` 0-based)."""
    pr = document.add_paragraph(text)._p.get_or_add_pPr().get_or_add_numPr()
    pr.get_or_add_ilvl().val, pr.get_or_add_numId().val = level, num_id


def test_docx_numbered_lists_keep_their_numbers(tmp_path):
    import docx
    from docx.oxml import parse_xml

    d = docx.Document()
    for step in ["Collect the receipts.", "Scan them."]:
        d.add_paragraph(step, style="List Number")  # numbered through the style
    d.add_paragraph("a badge", style="List Bullet")  # bullets show a glyph, no text
    d.add_paragraph("Submit the claim.", style="List Number")
    # A two-level list ("1.", "1.a)"), and a second instance of it that restarts at 1.
    numbering = d.part.numbering_part.element
    numbering.insert(0, parse_xml(
        f'<w:abstractNum {W_NS} w:abstractNumId="90">'
        '<w:lvl w:ilvl="0"><w:start w:val="1"/><w:numFmt w:val="decimal"/><w:lvlText w:val="%1."/></w:lvl>'
        '<w:lvl w:ilvl="1"><w:start w:val="1"/><w:numFmt w:val="lowerLetter"/><w:lvlText w:val="%1.%2)"/></w:lvl>'
        "</w:abstractNum>"))
    numbering.append(parse_xml(f'<w:num {W_NS} w:numId="90"><w:abstractNumId w:val="90"/></w:num>'))
    numbering.append(parse_xml(
        f'<w:num {W_NS} w:numId="91"><w:abstractNumId w:val="90"/>'
        '<w:lvlOverride w:ilvl="0"><w:startOverride w:val="1"/></w:lvlOverride></w:num>'))
    for text, num_id, level in [("Travel", 90, 0), ("Trains", 90, 1), ("Flights", 90, 1), ("Hotels", 90, 0),
                                ("Caps", 90, 1), ("Meals", 91, 0)]:
        numbered(d, text, num_id, level)
    d.save(tmp_path / "steps.docx")
    assert [b.text for b in read(tmp_path / "steps.docx").blocks] == [
        "1. Collect the receipts.", "2. Scan them.", "a badge", "3. Submit the claim.",
        "1. Travel", "1.a) Trains", "1.b) Flights", "2. Hotels", "2.a) Caps", "1. Meals",
    ]


def test_docx_two_row_header_with_merged_cells(tmp_path):
    import docx

    d = docx.Document()
    d.add_paragraph("Table 2: Staff")
    t = d.add_table(rows=4, cols=5)
    t.cell(0, 1).merge(t.cell(0, 2)).text = "2024"
    t.cell(0, 3).merge(t.cell(0, 4)).text = "2025"
    t.cell(0, 0).merge(t.cell(1, 0)).text = "Team"
    for i, text in enumerate(["Hires", "Leavers", "Hires", "Leavers"], 1):
        t.cell(1, i).text = text
    for r, row in enumerate([["Sales", "12", "3", "8", "5"], ["R&D", "9", "2", "11", "1"]], 2):
        for c, value in enumerate(row):
            t.cell(r, c).text = value
    # A title row across the whole table is its caption; a plain first row stays the header.
    t2 = d.add_table(rows=3, cols=2)
    t2.cell(0, 0).merge(t2.cell(0, 1)).text = "Offices"
    for r, row in enumerate([["City", "Staff"], ["Paris", "80"]], 1):
        for c, value in enumerate(row):
            t2.cell(r, c).text = value
    d.save(tmp_path / "staff.docx")
    assert triples(read(tmp_path / "staff.docx")) == [
        ("Table 2: Staff", None, (), "paragraph"),
        ("Team: Sales; 2024 Hires: 12; 2024 Leavers: 3; 2025 Hires: 8; 2025 Leavers: 5", None, ("Table 2: Staff",), "row"),
        ("Team: R&D; 2024 Hires: 9; 2024 Leavers: 2; 2025 Hires: 11; 2025 Leavers: 1", None, ("Table 2: Staff",), "row"),
        ("City: Paris; Staff: 80", None, ("Offices",), "row"),
    ]


def test_docx_bold_second_row_is_a_header_only_when_data_is_not_bold(tmp_path):
    import docx

    d = docx.Document()
    for bold_data in (False, True):
        t = d.add_table(rows=3, cols=2)
        for r, row in enumerate([["Cost", "Cost"], ["Min", "Max"], ["10", "20"]]):
            for c, value in enumerate(row):
                t.cell(r, c).paragraphs[0].add_run(value).bold = r < 2 or bold_data
        d.add_paragraph("Between.")
    d.save(tmp_path / "bold.docx")
    assert [b.text for b in read(tmp_path / "bold.docx").blocks] == [
        "Cost Min: 10; Cost Max: 20", "Between.",
        "Cost: Min; Cost: Max", "Cost: 10; Cost: 20", "Between.",  # all bold: no sign of a second header row
    ]


# ---------------------------------------------------------------------------------------------
# XLSX


def test_xlsx_title_rows_merged_cells_formats_and_formulas(tmp_path):
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Budget"
    ws["A1"] = "ACME budget 2025 (thousands EUR)"
    ws.merge_cells("A1:D1")
    ws.append([])
    ws.append(["Department", "Q1", "Share", "Spent"])
    ws.append(["Sales", 120.5, 0.25, 1234567.891])
    ws.append(["Support", 80, 0.175, -1500])
    ws.append(["Total", "=SUM(B4:B5)", None, "=D4+D5"])
    ws["C4"].number_format = "0%"
    ws["C5"].number_format = "0.0%"
    ws["D4"].number_format = "#,##0.00"
    ws["D5"].number_format = '"€ "#,##0;("€ "#,##0)'
    regions = wb.create_sheet("Regions")
    regions.append(["Region", "Country", "Revenue"])
    regions.append(["Europe", "Germany", 100])
    regions.append([None, "France", 90])
    regions.append(["Asia", "Japan", 70])
    regions.merge_cells("A2:A3")
    wb.save(tmp_path / "budget.xlsx")
    assert triples(read(tmp_path / "budget.xlsx")) == [
        ("Department: Sales; Q1: 120.5; Share: 25%; Spent: 1,234,567.89", 1, ("Budget", "ACME budget 2025 (thousands EUR)"), "row"),
        ("Department: Support; Q1: 80; Share: 17.5%; Spent: (€ 1,500)", 1, ("Budget", "ACME budget 2025 (thousands EUR)"), "row"),
        ("Department: Total; Q1: =SUM(B4:B5); Spent: =D4+D5", 1, ("Budget", "ACME budget 2025 (thousands EUR)"), "row"),
        ("Region: Europe; Country: Germany; Revenue: 100", 2, ("Regions",), "row"),
        ("Region: Europe; Country: France; Revenue: 90", 2, ("Regions",), "row"),
        ("Region: Asia; Country: Japan; Revenue: 70", 2, ("Regions",), "row"),
    ]


def test_xlsx_number_formats_as_shown(tmp_path):
    import openpyxl

    cases = [  # (value, number format, what Excel shows)
        (0.125, "0%", "13%"), (2.5, "0.0#", "2.5"), (2.555, "0.0#", "2.56"), (1500, "#,##0", "1,500"),
        (-1234.5, "#,##0.00", "-1,234.50"), (1500, "[$€-407] #,##0.00", "€ 1,500.00"),
        (1500, '#,##0 "EUR"', "1,500 EUR"), (1500, "_-* #,##0_-", "1,500"), (1500.0, "General", "1500"),
        (12345, "0.00E+00", "12345"), (dt.datetime(2025, 3, 1), "dd/mm/yyyy", "2025-03-01"),
    ]
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Case", "Shown"])
    for i, (value, number_format, _) in enumerate(cases, 2):
        ws.append([f"c{i}", value])
        ws.cell(i, 2).number_format = number_format
    wb.save(tmp_path / "formats.xlsx")
    shown = [b.text.split("; Shown: ")[1] for b in read(tmp_path / "formats.xlsx").blocks]
    assert shown == [expected for _, _, expected in cases]


def test_xlsx_hidden_sheet_is_read_and_marked(tmp_path):
    import openpyxl

    wb = openpyxl.Workbook()
    wb.active.title = "Prices"
    wb.active.append(["SKU", "Price"])
    wb.active.append(["A-1", 12])
    rates = wb.create_sheet("Rates")
    rates.sheet_state = "hidden"
    rates.append(["Currency", "Rate"])
    rates.append(["USD", 1.08])
    wb.save(tmp_path / "hidden.xlsx")
    assert triples(read(tmp_path / "hidden.xlsx")) == [
        ("SKU: A-1; Price: 12", 1, ("Prices",), "row"),
        ("Currency: USD; Rate: 1.08", 2, ("Rates (hidden sheet)",), "row"),
    ]


def test_xlsx_one_column_list_keeps_its_first_row_as_header(tmp_path):
    import openpyxl

    wb = openpyxl.Workbook()
    for name in ["Name", "Ana", "Ben"]:
        wb.active.append([name])
    wb.active.append([])
    wb.active.append([None, "=A2&A3"])  # never calculated: the formula text, not an empty cell
    wb.save(tmp_path / "list.xlsx")
    assert [b.text for b in read(tmp_path / "list.xlsx").blocks] == ["Name: Ana", "Name: Ben", "=A2&A3"]


# ---------------------------------------------------------------------------------------------
# PPTX


def test_pptx_reads_text_boxes_top_to_bottom_left_to_right(tmp_path):
    from pptx import Presentation
    from pptx.util import Inches

    prs = Presentation()
    slide = prs.slides.add_slide(prs.slide_layouts[5])  # title only
    for left, top, text in [(1, 5, "Step 3: ship"), (5, 3, "Step 2b: review"), (1, 3, "Step 2: test"), (1, 2, "Step 1: build")]:
        slide.shapes.add_textbox(Inches(left), Inches(top), Inches(3), Inches(0.8)).text_frame.text = text
    slide.shapes.title.text = "Plan"  # the title is first wherever it sits
    slide.shapes.title.top = Inches(6)
    prs.save(tmp_path / "deck.pptx")
    assert read(tmp_path / "deck.pptx").blocks == [
        Block("Plan\nStep 1: build\nStep 2: test\nStep 2b: review\nStep 3: ship", 1, ("Plan",), "slide"),
    ]
