"""How audit records are shown outside the log itself: a short line for tables (`summary`), a line
safe for a terminal (`printable`) and CSV safe for a spreadsheet (`to_csv`). The log, its chain and
retention are archivist/audit.py's."""

from __future__ import annotations

import csv
import io
import json
import re


def summary(r: dict) -> str:
    """One short line about a record's detail, for tables (the full detail: JSON or CSV)."""
    d = r["detail"]
    if r["action"] in ("question", "question.started"):
        return f"[{d.get('surface')}] {d.get('status', 'started')}: {d.get('question', '')[:60]!r}"
    return json.dumps(d, ensure_ascii=False, sort_keys=True)[:100]


CSV_COLUMNS = ("id", "time", "user", "action", "target", "detail", "hash")
_FORMULA = ("=", "+", "-", "@", "\t", "\r")  # how a spreadsheet cell starts a formula
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _cell(text: str) -> str:
    """A CSV cell a spreadsheet shows as text: one that starts like a formula gets an apostrophe in
    front. A failed sign-in's target is whatever was typed in the user name field, so without it
    anyone could put `=HYPERLINK(...)` into the auditor's spreadsheet (OWASP, "CSV injection")."""
    return "'" + text if text[:1] in _FORMULA else text


def printable(text: str) -> str:
    """`text` with control characters shown as \\xNN, for a terminal: a typed name holding escape
    sequences could otherwise move the cursor and overwrite the lines above it in `archivist audit`."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def to_csv(records: list[dict]) -> str:
    """Records as CSV text (the detail as one JSON cell), for the CLI's --csv and the app's download.
    Text cells that would start a formula in a spreadsheet get a leading apostrophe (`_cell`);
    `--json` keeps them exactly."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(CSV_COLUMNS)
    for r in records:
        w.writerow([r["id"], r["time"], _cell(r["user"] or ""), r["action"], _cell(r["target"] or ""),
                    _cell(json.dumps(r["detail"], ensure_ascii=False, sort_keys=True)), r["hash"]])
    return out.getvalue()
