"""Fuzzing the readers with hypothesis: real files (the samples, plus a generated XLSX and PPTX)
mutated at the byte level, and for the zip formats inside their XML members too.

`read` must either return non-empty text blocks or raise ReadError; any other exception is a
crash. No case may run past its limit: the PDF child is killed after READ_TIMEOUT seconds, and
the in-process readers are stopped by an alarm after HANG_SECONDS. The default run is bounded and
deterministic (derandomized); FUZZ_EXAMPLES=N scales it, and the `long` test runs many random
cases and prints the figures recorded in docs/reliability.md.
"""

from __future__ import annotations

import io
import os
import signal
import time
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archivist.ingest.readers import ReadError, read

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
READ_TIMEOUT = 10.0  # seconds the PDF child may take per file
HANG_SECONDS = 20.0  # an in-process reader taking longer than this is a hang
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0")) or None
ZIP_KINDS = ("docx", "xlsx", "pptx")
STATS: dict[str, Counter] = {}
SLOWEST: dict[str, float] = {}


def _seeds(folder: Path) -> dict[str, list[tuple[str, bytes]]]:
    """{kind: [(file name, bytes)]}: the samples and a small generated XLSX and PPTX."""
    seeds: dict[str, list] = {}
    kinds = {".pdf": "pdf", ".docx": "docx", ".html": "html", ".md": "markdown", ".csv": "csv"}
    for f in sorted(SAMPLES.iterdir()):
        if f.suffix in kinds:
            seeds.setdefault(kinds[f.suffix], []).append((f.name, f.read_bytes()))
    seeds["text"] = [("notes.txt", (SAMPLES / "oncall-runbook.md").read_bytes())]
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Product", "Price", "Region"])
    for i in range(12):
        ws.append([f"Robot {i}", 1000 + i * 37, "EU" if i % 2 else "US"])
    wb.create_sheet("Notes").append(["Prices exclude VAT and shipping."])
    buf = io.BytesIO()
    wb.save(buf)
    seeds["xlsx"] = [("prices.xlsx", buf.getvalue())]
    from pptx import Presentation
    from pptx.util import Inches

    prs = Presentation()
    for title in ("Quarterly review", "Fleet uptime 99.2%", "Next steps"):
        slide = prs.slides.add_slide(prs.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = f"{title}: details for the leadership team."
        slide.shapes.add_textbox(Inches(1), Inches(5), Inches(4), Inches(1)).text_frame.text = "Footnote"
    buf = io.BytesIO()
    prs.save(buf)
    seeds["pptx"] = [("deck.pptx", buf.getvalue())]
    return seeds


SEEDS = _seeds(SAMPLES)


# -- mutations ----------------------------------------------------------------------------------

position = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)
mutation = st.one_of(
    st.tuples(st.just("flip"), position, st.integers(0, 255)),
    st.tuples(st.just("delete"), position, st.integers(1, 4096)),
    st.tuples(st.just("insert"), position, st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("insert-magic"), position, st.sampled_from(
        [b"<", b">", b"<<", b"obj", b"endobj", b"stream", b"%%EOF", b"\x00", b"\xff\xfe", b"<!--", b"]]>", b"&amp;",
         b"<w:p>", b"<a:t>", b'"', b"\r\n", b"\\u0000", b"trailer", b"/Length 999999999", b"9999999999"])),
    st.tuples(st.just("truncate"), position, st.just(0)),
    st.tuples(st.just("duplicate"), position, st.integers(1, 4096)),
)


def mutate(data: bytes, ops) -> bytes:
    b = bytearray(data)
    for op, where, arg in ops:
        at = int(where * len(b)) if b else 0
        if op == "flip" and b:
            b[at] = arg
        elif op == "delete":
            del b[at:at + arg]
        elif op in ("insert", "insert-magic"):
            b[at:at] = arg
        elif op == "truncate":
            del b[max(at, 1):]
        elif op == "duplicate":
            b[at:at] = b[at:at + arg]
    return bytes(b)


def mutate_member(data: bytes, member_pick: float, ops) -> bytes:
    """Rewrite one member of a zip with mutated content (the XML parsers see the damage, not the
    zip layer's CRC check)."""
    src = zipfile.ZipFile(io.BytesIO(data))
    names = src.namelist()
    target = names[int(member_pick * len(names))]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for n in names:
            content = src.read(n)
            dst.writestr(n, mutate(content, ops) if n == target else content)
    return out.getvalue()


# -- the property ---------------------------------------------------------------------------------


class Hang(BaseException):  # not an Exception: `read` turns those into ReadError
    pass


def _alarm(signum, frame):
    raise Hang(f"reader ran past {HANG_SECONDS} s")


def check_read(path: Path, kind: str) -> str:
    """Read `path`; return "ok" or "ReadError: <reason class>"; fail on any other outcome."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
    t0 = time.monotonic()
    try:
        extracted = read(path, timeout=READ_TIMEOUT)
        outcome = "ok"
        assert extracted.blocks and all(isinstance(b.text, str) and b.text.strip() for b in extracted.blocks)
    except ReadError as e:
        assert str(e) and "\n" not in str(e) and len(str(e)) < 400, f"unclear reason: {e!r}"
        outcome = "ReadError: " + str(e).split(":")[0][:40]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    elapsed = time.monotonic() - t0
    assert elapsed < READ_TIMEOUT + 10, f"{kind} took {elapsed:.1f} s"
    STATS.setdefault(kind, Counter())[outcome] += 1
    SLOWEST[kind] = max(SLOWEST.get(kind, 0.0), elapsed)
    return outcome


def fuzz(kind: str, examples: int, derandomize: bool = True):
    seeds = SEEDS[kind]

    @settings(max_examples=EXAMPLES or examples, deadline=None, database=None, derandomize=derandomize,
              suppress_health_check=list(HealthCheck))
    @given(seed=st.sampled_from(range(len(seeds))), ops=st.lists(mutation, min_size=1, max_size=6),
           inner=st.booleans(), member=position)
    def run(tmp_path_factory, seed, ops, inner, member):
        name, data = seeds[seed]
        if kind in ZIP_KINDS and inner:
            data = mutate_member(data, member, ops)
        else:
            data = mutate(data, ops)
        path = tmp_path_factory.mktemp("fuzz") / name
        path.write_bytes(data)
        check_read(path, kind)

    return run


@pytest.mark.slow
@pytest.mark.parametrize("kind,examples", [("html", 60), ("markdown", 60), ("csv", 60), ("text", 40),
                                           ("docx", 40), ("xlsx", 30), ("pptx", 30), ("pdf", 12)])
def test_mutated_files_give_text_or_a_read_error(tmp_path_factory, kind, examples):
    fuzz(kind, examples)(tmp_path_factory)
    print(f"{kind}: {dict(STATS.get(kind, {}))}, slowest {SLOWEST.get(kind, 0):.2f} s")


@pytest.mark.long
@pytest.mark.parametrize("kind,examples", [("html", 600), ("markdown", 600), ("csv", 600), ("text", 300),
                                           ("docx", 500), ("xlsx", 400), ("pptx", 400), ("pdf", 150)])
def test_mutated_files_many_random_cases(tmp_path_factory, kind, examples):
    fuzz(kind, examples, derandomize=False)(tmp_path_factory)
    print(f"{kind}: {sum(STATS[kind].values())} cases {dict(STATS[kind])}, slowest {SLOWEST.get(kind, 0):.2f} s")


# -- hostile but well-formed inputs -------------------------------------------------------------------


def _docx_with(document_xml: bytes) -> bytes:
    _, data = SEEDS["docx"][0]
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for n in src.namelist():
            dst.writestr(n, document_xml if n == "word/document.xml" else src.read(n))
    return out.getvalue()


LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
          + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10) for i in range(1, 10))
          + b']><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r>'
          + b"<w:t>&lol9;</w:t></w:r></w:p></w:body></w:document>")
XXE = (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
       b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r>'
       b"<w:t>leak &x; here</w:t></w:r></w:p></w:body></w:document>")


@pytest.mark.parametrize("name,data", [
    ("nested.html", b"<html><body>" + b"<div>" * 50_000 + b"deep" + b"</div>" * 50_000 + b"</body></html>"),
    ("attrs.html", b"<html><body><p " + b" ".join(b'a%d="x"' % i for i in range(100_000)) + b">text</p></body></html>"),
    ("one-line.txt", b"word " * 2_000_000),
    ("wide.csv", b"a,b\n" + b'"' + b"x" * 5_000_000 + b'",y\n'),
    ("unclosed.csv", b'name,note\nalice,"never closed\n' + b"more text\n" * 10_000),
    ("nul.md", b"# Title\n\n" + b"\x00" * 1000),
    ("laughs.docx", _docx_with(LAUGHS)),
    ("xxe.docx", _docx_with(XXE)),
    ("script.html", b"<html><body><script>alert(1)</script><p>visible <b>text</b></p></body></html>"),
])
def test_hostile_inputs(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    outcome = check_read(path, "hostile")
    if name in ("laughs.docx", "xxe.docx") and outcome == "ok":
        text = " ".join(b.text for b in read(path).blocks)
        assert "root:" not in text, "an external entity was resolved (XXE)"
        assert len(text) < 100_000, "entities were expanded (billion laughs)"
    if name == "script.html":
        assert "alert(1)" not in " ".join(b.text for b in read(path).blocks)
