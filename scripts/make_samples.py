"""Generate the binary sample documents in samples/ (PDF, DOCX, scans and images) for the fictional
Northwind Robotics.

    .venv/bin/python scripts/make_samples.py        # rewrites samples/*.pdf, *.docx and *.png

The scan (an image-only PDF) and the photographed notice (PNG) are text drawn with PIL in the
DejaVu fonts (Debian's fonts-dejavu-core, which `make system-deps` installs), with a slight tilt
and grain; their text is only readable by OCR.

The text samples (HTML, Markdown, CSV) are written by hand and live in samples/ as they are.
Output is byte-for-byte deterministic: fixed creation dates in the PDF and DOCX metadata and fixed
zip timestamps in the DOCX, so regenerating leaves git clean. Every fact sits in exactly one
document (samples/QUESTIONS.jsonl names which); keep it that way when editing the text.
Needs fpdf2 (`pip install fpdf2`) and python-docx.
"""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
FIXED = dt.datetime(2025, 1, 6, 9, 0, 0, tzinfo=dt.timezone.utc)

# ---------------------------------------------------------------------------------------------
# employee-handbook.pdf: sections as (level, heading, [paragraphs]); a new page starts where a
# section is listed under a new page in HANDBOOK_PAGES.

HANDBOOK_PAGES = [
    [
        (1, "1. Welcome to Northwind Robotics", [
            "Northwind Robotics builds autonomous pallet movers, inspection drones and the fleet software that "
            "runs them for warehouses across Europe. This handbook explains how we work together: hours, leave, "
            "pay and benefits, remote work and the conduct we expect from everyone.",
            "This is version 4.2 of the handbook, effective from 1 January 2025. It replaces every earlier "
            "version. Where a separate policy document exists, the handbook names it; the policy document wins "
            "if the two disagree. Questions go to the People team at people@northwind-robotics.example.",
        ]),
        (1, "2. Working hours", [
            "The standard working week is 38 hours, Monday to Friday. We work on trust-based flexible time: "
            "you decide when to start and finish, as long as you are available during the core hours from "
            "10:00 to 15:00 on working days.",
            "Overtime is recorded in the flexible time account. The account may hold at most 40 plus hours; "
            "hours above that limit must be agreed with your manager in advance or they lapse at the end of "
            "the quarter.",
            "Your first six months are the probation period. During probation either side may end the "
            "employment with two weeks of notice; afterwards the notice period is three months to the end of "
            "a calendar month.",
        ]),
    ],
    [
        (1, "3. Leave", []),
        (2, "3.1 Annual leave", [
            "Full-time employees receive 30 days of paid annual leave per calendar year, plus the public "
            "holidays of the state where their contract is based. Part-time employees receive a share in "
            "proportion to their working days.",
            "Unused leave can be carried over to the next year but must be taken by 31 March; after that "
            "date it expires. Book leave in the HR portal at least two weeks before longer absences.",
        ]),
        (2, "3.2 Parental leave (policy HR-17)", [
            "Under policy HR-17, every parent, regardless of gender, receives 20 weeks of fully paid parental "
            "leave after the birth or adoption of a child. The leave may be split into at most three blocks "
            "and must be taken within 24 months of the birth or adoption.",
            "Tell the People team about your planned parental leave at least eight weeks before it starts, "
            "so your team can plan cover. Your role and salary band are guaranteed on your return.",
        ]),
        (2, "3.3 Sick leave", [
            "If you are ill, tell your manager before 09:30 on the first day of absence. From the third "
            "calendar day of illness we need a doctor's certificate, uploaded to the HR portal.",
        ]),
    ],
    [
        (1, "4. Pay and benefits", [
            "Salaries are paid on the last working day of each month. Salary bands are reviewed every "
            "April, and individual reviews take place in the same month.",
            "Every employee has a personal learning budget of EUR 1,500 per year for courses, conferences "
            "and books. Unused budget does not roll over. Requests are approved by your manager.",
            "Through the CycleFlex programme you can lease a bicycle or e-bike; the company pays the "
            "insurance and the monthly rate is deducted from gross pay.",
            "The company adds 4 percent of gross salary to the company pension plan, on top of any "
            "amount you choose to convert from your own salary.",
        ]),
        (1, "5. Equipment", [
            "On your first day you receive a laptop, a headset and a phone if your role needs one. "
            "Laptops are replaced every four years, or earlier when repair is not worth it.",
            "For working from home, every employee may claim a one-off home office allowance of EUR 600 "
            "for a desk, a chair or a screen. Claim it within your first year; keep the receipts.",
        ]),
    ],
    [
        (1, "6. Remote work and offices", [
            "Most roles can be done remotely for up to three days per week; your team agrees which days "
            "everyone is in the office. Working from another country is possible for up to 20 working days "
            "per year with approval from the People team.",
            "Our headquarters are at Am Sandtorkai 41, 20457 Hamburg. The engineering office is at Rua "
            "do Almada 88, Porto. Both offices are open from 07:00 to 21:00 on working days; the reception "
            "in Hamburg issues visitor badges.",
        ]),
        (1, "7. Conduct", [
            "We expect respect, honesty and care for safety. Anyone working near running robots in the test "
            "hall must complete the hall safety briefing first and wear high-visibility clothing.",
            "Gifts from suppliers or customers worth more than EUR 50 must be declared to the compliance "
            "officer. Concerns about misconduct can be reported anonymously through the integrity line.",
        ]),
        (1, "8. Health and safety", [
            "Each office has trained first aiders and fire wardens; their names are posted next to the "
            "kitchen. The fire assembly point in Hamburg is the square in front of the main entrance.",
            "Occupational health check-ups are offered every three years, and every year for staff who "
            "work in the test hall. Eye tests for screen work are paid by the company.",
            "Report every accident and near miss in the safety log within 24 hours, even when nobody was "
            "hurt. The safety officer reviews the log every week and reports trends to management.",
        ]),
    ],
]


def make_handbook(path: Path) -> None:
    """A 4-page PDF: section headings at 16 pt, subsections at 13 pt, body at 11 pt, and a running
    footer with the page number (which readers should drop)."""
    from fpdf import FPDF

    class Handbook(FPDF):
        def footer(self) -> None:
            self.set_y(-15)
            self.set_font("Helvetica", size=8)
            self.cell(0, 10, f"Northwind Robotics - Employee Handbook - page {self.page_no()}", align="C")

    pdf = Handbook(format="A4")
    pdf.set_creation_date(FIXED)
    pdf.set_title("Northwind Robotics Employee Handbook")
    pdf.set_author("Northwind Robotics People Team")
    pdf.set_auto_page_break(auto=True, margin=20)
    sizes = {1: 16, 2: 13}
    for number, sections in enumerate(HANDBOOK_PAGES):
        pdf.add_page()
        if number == 0:
            pdf.set_font("Helvetica", "B", 22)
            pdf.multi_cell(0, 11, "Northwind Robotics Employee Handbook", new_x="LMARGIN", new_y="NEXT")
            pdf.ln(6)
        for level, heading, paragraphs in sections:
            pdf.set_font("Helvetica", "B", sizes[level])
            pdf.multi_cell(0, 9, heading, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
            pdf.set_font("Helvetica", size=11)
            for text in paragraphs:
                pdf.multi_cell(0, 6, text, new_x="LMARGIN", new_y="NEXT")
                pdf.ln(4)
    pdf.output(str(path))


# ---------------------------------------------------------------------------------------------
# DOCX helpers


def _fixed_zip(path: Path) -> None:
    """Rewrite a zip with fixed member timestamps, so the bytes depend only on the content."""
    members = []
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            members.append((info.filename, zf.read(info)))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(2025, 1, 6, 9, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    path.write_bytes(buf.getvalue())


def _new_document(title: str, author: str):
    import docx

    document = docx.Document()
    props = document.core_properties
    props.title = title
    props.author = author
    props.last_modified_by = author
    props.created = FIXED.replace(tzinfo=None)
    props.modified = FIXED.replace(tzinfo=None)
    props.revision = 1
    return document


BULLET = "bullet"  # (BULLET, text): a paragraph in the "List Bullet" style


def _write_docx(path: Path, title: str, author: str, body: list) -> None:
    """A DOCX of `body`, in order: (level, text) a heading, (BULLET, text) a bullet, a str a paragraph,
    a list of rows a ruled table; with fixed metadata and zip timestamps."""
    d = _new_document(title, author)
    for item in body:
        if isinstance(item, str):
            d.add_paragraph(item)
        elif isinstance(item, list):
            _table(d, item)
        elif item[0] == BULLET:
            d.add_paragraph(item[1], style="List Bullet")
        else:
            d.add_heading(item[1], item[0])
    d.save(str(path))
    _fixed_zip(path)


def _table(document, rows: list[list[str]]) -> None:
    table = document.add_table(rows=len(rows), cols=len(rows[0]))
    table.style = "Table Grid"
    for r, values in enumerate(rows):
        for c, value in enumerate(values):
            table.cell(r, c).text = value


# ---------------------------------------------------------------------------------------------
# travel-expense-policy.docx, policy FIN-08: headings, paragraphs, a bullet list and a per-diem table.

TRAVEL_POLICY = [
    (0, "Travel and Expense Policy (FIN-08)"),
    "Policy FIN-08 applies to every business trip taken by employees and contractors of Northwind "
    "Robotics. It is owned by the Finance team and was last reviewed in November 2024.",
    (1, "1. Booking travel"),
    "All flights, trains and hotels are booked through the TravelDesk portal, which applies the "
    "negotiated rates automatically. Bookings made outside TravelDesk are reimbursed only up to the "
    "TravelDesk price for the same trip.",
    (2, "1.1 Class of travel"),
    "Flights are booked in economy class. Business class is allowed only for flights longer than "
    "six hours and needs the approval of a vice president before booking.",
    "Rail is preferred for any journey under five hours door to door. Second class is the rule; "
    "first class is allowed on journeys longer than three hours.",
    (2, "1.2 Approval"),
    "Your manager approves each trip in TravelDesk. Trips with an estimated total cost above EUR 2,000 "
    "also need the approval of the Chief Financial Officer, Marta Oliveira.",
    (1, "2. Daily allowances"),
    "A per diem covers meals and small expenses; no receipts are needed for it. A full day is a day "
    "with 24 hours away from home, a partial day is the day of arrival or departure. Hotel costs are "
    "reimbursed up to the cap per night shown below, breakfast included.",
    [
        ["Country", "Full-day rate", "Partial-day rate", "Hotel cap per night"],
        ["Germany", "EUR 28", "EUR 14", "EUR 140"],
        ["Portugal", "EUR 36", "EUR 24", "EUR 120"],
        ["France", "EUR 53", "EUR 35", "EUR 160"],
        ["Netherlands", "EUR 47", "EUR 32", "EUR 170"],
        ["United Kingdom", "EUR 52", "EUR 34", "EUR 190"],
    ],
    "For countries not listed, the Finance team sets the rate before the trip, based on the official "
    "German rates for that country.",
    (1, "3. Other costs"),
    "The following are reimbursed at cost against a receipt:",
    (BULLET, "local public transport and taxis when no public transport is reasonable;"),
    (BULLET, "visa fees, vaccinations and travel insurance required for the trip;"),
    (BULLET, "mobile data roaming packages up to EUR 30 per trip."),
    "Use of a private car for business trips is reimbursed at EUR 0.30 per km, including fuel, "
    "insurance and wear. Parking fees are reimbursed separately. Alcohol, fines and upgrades are "
    "never reimbursed.",
    (1, "4. Submitting expenses"),
    "Submit every expense claim in the Spendwise app within 21 days after the trip ends. Attach a "
    "photo of each receipt above EUR 25. Claims are paid with the next monthly salary once approved.",
    "Company credit cards are issued to employees who travel more than six times a year. Card "
    "statements must be reconciled in Spendwise by the fifth working day of the following month.",
]


def make_travel_policy(path: Path) -> None:
    _write_docx(path, "Travel and Expense Policy (FIN-08)", "Northwind Robotics Finance", TRAVEL_POLICY)


# ---------------------------------------------------------------------------------------------
# leadership-meeting-2025-03-12.docx, minutes: attendees, decisions under headings, and an action-item table.

LEADERSHIP_MEETING = [
    (0, "Leadership meeting - 12 March 2025"),
    "Attendees: Ines Kowalczyk (CEO, chair), Marek Jansen (COO), Sofia Lindqvist (VP Sales), "
    "Tomas Berger (Head of People). Minutes taken by Lea Hoffmann. The meeting ran from 14:00 to 16:10 "
    "in the Elbe room in Hamburg.",
    (1, "1. Rotterdam service hub"),
    "Marek Jansen presented the case for a service hub close to our Benelux customers. Today "
    "technicians travel from Hamburg for most repairs, and the average time to repair in the "
    "Netherlands was 3.4 days in 2024.",
    "Decision: Ines Kowalczyk decided to open a service hub in Rotterdam on 1 September 2025, "
    "with a one-off budget of EUR 420,000 for the lease, tools and spare-parts stock. The hub "
    "starts with four field technicians and is led by Marek Jansen.",
    (1, "2. Sales hiring"),
    "Sofia Lindqvist reported that Q1 bookings reached 92 percent of plan. The meeting agreed to "
    "pause new sales hiring until the end of June 2025 and to revisit it with the Q2 figures.",
    (1, "3. Engagement survey"),
    "Tomas Berger shared the results of the February engagement survey: the response rate was 81 "
    "percent and the overall engagement score 7.6 out of 10. Workload in the support team was the "
    "lowest-rated topic; Tomas will propose measures at the next meeting.",
    (1, "4. Customer conference"),
    "Sofia Lindqvist proposed a first customer conference, Northwind Connect, for warehouse "
    "operators and integration partners. The meeting approved it for 7 October 2025 at the "
    "Hamburg headquarters, with a budget of EUR 85,000 and room for about 150 guests. Customers "
    "will present their own projects; product talks are limited to one hour.",
    "Marek Jansen asked that the test hall be open for live demonstrations on the conference day, "
    "which means no robot tests are scheduled there that week.",
    (1, "Action items"),
    [
        ["Owner", "Action", "Due"],
        ["Marek Jansen", "Sign the Rotterdam lease and hire the hub lead technician", "30 April 2025"],
        ["Sofia Lindqvist", "Present revised sales hiring plan with Q2 figures", "8 July 2025"],
        ["Tomas Berger", "Propose measures for support team workload", "9 April 2025"],
        ["Lea Hoffmann", "Publish these minutes on the intranet", "14 March 2025"],
    ],
    "Next meeting: 9 April 2025, 14:00, Elbe room.",
]


def make_leadership_meeting(path: Path) -> None:
    _write_docx(path, "Leadership meeting 12 March 2025", "Office of the CEO", LEADERSHIP_MEETING)


# ---------------------------------------------------------------------------------------------
# Scans and images (read by OCR) and a PDF with a ruled table

FONTS = Path("/usr/share/fonts/truetype/dejavu")
SCAN_DPI = 200

SAFETY_MEMO = [
    ("DejaVuSans-Bold.ttf", 40, "Warehouse Safety Memo"),
    ("DejaVuSerif.ttf", 26, "Hamburg site, issued by the facilities team on 3 February 2025"),
    ("DejaVuSerif.ttf", 26, ""),
    ("DejaVuSerif.ttf", 26, "Forklift inspections take place every Tuesday at 07:30."),
    ("DejaVuSerif.ttf", 26, "The emergency assembly point is car park P7 by the north gate."),
    ("DejaVuSerif.ttf", 26, "Safety officer Jana Brandt answers on extension 4471."),
    ("DejaVuSerif.ttf", 26, "Hard hats are required in hall C at all times."),
]
BADGE_NOTICE = [
    ("DejaVuSans-Bold.ttf", 34, "Visitor badges"),
    ("DejaVuSans.ttf", 24, "Visitors sign in at reception desk B."),
    ("DejaVuSans.ttf", 24, "Badges must be returned by 18:00."),
    ("DejaVuSans.ttf", 24, "A lost badge costs a fee of EUR 35."),
]
SALES_TABLE = [
    ["Product", "EMEA", "Americas", "APAC"],
    ["PalletPilot 400", "1,240", "2,310", "880"],
    ["PalletPilot 800", "415", "390", "1,975"],
    ["AisleScout", "2,705", "1,130", "645"],
    ["FleetView", "3,390", "2,860", "1,420"],
]


def _draw_lines(size: tuple[int, int], lines, margin: int, seed: int, tilt: float):
    """Lines of (font file, pixel size, text) drawn black on off-white, then tilted by `tilt` degrees
    and given a fixed-seed grain: what a flatbed scan or a phone photo of a page looks like."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("L", size, 246)
    draw = ImageDraw.Draw(image)
    y = margin
    for font_file, px, text in lines:
        if text:
            draw.text((margin, y), text, font=ImageFont.truetype(str(FONTS / font_file), px), fill=20)
        y += int(px * 1.9)
    image = image.rotate(tilt, resample=Image.BICUBIC, fillcolor=246)
    grain = np.random.default_rng(seed).normal(0, 10, (size[1], size[0]))
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.float32) + grain, 0, 255).astype("uint8"))


def make_safety_scan(path: Path) -> None:
    """A one-page scanned memo: an A5 page that is only an image (no text layer) at 200 dpi."""
    from fpdf import FPDF

    width_in, height_in = 148 / 25.4, 210 / 25.4
    image = _draw_lines((int(width_in * SCAN_DPI), int(height_in * SCAN_DPI)), SAFETY_MEMO, 70, seed=7, tilt=0.4)
    pdf = FPDF(format="A5")
    pdf.set_creation_date(FIXED)
    pdf.add_page()
    jpeg = io.BytesIO()
    image.save(jpeg, format="JPEG", quality=75)  # scanners store pages as JPEG in the PDF
    pdf.image(jpeg, x=0, y=0, w=148, h=210)
    pdf.output(str(path))


def make_badge_notice(path: Path) -> None:
    """A photographed notice as a PNG (no text but in its pixels)."""
    _draw_lines((900, 420), BADGE_NOTICE, 50, seed=11, tilt=-0.6).save(path, optimize=False)


def make_sales_table(path: Path) -> None:
    """A PDF report with a ruled table of products x regions under a heading and a caption."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_creation_date(FIXED)
    pdf.set_title("Regional unit sales 2024")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.multi_cell(0, 9, "Regional unit sales 2024", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    pdf.set_font("Helvetica", size=11)
    pdf.multi_cell(0, 6, "Units shipped per product family and sales region in the 2024 financial year, as "
                         "reported by the regional sales offices in January 2025.", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.cell(0, 8, "Units shipped by region, 2024", new_x="LMARGIN", new_y="NEXT")
    with pdf.table(text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT")) as table:
        for values in SALES_TABLE:
            row = table.row()
            for value in values:
                row.cell(value)
    pdf.ln(4)
    pdf.multi_cell(0, 6, "APAC growth came mostly from the new Singapore distribution partner.",
                   new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(path))


def main() -> None:
    SAMPLES.mkdir(exist_ok=True)
    make_handbook(SAMPLES / "employee-handbook.pdf")
    make_travel_policy(SAMPLES / "travel-expense-policy.docx")
    make_leadership_meeting(SAMPLES / "leadership-meeting-2025-03-12.docx")
    make_safety_scan(SAMPLES / "warehouse-safety-memo-scan.pdf")
    make_badge_notice(SAMPLES / "visitor-badge-notice.png")
    make_sales_table(SAMPLES / "regional-sales-2024.pdf")
    for name in ("employee-handbook.pdf", "travel-expense-policy.docx", "leadership-meeting-2025-03-12.docx",
                 "warehouse-safety-memo-scan.pdf", "visitor-badge-notice.png", "regional-sales-2024.pdf"):
        print(f"wrote samples/{name} ({(SAMPLES / name).stat().st_size} bytes)")


if __name__ == "__main__":
    main()
