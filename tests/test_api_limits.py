"""Request bodies against a real server (uvicorn in a thread): the API key is checked from the headers
before a byte of the body is read, and every body is capped as it arrives, chunked uploads too.

The server's app is wrapped in `Pulled`, which counts the body bytes the app asked uvicorn for:
what the API read into memory or spooled to disk. uvicorn itself drops the rest of a body that
nobody asked for once the response has gone out.
"""

from __future__ import annotations

import json

import httpx
import pytest

MB = 2**20
NOTE = b"# Canteen\n\nThe canteen on floor 3 serves soup on Thursdays.\n"


class Pulled:
    """ASGI wrapper: `bytes` is how much request body the wrapped app has received since reset()."""

    def __init__(self, app):
        self.app, self.bytes = app, 0

    def reset(self) -> None:
        self.bytes = 0

    async def __call__(self, scope, receive, send):
        async def counted():
            message = await receive()
            if message["type"] == "http.request":
                self.bytes += len(message.get("body", b""))
            return message

        await self.app(scope, counted, send)


@pytest.fixture(scope="module")
def server(tmp_path_factory, embedder):
    from archivist.api.app import create_app
    from archivist.api.serve import serve_in_thread
    from archivist.keys import create_key
    from archivist.settings import Settings
    from archivist.workspace import open_workspace

    settings = Settings.from_env(home=tmp_path_factory.mktemp("limits") / "ws", max_file_mb=1, max_json_mb=1)
    with open_workspace(settings) as ws:
        key = create_key(ws, "admin")
    pulled = Pulled(create_app(settings))
    running = serve_in_thread(pulled)
    r = httpx.post(running.url + "/v1/documents", headers={"Authorization": f"Bearer {key}"},
                   files={"file": ("canteen.md", NOTE)}, timeout=120)
    assert r.status_code == 200, r.text
    yield running.url, {"Authorization": f"Bearer {key}"}, pulled, settings
    running.stop()


def _error(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code, err
    return err


def _chunks(data: bytes, size: int = 256 * 1024):
    """The body as an iterator: httpx sends it chunked, without Content-Length."""
    return (data[i:i + size] for i in range(0, len(data), size))


def _multipart(name: str, content: bytes, boundary: str = "archivistboundary") -> tuple[bytes, dict]:
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: text/plain\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return body, {"content-type": f"multipart/form-data; boundary={boundary}"}


def _stored(settings) -> tuple[list, list]:
    """(the files under uploads/, the documents with their content hashes): what an upload could change."""
    from archivist.ingest.pipeline import list_documents
    from archivist.workspace import open_workspace

    files = sorted(str(p.relative_to(settings.home)) for p in (settings.home / "uploads").rglob("*"))
    with open_workspace(settings) as ws:
        docs = [(d["id"], d["name"], d["content_hash"], d["chunks"], d["updated_at"]) for d in list_documents(ws, "admin")]
    return files, docs


def test_a_keyless_body_is_never_read(server):
    url, _, pulled, _ = server
    big = json.dumps({"model": "archivist", "messages": [{"role": "user", "content": "x" * (8 * MB)}]}).encode()
    pulled.reset()
    r = httpx.post(url + "/v1/chat/completions", content=big, headers={"content-type": "application/json"}, timeout=60)
    _error(r, 401, "missing_api_key")
    assert pulled.bytes == 0
    r = httpx.post(url + "/v1/chat/completions", content=_chunks(big), timeout=60,
                   headers={"content-type": "application/json", "Authorization": "Bearer ak-00000000-" + "x" * 43})
    _error(r, 401, "invalid_api_key")
    assert pulled.bytes == 0
    # a chunked upload: not a byte parsed or spooled to disk before the key is known to be bad
    body, headers = _multipart("big.txt", b"a" * (8 * MB))
    r = httpx.post(url + "/v1/documents", content=_chunks(body), headers=headers, timeout=60)
    _error(r, 401, "missing_api_key")
    assert pulled.bytes == 0


def test_a_malformed_keyless_body_gets_401_not_422(server):
    url, _, _, _ = server
    for body in (b"{not json", b'{"model": 3}'):
        _error(httpx.post(url + "/v1/search", content=body, headers={"content-type": "application/json"}), 401, "missing_api_key")
    _error(httpx.post(url + "/v1/documents", content=b"--x\r\nnonsense", headers={"content-type": "multipart/form-data; boundary=x"}),
           401, "missing_api_key")
    assert httpx.get(url + "/health").json()["status"] == "ok"  # public routes stay public


def test_an_over_limit_json_body_gets_413_without_being_read_through(server):
    url, key, pulled, settings = server
    big = json.dumps({"query": "soup " * (settings.max_json_mb * MB // 5 + 10)}).encode()
    pulled.reset()
    err = _error(httpx.post(url + "/v1/search", content=big, headers={**key, "content-type": "application/json"}, timeout=60),
                 413, "request_too_large")
    assert pulled.bytes == 0 and f"{settings.max_json_mb} MB" in err["message"]
    pulled.reset()  # chunked: counted as it arrives, refused past the limit
    err = _error(httpx.post(url + "/v1/search", content=_chunks(big * 8), headers={**key, "content-type": "application/json"}, timeout=60),
                 413, "request_too_large")
    assert pulled.bytes <= settings.max_json_mb * MB + 256 * 1024
    # under the limit all is as before
    r = httpx.post(url + "/v1/search", json={"query": "when is there soup", "k": 1}, headers=key, timeout=60)
    assert r.status_code == 200 and r.json()["data"][0]["document"] == "canteen.md"


def test_an_over_limit_chunked_upload_gets_413_and_changes_nothing(server):
    url, key, pulled, settings = server
    before = _stored(settings)
    body, headers = _multipart("canteen.md", NOTE + b"a" * (8 * MB))  # would replace canteen.md
    pulled.reset()
    r = httpx.post(url + "/v1/documents", content=_chunks(body), headers={**key, **headers}, timeout=60)
    err = _error(r, 413, "file_too_large")
    assert f"{settings.max_file_mb} MB" in err["message"]
    assert pulled.bytes <= settings.max_file_mb * MB + 64 * 1024 + 256 * 1024  # the limit, the framing slack, one chunk
    assert _stored(settings) == before
    # with Content-Length: refused before reading
    pulled.reset()
    r = httpx.post(url + "/v1/documents", content=body, headers={**key, **headers}, timeout=60)
    _error(r, 413, "file_too_large")
    assert pulled.bytes == 0 and _stored(settings) == before
