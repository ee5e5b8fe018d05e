"""PDF tables and page layout (ingest/tables.py, ingest/layout.py) on PDFs made here: fpdf2, or a
few lines of raw PDF where a table row must be one run of text whose cells are set apart by kerning,
as TeX sets it; and, where Debian's manuals are installed, the pages these cases were found on."""

from __future__ import annotations

from pathlib import Path

import pytest
from fpdf import FPDF

from archivist.ingest.layout import Line
from archivist.ingest.readers import read
from archivist.ingest.tables import aligned_tables
from conftest import one_page_of


def blocks_of(path: Path):
    return [(b.kind, b.text) for b in read(path).blocks]


def rows_of(path: Path) -> list[str]:
    return [text for kind, text in blocks_of(path) if kind == "row"]


def text_in(path: Path, box) -> list[str]:
    """The words pdfium finds inside a block's box (page fractions, origin top left) on page 1."""
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(path)
    page = document[0]
    width, height = page.get_size()
    x0, y0, x1, y1 = box
    words = page.get_textpage().get_text_bounded(x0 * width - 1, (1 - y1) * height + 1, x1 * width + 1, (1 - y0) * height - 1)
    document.close()
    return words.split()


# ---------------------------------------------------------------------------------------------
# A table ruled only under its header: its body is one ruled row, each cell a line per row


PLANS = [["Plan", "Users", "Retention", "Price"], ["Basic", "5", "30 days", "10 EUR"], ["Team", "25", "90 days", "45 EUR"],
         ["Business", "100", "1 year", "150 EUR"], ["Enterprise", "1000", "7 years", "900 EUR"]]


def header_ruled_pdf(path: Path, rows: list[list[list[str]]], rule_every_row: bool) -> Path:
    """A table with an outer box and rules between its columns; a rule under the header and, with
    `rule_every_row`, under every row. Each cell is a list of lines (a cell may wrap)."""
    pdf = FPDF(format="letter")
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    pdf.multi_cell(0, 6, "Each plan keeps files for a number of days, as below.", new_x="LMARGIN", new_y="NEXT")
    columns, right, pitch = [28, 70, 100, 140], 175, 5.5
    top = y = pdf.get_y() + 4
    pdf.set_line_width(0.3)
    for r, row in enumerate(rows):
        pdf.set_font("Helvetica", "B" if r == 0 else "", 10)
        height = pitch * max(len(cell) for cell in row) + 2
        for x, cell in zip(columns, row):
            for k, text in enumerate(cell):
                pdf.text(x + 2, y + 5 + k * pitch, text)
        y += height
        if r == 0 or rule_every_row:
            pdf.line(columns[0], y, right, y)
    pdf.rect(columns[0], top, right - columns[0], y - top)
    for x in columns[1:]:
        pdf.line(x, top, x, y)
    pdf.set_y(y + 4)
    pdf.set_font("Helvetica", size=11)
    pdf.multi_cell(0, 6, "Prices are per month and exclude tax.")
    pdf.output(str(path))
    return path


def test_a_table_ruled_only_under_its_header_gives_a_row_per_line(tmp_path):
    # pdfplumber sees two ruled rows, the header and the whole body; the body's cells hold a line per
    # row, which came out as one row "Plan: Basic Team Business Enterprise; Users: 5 25 100 1000; ...".
    path = header_ruled_pdf(tmp_path / "plans.pdf", [[[c] for c in row] for row in PLANS], rule_every_row=False)
    extracted = read(path)
    rows = [b for b in extracted.blocks if b.kind == "row"]
    assert [b.text for b in rows] == [
        "Plan: Basic; Users: 5; Retention: 30 days; Price: 10 EUR",
        "Plan: Team; Users: 25; Retention: 90 days; Price: 45 EUR",
        "Plan: Business; Users: 100; Retention: 1 year; Price: 150 EUR",
        "Plan: Enterprise; Users: 1000; Retention: 7 years; Price: 900 EUR",
    ]
    # Each row's citation highlights that row alone.
    assert text_in(path, rows[2].boxes[0]) == ["Business", "100", "1", "year", "150", "EUR"]
    paragraphs = [b.text for b in extracted.blocks if b.kind == "paragraph"]
    assert paragraphs == ["Each plan keeps files for a number of days, as below.", "Prices are per month and exclude tax."]


def test_a_table_ruled_row_by_row_keeps_its_wrapped_cells_in_one_row(tmp_path):
    """A row whose cells wrap onto a second line, in a table ruled under every row, stays one row."""
    rows = [[[c] for c in PLANS[0]], [["Basic"], ["5"], ["30 days"], ["10 EUR"]],
            [["Enterprise"], ["1000"], ["7 years, then", "archived"], ["900 EUR, billed", "yearly"]],
            [["Team"], ["25"], ["90 days"], ["45 EUR"]]]
    path = header_ruled_pdf(tmp_path / "plans.pdf", rows, rule_every_row=True)
    assert rows_of(path) == [
        "Plan: Basic; Users: 5; Retention: 30 days; Price: 10 EUR",
        "Plan: Enterprise; Users: 1000; Retention: 7 years, then archived; Price: 900 EUR, billed yearly",
        "Plan: Team; Users: 25; Retention: 90 days; Price: 45 EUR",
    ]


GLPK = Path("/usr/share/doc/glpk-doc/glpk.pdf")  # Debian's glpk-doc (make system-deps)


@pytest.mark.skipif(not GLPK.exists(), reason="needs Debian's glpk-doc (make system-deps)")
def test_glpk_rule_of_signs_table_has_a_row_per_bound(tmp_path):
    # GLPK's manual, page 101: rules under the two header rows only; its five kinds of bound were one
    # row, "Original bound constraint: −∞ < xk < +∞ xk ≥ lk xk ≤ uk ...".
    rows = rows_of(one_page_of(GLPK, 101, tmp_path))
    assert len(rows) == 6
    assert rows[1] == "Original bound constraint: −∞ < xk < +∞; Minimization: = 0; = 0; λk = 0; Maximization: = 0; = 0; λk = 0"
    assert rows[2] == "Original bound constraint: xk ≥ lk; Minimization: ≥ 0; = 0; λk ≥ 0; Maximization: ≤ 0; = 0; λk ≤ 0"


# ---------------------------------------------------------------------------------------------
# A table whose rows are each one run of text, the cells set apart by kerning (R's manuals)


def raw_pdf(path: Path, content: list[str]) -> Path:
    """A one-page PDF (US letter) whose content stream is `content`; fonts: /F1 Helvetica, /F2 Courier."""
    stream = "\n".join(content).encode("latin-1")
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [5 0 R] /Count 1 >>",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Courier >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 6 0 R"
               b" /Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream)]
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    path.write_bytes(out)
    return path


def run(x: float, y: float, cells: list[str], gaps: list[float], font: str = "F1") -> str:
    """One text object showing `cells` at (x, y), 10 pt, each moved right of the one before by
    `gaps` (em) with TJ's kerning: one run of text for pdfium, as TeX sets a table's row."""
    parts = [f"({cells[0]})"]
    for cell, gap in zip(cells[1:], gaps):
        parts += [str(-round(gap * 1000)), f"({cell})"]
    return f"BT /{font} 10 Tf {x} {y} Td [{' '.join(parts)}] TJ ET"


def test_a_header_set_as_one_kerned_run_stays_the_header(tmp_path):
    # R-intro's table of distributions: the header is one run of text, "Distribution R name additional
    # arguments", and each row's last two cells are one run too; pdfium gives each run one
    # rectangle, so they were one piece. The table began at its first data row, taken for the header:
    # "beta: binomial; beta shape1, shape2, ncp: binom size, prob".
    content = [run(72, 720, ["The distributions and the names R gives them:"], [])]
    content.append(run(100, 690, ["Distribution", "R name", "additional arguments"], [3.2, 3.2]))
    body = [("beta", "beta", "shape1, shape2, ncp"), ("binomial", "binom", "size, prob"),
            ("Cauchy", "cauchy", "location, scale"), ("exponential", "exp", "rate"), ("normal", "norm", "mean, sd")]
    for k, (name, short, arguments) in enumerate(body, 1):
        content.append(run(100, 690 - 14 * k, [name], []))
        content.append(run(190, 690 - 14 * k, [short, arguments], [4.0], font="F2"))
    # Code whose comments are set apart the same way is no table, and each line reads as it stands.
    content.append(run(72, 560, ["A profile file may hold:"], []))
    for k, (code, comment) in enumerate([("options(digits=5)", "# custom numbers"), ("x11()", "# for graphics"),
                                         ("par(pch = 1)", "# plotting character")], 1):
        content.append(run(100, 560 - 14 * k, [code, comment], [12 - 0.6 * len(code)], font="F2"))
    path = raw_pdf(tmp_path / "distributions.pdf", content)
    blocks = blocks_of(path)
    assert [text for kind, text in blocks if kind == "row"] == [
        "Distribution: beta; R name: beta; additional arguments: shape1, shape2, ncp",
        "Distribution: binomial; R name: binom; additional arguments: size, prob",
        "Distribution: Cauchy; R name: cauchy; additional arguments: location, scale",
        "Distribution: exponential; R name: exp; additional arguments: rate",
        "Distribution: normal; R name: norm; additional arguments: mean, sd",
    ]
    assert ("paragraph", "A profile file may hold: options(digits=5) # custom numbers x11() # for graphics "
            "par(pch = 1) # plotting character") in blocks


R_INTRO = Path("/usr/share/doc/r-doc-pdf/manual/R-intro.pdf")  # Debian's r-doc-pdf (make system-deps)


@pytest.mark.skipif(not R_INTRO.exists(), reason="needs Debian's r-doc-pdf")
def test_r_intro_table_of_distributions_keeps_its_header(tmp_path):
    rows = rows_of(one_page_of(R_INTRO, 42, tmp_path))
    assert len(rows) == 19
    assert rows[0] == "Distribution: beta; R name: beta; additional arguments: shape1, shape2, ncp"
    assert rows[-1] == "Distribution: Wilcoxon; R name: wilcox; additional arguments: m, n"


# ---------------------------------------------------------------------------------------------
# Two columns of text side by side (a reference card) are no table


MOVING = [("C-f", "forward a character"), ("C-b", "back a character"), ("M-f", "forward a word"), ("M-b", "back a word"),
          ("C-n", "next line"), ("C-p", "previous line"), ("C-a", "start of line"), ("C-e", "end of line")]
KILLING = [("C-k", "kill to end of line"), ("M-d", "kill a word"), ("C-w", "kill the region"), ("C-y", "yank it back"),
           ("C-s", "search forward"), ("C-r", "search backward"), ("M-%", "query replace"), ("C-x u", "undo")]


def reference_card_pdf(path: Path) -> Path:
    """Two columns of key / meaning lines, the right one starting left of the page's middle and
    keeping its own spacing: a little lower than the left one at first, then (a rule skipped) higher."""
    pdf = FPDF(format="letter")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 14)
    pdf.text(15, 15, "Editor reference card")
    pdf.set_font("Helvetica", "B", 11)
    pdf.text(15, 26, "Moving")
    pdf.text(100, 26.6, "Killing and searching")
    pdf.set_font("Helvetica", size=9)
    for i, ((key, meaning), (key2, meaning2)) in enumerate(zip(MOVING, KILLING)):
        pdf.text(15, 32 + 4.5 * i, key)
        pdf.text(33, 32 + 4.5 * i, meaning)
        y = 32 + 4.5 * i + (1.0 if i < 4 else -0.8)
        pdf.text(100, y, key2)
        pdf.text(118, y, meaning2)
    pdf.output(str(path))
    return path


def test_a_two_column_reference_card_is_read_column_by_column(tmp_path):
    # It was one table, each row joining the two columns: "Moving: C-f; forward a character;
    # Killing and searching: C-k kill to end of line".
    blocks = blocks_of(reference_card_pdf(tmp_path / "card.pdf"))
    assert [text for kind, text in blocks if kind == "row"] == []
    text = " ".join(text for _, text in blocks)
    # The left column is read down to its end before the right column starts.
    assert text.index("end of line") < text.index("Killing and searching") < text.index("C-k")
    for key, meaning in MOVING + KILLING:  # each key stays with its meaning, set beside it
        assert f"{key} {meaning}" in text
    assert ("heading", "Killing and searching") in blocks


ASY_CARD = Path("/usr/share/doc/asymptote/asyRefCard.pdf")  # Debian's asymptote-doc (make system-deps)


@pytest.mark.skipif(not ASY_CARD.exists(), reason="needs Debian's asymptote-doc")
def test_asymptote_reference_card_columns_are_not_one_table():
    extracted = read(ASY_CARD)
    rows = [b.text for b in extracted.blocks if b.kind == "row" and b.page in (1, 2)]
    # Before, 81 rows joined the columns: "Asymptote Reference Card: import "filename" import module;
    # Operators: comparisons; == != > >= < <=", "Data types/declarations: boolean ...: Flow control".
    assert not any("Operators" in r or "Data types" in r or "fill commands" in r for r in rows)
    page1 = " ".join(b.text for b in extracted.blocks if b.page == 1)
    assert page1.index("Program structure/functions") < page1.index("Data types/declarations") < page1.index("Operators")


# ---------------------------------------------------------------------------------------------
# aligned_tables on lines placed by hand


def piece(text: str, x0: float, x1: float, y: float, height: float = 0.015) -> Line:
    return Line(text, 10.0, 800 - 1000 * y, 800 - 1000 * (y + height), (x0, y, x1, y + height))


def test_columns_drifting_against_each_other_are_no_table():
    """Pieces that keep to columns make a table when each row's cells stand at one height (give or
    take a constant offset: another font); when the right side drifts up and down against the left
    (two columns of text, each with its own spacing), they are no table."""
    left = [("Site", "Staff"), ("Oslo", "14"), ("Lyon", "9"), ("Pune", "31"), ("Kiel", "7")]
    right = [("Code", "Shelf"), ("A1", "north"), ("B2", "south"), ("C3", "east"), ("D4", "west")]

    def grid(offsets):
        lines = []
        for row, ((a, b), (c, d), off) in enumerate(zip(left, right, offsets)):
            y = 0.1 + 0.02 * row
            lines += [piece(a, 0.1, 0.16, y), piece(b, 0.2, 0.24, y),
                      piece(c, 0.55, 0.6, y + off * 0.015), piece(d, 0.65, 0.7, y + off * 0.015)]
        return lines

    steady, _ = aligned_tables(grid([0.2] * 5))
    assert [t.rows for t in steady] == [[["Site", "Staff", "Code", "Shelf"], ["Oslo", "14", "A1", "north"],
                                         ["Lyon", "9", "B2", "south"], ["Pune", "31", "C3", "east"], ["Kiel", "7", "D4", "west"]]]
    assert aligned_tables(grid([0.3, 0.3, -0.3, -0.3, 0.3])) == ([], set())


def test_an_index_set_in_columns_is_no_table():
    entries = [("colorspec, 28, 50", "dumb, 250"), ("command line, 31", "edf, 105"), ("dashtype, 28, 51", "epson, 256"),
               ("data, 103, 107", "equal, 196")]
    lines = [p for row, (a, b) in enumerate(entries)
             for p in (piece(a, 0.1, 0.3, 0.1 + 0.02 * row), piece(b, 0.55, 0.7, 0.1 + 0.02 * row))]
    assert aligned_tables(lines) == ([], set())
