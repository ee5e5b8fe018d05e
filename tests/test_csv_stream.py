"""A big CSV is read, chunked and committed a group of rows at a time (readers.read_stream): the same
rows as reading it whole, exact chunk offsets, and a document that is only 'ready' once complete."""

from __future__ import annotations

import pytest

from archivist.ingest import chunking, readers
from archivist.ingest.readers_text import stream_csv

# Quoting, a cell with a line break, CRLF line ends, a blank row, a row of empty cells, a cell that
# is only whitespace, a row longer than the header, and a non-ASCII name.
TRICKY = ('id,name,note\r\n1,Ana,"quoted, with comma"\r\n2,"Bo\nMultiline","say ""hi"""\r\n\r\n,,\r\n'
          '3,Çelik,  \r\n4,Dee,x,extra\r\n')


def rows_csv(path, n: int) -> None:
    with open(path, "w") as f:
        f.write("id,name,amount\n")
        for i in range(n):
            f.write(f"{i},item-{i % 97},{(i * 37) % 10000}\n")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp1252", "utf-16"])
def test_streamed_rows_are_the_rows_read_whole(tmp_path, encoding):
    path = tmp_path / "t.csv"
    path.write_bytes(TRICKY.encode(encoding))
    whole = [(b.text, b.heading, b.kind) for b in readers.read(path).blocks]
    for group_chars in (1, 25, 10_000):
        groups = list(stream_csv(path, group_chars))
        assert [(b.text, b.heading, b.kind) for g in groups for b in g] == whole
        assert all(sum(len(b.text) for b in g[:-1]) < group_chars for g in groups)  # a group ends once it is full
    assert whole[0] == ("id: 1; name: Ana; note: quoted, with comma", ("t.csv",), "row") and len(whole) == 4


def test_a_bad_big_csv_fails_before_its_first_group(tmp_path):
    binary = tmp_path / "nul.csv"
    binary.write_bytes(b"a,b\n" + b"1,2\n" * 10 + b"3,\x00\n")
    with pytest.raises(readers.ReadError, match="binary file"):
        stream_csv(binary)
    blank = tmp_path / "blank.csv"
    blank.write_text("\n , \n\n")
    with pytest.raises(readers.ReadError, match="empty file"):
        stream_csv(blank)


def test_only_a_csv_over_the_threshold_streams(tmp_path, monkeypatch):
    small, text = tmp_path / "small.csv", tmp_path / "big.txt"
    rows_csv(small, 20)
    text.write_text("word " * 1000)
    assert readers.read_stream(small) is None  # under STREAM_ABOVE_MB: read whole, chunks as always
    monkeypatch.setattr(readers, "STREAM_ABOVE_MB", 0)
    assert readers.read_stream(text) is None
    assert [b.text for g in readers.read_stream(small) for b in g] == [b.text for b in readers.read(small).blocks]


def test_chunk_groups_are_exact_slices_of_the_whole_text(tmp_path, embedder):
    path = tmp_path / "rows.csv"
    rows_csv(path, 400)
    spans = chunking.hf_token_spans(embedder.tokenizer)
    blocks = readers.read(path).blocks
    text, whole = chunking.chunk_blocks(blocks, spans, 64, 8)
    one = [c for g in chunking.chunk_groups(stream_csv(path, 10**9), spans, 64, 8) for c in g]
    assert one == whole  # one group: exactly the chunks of reading it whole
    many = [c for g in chunking.chunk_groups(stream_csv(path, 2000), spans, 64, 8) for c in g]
    assert len(many) > len(whole) - 2 and [c.seq for c in many] == list(range(len(many)))
    assert all(text[c.start:c.end] == c.text and c.n_tokens <= 64 for c in many)
    assert chunking.BLOCK_SEP.join(c.text for c in many) == text  # every row once, whole, in order


def test_a_streamed_csv_is_ingested_searchable_and_resumed(tmp_path, ws, embedder, monkeypatch):
    from archivist.ingest.pipeline import ingest_paths
    from archivist.retrieval.search import search

    monkeypatch.setattr(readers, "STREAM_ABOVE_MB", 0)
    monkeypatch.setattr(readers, "STREAM_GROUP_CHARS", 3000)
    path = tmp_path / "ledger.csv"
    rows_csv(path, 600)
    with open(path, "a") as f:
        f.write("600,zanzibar-widget,4242\n")
    [res] = ingest_paths(ws, [path], embedder=embedder, progress=False)
    assert res.status == "added" and res.chunks > 3, res
    doc = ws.db.execute("SELECT status, text, kind FROM documents WHERE id = ?", (res.document_id,)).fetchone()
    assert tuple(doc) == ("ready", "", "csv")  # the text is its chunks, never held whole
    texts = [r[0] for r in ws.db.execute("SELECT text FROM chunks WHERE document_id = ? ORDER BY seq", (res.document_id,))]
    assert chunking.BLOCK_SEP.join(texts) == chunking.join_blocks(readers.read(path).blocks)[0]
    assert "zanzibar-widget" in search(ws, "zanzibar-widget amount", k=3)[0].text
    # A kill between two groups leaves the document 'ingesting' with part of its chunks: the next
    # run reads it again instead of taking it for unchanged, and embeds only what was missing.
    ws.db.execute("UPDATE documents SET status = 'ingesting' WHERE id = ?", (res.document_id,))
    ws.db.execute("DELETE FROM chunks WHERE document_id = ? AND seq > 1", (res.document_id,))
    [again] = ingest_paths(ws, [path], embedder=embedder, progress=False)
    assert (again.status, again.chunks, again.document_id, again.embedded) == ("updated", res.chunks, res.document_id, res.chunks - 2)
    assert ws.db.execute("SELECT COUNT(*) FROM chunks WHERE document_id = ?", (res.document_id,)).fetchone()[0] == res.chunks
    [same] = ingest_paths(ws, [path], embedder=embedder, progress=False)
    assert same.status == "unchanged"
