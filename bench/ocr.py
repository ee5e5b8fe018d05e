"""Scans, tables and the PDF text path: accuracy, speed and memory (issue 20).

    python bench/ocr.py --size small|full

1. OCR: pages per second and character error rate (CER) on pages rendered from known text at
   200 dpi in several fonts and sizes, with a slight rotation and grain (target: CER <= 2%).
   CER = edit distance / characters of the truth, line by line (each OCR line is matched to the
   rendered line at its height). Speed through `read()` (child process, render, OCR, layout).
2. Memory: the bounded reader child OCRing a scanned PDF of N pages, for a small and a large N
   (full: 10 and 100 pages): the kernel's peak RSS and address space after each page, and pages
   per second. Flat means the late pages leave the peaks where the early ones put them.
3. Tables: the share of cells whose value comes out next to both its row header and its column
   header ("Product: Model 07; APAC: 307" in one row block), on generated PDF tables: ruled and
   unruled, on one page and across pages, and the same table as a 200 dpi scan (PNG, OCR), ruled
   and unruled (target >= 0.95 ruled).
4. The text-layer path: `read_pdf` of this version against the version before issue 20
   (ingest/readers.py at BEFORE, loaded beside it), on the same text PDFs, alternated, median of
   repeats, in CPU seconds of the process; the ratio is old time / new time (target >= 0.95).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import alternate, log, md_table, median, module_at, report

REPO = Path(__file__).resolve().parent.parent
FONTS = Path("/usr/share/fonts/truetype/dejavu")
BEFORE = "cac38c3"  # main before the documents work of issue 20 landed
SIZES = {"small": {"ocr_pages": 6, "memory_pages": (3, 12), "repeats": 7},
         "full": {"ocr_pages": 12, "memory_pages": (10, 100), "repeats": 9}}

WORDS = ("the warehouse fleet robot pallet drone battery inspection schedule invoice customer order "
         "shipment region quarter revenue safety officer badge visitor policy contract delivery "
         "maintenance software licence training budget travel expense approval manager report").split()


def text_lines(seed: int, n: int = 14) -> list[str]:
    """Known text: sentences of common business words with numbers and codes, ~55 characters a line."""
    import random

    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(6, 8))]
        words.insert(rng.randint(1, len(words)), rng.choice([f"{rng.randint(10, 9999)}", f"NW-{rng.randint(1000, 9999)}",
                                                             f"{rng.randint(1, 28)} March", f"EUR {rng.randint(10, 999)}"]))
        lines.append(" ".join(words).capitalize() + ".")
    return lines


PAGE_STYLES = [  # font, size in pt, rotation in degrees, grain (std of pixel noise)
    ("DejaVuSerif.ttf", 11, 0.0, 0),
    ("DejaVuSans.ttf", 10, 0.5, 8),
    ("DejaVuSerif.ttf", 12, -0.8, 12),
    ("DejaVuSansMono.ttf", 10, 0.3, 6),
    ("DejaVuSans.ttf", 12, -0.4, 15),
    ("DejaVuSerifCondensed.ttf", 11, 0.7, 10),
]


def scan_page(lines: list[str], style: tuple, dpi: int = 200):
    """A letter page of `lines` as a grayscale image at `dpi`, tilted and grained; returns the image
    and each line's vertical centre in pixels."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    font_file, pt, tilt, grain = style
    width, height = int(8.5 * dpi), int(11 * dpi)
    px = round(pt * dpi / 72)
    font = ImageFont.truetype(str(FONTS / font_file), px)
    image = Image.new("L", (width, height), 245)
    draw = ImageDraw.Draw(image)
    centres = []
    y = dpi  # one-inch margins
    for line in lines:
        draw.text((dpi, y), line, font=font, fill=25)
        centres.append(y + px * 0.6)
        y += int(px * 1.9)
    image = image.rotate(tilt, resample=Image.BICUBIC, fillcolor=245)
    if grain:
        noise = np.random.default_rng(len(lines) + int(pt)).normal(0, grain, (height, width))
        image = Image.fromarray(np.clip(np.asarray(image, np.float32) + noise, 0, 255).astype("uint8"))
    return image, centres


def levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def page_cer(page, truth: list[str], centres: list[float]) -> tuple[int, int]:
    """(edit distance, truth characters) for one OCRed page: OCR lines go to the rendered line
    nearest their vertical centre, left to right."""
    got: dict[int, list] = {i: [] for i in range(len(truth))}
    for line in page.lines:
        mid = (line.box[1] + line.box[3]) / 2
        nearest = min(range(len(truth)), key=lambda i: abs(centres[i] - mid))
        got[nearest].append(line)
    errors = 0
    for i, want in enumerate(truth):
        text = " ".join(ln.text for ln in sorted(got[i], key=lambda ln: ln.box[0]))
        errors += levenshtein(text, want)
    return errors, sum(len(t) for t in truth)


def scan_pdf(path: Path, images) -> Path:
    """A PDF whose pages are only the given images, stored as JPEG like a scanner does."""
    import io

    from fpdf import FPDF

    pdf = FPDF(format="letter")
    for image in images:
        pdf.add_page()
        jpeg = io.BytesIO()
        image.save(jpeg, format="JPEG", quality=80)
        pdf.image(jpeg, x=0, y=0, w=215.9, h=279.4)
    pdf.output(str(path))
    return path


def bench_ocr(pages: int, tmp: Path) -> dict:
    from archivist.ingest.ocr import ocr_image
    from archivist.ingest.readers import read

    rows, images = [], []
    errors = chars = 0
    for k in range(pages):
        style = PAGE_STYLES[k % len(PAGE_STYLES)]
        truth = text_lines(k)
        image, centres = scan_page(truth, style)
        images.append(image)
        t0 = time.perf_counter()
        page = ocr_image(image)
        seconds = time.perf_counter() - t0
        e, n = page_cer(page, truth, centres)
        errors, chars = errors + e, chars + n
        rows.append([f"{style[0].removesuffix('.ttf')} {style[1]} pt, {style[2]:+.1f}°, grain {style[3]}",
                     f"{100 * e / n:.2f}%", f"{page.confidence:.3f}", f"{seconds:.1f}"])
        log(f"page {k + 1}: CER {100 * e / n:.2f}% in {seconds:.1f} s")
    path = scan_pdf(tmp / "scan.pdf", images)
    t0 = time.perf_counter()
    extracted = read(path, timeout=600)
    through_read = time.perf_counter() - t0
    assert sorted(extracted.ocr) == list(range(1, pages + 1))
    return {"rows": rows, "cer": errors / chars, "pages": pages, "read_seconds": through_read,
            "pages_per_s": pages / through_read}


def bench_memory(counts: tuple[int, ...], tmp: Path) -> dict:
    """The reader's bounded child (`python -m archivist.ingest.readers --worker pdf`, exactly what
    `read()` starts, with its address-space limit) OCRing scanned PDFs of `counts` pages: the
    kernel's own peaks of its RSS (VmHWM) and address space (VmPeak) as each page is reported done.
    Flat means the late pages leave the peaks where the early ones put them. Pages are logged as
    they finish, so a run cut short still shows its curve."""
    out = {}
    for n in counts:
        images = [scan_page(text_lines(100 + k % 5), PAGE_STYLES[k % len(PAGE_STYLES)])[0] for k in range(min(n, 5))]
        path = scan_pdf(tmp / f"scan-{n}.pdf", [images[k % len(images)] for k in range(n)])
        cmd = [sys.executable, "-m", "archivist.ingest.readers", "--worker", "pdf",
               "--options", json.dumps({"ocr": "auto", "max_pages": 5000}), "--", str(path)]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        pages, reply, peaks = [], None, {}
        for line in proc.stdout:
            if line.startswith(b"P "):
                peaks = _vm_peaks(proc.pid)
                pages.append({"page": int(line[2:]), "seconds": round(time.perf_counter() - t0, 1), **peaks})
                log(f"{n}-page scan: page {pages[-1]['page']} at {pages[-1]['seconds']:.0f} s, "
                    f"peak RSS {peaks['peak_rss_mb']:.0f} MB, peak address space {peaks['peak_vms_mb']:.0f} MB")
            else:
                reply = json.loads(line)
        proc.wait()
        seconds = time.perf_counter() - t0
        error = None if reply and reply.get("ok") else (reply or {}).get("error", f"exit code {proc.returncode}")
        out[n] = {"pages": len(pages), "error": error, "seconds": seconds, "pages_per_s": len(pages) / seconds,
                  "peak_mb": peaks.get("peak_rss_mb"), "peak_vms_mb": peaks.get("peak_vms_mb"), "by_page": pages}
        log(f"{n} pages: {seconds:.0f} s, {len(pages) / seconds:.3f} pages/s, error: {error}")
    return out


def _vm_peaks(pid: int) -> dict:
    """The kernel's peaks for a live process (Linux /proc): RSS (VmHWM) and address space (VmPeak), MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"peak_rss_mb": int(fields["VmHWM"].split()[0]) / 1024, "peak_vms_mb": int(fields["VmPeak"].split()[0]) / 1024}


def table_data(rows: int) -> list[list[str]]:
    data = [["Product", "EMEA", "Americas", "APAC", "Units"]]
    return data + [[f"Model {i:02d}", f"{100 + i:,}", f"{2000 + 7 * i:,}", f"{300 + i}", f"{50 + i}"] for i in range(rows)]


def table_pdf(path: Path, shape: str, rows: int) -> tuple[Path, list[list[str]]]:
    """A caption and a generated table set by fpdf2, ruled (every cell boxed) or unruled (aligned
    text only); a long one runs on to the next pages, which repeat its header."""
    from fpdf import FPDF

    data = table_data(rows)
    pdf = FPDF(format="A4")
    pdf.add_page()
    pdf.set_font("Helvetica", size=10)
    pdf.cell(0, 8, f"Table: {shape} sales by region", new_x="LMARGIN", new_y="NEXT")
    with pdf.table(borders_layout="NONE" if shape.startswith("unruled") else "ALL") as table:
        for values in data:
            row = table.row()
            for value in values:
                row.cell(value)
    pdf.output(str(path))
    return path, data


def table_scan(path: Path, shape: str, rows: int, dpi: int = 200) -> tuple[Path, list[list[str]]]:
    """The table as a 200 dpi scan (a PNG): DejaVu Sans 10 pt in fixed columns, ruled or not,
    with a little grain."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    data = table_data(rows)
    px = round(10 * dpi / 72)
    font = ImageFont.truetype(str(FONTS / "DejaVuSans.ttf"), px)
    widths = [int(w * dpi) for w in (1.6, 1.1, 1.1, 1.1, 1.0)]
    step, left, top = int(px * 2.2), dpi, int(1.5 * dpi)
    image = Image.new("L", (int(8.5 * dpi), int(11 * dpi)), 245)
    draw = ImageDraw.Draw(image)
    draw.text((left, dpi), f"Table: {shape} sales by region", font=font, fill=25)
    for r, values in enumerate(data):
        x = left
        for width, value in zip(widths, values):
            draw.text((x + px // 2, top + r * step + px // 2), value, font=font, fill=25)
            x += width
    if shape.endswith("ruled") and not shape.endswith("unruled"):
        bottom = top + len(data) * step
        for r in range(len(data) + 1):
            draw.line((left, top + r * step, left + sum(widths), top + r * step), fill=25, width=2)
        for x in [left + sum(widths[:k]) for k in range(len(widths) + 1)]:
            draw.line((x, top, x, bottom), fill=25, width=2)
    noise = np.random.default_rng(rows).normal(0, 6, (image.height, image.width))
    Image.fromarray(np.clip(np.asarray(image, np.float32) + noise, 0, 255).astype("uint8")).save(path)
    return path, data


def cells_found(blocks: list[str], data: list[list[str]], spaces: bool = True) -> tuple[int, int]:
    """(cells found next to their row and column headers, cells): the row block that names the
    row ("Product: Model 07") also holds "APAC: 307". spaces=False compares with all whitespace
    taken out, which forgives the recognizer's dropped spaces ("Model07") and nothing else."""
    def norm(text: str) -> str:
        return text if spaces else "".join(text.split())

    blocks = [norm(b) for b in blocks]
    header, found, total = data[0], 0, 0
    for values in data[1:]:
        for column in range(1, len(header)):
            total += 1
            want = (norm(f"{header[0]}: {values[0]}"), norm(f"{header[column]}: {values[column]}"))
            found += any(all(w in b for w in want) for b in blocks)
    return found, total


def bench_tables(tmp: Path, scans: bool) -> dict:
    from archivist.ingest.readers import read

    shapes = [("ruled", 12), ("ruled across pages", 70), ("unruled", 12), ("unruled across pages", 70)]
    if scans:
        shapes += [("scanned ruled", 12), ("scanned unruled", 12)]
    out = {}
    for shape, rows in shapes:
        make = table_scan if shape.startswith("scanned") else table_pdf
        path, data = make(tmp / f"{shape.replace(' ', '-')}.{'png' if shape.startswith('scanned') else 'pdf'}", shape, rows)
        extracted = read(path, timeout=600)  # a scan's first page under load takes minutes
        rows = [b.text for b in extracted.blocks if b.kind == "row"]
        found, total = cells_found(rows, data)
        unspaced, _ = cells_found(rows, data, spaces=False)
        out[shape] = {"cells": total, "found": found, "share": found / total, "pages": extracted.pages,
                      "share_ignoring_spaces": unspaced / total}
        log(f"tables {shape}: {found}/{total} ({unspaced} ignoring spaces)")
    return out


def text_pdfs(tmp: Path) -> list[Path]:
    """Text-layer PDFs: the sample handbook and generated reports of 5-20 pages with headings."""
    from fpdf import FPDF

    paths = [REPO / "samples" / "employee-handbook.pdf"]
    for n, pages in enumerate((5, 10, 20)):
        pdf = FPDF(format="A4")
        for p in range(pages):
            pdf.add_page()
            pdf.set_font("Helvetica", "B", 15)
            pdf.cell(0, 10, f"Section {p + 1}", new_x="LMARGIN", new_y="NEXT")
            pdf.set_font("Helvetica", size=11)
            for k in range(5):
                pdf.multi_cell(0, 6, " ".join(text_lines(n * 1000 + p * 10 + k, 6)), new_x="LMARGIN", new_y="NEXT")
                pdf.ln(3)
        path = tmp / f"text-{pages}.pdf"
        pdf.output(str(path))
        paths.append(path)
    return paths


def bench_text_path(tmp: Path, repeats: int) -> dict:
    from archivist.ingest import readers_pdf

    # ingest/readers.py as it was at BEFORE, with its helpers as they were then (readers_markup is gone since)
    old = module_at(BEFORE, "ingest/readers.py", "ingest_before")
    paths = text_pdfs(tmp)

    def run(fn):
        def once(_):
            # CPU time of this process: on a shared machine wall time swings 2-3x between runs.
            t0 = time.process_time()
            for _ in range(3):
                for path in paths:
                    fn(path)
            return time.process_time() - t0
        return once

    times = alternate({"before": run(old.read_pdf), "now": run(readers_pdf.read_pdf)}, repeats)
    pages = sum(old.read_pdf(p).pages for p in paths)
    return {"pages": pages, "before_s": median(times["before"]), "now_s": median(times["now"]),
            "ratio": median(times["before"]) / median(times["now"])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="small", choices=SIZES)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-ocr", action="store_true", help="only the tables and the text path")
    parser.add_argument("--memory-pages", type=int, nargs="+", metavar="N", help="page counts of the memory run (default by size)")
    parser.add_argument("--only", choices=("text", "tables", "ocr", "memory"),
                        help="run one part and print its JSON (no report)")
    args = parser.parse_args(argv)
    from archivist.catalog import installed_versions

    size = SIZES[args.size]
    tmp = Path(tempfile.mkdtemp(prefix="bench-ocr-"))
    memory_pages = tuple(args.memory_pages or size["memory_pages"])
    if args.only:
        part = {"text": lambda: bench_text_path(tmp, size["repeats"]), "tables": lambda: bench_tables(tmp, scans=True),
                "ocr": lambda: bench_ocr(size["ocr_pages"], tmp), "memory": lambda: bench_memory(memory_pages, tmp)}[args.only]
        print(json.dumps(part(), indent=1))
        return 0

    text = bench_text_path(tmp, size["repeats"])
    log(f"text path: before {text['before_s']:.2f} s, now {text['now_s']:.2f} s")
    tables = bench_tables(tmp, scans=not args.skip_ocr)
    if args.skip_ocr:
        print(json.dumps({"tables": tables, "text_path": text}, indent=1))
        return 0
    ocr = bench_ocr(size["ocr_pages"], tmp)
    memory = {} if args.skip_memory else bench_memory(memory_pages, tmp)

    rapidocr = installed_versions(["rapidocr-onnxruntime"]).get("rapidocr-onnxruntime", "?")
    body = [f"OCR (RapidOCR {rapidocr}, PP-OCRv4, 200 dpi letter pages of ~14 lines): "
            f"**CER {100 * ocr['cer']:.2f}%** over {ocr['pages']} pages (target <= 2%); "
            f"**{ocr['pages_per_s']:.2f} pages/s** through `read()` ({ocr['read_seconds']:.0f} s for {ocr['pages']} pages, "
            "child process, render and layout included).", "",
            md_table(["page", "CER", "mean confidence", "OCR s"], ocr["rows"]), "",
            "Tables (share of cells found next to their row and column headers):", "",
            md_table(["shape", "cells", "found", "share", "share ignoring spaces", "pages"],
                     [[k, v["cells"], v["found"], f"{v['share']:.3f}", f"{v['share_ignoring_spaces']:.3f}", v["pages"]]
                      for k, v in tables.items()]), "",
            f"Text-layer PDFs ({text['pages']} pages, each read 3 times; CPU seconds): before issue 20 {text['before_s']:.2f} s, now {text['now_s']:.2f} s, "
            f"**ratio {text['ratio']:.2f}** (before / now, target >= 0.95)."]
    if memory:
        body += ["", "Peak RSS of the reader child while OCRing a scanned PDF:", "",
                 md_table(["pages", "peak MB", "seconds"], [[n, f"{v['peak_mb']:.0f}", f"{v['seconds']:.0f}"] for n, v in memory.items()])]
    report("ocr", "Scans, tables and the PDF text path (bench/ocr.py)", "\n".join(body),
           {"ocr": ocr, "tables": tables, "text_path": text, "memory": memory, "size": args.size})
    return 0


if __name__ == "__main__":
    sys.exit(main())
