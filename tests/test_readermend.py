"""Two reading defects a new user found in the bzip2 manual (1.0.8), rebuilt here as real files:
a PDF table whose header stands on two lines ("Compress" over "usage") had its upper line read as a
line above the table, which then headed every row as a caption, and split the header's sense apart
("usage: 1200k; usage: 500k"); and on a scanned page, a heading that wraps to a second line
("... DAMAGED" / "FILES") was read as two heading levels, the OCR measuring its lines a size apart,
while a table's many short cells made the page's prose measure apart too (a line of it a heading).
The PDF is written with fpdf2 as the manual sets its table (a fixed-pitch font, the upper header
line's words close enough to stay one run of text); the scan is that kind of page drawn by pdfium
and read by the real OCR."""

from __future__ import annotations


from fpdf import FPDF

from archivist.ingest import ocr
from archivist.ingest.layout import ocr_lines
from archivist.ingest.readers import read

PROSE = ("Here is a table which summarises the maximum memory usage for different block sizes. Also "
         "recorded is the total compressed size for 14 files of the Calgary Text Compression Corpus.")
AFTER = ("bzip2 compresses files in blocks, usually 900kbytes long. Each block is handled independently. "
         "If a media or transmission error causes a multi-block file to become damaged, it may be "
         "possible to recover data from the undamaged blocks in the file. The compressed representation "
         "of each block is delimited by a 48-bit pattern, which makes it possible to find the block "
         "boundaries with reasonable certainty. bzip2recover takes a single argument, the name of the "
         "damaged file, and writes a number of files containing the extracted blocks.")
CENTRES = [90, 150, 216, 288, 348]  # x of each column's middle, points: the upper line's words 12 pt apart
UPPER = [None, "Compress", "Decompress", "Decompress", "Corpus"]
HEADER = ["Flag", "usage", "usage", "-s usage", "Size"]
DATA = [["-1", "1200k", "500k", "350k", "914704"], ["-2", "2000k", "900k", "600k", "877703"],
        ["-3", "2800k", "1300k", "850k", "860338"], ["-4", "3600k", "1700k", "1100k", "846899"],
        ["-5", "4400k", "2100k", "1350k", "845160"]]


def _manual_page(pdf: FPDF, heading: tuple[str, ...]) -> None:
    """One page as the manual's page 9: a section heading, prose, the memory table, then `heading`
    (one or two lines, as the manual wraps "2.6. RECOVERING DATA FROM DAMAGED FILES") and its text."""
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 18)
    pdf.set_xy(72, 60)
    pdf.cell(0, 22, "2.5. MEMORY MANAGEMENT")
    pdf.set_font("Times", "", 10)
    pdf.set_xy(72, 92)
    pdf.multi_cell(460, 12, PROSE)
    pdf.set_font("Courier", "", 10)
    y = 140
    for row, step in [(UPPER, 12), (HEADER, 16), *((row, 14) for row in DATA)]:  # the header's lines set close
        for centre, text in zip(CENTRES, row):
            if text:  # each cell its own run, centred on its column, as the manual's are placed
                pdf.text(centre - pdf.get_string_width(text) / 2, y, text)
        y += step
    pdf.set_font("Helvetica", "B", 18)
    y += 20
    for line in heading:
        pdf.set_xy(72, y)
        pdf.cell(0, 22, line)
        y += 24
    pdf.set_font("Times", "", 10)
    pdf.set_xy(72, y + 6)
    pdf.multi_cell(460, 12, AFTER)


def test_a_two_line_table_header_is_one_header_not_a_line_heading_the_rows(tmp_path):
    pdf = FPDF(unit="pt", format="letter")
    _manual_page(pdf, ("2.6. RECOVERING DATA FROM DAMAGED FILES",))
    path = tmp_path / "manual.pdf"
    pdf.output(str(path))

    blocks = read(path).blocks
    rows = [b for b in blocks if b.kind == "row"]
    assert [b.text for b in rows[:2]] == [
        "Flag: -1; Compress usage: 1200k; Decompress usage: 500k; Decompress -s usage: 350k; Corpus Size: 914704",
        "Flag: -2; Compress usage: 2000k; Decompress usage: 900k; Decompress -s usage: 600k; Corpus Size: 877703"]
    assert len(rows) == len(DATA)
    # The rows are headed by their section alone: the upper header line is no caption of the table.
    assert {b.heading for b in rows} == {("2.5. MEMORY MANAGEMENT",)}
    assert not any("Compress Decompress" in b.text for b in blocks if b.kind != "row")
    after = [b for b in blocks if b.heading == ("2.6. RECOVERING DATA FROM DAMAGED FILES",)]
    assert [b.kind for b in after] == ["heading", "paragraph"]


def test_a_caption_right_above_a_table_stays_its_caption(tmp_path):
    """A line over the header as close as the header's own upper line, but a sentence across the
    columns (its words in the gutters), is the table's caption, not a line of its header."""
    for x, caption in [(72, "Maximum memory usage by block size (kilobytes)"), (120, "Table 2. Memory use per flag")]:
        pdf = FPDF(unit="pt", format="letter")
        pdf.add_page()
        pdf.set_font("Courier", "", 10)
        pdf.text(x, 128, caption)
        for y, row in zip(range(140, 240, 14), [HEADER, *DATA]):
            for centre, text in zip(CENTRES, row):
                pdf.text(centre - pdf.get_string_width(text) / 2, y, text)
        path = tmp_path / "caption.pdf"
        pdf.output(str(path))
        rows = [b for b in read(path).blocks if b.kind == "row"]
        assert rows[0].text == "Flag: -1; usage: 1200k; usage: 500k; -s usage: 350k; Size: 914704"
        assert {b.heading for b in rows} == {(caption,)}


def test_a_scanned_heading_that_wraps_is_one_heading_and_prose_beside_a_table_keeps_one_size(tmp_path):
    import pypdfium2 as pdfium

    pdf = FPDF(unit="pt", format="letter")
    _manual_page(pdf, ("2.6. RECOVERING DATA FROM DAMAGED", "FILES"))
    pdf.output(str(tmp_path / "page.pdf"))
    document = pdfium.PdfDocument(str(tmp_path / "page.pdf"))
    try:  # scanned at 150 dpi, as a phone or a sheet feeder gives it
        image = document[0].render(scale=150 / 72, grayscale=True).to_pil().convert("L")
    finally:
        document.close()
    scan = tmp_path / "bzip2_page9.png"
    image.save(scan)

    page = ocr.ocr_image(image)  # the lines as the reader measures them
    lines = ocr_lines(page, 72 / ocr.DPI)
    prose = [ln for ln in lines if len(ln.text) > 40]
    assert len(prose) >= 6
    assert len({ln.size for ln in prose}) == 1, [(ln.text[:30], ln.size) for ln in prose]

    blocks = read(scan).blocks
    headings = [b for b in blocks if b.kind == "heading"]
    # Two sibling sections, the second heading one block over its two lines: no level for "FILES",
    # and "MEMORY MANAGEMENT" (wide letters) no level above "RECOVERING DATA" (narrow ones).
    assert [len(b.heading) for b in headings] == [1, 1], [b.heading for b in headings]
    memory, wrapped = headings
    assert "MEMORY MANAGEMENT" in memory.text and wrapped.text.endswith("RECOVERING DATA FROM DAMAGED FILES")
    assert len(wrapped.boxes) == 2  # both its lines, highlighted as one heading
    prose = [b for b in blocks if b.kind == "paragraph"]
    assert [b.heading for b in prose] == [memory.heading, wrapped.heading]  # no line of prose heads anything
    # The scanned table's two-line header is one header too (the OCR boxed each upper word apart).
    rows = [b for b in blocks if b.kind == "row"]
    assert len(rows) == len(DATA) and {b.heading for b in rows} == {memory.heading}
    assert rows[0].text.startswith("Flag: -1; Compress usage: 1200k; Decompress usage: 500k; Decompress -s usage: 350k")


# The OCR's lines of the bzip2 manual's page 9 scanned at 150 dpi (text and pixel box as RapidOCR
# gave them): a section heading wrapped over two lines, then its text.
BZIP2_PAGE_9 = [
    ("2.6.RECOVERING DATA FROM DAMAGED", (149, 711, 1010, 747)), ("FILES", (148, 757, 275, 802)),
    ("bzip2 compresses files in blocks, usually 90okbytes long. Each block is handled independently. If a media or",
     (147, 824, 1128, 850)),
    ("transmission error causes a multi-block . bz2 file to become damaged, it may be possible to recover data from the",
     (148, 849, 1128, 875)),
    ("undamaged blocks in the file.", (151, 876, 392, 896)),
    ("The compressed representation of each block is delimited by a 48-bit pattern, which makes it possible to find the",
     (148, 920, 1128, 946)),
    ("block boundaries with reasonable certainty. Each block also carries its own 32-bit CRC, so damaged blocks can be",
     (147, 944, 1128, 970)),
    ("distinguished from undamaged ones.", (149, 970, 458, 994)),
]


def test_the_bzip2_scans_wrapped_heading_is_one_heading_however_its_second_line_is_boxed():
    from archivist.ingest.layout import Page, page_blocks

    # As read, and with the short line's box a few pixels tighter on each side (OCR pads its boxes
    # unevenly; on five letters that is a size 10% smaller).
    for files_box in [(148, 757, 275, 802), (151, 757, 272, 802)]:
        lines = [(text, files_box if text == "FILES" else box) for text, box in BZIP2_PAGE_9]
        page = ocr.OcrPage(1275, 1651, [ocr.OcrLine(text, box, 0.99) for text, box in lines])
        blocks = page_blocks([Page(ocr_lines(page, 72 / 150))])
        assert [(b.kind, b.heading) for b in blocks] == [
            ("heading", ("2.6.RECOVERING DATA FROM DAMAGED FILES",)),
            ("paragraph", ("2.6.RECOVERING DATA FROM DAMAGED FILES",)),
            ("paragraph", ("2.6.RECOVERING DATA FROM DAMAGED FILES",))], files_box
        assert len(blocks[0].boxes) == 2


# Its page 7 as the OCR read it: options set as bold headings over their text; one line of that
# text holds capitals ("See MEMORY MANAGEMENT [5] below.").
BZIP2_PAGE_7 = [
    ('How to use bzip2', (993, 73, 1141, 97)),
    ('50 bytes. Random data (including the output of most file compressors) is coded at about 8.05 bits per byte, giving an',
     (149, 155, 1127, 180)),
    ('expansion of around 0.5%.', (150, 182, 375, 204)),
    ('As a self-check for your protection, bzip2 uses 32-bit CRCs to make sure that the decompressed version of a file is',
     (150, 226, 1127, 249)),
    ('identical to the original. This guards against corruption of the compressed data, and against undetected bugs in bzip2',
     (149, 251, 1125, 274)),
    ('(hopefully very unlikely). The chances of data corruption going undetected is microscopic, about one chance in four',
     (150, 277, 1127, 300)),
    ('billion for each file processed. Be aware, though, that the check occurs upon decompression, so it can only tell you',
     (147, 298, 1127, 325)),
    ("that something is wrong. It can't help you recover the original uncompressed data. You can use bzip2 recover to",
     (148, 325, 1128, 351)),
    ('try to recover data from damaged files.', (149, 351, 471, 374)),
    ('Return values: 0 for a normal exit, 1 for environmental problems (file not found, invalid flags, IO errors, etc.), 2 to',
     (148, 395, 1126, 419)),
    ('indicate a corrupt compressed file, 3 for an internal consistency error (eg, bug) which caused bzip2 to panic.',
     (149, 421, 1063, 446)),
    ('2.4. OPTIONS', (151, 476, 426, 513)),
    ('-c --stdout', (151, 559, 287, 581)),
    ('Compress or decompress to standard output.', (225, 584, 594, 607)),
    ('-d --decompress', (150, 637, 340, 662)),
    ('Force decompression. bzip2, bunzip2 and bzcat are really the same program, and the decision about',
     (222, 662, 1128, 688)),
    ('what actions to take is done on the basis of which name is used. This flag overrides that mechanism, and',
     (225, 688, 1127, 710)),
    ('forces bzip2 to decompress.', (224, 711, 458, 738)),
    ('-z --compress', (152, 769, 314, 789)),
    ('The complement to -d: forces compression, regardless of the invokation name.', (223, 789, 887, 816)),
    ('-t --test', (151, 845, 261, 865)),
    ("Check integrity of the specified file(s), but don't decompress them. This really performs a trial decompres-",
     (223, 866, 1126, 894)),
    ('sion and throws away the result.', (223, 893, 491, 917)),
    ('-f --force', (151, 944, 275, 972)),
    ('Force overwrite of output files. Normally, bzip2 will not overwrite existing output files. Also forces',
     (221, 970, 1128, 997)),
    ("bzip2 to break hard links to files, which it otherwise wouldn't do.", (223, 997, 785, 1021)),
    ("bzip2 normally declines to decompress files which don't have the correct magic header bytes. If forced",
     (225, 1043, 1127, 1066)),
    ('(- f), however, it will pass such files through unmodified. This is how GNU gzip behaves.',
     (224, 1069, 989, 1091)),
    ('-k --keep', (149, 1119, 264, 1146)),
    ("Keep (don't delete) input files during compression or decompression.", (223, 1144, 799, 1171)),
    ('-S --small', (151, 1200, 276, 1222)),
    ('Reduce memory usage, for compression, decompression and testing. Files are decompressed and tested',
     (223, 1223, 1128, 1249)),
    ('using a modified algorithm which only requires 2.5 bytes per block byte. This means any file can be',
     (225, 1250, 1127, 1273)),
    ('decompressed in 2300k of memory,albeit at about half the normalspeed.', (226, 1277, 834, 1297)),
    ('During compression, -s selects a block size of 20ok, which limits memory use to around the same figure, at',
     (225, 1320, 1127, 1342)),
    ('the expense of your compression ratio. In short, if your machine is low on memory (8 megabytes or less),',
     (223, 1341, 1128, 1371)),
    ('use -s for everything. See MEMORY MANAGEMENT [5] below.', (224, 1370, 794, 1393)),
    ('-q --quiet', (152, 1423, 276, 1448)),
    ('Suppress non-essential warning messages. Messages pertaining to I/O errors and other critical events will not',
     (223, 1447, 1128, 1472)),
    ('be suppressed.', (222, 1471, 348, 1497)),
    ('4', (1126, 1534, 1134, 1545)),
]


def test_a_line_of_prose_in_capitals_on_a_scan_heads_nothing():
    """Measured against the width most characters on the page have (its prose), a line of prose whose
    capitals make it 22% wider per character is still prose; the options are still headings."""
    from archivist.ingest.layout import Page, page_blocks

    page = ocr.OcrPage(1275, 1651, [ocr.OcrLine(text, box, 0.99) for text, box in BZIP2_PAGE_7])
    blocks = page_blocks([Page(ocr_lines(page, 72 / 150))])
    headings = [b.text for b in blocks if b.kind == "heading"]
    assert headings[-3:] == ["-k --keep", "-S --small", "-q --quiet"] and "2.4. OPTIONS" in headings
    assert [b.heading for b in blocks if "MEMORY MANAGEMENT" in b.text] == [("2.4. OPTIONS", "-S --small")]
