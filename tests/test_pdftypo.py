"""Manuals read as a user types them: a PDF's minus sign and its code font's curly quotes (TeX's
CMTT, texinfo's PDFs) read as ASCII, prose keeps its typographic quotes."""

from __future__ import annotations

from pathlib import Path

import pytest

from archivist.ingest.readers import read

DEJAVU = Path("/usr/share/fonts/truetype/dejavu")


def manual_pdf(path: Path) -> Path:
    """A page of a manual: prose with curly quotes and an apostrophe in a proportional font, and
    code in a monospaced one whose text layer holds U+2212 and curly quotes (as CMTT's does)."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.add_font("Sans", "", str(DEJAVU / "DejaVuSans.ttf"))
    pdf.add_font("Mono", "", str(DEJAVU / "DejaVuSansMono.ttf"))
    pdf.add_page()
    pdf.set_font("Sans", size=11)
    pdf.multi_cell(0, 6, "The shell\u2019s \u2018test\u2019 builtin reads an expression and returns its status; "
                   "a pattern in \u201cdouble quotes\u201d matches literally, as the manual explains here.")
    pdf.ln(4)
    pdf.set_font("Mono", size=10)
    for line in ("${parameter:\u2212word}", "[[ . =~ \u2019\\.\u2019 ]]", "echo \u2018date\u2018"):
        pdf.cell(0, 5, line, new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(path))
    return path


def test_code_reads_as_typed_and_prose_keeps_its_quotes(tmp_path):
    if not (DEJAVU / "DejaVuSansMono.ttf").exists():
        pytest.skip("DejaVu fonts not installed")
    text = "\n".join(b.text for b in read(manual_pdf(tmp_path / "manual.pdf")).blocks)
    assert "${parameter:-word}" in text and "\u2212" not in text
    assert "[[ . =~ '\\.' ]]" in text
    assert "echo `date`" in text
    assert "The shell\u2019s \u2018test\u2019 builtin" in text
    assert "\u201cdouble quotes\u201d" in text


TEXINFO_HTML = """<!DOCTYPE html><html><head><title>Top (Bash Reference Manual)</title></head><body>
<h1 class="settitle" align="center">Bash Reference Manual</h1>
<div class="top" id="Top"><div class="header"><p>Next: <a href="#Introduction">Introduction</a></p></div>
<span id="Bash-Features-1"></span><h1 class="top">Bash Features</h1>
<p>This text is a brief description of the features that are present in the Bash shell.</p></div>
<div class="chapter" id="Introduction"><h2 class="chapter">1 Introduction</h2>
<p>Bash is the shell, or command language interpreter, for the GNU operating system.</p>
<div class="section"><h3 class="section">1.1 What is Bash?</h3><p>Bash is an sh-compatible shell.</p></div></div>
</body></html>"""


def test_texinfo_html_heads_every_section_with_the_manuals_title(tmp_path):
    path = tmp_path / "bashref.html"
    path.write_text(TEXINFO_HTML)
    paths = {b.text: b.heading for b in read(path).blocks if b.kind != "heading"}
    assert paths["This text is a brief description of the features that are present in the Bash shell."] == (
        "Bash Reference Manual", "Bash Features")
    assert paths["Bash is the shell, or command language interpreter, for the GNU operating system."] == (
        "Bash Reference Manual", "1 Introduction")
    assert paths["Bash is an sh-compatible shell."] == ("Bash Reference Manual", "1 Introduction", "1.1 What is Bash?")
    # bc's manual: a Top node without @top is a "node-heading"
    path.write_text(TEXINFO_HTML.replace('class="top">Bash Features', 'class="node-heading">Top'))
    paths = {b.text: b.heading for b in read(path).blocks if b.kind != "heading"}
    assert paths["Bash is an sh-compatible shell."] == ("Bash Reference Manual", "1 Introduction", "1.1 What is Bash?")
    # a page that is not texinfo's keeps its first h1 at the head of the path
    path.write_text(TEXINFO_HTML.replace('<h1 class="settitle" align="center">Bash Reference Manual</h1>', ""))
    paths = {b.text: b.heading for b in read(path).blocks if b.kind != "heading"}
    assert paths["Bash is an sh-compatible shell."] == ("Bash Features", "1 Introduction", "1.1 What is Bash?")


def test_ask_a_question_that_reads_as_an_option_says_how(cli):
    run = cli("ask", "--posix")
    assert run.returncode == 2
    assert "required: question" in run.stderr and 'archivist ask -- "--posix"' in run.stderr
    run = cli("search", "--posix")
    assert run.returncode == 2 and 'archivist search -- "--posix"' in run.stderr
