"""Documents: list, get and delete them (by id or name), upload one (ingested before the answer or in
the background: a job of archivist/jobs.py, followed at `/v1/jobs` and `/v1/ingest_jobs`, api/jobs.py).

Each route passes the key's user as `user=` to archivist.ingest.pipeline, so the access checks are
those of archivist.access.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse

from archivist import access
from archivist.api import jobs as jobs_api
from archivist.api import schemas as S
from archivist.api.deps import Server, requested_collections, server, user, workspace
from archivist.api.errors import APIError, responses
from archivist.workspace import Workspace

router = APIRouter(tags=["documents"])


@router.get("/v1/documents", response_model=S.DocumentList, responses=responses(403, 404))
def documents(collection: str | None = Query(None, json_schema_extra=S.NAMED),
              limit: int = Query(S.PAGE_LIMIT, ge=1, le=S.PAGE_MAX, description="documents per page"),
              after: int | None = Query(None, le=S.ROW_ID_MAX, description="a document id, the `last_id` of the previous page: "
                                                          "list the documents after it"),
              ws: Workspace = Depends(workspace), who: str = Depends(user)):
    """Documents in the collections the key's user may read, newest first, a page at a time
    (`has_more`: pass `last_id` as `after` for the next page)."""
    from archivist.ingest.pipeline import list_documents

    requested_collections(ws, who, collection, None)
    return S.page([document_out(d) for d in list_documents(ws, who, collection, limit=limit + 1, after=after)], limit)


@router.get("/v1/documents/{doc:path}", response_model=S.DocumentOut, responses=responses(400, 403, 404))
def document(doc: str, collection: str | None = Query(None, json_schema_extra=S.NAMED), ws: Workspace = Depends(workspace), who: str = Depends(user)):
    """One document by id or name; a name may hold `/` (folder ingestion names documents `folder/file`)."""
    return document_out(_find(ws, doc, who, collection))


@router.delete("/v1/documents/{doc:path}", response_model=S.Deleted, responses=responses(400, 403, 404))
def delete(doc: str, collection: str | None = Query(None, json_schema_extra=S.NAMED), ws: Workspace = Depends(workspace), who: str = Depends(user)):
    """Remove a document (by id or name) from SQLite, FTS5 and FAISS. Needs write access to its collection."""
    from archivist.ingest.pipeline import delete_document

    found = _find(ws, doc, who, collection)
    gone = delete_document(ws, found["id"], who, found["collection"])
    return {"id": gone["id"], "object": "document", "name": gone["name"], "collection": gone["collection"], "deleted": True}


UPLOAD_FIELDS = ("file", "collection", "wait")  # the form fields of an upload


async def one_value_per_field(request: Request) -> None:
    """Refuse an upload form with a field the route does not take, a value field given twice or an empty
    `collection` (`-F collection=`, stored into the default collection before), as
    `known_query_only` refuses query parameters: `-F collection=a -F collection=b` stored into the last
    one named and `-F colection=hr` into the default collection, both without a word. Two files have
    their own answer (one_file_per_request). The form is the one FastAPI has already parsed."""
    form = await request.form()
    unknown = sorted(set(form) - set(UPLOAD_FIELDS))
    if unknown:
        raise APIError(422, f"unknown form field {unknown[0]!r}; an upload takes {', '.join(UPLOAD_FIELDS)}",
                       "unknown_parameter", unknown[0])
    repeated = [k for k in UPLOAD_FIELDS[1:] if len(form.getlist(k)) > 1]
    if repeated:  # which value would win is a guess
        raise APIError(422, f"form field {repeated[0]!r} is given more than once", "repeated_parameter", repeated[0])
    refusal = "collection" in form and access.blank_collection(str(form["collection"]), "the form field 'collection'")
    if refusal:
        raise APIError(422, refusal, "invalid_parameter", "collection")


@router.post("/v1/documents", response_model=S.UploadResult, dependencies=[Depends(one_value_per_field)],
             responses={**responses(400, 403, 413, 500),
                        202: {"model": S.IngestJob, "description": "with wait=false: the ingestion job, started"}})
def upload(file: list[UploadFile] = File(..., description="the document: PDF, DOCX, PPTX, XLSX, HTML, Markdown, text, CSV "
                                                          "(one per request)"),
           collection: str | None = Form(None, description="default: the server's default collection"),
           wait: bool = Form(True, description="false: answer 202 with an ingestion job at once "
                                               "(poll GET /v1/ingest_jobs/{id}) instead of after ingesting"),
           ws: Workspace = Depends(workspace), who: str = Depends(user), srv: Server = Depends(server)):
    """Upload a document and ingest it: saved under the workspace's uploads/, then read, chunked and
    embedded, before the answer (default) or in the background (`wait=false`). A later upload under
    the same name replaces the document."""
    from archivist.ingest.pipeline import ingest_paths
    from archivist.ingest.uploads import UploadError, clean_filename, remove_unused_upload, save_upload

    if len(file) != 1:  # a second part was dropped without a word before
        raise APIError(400, f"one file per request, got {len(file)}: {', '.join(f.filename or '?' for f in file)}",
                       "one_file_per_request", "file")
    [file] = file
    # The name is the document's identity (the same name again replaces it), so one the client did not
    # give cannot be made up: every unnamed upload would replace the one before, or a made-up name
    # would turn each re-upload into another copy. Refused before anything is stored.
    if not clean_filename(file.filename or "", fallback=""):
        raise APIError(422, f"the upload has no usable file name (got {file.filename or ''!r}): name the file in its "
                            "multipart part, e.g. `curl -F file=@report.pdf` or `-F 'file=@-;filename=report.pdf'`",
                       "missing_filename", "file")
    settings = srv.settings
    target = collection or settings.collection
    access.require(ws, who, target, "write")  # before a byte is written
    too_large = APIError(413, f"{file.filename or 'the upload'} is larger than {settings.max_file_mb} MB", "file_too_large", "file")
    if file.size is not None and file.size > settings.max_file_mb * 2**20:
        raise too_large
    try:  # the name is cleaned, the type decided from the bytes, the size counted as it is copied
        path, name = save_upload(ws, file.filename, file.file, settings.max_file_mb)
    except UploadError as e:
        if "too large" in str(e):
            raise too_large from None
        raise APIError(422, str(e), "rejected_upload", "file") from None
    if not wait:
        job = jobs_api.start_upload(srv.workspace, who, target, path, name)
        return JSONResponse(jobs_api.ingest_job_out(job, settings), status_code=202)
    t0 = time.perf_counter()
    [res] = ingest_paths(ws, [path], collection=target, user=who, names=[name], progress=False)
    if res.status == "failed":
        remove_unused_upload(ws, path)  # a refused file is not kept, unless a document was read from it before
        raise APIError(422, f"{name}: {res.reason}", "rejected_upload", "file")  # as a file refused before it is read
    return {"object": "document", "id": res.document_id, "name": res.name, "collection": target,
            "status": res.status, "chunks": res.chunks, "seconds": round(time.perf_counter() - t0, 3), "reread": res.reread}


def _find(ws: Workspace, doc: str, user: str, collection: str | None) -> dict:
    """The document `doc` (an id or a name) among those `user` may read. Raises APIError 404 / 400 (ambiguous)."""
    from archivist.ingest.pipeline import find_document

    requested_collections(ws, user, collection, None)
    try:
        return find_document(ws, doc, user, collection)
    except LookupError as e:
        if str(e).startswith("no document"):
            raise APIError(404, f"no document {doc!r} among those you may read", "document_not_found", "doc") from None
        raise APIError(400, str(e), "ambiguous_document", "doc") from None


def document_out(d: dict) -> dict:
    """A document row as the API's document object."""
    return {"id": d["id"], "object": "document", "name": d["name"], "collection": d["collection"], "kind": d["kind"],
            "pages": d["pages"], "size": d["size"], "chunks": d["chunks"], "status": d["status"],
            "content_hash": d["content_hash"], "added_at": d["added_at"], "updated_at": d["updated_at"],
            "ocr_pages": d.get("ocr_pages", []), "low_confidence_pages": d.get("low_confidence_pages", [])}
