"""Upload files into a collection (ingested in the background), and browse, search, delete,
re-ingest and open the documents you may read."""

from __future__ import annotations

import hashlib

import pandas as pd
import streamlit as st

from archivist import access, audit
from archivist.ingest import pipeline
from archivist.ingest.folders import IMAGE_SUFFIXES, plural, reread_note
from archivist.ingest.readers import LABELS
from archivist.ingest.pipeline import list_documents
from archivist.ui import core, library, page_image
from archivist.workspace import WorkspaceError

user = core.require_user()
ws = core.workspace()
s = core.settings()
st.title("Documents")

# -- upload -----------------------------------------------------------------------------------

writable = access.collections_for(ws, user, "write")
admin = core.is_admin(user)
if writable or admin:
    with st.container(border=True):
        st.header("Upload")
        NEW = "➕ New collection…"
        # an admin may start the workspace's default collection before it exists
        options = writable + ([s.collection] if admin and s.collection not in writable else []) + ([NEW] if admin else [])
        default = options.index(s.collection) if s.collection in options else 0
        col_a, col_b = st.columns([1, 1])
        choice = col_a.selectbox("Collection", options, index=default, key="upload-collection",
                                 help="Everyone with read access to this collection will see these documents.")
        collection = choice
        if choice == NEW:
            collection = col_b.text_input("New collection name", key="upload-new-collection").strip()
        limit_mb = min(int(st.get_option("server.maxUploadSize")), s.max_file_mb)
        st.session_state.setdefault("uploader-n", 0)
        # the kinds the readers name (LABELS), never a list of our own that forgets one (GIF was left out)
        kinds = ", ".join(label + (" (scans too)" if kind == "pdf" else "") for kind, label in LABELS.items() if kind != "image")
        files = st.file_uploader(
            f"Drop files here: {kinds} or images ({', '.join(sorted(IMAGE_SUFFIXES))}) — up to {limit_mb} MB each",
            accept_multiple_files=True, key=f"uploader-{st.session_state['uploader-n']}")
        if st.button(f"Ingest {len(files)} {plural(len(files), 'file')}" if files else "Ingest",
                     type="primary", disabled=not files or not collection, key="ingest"):
            try:
                saved, refused = library.save_uploads(ws, user, collection, [(f.name, f.getvalue()) for f in files])
                library.start_ingest(s, user, collection, [p for p, _ in saved], [n for _, n in saved], refused)
            except (access.AccessDenied, ValueError, OSError, WorkspaceError) as e:
                st.error(f"Nothing was ingested: {core.md_escape(e)}")
            else:
                st.session_state["uploader-n"] += 1  # a fresh, empty uploader
                st.rerun()
else:
    st.info("You may read documents here, but no collection lets you add to it. Ask an admin for write access.")


# -- background jobs: a fragment that refreshes itself while something runs --------------------

UNCHANGED = "already stored under this name with the same content: nothing to do"


def _job_table(job: library.IngestJob) -> pd.DataFrame:
    # an unchanged file says why nothing happened (the pipeline leaves it unsaid: a folder re-read lists hundreds)
    return core.plain_frame(pd.DataFrame([{"file": f.name, "status": f.status, "chunks": str(f.chunks) if f.status != "waiting" else "",
                          "seconds": f"{f.seconds:.1f}" if f.status != "waiting" else "",
                          "reason": f.reason or (reread_note(f.reread) if f.reread else UNCHANGED if f.status == "unchanged" else "")}
                         for f in job.files]))


def _why(f: library.FileStatus) -> str:
    """'name: reason' of a failed file (a refused file's reason names it already)."""
    return f.reason if f.reason.startswith(f"{f.name}:") else f"{f.name}: {f.reason}"


def _show_files(job: library.IngestJob) -> None:
    """The job's files: a table, then why each failed and what an added one should know, in full."""
    # st.dataframe shows cells as plain text (st.table renders them as Markdown): file names are users' own
    st.dataframe(_job_table(job), hide_index=True, width="stretch")
    # why each file failed, in full: the table cuts the reason short (and shows no reason on a phone)
    why = [_why(f) for f in job.files if f.status == "failed" and f.reason and f.reason != job.error]
    if why:
        st.caption("  \n".join(core.md_escape(w) for w in why))
    # what an added file should know (the same content already stored under another name …), in full too
    notes = [_why(f) for f in job.files if f.status in ("added", "updated") and f.reason]
    if notes:
        st.info("  \n".join(core.md_escape(n) for n in notes), icon=":material/content_copy:")


def _show_jobs() -> None:
    jobs = library.jobs_for(ws, user)
    for job in jobs:
        with st.container(border=True):
            # a job that ended with nothing added (every file refused, failed or cancelled) does not say "Ingested"
            cancelled = job.counts.get("cancelled", 0)
            head = (f"Ingesting into {job.collection}" if job.running else
                    f"Nothing ingested into {job.collection}" if job.failed + cancelled == job.total else
                    f"Ingested into {job.collection}")
            st.markdown(f"**{core.md_escape(head)}** · {job.done} of {job.total} files"
                        + (f" · {job.failed} failed" if job.failed else "") + (f" · {cancelled} cancelled" if cancelled else ""))
            st.progress(job.done / max(job.total, 1))
            if job.resumed:
                st.caption("Resumed: a restart of the server had cut this ingestion short.")
            if job.error:
                st.error(core.md_escape(job.error))  # it quotes file names and what the files hold
            if job.listed:
                _show_files(job)
            elif st.toggle(f"Show the {job.total} files", key=f"files-{job.id}"):  # a large batch: read when opened
                _show_files(library.job(ws, user, job.id))
            if job.running and st.button("Cancel", key=f"cancel-{job.id}", icon=":material/stop:"):
                library.cancel(ws, user, job.id)  # it stops after the file at hand
                st.rerun()
            if not job.running and st.button("Dismiss", key=f"dismiss-{job.id}"):
                library.dismiss(ws, user, job.id)
                st.rerun()
    if st.session_state.get("_jobs_running") and not any(j.running for j in jobs):
        st.session_state["_jobs_running"] = False
        st.rerun(scope="app")  # the documents table below shows the new documents


running = any(j.running for j in library.jobs_for(ws, user))
st.session_state["_jobs_running"] = running
st.fragment(_show_jobs, run_every=1.0 if running else None)()

# -- the documents table ----------------------------------------------------------------------

def _table_key(shown: list[dict]) -> str:
    """The documents table's widget key, one per list of shown document ids. Streamlit keeps a selection
    as row numbers: when a filter, a delete or a new upload changes the rows, a new key starts with
    nothing selected, so a row number never lands on another document."""
    ids = ",".join(str(d["id"]) for d in shown)
    return "doc-table-" + hashlib.sha1(ids.encode()).hexdigest()[:12]


def _picked(shown: list[dict], rows) -> list[dict]:
    """The shown documents at the selected row numbers; numbers past the end (a stale selection) are dropped."""
    return [shown[i] for i in rows if 0 <= i < len(shown)]


def _names(picked: list[dict]) -> str:
    """'name (collection), …' for a confirmation, escaped: these are names users chose."""
    return ", ".join(f"{core.md_escape(d['name'])} ({core.md_escape(d['collection'])})" for d in picked)


st.header("Your documents")
docs = list_documents(ws, user)
query = st.text_input("Search by name or collection", key="doc-search", placeholder="Filter…").strip().lower()
shown = [d for d in docs if query in d["name"].lower() or query in d["collection"].lower()] if query else docs
if not docs:
    st.caption("No documents yet." + (" Upload some above." if writable or admin else ""))
    st.stop()

# pages as text: the grid writes a grey "None" in an empty number cell (Word, Markdown … have no pages)
table = pd.DataFrame([{"name": d["name"], "collection": d["collection"], "type": d["kind"], "pages": str(d["pages"] or ""),
                       "chunks": d["chunks"], "size (KB)": round(d["size"] / 1024, 1), "added": core.when(d["added_at"]),
                       # when the version stored now was read: a changed file replaces the document in place
                       "updated": core.when(d["updated_at"] or d["added_at"]),
                       "status": d["status"], "OCR": page_image.ocr_note(d)} for d in shown],
                     columns=["name", "collection", "type", "pages", "chunks", "size (KB)", "added", "updated", "status", "OCR"])
event = st.dataframe(core.plain_frame(table), hide_index=True, width="stretch", on_select="rerun", selection_mode="multi-row",
                     key=_table_key(shown))
st.caption(f"{len(shown)} of {len(docs)} documents. Select rows to open"
           + (", re-ingest or delete them." if writable or admin else " them."))
picked = _picked(shown, event.selection.rows if event else [])
if not picked:
    st.stop()

# Re-ingest and Delete are offered for the selected documents this user may change (write access to
# their collection), so a reader is never asked to confirm what is then refused.
changeable = [d for d in picked if admin or d["collection"] in writable]
if len(changeable) < len(picked):
    st.caption(core.md_escape(f"Read only: {len(picked) - len(changeable)} of the selected documents are in collections "
                              "you may read but not change."))
b2, b3, _ = st.columns([1, 1, 4])
if changeable and b2.button(f"Re-ingest {len(changeable)}", key="reingest", icon=":material/refresh:"):
    try:
        library.reingest(s, ws, user, [d["id"] for d in changeable])
    except (access.AccessDenied, FileNotFoundError, LookupError) as e:
        st.error(core.md_escape(e))
    else:
        st.rerun()
if changeable and b3.button(f"Delete {len(changeable)}", key="delete", icon=":material/delete:"):
    st.session_state["confirm-delete"] = [d["id"] for d in changeable]
if changeable and st.session_state.get("confirm-delete") == [d["id"] for d in changeable]:
    st.warning(f"Delete {len(changeable)} {plural(len(changeable), 'document')} from search, chat and fine-tuning data: "
               f"{_names(changeable)}? This cannot be undone.")
    if st.button("Yes, delete", type="primary", key="delete-yes"):
        names = {d["id"]: d["name"] for d in changeable}  # all in one transaction and one index sync
        errors = [core.md_escape(f"{names[ref]}: {e}") for ref, e in pipeline.delete_documents(ws, list(names), user)[1]]
        st.session_state.pop("confirm-delete", None)
        if errors:
            st.error("  \n".join(errors))
        else:
            st.rerun()

doc = picked[0]
doc, chunks = pipeline.document_chunks(ws, doc["id"], user)
viewed = st.session_state.setdefault("_viewed", set())  # a rerun of the page is not another look
if (doc["id"], doc["content_hash"]) not in viewed:
    audit.viewed(ws, user, "app", doc, len(chunks))  # the whole text is sent to the browser below
    viewed.add((doc["id"], doc["content_hash"]))
with st.container(border=True):
    st.markdown(f"#### {core.md_escape(doc['name'])}")
    st.caption(core.md_escape(f"{doc['collection']} · {doc['kind']} · {doc['pages'] or '–'} pages · {len(chunks)} chunks · "
                              f"added {core.when(doc['added_at'])}"))
    if len(picked) > 1:
        st.caption("Showing the first selected document.")
    for c in chunks:
        where = f"chunk {c['seq'] + 1}" + (f" · page {c['page']}" if c["page"] else "") + f" · {c['n_tokens']} tokens"
        with st.expander(core.md_escape(where + (f" · {c['heading']}" if c["heading"] else ""))):
            st.text(c["text"])  # document text is always shown as plain text, never Markdown or HTML
