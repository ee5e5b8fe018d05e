"""A new user's probe on SQLite's HTML documentation (Debian's sqlite3-doc): what it found wrong."""

from pathlib import Path

import pytest

from archivist.ingest.readers import read

# The top of every page of SQLite's documentation, as the pages ship it (sqlite3-doc 3.40.1): a menu
# bar and a search box that no <nav> marks, then the page's table of contents, then its text.
SQLITE_PAGE = """<!DOCTYPE html><html><head><title>Write-Ahead Logging</title></head><body>
<div class=nosearch>
<a href="index.html"><img class="logo" src="images/sqlite370_banner.gif" alt="SQLite"></a>
<div><!-- IE hack to prevent disappearing logo --></div>
<div class="tagline desktoponly">Small. Fast. Reliable.<br>Choose any three.</div>
<div class="menu mainmenu"><ul>
<li><a href="index.html">Home</a>
<li class='mobileonly'><a href="javascript:void(0)" onclick='toggle_div("submenu")'>Menu</a>
<li class='wideonly'><a href='about.html'>About</a>
<li class='desktoponly'><a href="download.html">Download</a>
<li class='wideonly'><a href='copyright.html'>License</a>
<li class='desktoponly'><a href="prosupport.html">Purchase</a>
</ul></div>
<div class="menu submenu" id="submenu"><ul><li><a href='about.html'>About</a><li><a href='support.html'>Support</a></ul></div>
<div class="searchmenu" id="searchmenu"><form method="GET" action="search">
<select name="s" id="searchtype"><option value="d">Search Documentation</option>
<option value="c">Search Changelog</option></select>
<input type="text" name="q" id="searchbox" value=""><input type="submit" value="Go"></form></div>
</div>
<div class=fancy><div class=nosearch><div class="fancy_title">Write-Ahead Logging</div>
<div class="fancy_toc"><a onclick="toggle_toc()"><span class="fancy_toc_mark" id="toc_mk">&#x25ba;</span>
Table Of Contents</a>
<div id="toc_sub"><div class="fancy-toc1"><a href="#overview">1. Overview</a></div>
<div class="fancy-toc2"><a href="#ckpt">3.1. Automatic Checkpoint</a></div></div></div></div>
<h1 id="overview"><span>1. </span>Overview</h1>
<p>The default method by which SQLite implements atomic commit and rollback is a rollback journal.</p>
<h2 id="ckpt"><span>3.1. </span>Automatic Checkpoint</h2>
<p>By default, SQLite does a checkpoint automatically when the WAL file reaches a threshold size of 1000 pages.</p>
</div></body></html>"""


def _texts(path: Path) -> list[str]:
    return [b.text for b in read(path).blocks]


def test_sqlite_menu_search_box_and_contents_are_not_read_as_text(tmp_path):
    page = tmp_path / "wal.html"
    page.write_text(SQLITE_PAGE, encoding="utf-8")
    # Before: "Home", "Menu", "About", "Download", "License", "Purchase", "About", "Support" and
    # "Search Documentation Search Changelog" came first, then "► Table Of Contents", "1. Overview"...
    assert _texts(page) == [
        "Small. Fast. Reliable. Choose any three.",
        "Write-Ahead Logging",
        "1. Overview",
        "The default method by which SQLite implements atomic commit and rollback is a rollback journal.",
        "3.1. Automatic Checkpoint",
        "By default, SQLite does a checkpoint automatically when the WAL file reaches a threshold size of 1000 pages.",
    ]


def test_navigation_without_nav_dropped_but_content_named_menu_or_nav_kept(tmp_path):
    page = tmp_path / "site.html"
    page.write_text(
        "<html><body>"
        "<div role='navigation'><p>Skip to <b>content</b></p></div>"  # an ARIA landmark is <nav> by another name
        "<ol class='breadcrumb'><li><a href='/'>Docs</a> »</li><li><a href='/db'>Databases</a></li></ol>"
        "<h1>Lunch</h1>"
        "<div class='menu'><p>Soup of the day: 4.50</p><p><a href='/veg'>Vegetable</a> curry: 7.00</p></div>"
        "<ul class='nav-list'><li><a href='a.html'>Chapter 1</a></li><li>Chapter 2 (coming soon)</li></ul>"
        "<p>Served from noon.<select><option>Monday</option><option>Tuesday</option></select></p>"
        "</body></html>",
        encoding="utf-8",
    )
    assert _texts(page) == [
        "Lunch",
        "Soup of the day: 4.50",  # a menu of dishes is not links: content
        "Vegetable curry: 7.00",
        "Chapter 1",  # a list named "nav" with words outside its links stays
        "Chapter 2 (coming soon)",
        "Served from noon.",  # a drop-down's choices are not the page's text
    ]


SQLITE_DOCS = Path("/usr/share/doc/sqlite3/limits.html")


@pytest.mark.skipif(not SQLITE_DOCS.exists(), reason="Debian's sqlite3-doc is not installed")
def test_real_sqlite_page_starts_with_its_text():
    texts = _texts(SQLITE_DOCS)
    for furniture in ("Home", "Purchase", "Search Documentation Search Changelog", "► Table Of Contents"):
        assert furniture not in texts
    assert texts[1:3] == ["Limits In SQLite",
                          '"Limits" in the context of this article means sizes or quantities that can not be '
                          "exceeded. We are concerned with things like the maximum number of bytes in a BLOB or "
                          "the maximum number of columns in a table."]
