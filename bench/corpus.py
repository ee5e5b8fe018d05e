"""The public benchmark corpus, made from Debian documentation packages (never committed).

    python bench/corpus.py --out bench/data/corpus-small --foldoc 300 --debian-reference

Sources (installed with apt-get when missing; we are root on the bench machines):
  - dict-foldoc: the Free On-line Dictionary of Computing as a dictd database; every entry
    becomes one small HTML page, foldoc/<slug>.html.
  - debian-reference-en: the Debian Reference, 12 long HTML chapters; every numbered subsection
    (x.y.z, or the introduction of an x.y section) becomes one HTML page,
    debian-reference/<number>-<slug>.html, so a question's source page is a few hundred words.

The FOLDOC entries are taken in a fixed pseudo-random order (sha1 of the slug), so a smaller corpus
is always a prefix of a larger one and the generated questions (bench/evalsets/build_foldoc.py)
refer to entries that every corpus size contains.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import hashlib
import html
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

FOLDOC_INDEX = Path("/usr/share/dictd/foldoc.index")
FOLDOC_DICT = Path("/usr/share/dictd/foldoc.dict.dz")
DEBREF_DIR = Path("/usr/share/debian-reference")
PACKAGES = {"foldoc": "dict-foldoc", "debian-reference": "debian-reference-en"}
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def ensure_packages(names: list[str]) -> None:
    """apt-get install the Debian packages that are missing; raises SystemExit with the reason."""
    missing = [n for n in names if subprocess.run(["dpkg", "-s", n], capture_output=True).returncode != 0]
    if not missing:
        return
    print(f"installing {' '.join(missing)} with apt-get", file=sys.stderr)
    sudo = [] if hasattr(__import__("os"), "geteuid") and __import__("os").geteuid() == 0 else ["sudo"]
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    ok = subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", *missing], env=env).returncode == 0
    if not ok:
        subprocess.run(sudo + ["apt-get", "update", "-qq"], env=env)
        ok = subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", *missing], env=env).returncode == 0
    if not ok:
        raise SystemExit(f"could not install {' '.join(missing)}; install them with apt-get and run again")


# -- FOLDOC ----------------------------------------------------------------------------------------


@dataclass
class Entry:
    slug: str
    headword: str
    aliases: list[str]
    categories: list[str]
    paragraphs: list[str]  # body paragraphs, {cross references} kept
    date: str | None

    @property
    def text(self) -> str:
        return " ".join(self.paragraphs)


def _b64(s: str) -> int:
    n = 0
    for c in s:
        n = n * 64 + _B64.index(c)
    return n


def slugify(text: str, limit: int = 60) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:limit].rstrip("-") or hashlib.sha1(text.encode()).hexdigest()[:10]


def _parse_entry(raw: str) -> Entry | None:
    lines = raw.rstrip().split("\n")
    head = []
    i = 0
    while i < len(lines) and lines[i].strip() and not lines[i].startswith(" "):
        head.append(lines[i].strip())
        i += 1
    if not head:
        return None
    body = "\n".join(lines[i:]).strip()
    paras = [" ".join(p.split()) for p in re.split(r"\n\s*\n", body) if p.strip()]
    date = None
    if paras and re.fullmatch(r"\(\d{4}-\d{2}-\d{2}\)", paras[-1]):
        date = paras.pop()[1:-1]
    cats: list[str] = []
    if paras:
        m = re.match(r"((?:<[^>]+>\s*)+)", paras[0])
        if m:
            cats = [c.strip() for tag in re.findall(r"<([^>]+)>", m.group(1)) for c in tag.split(",") if c.strip()]
            paras[0] = paras[0][m.end():].strip()
    paras = [p for p in paras if p]
    return Entry(slug="", headword=head[0], aliases=list(dict.fromkeys(h for h in head[1:] if h != head[0])),
                 categories=cats, paragraphs=paras, date=date)


def foldoc_entries() -> list[Entry]:
    """Every FOLDOC entry with a real definition, in the fixed sha1-of-slug order."""
    data = gzip.open(FOLDOC_DICT).read()
    seen: set[tuple[int, int]] = set()
    out: dict[str, Entry] = {}
    for line in FOLDOC_INDEX.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) != 3 or parts[0].startswith("00-database"):
            continue
        off, size = _b64(parts[1]), _b64(parts[2])
        if (off, size) in seen:  # aliases point at the same entry
            continue
        seen.add((off, size))
        e = _parse_entry(data[off:off + size].decode("utf-8", "replace"))
        if e is None or not e.paragraphs or len(e.text.split()) < 12 or not re.match(r"\w", e.headword):
            continue
        if re.match(r"(See|Compare|Synonym)\b", e.paragraphs[0]) and len(e.paragraphs[0].split()) < 12:
            continue  # a pointer to another entry, not a definition
        e.slug = slugify(e.headword)
        while e.slug in out:
            e.slug += "-x"
        out[e.slug] = e
    return sorted(out.values(), key=lambda e: hashlib.sha1(e.slug.encode()).hexdigest())


def _link(m: re.Match) -> str:
    inner = m.group(1)
    url = re.search(r"\(((?:https?|ftp)://[^)\s]+|[\w.-]+\.html)\)\s*$", inner)
    if url:
        label = inner[:url.start()].strip() or url.group(1)
        return f'<a href="{html.escape(url.group(1))}">{html.escape(label)}</a>'
    return f'<a href="{slugify(inner)}.html">{html.escape(inner)}</a>'


def entry_html(e: Entry) -> str:
    """One FOLDOC entry as a small HTML page, cross references as links."""
    def body(p: str) -> str:
        parts = re.split(r"(\{[^{}]*\})", p)
        return "".join(_link(re.match(r"\{([^{}]*)\}", s)) if s.startswith("{") and s.endswith("}") else html.escape(s)
                       for s in parts)

    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{html.escape(e.headword)} - FOLDOC</title></head><body>", f"<h1>{html.escape(e.headword)}</h1>"]
    if e.aliases:
        out.append(f'<p class="aliases">Also known as: {html.escape(", ".join(e.aliases))}</p>')
    if e.categories:
        out.append(f'<p class="categories">Categories: {html.escape(", ".join(e.categories))}</p>')
    out += [f"<p>{body(p)}</p>" for p in e.paragraphs]
    if e.date:
        out.append(f'<p class="date">Last updated {e.date}</p>')
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def plain(text: str) -> str:
    """FOLDOC text without its {cross reference} braces and link targets."""
    text = re.sub(r"\{([^{}]*?)\s*\((?:https?|ftp)://[^)]*\)\}", r"\1", text)
    text = re.sub(r"\{([^{}]*?)\s*\([\w.-]+\.html\)\}", r"\1", text)
    return re.sub(r"[{}]", "", text)


def write_foldoc(out: Path, limit: int | None) -> list[Entry]:
    entries = foldoc_entries()[:limit]
    folder = out / "foldoc"
    folder.mkdir(parents=True, exist_ok=True)
    for e in entries:
        (folder / f"{e.slug}.html").write_text(entry_html(e), encoding="utf-8")
    return entries


# -- Debian Reference ------------------------------------------------------------------------------


def debref_sections() -> list[tuple[str, str, str, str]]:
    """(number, title, chapter title, section HTML) for every x.y.z subsection and x.y introduction."""
    from bs4 import BeautifulSoup

    out = []
    chapters = sorted(DEBREF_DIR.glob("ch*.en.html"))
    for path in chapters:
        soup = BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")
        h1 = soup.find(["h1", "h2"], class_="title")
        chapter = " ".join(h1.get_text(" ").split()) if h1 else path.stem
        chap = soup.find("div", class_="chapter") or soup.body
        for sec in chap.find_all("div", class_="section", recursive=False):
            intro = copy.copy(sec)
            for sub in intro.find_all("div", class_="section", recursive=False):
                sub.decompose()
            number, title = _heading(sec)
            if len(intro.get_text(" ").split()) >= 25:
                out.append((number, title, chapter, str(intro)))
            for sub in sec.find_all("div", class_="section", recursive=False):
                n2, t2 = _heading(sub)
                out.append((n2, t2, chapter, str(sub)))
    return out


def _heading(sec) -> tuple[str, str]:
    h = sec.find(["h2", "h3", "h4", "h5"])
    text = " ".join(h.get_text(" ").split()) if h else "section"
    m = re.match(r"([\d.]+?)\.?\s+(.*)", text)
    return (m.group(1), m.group(2)) if m else ("0", text)


def debref_name(number: str, title: str) -> str:
    return f"{number}-{slugify(title, 50)}.html"


def write_debian_reference(out: Path, limit: int | None = None) -> list[str]:
    folder = out / "debian-reference"
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for number, title, chapter, body in debref_sections()[:limit]:
        name = debref_name(number, title)
        page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(number + ' ' + title)} - Debian Reference</title></head><body>\n"
                f"<h1>{html.escape(chapter)}</h1>\n{body}\n</body></html>\n")
        (folder / name).write_text(page, encoding="utf-8")
        names.append(name)
    return names


def prepare(out: Path, foldoc: int | None = 0, debian_reference: bool = True, replicas: int = 1,
            debian_limit: int | None = None) -> dict:
    """Write the corpus folder (replacing it) and a manifest.json; returns the manifest.

    foldoc: how many FOLDOC entries (None: all, 0: none). replicas > 1 copies the whole corpus
    under copy-2/, copy-3/, ... with one line of each page changed, for the memory benchmark."""
    needed = ([PACKAGES["foldoc"]] if foldoc != 0 else []) + ([PACKAGES["debian-reference"]] if debian_reference else [])
    ensure_packages(needed)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    entries = write_foldoc(out, foldoc) if foldoc != 0 else []
    debref = write_debian_reference(out, debian_limit) if debian_reference else []
    for r in range(2, replicas + 1):
        for f in sorted(p for p in out.rglob("*.html") if "copy-" not in p.parts[len(out.parts)]):
            target = out / f"copy-{r}" / f.relative_to(out)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(f.read_text(encoding="utf-8").replace("<body>", f"<body>\n<p>Copy {r}.</p>", 1), encoding="utf-8")
    files = sorted(p for p in out.rglob("*.html"))
    manifest = {"foldoc_entries": len(entries), "debian_reference_pages": len(debref), "replicas": replicas,
                "files": len(files), "bytes": sum(p.stat().st_size for p in files)}
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--foldoc", type=int, default=0, help="FOLDOC entries to include (-1: all)")
    ap.add_argument("--debian-reference", action="store_true", help="include the Debian Reference subsections")
    ap.add_argument("--replicas", type=int, default=1)
    args = ap.parse_args(argv)
    m = prepare(args.out, None if args.foldoc < 0 else args.foldoc, args.debian_reference, args.replicas)
    print(json.dumps(m))
    return 0


if __name__ == "__main__":
    sys.exit(main())
