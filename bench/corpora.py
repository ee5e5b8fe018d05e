"""Public corpora for the frozen evaluation sets (bench/evalsets/PUBLIC.md), built from Debian packages.

    python bench/corpora.py --out bench/data/public --corpus git|handbook|python|all|valgrind

Each corpus becomes one folder of small HTML pages with stable names; the output is deterministic
(sorted inputs, no dates), so a page name in bench/evalsets/<corpus>.jsonl always means the same text.
Corpus text is never committed (bench/data is git-ignored).

  - git (package git-doc): every manual page and guide in /usr/share/doc/git-doc/*.html becomes
    git/<same name>.html (git-stash.html, gitattributes.html, user-manual.html, ...), header and body
    kept, the footer (build date) and the two index pages (index.html, howto-index.html) left out.
  - handbook (package debian-handbook): The Debian Administrator's Handbook, en-US. Every numbered
    subsection x.y.z (with its x.y.z.w parts) becomes one page, and the introduction of a section x.y
    (the text before its first subsection) another when it has at least 25 words:
    handbook/<number>-<slug>.html (6.2.1-initialization.html, A.7-tails.html). The preface's and
    foreword's sections, numbered 1., 2., ... in the book, are named preface-<n>-<slug>.html.
  - python (package python3.11-doc): the library reference pages of these chapters of
    library/index.html, modules and their sub-pages (email.*, xml.*, ...): PYTHON_AREAS below. One
    page per source file, python/<file>.html (python/heapq.html); a page of more than 8,000 words is
    split at its second-level sections: python/<file>.html keeps the text before the first one and
    each section becomes python/<file>--<slug>.html (python/datetime--timedelta-objects.html).
"""

from __future__ import annotations

import argparse
import copy
import html
import json
import re
import shutil
import sys
from pathlib import Path

from corpus import ensure_packages, slugify

GIT_DIR = Path("/usr/share/doc/git-doc")
HANDBOOK_DIR = Path("/usr/share/doc/debian-handbook/html/en-US")
PYTHON_DIR = Path("/usr/share/doc/python3.11/html/library")
VALGRIND_DIR = Path("/usr/share/doc/valgrind/html")
PACKAGES = {"git": "git-doc", "handbook": "debian-handbook", "python": "python3.11-doc", "valgrind": "valgrind"}
FOLDERS = {"git": "git", "handbook": "debian-handbook", "python": "python", "valgrind": "valgrind"}
# Chapters of the Python library reference taken whole (their toctree in library/index.html).
PYTHON_AREAS = ["text", "binary", "datatypes", "numeric", "functional", "filesys", "persistence", "archiving",
                "fileformats", "crypto", "concurrency", "netdata", "markup", "internet", "debug", "unix", "i18n"]
PYTHON_SPLIT_WORDS = 8000


def _soup(path: Path):
    from bs4 import BeautifulSoup

    return BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")


def _text(node) -> str:
    return " ".join(node.get_text(" ").split())


def _page(title: str, body: str, source: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><meta name=\"source\" content=\"{html.escape(source)}\">"
            f"</head><body>\n{body}\n</body></html>\n")


def _clean(node) -> None:
    """Drop what is not text of the page: scripts, styles, permalink marks, index anchors."""
    for tag in node.find_all(["script", "style"]):
        tag.decompose()
    for a in node.find_all("a", class_=["headerlink", "indexterm"]):
        a.decompose()


# -- git -------------------------------------------------------------------------------------------


def git_pages() -> list[tuple[str, str]]:
    """(name, html) for every git-doc manual page and guide."""
    out = []
    for path in sorted(GIT_DIR.glob("*.html")):
        if path.name in ("index.html", "howto-index.html"):
            continue
        soup = _soup(path)
        title = _text(soup.title) if soup.title else path.stem
        body = soup.body
        for foot in body.find_all(id="footer"):
            foot.decompose()
        _clean(body)
        out.append((path.name, _page(title, body.decode_contents(), str(path))))
    return out


# -- The Debian Administrator's Handbook -----------------------------------------------------------


def _heading(sec) -> tuple[str, str]:
    h = sec.find(["h1", "h2", "h3", "h4", "h5"])
    text = _text(h) if h else "section"
    m = re.match(r"([A-Z]?[\d.]*\d|[A-Z])\.?\s+(.*)", text)
    return (m.group(1), m.group(2)) if m else ("0", text)


def _subsections(sec) -> list:
    return [d for d in sec.find_all("div", class_="section", recursive=False)]


def handbook_pages() -> list[tuple[str, str]]:
    """(name, html) for every x.y.z subsection and every x.y introduction of the Handbook."""
    out: dict[str, str] = {}
    for path in sorted(HANDBOOK_DIR.glob("*.html")):
        if path.name == "index.html":
            continue
        soup = _soup(path)
        _clean(soup)
        h1 = soup.find("h1", class_="title")
        chapter = _text(h1) if h1 else ""
        root = soup.find("div", class_=["chapter", "appendix", "preface"])
        tops = _subsections(root) if root is not None else soup.find_all("div", class_="section", recursive=True)[:1]
        if root is None and not tops:
            continue
        for sec in tops:
            number, title = _heading(sec)
            prefix = "preface-" if "." not in number and not number.isalpha() else ""
            intro = copy.copy(sec)
            for sub in _subsections(intro):
                sub.decompose()
            if len(_text(intro).split()) >= 25:
                name = f"{prefix}{number}-{slugify(title, 50)}.html"
                out[name] = _page(f"{number}. {title} - The Debian Administrator's Handbook",
                                  (f"<h1>{html.escape(chapter)}</h1>\n" if chapter else "") + str(intro), str(path))
            for sub in _subsections(sec):
                n2, t2 = _heading(sub)
                name = f"{prefix}{n2}-{slugify(t2, 50)}.html"
                out[name] = _page(f"{n2}. {t2} - The Debian Administrator's Handbook",
                                  f"<h1>{html.escape(chapter)}</h1>\n<h2>{html.escape(number + '. ' + title)}</h2>\n"
                                  + str(sub), str(path))
    return sorted(out.items())


# -- Python library reference ----------------------------------------------------------------------


def python_files() -> list[Path]:
    """The library pages of PYTHON_AREAS: each chapter's toctree entries and their sub-pages."""
    soup = _soup(PYTHON_DIR / "index.html")
    toc = soup.find("div", class_="toctree-wrapper").find("ul")
    every = {p.name for p in PYTHON_DIR.glob("*.html")}
    names: set[str] = set()
    for li in toc.find_all("li", recursive=False):
        area = li.find("a")["href"].split("#")[0][:-len(".html")]
        sub = li.find("ul")
        if area not in PYTHON_AREAS or sub is None:
            continue
        for a in sub.find_all("li", recursive=False):
            target = a.find("a")["href"].split("#")[0]
            stem = target[:-len(".html")]
            names.add(target)
            names |= {f for f in every if f.startswith(stem + ".") or f.startswith(stem + "-")}
    return sorted(PYTHON_DIR / n for n in names)


def python_pages() -> list[tuple[str, str]]:
    """(name, html) for the chosen library pages, the long ones split at their second-level sections."""
    out = []
    for path in python_files():
        soup = _soup(path)
        body = soup.find("div", class_="body")
        _clean(body)
        top = body.find("section") or body
        h1 = top.find("h1")
        title = _text(h1) if h1 else path.stem
        if len(_text(body).split()) <= PYTHON_SPLIT_WORDS:
            out.append((path.name, _page(title, body.decode_contents(), str(path))))
            continue
        intro = copy.copy(top)
        for sec in intro.find_all("section", recursive=False):
            sec.decompose()
        out.append((path.name, _page(title, str(intro), str(path))))
        seen: set[str] = set()
        for sec in top.find_all("section", recursive=False):
            h2 = sec.find("h2")
            sub = _text(h2) if h2 else sec.get("id", "section")
            slug = slugify(sub, 50)
            while slug in seen:
                slug += "-x"
            seen.add(slug)
            name = f"{path.stem}--{slug}.html"
            out.append((name, _page(f"{title} — {sub}", f"<h1>{html.escape(title)}</h1>\n{sec}", str(path))))
    return out


# -- build -----------------------------------------------------------------------------------------

def valgrind_pages() -> list[tuple[str, str]]:
    """Valgrind's user manual as the package ships it, page for page, unchanged: a fourth corpus,
    measured once and never tuned on (bench/evalsets/VALGRIND.md)."""
    return [(p.name, p.read_text(encoding="utf-8")) for p in sorted(VALGRIND_DIR.glob("*.html"))]


BUILDERS = {"git": git_pages, "handbook": handbook_pages, "python": python_pages, "valgrind": valgrind_pages}
ALL = ("git", "handbook", "python")  # --corpus all: the corpora of PUBLIC.md's frozen sets and hash


def build(out: Path, corpus: str) -> dict:
    """Write out/<folder>/ for one corpus (replacing it); returns {"corpus", "pages", "bytes"}."""
    ensure_packages([PACKAGES[corpus]])
    folder = out / FOLDERS[corpus]
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    pages = BUILDERS[corpus]()
    for name, page in pages:
        (folder / name).write_text(page, encoding="utf-8")
    return {"corpus": corpus, "folder": str(folder), "pages": len(pages), "bytes": sum(len(p.encode()) for _, p in pages)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--corpus", choices=[*BUILDERS, "all"], default="all")
    args = ap.parse_args(argv)
    for name in ALL if args.corpus == "all" else [args.corpus]:
        print(json.dumps(build(args.out, name)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
