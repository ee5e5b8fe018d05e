"""Hidden HTML, read no wider than a browser hides it: a Markdown file that names <script> in its prose,
or shows a hidden tag in an indented code block or a <pre>, kept its later sections out of the index;
an HTML page's collapsed FAQ answers and inactive tabs were dropped. And tables written all in <th>,
rowspans that ran into the next <tbody>, and a bare number inside a PDF page's running header."""

from __future__ import annotations

import pytest

from archivist.ingest.readers import read


def texts(path) -> list[str]:
    return [b.text for b in read(path).blocks]


def md(tmp_path, source: str) -> list[str]:
    page = tmp_path / "page.md"
    page.write_text(source)
    return texts(page)


def html(tmp_path, body: str) -> list[str]:
    page = tmp_path / "page.html"
    page.write_text(f"<!doctype html><html><body>{body}</body></html>")
    return texts(page)


# -- Markdown: what a raw HTML tag hides --------------------------------------------------------------


@pytest.mark.parametrize("source, expected", [
    # <script>, <style>, <template>, <noscript> in running text are words, as GitHub shows them
    ("# Embedding\n\nAdd the snippet in a <script> tag before </body>.\n\n## Next section\n\nThe VPN gateway is vpn.example.com.\n",
     ["Embedding", "Add the snippet in a <script> tag before </body>.", "Next section", "The VPN gateway is vpn.example.com."]),
    ("Themes go in a <style> block.\n\nRefund policy: 30 days.\n",
     ["Themes go in a <style> block.", "Refund policy: 30 days."]),
    ("Wrap it in <noscript> for readers without JavaScript.\n\nOffice hours: 9 to 5.\n",
     ["Wrap it in <noscript> for readers without JavaScript.", "Office hours: 9 to 5."]),
    # indented code shows its tags as written, as fenced code does
    ("Para.\n\n    <div hidden>\n    code\n\nVisible text after code.\n", ["Para.", "code", "Visible text after code."]),
    ("1. Step one:\n\n        <template>\n\n2. Step two keeps going.\n\nFinal text.\n",
     ["1. Step one:", "<template>", "2. Step two keeps going.", "Final text."]),
    # so does a <pre> block
    ("<pre>\n<script>alert(1)\n</pre>\n\nafter pre\n", ["<script>alert(1)", "after pre"]),
    # an element the file never closes hides its own block, not the rest of the file
    ("Para one.\n\n<div hidden>\n\nhidden text\n\nAfter the div without close.\n",
     ["Para one.", "hidden text", "After the div without close."]),
    ("<script>\nvar x = 1;\n\nThe script was never closed.\n", ["The script was never closed."]),
])
def test_markdown_hides_no_more_than_a_browser_does(tmp_path, source, expected):
    assert md(tmp_path, source) == expected


@pytest.mark.parametrize("source, expected", [
    # a block element hides over blank lines up to its closing tag, a <script> that opens a block too
    ("Intro.\n\n<div hidden>\n\nPlanted: the password is hunter2.\n\n</div>\n\nAfter.\n", ["Intro.", "After."]),
    ("Intro.\n\n<script>\nvar planted = 1;\n\nvar more = 2;\n</script>\n\nAfter.\n", ["Intro.", "After."]),
    ("Text\n<script>var planted = 1;</script>\n\nAfter.\n", ["Text", "After."]),
    # a ">" inside a quoted attribute does not end the tag
    ('<span title="a>b" hidden>secret</span> shown\n', ["shown"]),
    # a tag split over two lines is one tag
    ("<div\nhidden>secret</div>\n\nshown\n", ["shown"]),
    # a fence inside a hidden block is code: its "</div>" closes nothing, its closing fence opens nothing
    ("<div hidden>\n\n```\n</div>\n```\n\nstill hidden\n\n</div>\n\nvisible end\n", ["visible end"]),
])
def test_markdown_still_hides_what_a_browser_hides(tmp_path, source, expected):
    assert md(tmp_path, source) == expected


def test_markdown_many_unclosed_elements_hide_nothing_else_and_read_fast(tmp_path):
    """Each unclosed block element is read again once, as ending with its block; a file of thousands
    of them neither hides its text nor takes long."""
    import time

    start = time.monotonic()
    got = md(tmp_path, "".join(f"<div hidden>\n\nline {n}\n\n" for n in range(3000)))
    assert got == [f"line {n}" for n in range(3000)]
    assert time.monotonic() - start < 10


# -- HTML: hidden content the page reveals --------------------------------------------------------------

FAQ = """<main><h1>FAQ</h1>
<h3><button aria-expanded="false" aria-controls="a1">How do I reset my VPN password?</button></h3>
<div id="a1" hidden><p>Open vpn.acme.example and choose Forgot password.</p></div>
<div role="tablist"><button role="tab" aria-selected="true">Linux</button><button role="tab">Windows</button></div>
<div role="tabpanel"><p>On Linux run sudo apt install acme-vpn.</p></div>
<div role="tabpanel" hidden><p>On Windows run the AcmeVPN.msi installer.</p></div>
<div role="region" hidden><p>Region text shown by its heading's button.</p></div>
<p><a href="#more">More</a></p><section id="more" hidden><p>Shown when the link is followed.</p></section>
<details><summary>Parking</summary><div hidden>Level -2 is for visitors.</div></details>
<p hidden>The secret launch code is ZEBRA-42.</p>
<div id="lonely" hidden>Nothing controls this one.</div>
<div role="tabpanel" aria-hidden="true">Decoration.</div>
<div role="tabpanel" hidden style="display:none">Styled away too.</div>
</main>"""


def test_html_keeps_hidden_content_the_page_reveals_on_a_click(tmp_path):
    """Collapsed accordion answers (aria-controls, role="region"), inactive tabs (role="tabpanel"),
    in-page link targets and a <details> body are text of the page; a hidden element nothing reveals,
    or one hidden by aria-hidden or a style as well, is not."""
    assert html(tmp_path, FAQ) == [
        "FAQ", "How do I reset my VPN password?", "Open vpn.acme.example and choose Forgot password.",
        "LinuxWindows", "On Linux run sudo apt install acme-vpn.", "On Windows run the AcmeVPN.msi installer.",
        "Region text shown by its heading's button.", "More", "Shown when the link is followed.",
        "Parking", "Level -2 is for visitors.",
    ]


# -- HTML tables ------------------------------------------------------------------------------------------


def test_html_table_written_all_in_th_has_one_header_row(tmp_path):
    rows = "".join(f"<tr><th>{a}</th><th>{b}</th></tr>" for a, b in
                   [("Name", "Phone"), ("Alice", "555-1234"), ("Bob", "555-9876"), ("Carol", "555-0000"), ("Dan", "555-1111")])
    assert html(tmp_path, f"<table>{rows}</table>") == [
        "Name: Alice; Phone: 555-1234", "Name: Bob; Phone: 555-9876",
        "Name: Carol; Phone: 555-0000", "Name: Dan; Phone: 555-1111",
    ]


def test_html_multi_level_headers_are_still_joined(tmp_path):
    """Two <th> rows in <thead>, or under a spanning header cell, are one header; a <th> row in the
    body under them is data."""
    assert html(tmp_path, "<table><thead><tr><th>Team</th><th>Q1</th></tr><tr><th>Name</th><th>Hires</th></tr></thead>"
                          "<tbody><tr><td>Ops</td><td>3</td></tr></tbody></table>") == ["Team Name: Ops; Q1 Hires: 3"]
    assert html(tmp_path, "<table><tr><th rowspan=2>Team</th><th colspan=2>2024</th></tr><tr><th>Hires</th><th>Leavers</th></tr>"
                          "<tr><th>Ops</th><th>4</th><th>1</th></tr><tr><td>Sales</td><td>3</td><td>1</td></tr></table>") == [
        "Team: Ops; 2024 Hires: 4; 2024 Leavers: 1", "Team: Sales; 2024 Hires: 3; 2024 Leavers: 1"]


def test_html_rowspan_ends_with_its_row_group(tmp_path):
    assert html(tmp_path, "<table><thead><tr><th>A</th><th>B</th></tr></thead>"
                          "<tbody><tr><td rowspan=5>x</td><td>1</td></tr></tbody>"
                          "<tbody><tr><td>new</td><td>2</td></tr></tbody></table>") == ["A: x; B: 1", "A: new; B: 2"]


# -- PDF layout -------------------------------------------------------------------------------------------


def test_bare_number_inside_a_running_header_is_content(tmp_path):
    """A page's first or last line that is a bare number is its page number; "12" further in, under
    a dropped running header, is content (a figure, a chapter number) and stays."""
    from archivist.ingest.layout import Line, Page, page_blocks

    def line(text, y):  # y: the line's top as a fraction of an 800-unit page from its top
        return Line(text, 10.0, 800 * (1 - y), 800 * (1 - y - 0.015), (0.1, y, 0.9, y + 0.015))

    pages = [Page([line("ACME Handbook", 0.02)] + ([line("12", 0.05)] if n == 2 else [])
                  + [line(f"Body text of page {n} about parking.", 0.3 + k * 0.02) for k in range(3)]
                  + [line(str(n), 0.95)])
             for n in (1, 2, 3)]
    got = " ".join(b.text for b in page_blocks(pages))
    assert "ACME" not in got and "Body text of page 2" in got
    assert "12" in got.split()


def test_reader_versions_are_raised_for_the_readers_that_read_differently():
    from archivist.ingest.readers import reader_version

    assert reader_version("html") >= 6 and reader_version("markdown") >= 5 and reader_version("pdf") >= 5
