"""Text as people in Poland, Denmark or Germany write it and search it: letters that no Unicode
decomposition makes plain (ł, ø, æ, œ, þ, đ) are found typed without their accents, as other
accents are; a plain-text heading stands apart from the paragraph under it; Excel's "Unicode Text"
export (.txt, UTF-16, tabs) is a table. English text gives the tokens and chunks it always gave."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from archivist.ingest import chunking
from archivist.ingest.pipeline import ingest_paths
from archivist.ingest.readers import read
from archivist.records import Block
from archivist.retrieval import folding, lexicon, lexicon_store, verify
from archivist.retrieval.search import search

PL = ("Regulamin sieci biura w Łodzi\r\n\r\nKażdy pracownik otrzymuje własne konto. Hasło należy "
      "zmieniać co sześćdziesiąt dni. Toner zamawia pani Małgorzata Żak.\r\n")
DA = "Kontoret i København\n\nSøren Østergaard udleverer adgangskort. Kortet skal bæres synligt.\n"
EN = "Travel policy\n\nEmployees book trains for trips under four hours. The per diem covers meals.\n"
DE = ("Druckerhandbuch\n\n1. Aufstellung\nDer Drucker steht im Flur neben der Küche. Er ist über das "
      "Netzwerk erreichbar.\n\n2. Kennwortänderung\nDas Kennwort des Druckers muss alle 90 Tage geändert "
      "werden. Zuständig ist die IT-Abteilung.\n")


@pytest.fixture
def world(ws, embedder, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "regulamin.txt").write_bytes(PL.encode("cp1250"))  # as a Polish Windows saves it
    (docs / "kontor.txt").write_text(DA, encoding="utf-8")
    (docs / "travel.txt").write_text(EN, encoding="utf-8")
    (docs / "drucker.txt").write_text(DE, encoding="utf-8")
    ingest_paths(ws, [docs], embedder=embedder, progress=False)
    return ws


def lexical_docs(ws, query: str) -> list[str]:
    return [h.document.rsplit("/", 1)[-1] for h in search(ws, query, k=5, mode="lexical")]


# -- letters without a decomposition ---------------------------------------------------------------


@pytest.mark.parametrize("written, typed", [
    ("Własne hasło w Łodzi", "wlasne haslo w lodzi"), ("Søren Østergaard", "Soren Ostergaard"),
    ("Ærø, bæres", "aero, baeres"), ("chef-d'œuvre, Œdipe", "chef-d'oeuvre, Oedipe"),
    ("Þingvellir, Guðrún", "Thingvellir, Gudrun"), ("Đorđe, Ħamrun", "Dorde, Hamrun"),
    ("Irmak kıyısı", "Irmak kiyisi"), ("Straße", "Strasse"),
])
def test_letters_without_a_decomposition_fold_as_they_are_typed(written, typed):
    """ł, ø, æ, œ, þ, ð, đ, ħ, ı were kept as they are: "wlasne" was another term than "własne"."""
    assert lexicon.tokens(written) == lexicon.tokens(typed)
    assert lexicon.query_units(typed) == lexicon.query_units(written)


@pytest.mark.parametrize("query, doc", [
    ("wlasne", "regulamin.txt"), ("Lodzi", "regulamin.txt"), ("haslo", "regulamin.txt"),
    ("Malgorzata", "regulamin.txt"), ("Soren", "kontor.txt"), ("Ostergaard", "kontor.txt"),
    ("baeres", "kontor.txt"), ("własne", "regulamin.txt"), ("Søren", "kontor.txt"),
])
def test_a_word_typed_without_its_letters_finds_its_document(world, query, doc):
    assert lexical_docs(world, query)[:1] == [doc], query


def test_an_index_built_before_these_letters_folded_is_rebuilt(world, monkeypatch):
    """A workspace indexed by the previous tokenizer holds "własne" where this one holds "wlasn": it
    is rebuilt on first use (the tokenizer's version), so a search typed without the accent finds the
    document at once."""
    ws = world
    rows = lexicon_store._rows(ws, np.array([r[0] for r in ws.db.execute("SELECT id FROM chunks")]))
    with monkeypatch.context() as m:  # the previous release's folding: these letters kept
        m.setattr(folding, "PLAIN_LETTERS", {})
        m.setattr(lexicon, "_stems", {})
        old = replace(lexicon.Index.empty(lexicon.fields_of(ws)).with_chunks(rows), tokenizer=2)
    assert "własne" in old.terms and "wlasn" not in old.terms  # not ASCII: no Porter stem either
    lexicon_store._save(ws, old)  # the sidecar agrees with SQLite: only the version tells
    lexicon_store._cache.clear()
    assert lexicon_store._load(ws).tokenizer == 2
    assert lexical_docs(ws, "wlasne")[:1] == ["regulamin.txt"]
    lexicon_store._cache.clear()
    on_disk = lexicon_store._load(ws)
    assert on_disk.tokenizer == lexicon.TOKENIZER >= 3 and "wlasn" in on_disk.terms and "własne" not in on_disk.terms


def test_english_tokens_are_unchanged():
    """English text, with the odd accented loanword and typographic signs, gives the terms it gave."""
    text = "A naïve café résumé isn’t the “original” — 3½ days, 20°C, Zürich’s Straße; os.path.join()"
    assert lexicon.tokens(text) == ["a", "naiv", "cafe", "resum", "isn", "t", "the", "origin", "31", "2", "dai",
                                    "20", "c", "zurich", "s", "strass", "os", "path", "join"]
    english = "Employees' per-diem covers meals; the printer's toner is ordered by IT."
    assert lexicon.tokens(english) == [lexicon.stem(w) for w in re.findall(r"[^\W_]+", english.lower())]


# -- plain-text headings ---------------------------------------------------------------------------


def test_a_plain_text_heading_stands_apart_from_its_paragraph(tmp_path):
    """"2. Kennwortänderung" on the line above its paragraph was glued onto the first sentence
    ("Kennwortänderung Das Kennwort ..."); it is a heading, over the paragraphs up to the next one."""
    path = tmp_path / "drucker.txt"
    path.write_text(DE, encoding="utf-8")
    got = [(b.kind, b.heading, b.text) for b in read(path).blocks]
    assert got == [
        ("heading", ("Druckerhandbuch",), "Druckerhandbuch"),
        ("heading", ("1. Aufstellung",), "1. Aufstellung"),
        ("paragraph", ("1. Aufstellung",),
         "Der Drucker steht im Flur neben der Küche. Er ist über das Netzwerk erreichbar."),
        ("heading", ("2. Kennwortänderung",), "2. Kennwortänderung"),
        ("paragraph", ("2. Kennwortänderung",),
         "Das Kennwort des Druckers muss alle 90 Tage geändert werden. Zuständig ist die IT-Abteilung."),
    ]


def test_the_answering_sentence_no_longer_starts_with_the_heading(world):
    """The chunk that answers holds the heading in its own block: the sentence split (quotes, claim
    checks) gives the sentence alone, and the chunk carries the heading as its path."""
    hit = search(world, "Kennwort Druckers Tage", k=1, mode="lexical")[0]
    assert hit.heading == ("2. Kennwortänderung",)
    sentences = [hit.text[a:b] for a, b in verify.sentences(hit.text)]
    assert "Das Kennwort des Druckers muss alle 90 Tage geändert werden." in sentences


# Text that has no heading: wrapped prose (each line as long as the wrapping allowed), a list,
# an address, a lead-in ending in ":", a line going on in lower case, a title over a list, a line
# wrapped early, capitals wrapped, a sentence ending inside the line, a line before a list.
NO_HEADINGS = """The printer on the second floor is shared by the whole team and the
toner for it is ordered by IT once a month, on the first Monday.

Staff park in the garage under the building
and visitors use the spaces in front of it.

Things to bring on the first day:
Passport
Bank details

ACME GmbH
Hauptstraße 1
40210 Düsseldorf

Note
- badges are collected at reception
- lost badges cost 10 euros

This product includes software developed at
The Apache Software Foundation (https://www.apache.org/).

IN NO EVENT SHALL THE AUTHORS BE LIABLE FOR
ANY CLAIM, DAMAGES OR OTHER LIABILITY.

You may want to subscribe to the mailing list. See
<URL: https://lists.example.org/>.

See: https://example.org/bugs

- Try to find out if the bug is a regression.

Shopping list

Milk

Eggs
"""


def test_text_without_headings_reads_and_chunks_as_before(tmp_path, embedder):
    """Lines that only look short (wrapped prose, lists, addresses) stay in their paragraphs: the
    blocks, and so the chunks, are exactly the paragraphs joined as before."""
    path = tmp_path / "notes.txt"
    path.write_text(NO_HEADINGS, encoding="utf-8")
    before = [Block(" ".join(p.split())) for p in re.split(r"\n[^\S\n]*\n", NO_HEADINGS) if p.strip()]
    blocks = read(path).blocks
    assert blocks == before
    spans = chunking.hf_token_spans(embedder.tokenizer)
    assert chunking.chunk_blocks(blocks, spans, 32, 4) == chunking.chunk_blocks(before, spans, 32, 4)


# -- Excel's "Unicode Text" ------------------------------------------------------------------------


def test_an_excel_unicode_text_export_is_a_table(tmp_path):
    """Excel's "Save as Unicode Text (*.txt)": UTF-16 LE with a BOM, tabs, CRLF, a cell holding a tab
    or a line break quoted. It was one paragraph ("Name Straße Ort Müller Weißenburgstraße 12 ..."),
    its columns lost; it reads as a .tsv does, each row with its header."""
    text = ('Name\tStraße\tOrt\r\nMüller\tWeißenburgstraße 12\tDüsseldorf\r\n'
            '"Özdemir\tAG"\t"Königsallee 5\r\n2. Stock"\tKöln\r\n\r\n')
    path = tmp_path / "adressen.txt"
    path.write_bytes(b"\xff\xfe" + text.encode("utf-16-le"))
    got = [(b.kind, b.heading, b.text) for b in read(path).blocks]
    assert got == [("row", ("adressen.txt",), "Name: Müller; Straße: Weißenburgstraße 12; Ort: Düsseldorf"),
                   ("row", ("adressen.txt",), "Name: Özdemir AG; Straße: Königsallee 5 2. Stock; Ort: Köln")]


@pytest.mark.parametrize("text", [
    "\tThe first paragraph is indented with a tab.\n\tSo is the second one, as old letters were.\n",
    "Totals\tare kept apart.\nThe rest of the text has no tab at all, and goes on.\nAnd on.\n",
    "Name\tName\nMüller\tSchmidt\n",  # a header of the same name twice is no header
], ids=["indented", "stray-tab", "no-header"])
def test_text_with_tabs_that_is_no_table_stays_paragraphs(tmp_path, text):
    path = tmp_path / "letter.txt"
    path.write_text(text, encoding="utf-8")
    assert [(b.kind, b.text) for b in read(path).blocks] == [("paragraph", " ".join(text.split()))]


def test_a_line_break_inside_a_quoted_cell_is_kept_as_a_space(tmp_path):
    """A cell with a line break (Alt+Enter in Excel) lost it: "Königsallee 5" over "2. Stock" was
    stored as "Königsallee 52. Stock", a house number that does not exist. Read whole or streamed."""
    from archivist.ingest.readers_text import stream_csv

    path = tmp_path / "adressen.csv"
    path.write_text('Name,Adresse,Hinweis\r\nMüller,"Königsallee 5\r\n2. Stock","Klingel\ndefekt"\r\n'
                    'Schmidt,Ring 1,\r\n', encoding="utf-8", newline="")
    want = ["Name: Müller; Adresse: Königsallee 5 2. Stock; Hinweis: Klingel defekt",
            "Name: Schmidt; Adresse: Ring 1"]
    assert [b.text for b in read(path).blocks] == want
    assert [b.text for group in stream_csv(path) for b in group] == want
