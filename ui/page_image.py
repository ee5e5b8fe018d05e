"""Citations shown on their page: the page image (PDFs, scans, images) with the passage highlighted.

    page_image.show_citation(st, ws, user, citation)   # inside a source's expander on the chat page
    page_image.ocr_note(doc)                            # the documents table's OCR column
"""

from __future__ import annotations

from archivist.ingest.ocr import LOW_CONFIDENCE
from archivist.ingest.pipeline import document_source, find_document
from archivist.ingest.readers import ReadError
from archivist.ingest.readers_pdf import page_picture

PAGED_KINDS = ("pdf", "image")


def ocr_note(doc: dict) -> str:
    """"" for documents not read by OCR; else how many pages were, and which have low confidence."""
    pages, low = doc.get("ocr_pages") or [], doc.get("low_confidence_pages") or []
    if not pages:
        return ""
    note = f"{len(pages)} page{'s' * (len(pages) != 1)} OCR"
    if low:
        note += f" · ⚠️ low confidence (< {LOW_CONFIDENCE:.0%}): page {', '.join(map(str, low))}"
    return note


def citation_picture(ws, user: str | None, citation: dict, width: int = 1000):
    """The cited page with the passage's boxes highlighted (PIL image), or None when the document has
    no pages to draw (not a PDF or image, the source file is gone, no page). Access: the user must
    be able to read the document (find_document checks)."""
    if not citation.get("page"):
        return None
    try:
        doc = find_document(ws, citation["document"], user, citation.get("collection") or None)
        if doc["kind"] not in PAGED_KINDS:
            return None
        source = document_source(ws, doc["id"], user)
        if source is None:
            return None
        return page_picture(source, doc["kind"], int(citation["page"]), citation.get("boxes") or (), width)
    except (LookupError, ReadError, OSError):
        return None


def citation_alt(citation: dict) -> str:
    """The page image's alt text: without it a screen reader announces an unnamed image (axe: image-alt)."""
    return f"Page {citation['page']} of {citation['document']}, with the cited passage highlighted in yellow"


def show_citation(st, ws, user: str | None, citation: dict, key: str) -> None:
    """Under a source on the chat page: a toggle (widget `key`, unique on the page) that shows its
    page with the passage highlighted."""
    if not citation.get("page") or not citation.get("boxes"):
        return
    if st.toggle("Show on the page", key=key):
        picture = citation_picture(ws, user, citation)
        if picture is None:
            st.caption("The page cannot be shown (its file is no longer where it was read from, or it could not be drawn).")
        else:
            from archivist.ui.core import md_escape  # a caption is Markdown; the document's name is someone's own

            # The alt text says what a screen reader cannot see: which page this is and what is marked on it
            # (the passage's own words are in the expander above, as text).
            st.image(picture, caption=md_escape(f"{citation['document']}, page {citation['page']}"), width="stretch",
                     alt=citation_alt(citation))
