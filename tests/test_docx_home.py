"""A Word document's headers and footers (read once, without page numbers, hidden text, deletions
or comments), its template's heading styles and hidden styles, a long document's reading time,
PowerPoint's hidden shapes and slides; and the workspace the CLI opens: a mistyped --home or an
empty ARCHIVIST_HOME is an error naming it, not a new empty workspace that shows "no documents"."""

from __future__ import annotations

import json
import re

import pytest

from archivist.ingest.readers import read

W_NS = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'


def _xml(text: str):
    """An element from WordprocessingML written with the w: prefix."""
    from docx.oxml import parse_xml

    return parse_xml(re.sub(r"^<(w:\w+)", rf"<\1 {W_NS}", text, count=1))


def _page_x_of_y(paragraph) -> None:
    """Word's "Page {PAGE} of {NUMPAGES}": a simple field, then a complex one, as Word writes them."""
    for part in ('<w:r><w:t xml:space="preserve">Page </w:t></w:r>',
                 '<w:fldSimple w:instr=" PAGE \\* MERGEFORMAT "><w:r><w:t>1</w:t></w:r></w:fldSimple>',
                 '<w:r><w:t xml:space="preserve"> of </w:t></w:r>',
                 '<w:r><w:fldChar w:fldCharType="begin"/></w:r>',
                 '<w:r><w:instrText xml:space="preserve"> NUMPAGES </w:instrText></w:r>',
                 '<w:r><w:fldChar w:fldCharType="separate"/></w:r>',
                 '<w:r><w:t>3</w:t></w:r>',
                 '<w:r><w:fldChar w:fldCharType="end"/></w:r>'):
        paragraph._p.append(_xml(part))


def make_procedure(path):
    """Three sections, each with a header and footer of its own (the same text, as Word copies them
    on "Link to Previous" off), a first page with a header of its own, a stale first-page header of
    a section that has no distinct first page, an even-page header of a document without them, a
    hidden run and a tracked deletion in the furniture, a comment in the body."""
    import docx
    from docx.enum.section import WD_SECTION

    d = docx.Document()
    d.core_properties.title = "Calibration of the lab scale"
    first = d.sections[0]
    first.different_first_page_header_footer = True
    first.first_page_header.paragraphs[0].text = "ACME Corp - Quality procedure QP-104 - CONFIDENTIAL"
    first.even_page_header.paragraphs[0].text = "EVENONLY header never shown"
    for n in range(3):
        d.add_heading(f"Step {n + 1}", 1)
        p = d.add_paragraph(f"Weigh the reference mass {n + 1} and record the reading in the calibration log.")
        if n == 1:
            d.add_comment(p.runs[0], text="Outdated, Bob says the log moved to SharePoint", author="Alice")
        section = d.sections[-1]
        section.header.is_linked_to_previous = False
        section.footer.is_linked_to_previous = False
        section.header.paragraphs[0].text = "ACME Corp - Quality procedure QP-104 - CONFIDENTIAL"
        owner = section.header.add_paragraph("Owner: Quality department")
        owner.add_run(" plantedhidden words").font.hidden = True
        table = section.header.add_table(1, 2, width=section.page_width)
        table.cell(0, 0).text, table.cell(0, 1).text = "Document QP-104", "Revision 7"
        _page_x_of_y(section.footer.paragraphs[0])
        approved = section.footer.add_paragraph("Approved 2026-03-01")
        approved._p.append(_xml('<w:del w:id="9" w:author="x" w:date="2026-01-01T00:00:00Z"><w:r>'
                                '<w:delText> superseded revision 6</w:delText></w:r></w:del>'))
        if n == 1:  # a first-page header left behind when "Different First Page" was switched off
            section.first_page_header.is_linked_to_previous = False
            section.first_page_header.paragraphs[0].text = "STALEFIRST header never shown"
            section.different_first_page_header_footer = False
        if n < 2:
            d.add_section(WD_SECTION.NEW_PAGE)
    d.save(path)
    return path


def test_headers_and_footers_are_read_once_without_page_numbers_hidden_text_deletions_or_comments(tmp_path):
    """Before: none of a header's or footer's text was read, so "which procedure is QP-104?" or "who
    owns it?" found nothing. Now each distinct line once, at the start (header) and end (footer)."""
    blocks = read(make_procedure(tmp_path / "qp-104.docx")).blocks
    texts = [b.text for b in blocks]
    assert texts[0] == ("Header: ACME Corp - Quality procedure QP-104 - CONFIDENTIAL; Owner: Quality department; "
                        "Document QP-104 | Revision 7")
    assert texts[-1] == "Footer: Approved 2026-03-01"
    assert blocks[0].heading == blocks[-1].heading == ("Calibration of the lab scale",)  # found with the title
    assert texts[1:-1] == [t for n in (1, 2, 3) for t in (
        f"Step {n}", f"Weigh the reference mass {n} and record the reading in the calibration log.")]
    whole = " ".join(texts)
    for unseen in ("EVENONLY", "STALEFIRST", "plantedhidden", "superseded", "Outdated", "SharePoint", "Page"):
        assert unseen not in whole, unseen

    import docx  # a footer of only "Page 1 of 3" is no passage

    d = docx.Document()
    d.add_paragraph("The only paragraph.")
    _page_x_of_y(d.sections[0].footer.paragraphs[0])
    d.save(tmp_path / "plain.docx")
    assert [b.text for b in read(tmp_path / "plain.docx").blocks] == ["The only paragraph."]


def test_a_templates_own_heading_styles_and_outline_levels_make_headings(tmp_path):
    """Company templates define their own heading styles, based on "Heading 1" or given an outline
    level; and a paragraph may carry an outline level itself. Before: all read as body text, so no
    passage knew its section."""
    import docx
    from docx.enum.style import WD_STYLE_TYPE

    d = docx.Document()
    based = d.styles.add_style("ACME Heading", WD_STYLE_TYPE.PARAGRAPH)
    based.base_style = d.styles["Heading 1"]
    outlined = d.styles.add_style("ACME Sub", WD_STYLE_TYPE.PARAGRAPH)
    outlined.element.get_or_add_pPr().append(_xml('<w:outlineLvl w:val="1"/>'))
    subtitle = d.styles.add_style("ACME Subtitle", WD_STYLE_TYPE.PARAGRAPH)
    subtitle.base_style = d.styles["Title"]
    d.add_paragraph("Travel rules 2026", style="ACME Subtitle")
    d.add_paragraph("Expenses", style="ACME Heading")
    d.add_paragraph("Hotels", style="ACME Sub")
    d.add_paragraph("Hotels are reimbursed up to 150 EUR per night.")
    d.add_paragraph("Meals")._p.get_or_add_pPr().append(_xml('<w:outlineLvl w:val="1"/>'))
    d.add_paragraph("Meals up to 40 EUR a day.")
    d.add_paragraph("Not a heading")._p.get_or_add_pPr().append(_xml('<w:outlineLvl w:val="9"/>'))  # "Body Text"
    d.save(tmp_path / "travel.docx")
    assert [(b.kind, b.heading, b.text) for b in read(tmp_path / "travel.docx").blocks] == [
        ("paragraph", (), "Travel rules 2026"),
        ("heading", ("Expenses",), "Expenses"),
        ("heading", ("Expenses", "Hotels"), "Hotels"),
        ("paragraph", ("Expenses", "Hotels"), "Hotels are reimbursed up to 150 EUR per night."),
        ("heading", ("Expenses", "Meals"), "Meals"),
        ("paragraph", ("Expenses", "Meals"), "Meals up to 40 EUR a day."),
        ("paragraph", ("Expenses", "Meals"), "Not a heading"),
    ]


def test_text_hidden_by_a_style_is_not_read(tmp_path):
    """Font > Hidden set in a character or paragraph style (or one it is based on) hides the text
    as surely as on the run itself. Before: only a run's own setting counted, so text planted under
    a hidden style answered questions."""
    import docx
    from docx.enum.style import WD_STYLE_TYPE

    d = docx.Document()
    secret = d.styles.add_style("Secret", WD_STYLE_TYPE.CHARACTER)
    secret.font.hidden = True
    hidden_para = d.styles.add_style("Hidden Para", WD_STYLE_TYPE.PARAGRAPH)
    hidden_para.font.hidden = True
    below = d.styles.add_style("Hidden Below", WD_STYLE_TYPE.PARAGRAPH)
    below.base_style = hidden_para
    p = d.add_paragraph("Visible start.")
    p.add_run(" plantedcharacter words", style="Secret")
    d.add_paragraph("plantedparagraph words", style="Hidden Para")
    d.add_paragraph("plantedbased words", style="Hidden Below")
    shown = d.add_paragraph("", style="Hidden Para").add_run("Shown again by the run itself.")
    shown.font.hidden = False
    d.add_paragraph("Visible end.")
    d.sections[0].header.paragraphs[0].add_run("plantedheader words", style="Secret")
    d.save(tmp_path / "hidden.docx")
    assert [b.text for b in read(tmp_path / "hidden.docx").blocks] == [
        "Visible start.", "Shown again by the run itself.", "Visible end."]


def test_a_long_document_with_a_large_template_reads_in_seconds(tmp_path):
    """python-docx finds a paragraph's default style by parsing every style of the template, for
    each paragraph. Before: 2,000 paragraphs in a template of 600 styles (corporate templates carry
    hundreds) took 61 s here, half the reader's 120 s timeout, on a busy 2-core machine; now the
    styles are read once (about a second)."""
    import time

    import docx

    d = docx.Document()
    styles = d.styles.element
    for n in range(600):
        styles.append(_xml(f'<w:style w:type="paragraph" w:styleId="Corp{n}"><w:name w:val="Corp {n}"/></w:style>'))
    d.add_heading("Procedures", 1)
    for n in range(2000):
        d.add_paragraph(f"Step {n}: check the valve and write the reading down.")
    d.save(tmp_path / "long.docx")
    started = time.monotonic()
    blocks = read(tmp_path / "long.docx").blocks
    took = time.monotonic() - started
    assert len(blocks) == 2001 and blocks[-1].heading == ("Procedures",)
    assert took < 10, f"{took:.1f} s"


def test_a_hidden_shape_is_not_read_and_a_hidden_slide_says_so(tmp_path):
    """PowerPoint's Selection pane hides a shape from the editor and the show; hiding a slide keeps
    it out of the show (a backup, an old draft). Before: both read as any other, so a hidden text
    box answered questions and a hidden draft's numbers were cited as the deck's."""
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    backup = deck.slides.add_slide(deck.slide_layouts[1])  # first: a hidden slide names no deck either
    backup.shapes.title.text = "Backup"
    backup.placeholders[1].text = "Draft: revenue grew 9 percent."
    backup.element.set("show", "0")
    shown = deck.slides.add_slide(deck.slide_layouts[1])
    shown.shapes.title.text = "Q3 results"
    shown.placeholders[1].text = "Revenue grew 12 percent."
    box = shown.shapes.add_textbox(Inches(1), Inches(5), Inches(4), Inches(1))
    box.text_frame.text = "plantedshape words"
    box.element.nvSpPr.cNvPr.set("hidden", "1")
    deck.save(tmp_path / "q3.pptx")
    extracted = read(tmp_path / "q3.pptx")
    assert extracted.title == "Q3 results"
    assert [(b.page, b.heading, b.text) for b in extracted.blocks] == [
        (1, ("Backup (hidden slide)",), "Backup\nDraft: revenue grew 9 percent."),
        (2, ("Q3 results",), "Q3 results\nRevenue grew 12 percent."),
    ]


def test_the_header_is_found_by_search_as_one_passage(tmp_path, cli):
    """The whole path: ingest, then a search for the document number finds the header's passage, once."""
    (tmp_path / "docs").mkdir()
    make_procedure(tmp_path / "docs" / "qp-104.docx")
    r = cli("ingest", tmp_path / "docs", "--quiet", "--json")
    assert r.returncode == 0, r.stderr
    r = cli("search", "who owns quality procedure QP-104", "-k", "10", "--json")
    assert r.returncode == 0, r.stderr
    hits = json.loads(r.stdout)["hits"]
    assert "Owner: Quality department" in hits[0]["text"]
    assert sum(h["text"].count("CONFIDENTIAL") for h in hits) == 1


@pytest.mark.parametrize("how", ["flag", "variable"])
def test_a_mistyped_home_is_refused_and_nothing_is_created(tmp_path, cli, how):
    """Before: `archivist --home /srv/archivst documents` made a new, empty workspace there and said
    "no documents", exit 0, so the user thought the documents were gone."""
    typo = tmp_path / "archivst"
    place = ["--home", typo] if how == "flag" else []
    env = {"ARCHIVIST_HOME": str(typo if how == "variable" else tmp_path / "elsewhere")}
    for args in (["documents"], ["search", "leave", "--json"], ["users", "list"], ["jobs"], ["backup", tmp_path / "bk"]):
        r = cli(*place, *args, env=env)
        assert r.returncode == 2 and r.stdout == "", (args, r)
        source = "--home" if how == "flag" else "ARCHIVIST_HOME"
        assert r.stderr == (f"archivist: error: no workspace at {typo} ({source}): the folder does not exist; check the "
                            "path, or start a workspace there with `archivist ingest FILES`\n"), (args, r.stderr)
    assert not typo.exists() and not (tmp_path / "bk").exists() and not (tmp_path / "elsewhere").exists()
    typo.mkdir()  # a folder that is there but holds no workspace (the parent of the real one, say)
    r = cli(*place, "documents", "--json", env=env)
    assert r.returncode == 2 and "the folder holds no archivist.db" in r.stderr and list(typo.iterdir()) == []


def test_a_command_that_creates_the_workspace_says_so_once(tmp_path, cli):
    home = tmp_path / "new"
    r = cli("--home", home, "users", "add", "ann", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["name"] == "ann", r.stderr
    assert r.stderr.startswith(f"archivist: created a new workspace at {home}\n"), r.stderr
    r = cli("--home", home, "users", "list", "--json")
    assert r.returncode == 0 and "created" not in r.stderr and "ann" in [u["name"] for u in json.loads(r.stdout)]
    r = cli("--home", home / "archivist.db", "documents")  # the database named instead of its folder
    assert r.returncode == 2 and r.stderr == (f"archivist: error: no workspace at {home / 'archivist.db'} (--home): it is "
                                              f"the database file of the workspace {home}, not its folder; name the "
                                              "workspace folder\n"), r.stderr


def test_an_empty_archivist_home_or_user_is_an_error_naming_it(tmp_path, cli, monkeypatch):
    """Before: `ARCHIVIST_HOME="$DIR"` with DIR unset counted as unset, and the command opened (or
    made) ./archivist-data wherever it ran, a cron job's being $HOME; `ARCHIVIST_USER="$U"` acted as
    the local admin, who reads every collection."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    for value in ("", "  "):
        r = cli("users", "add", "ann", env={"ARCHIVIST_HOME": value})
        assert r.returncode == 2 and r.stdout == ""
        assert r.stderr.startswith("archivist: error: ARCHIVIST_HOME is set but empty"), r.stderr
    assert list(cwd.iterdir()) == []
    r = cli("--home", tmp_path / "ws2", "users", "add", "ann", env={"ARCHIVIST_HOME": ""})  # the flag names it
    assert r.returncode == 0, r.stderr
    r = cli("--home", tmp_path / "ws2", "documents", "--json", env={"ARCHIVIST_USER": ""})
    assert r.returncode == 2 and r.stdout == "" and r.stderr == (
        "archivist: error: ARCHIVIST_USER is set but empty (an unset variable in a script or a service file?); "
        "name it, or unset it for the local admin\n")
    r = cli("--home", tmp_path / "ws2", "--user", "ann", "documents", "--json", env={"ARCHIVIST_USER": ""})
    assert r.returncode == 0 and json.loads(r.stdout) == [], r.stderr  # the flag names the user
