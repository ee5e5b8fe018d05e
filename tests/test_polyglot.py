"""A European company's files as Windows exports them: Polish in the Central European code page
(1250), Russian in the Cyrillic one (1251), German, French and Spanish in Windows-1252, UTF-16
without a BOM. Each must be stored as written and found by its own words; a sentence opening with
Ü, É, Ż or Ж is a sentence of its own in quotes and claim checks; English reads and splits as before."""

from __future__ import annotations

import pytest

from archivist.ingest.pipeline import ingest_paths
from archivist.ingest.readers import read
from archivist.ingest.readers_base import text_encoding
from archivist.ingest.readers_text import stream_csv
from archivist.retrieval.search import search

PL = ("Regulamin korzystania z sieci w biurze w Łodzi\r\n\r\n"
      "Każdy pracownik otrzymuje własne konto użytkownika. Hasło należy zmieniać co sześćdziesiąt dni.\r\n\r\n"
      "Żółty toner zamawia się u pani Małgorzaty Żak, pokój 204.\r\n")
RU = ("Инструкция по резервному копированию\r\n\r\n"
      "Резервное копирование серверов выполняется каждую ночь в 02:00. Копии хранятся тридцать дней.\r\n")
DE = ("Benutzerhandbuch für den Netzwerkdrucker\r\n\r\nDie Kabelführung entlang der Außenwand ist verboten. "
      "Größere Druckaufträge über 500 Seiten müssen angemeldet werden. Ersatzkartuschen lagern in der "
      "Weißenburgstraße 12.\r\n")
FR = ("Politique de sécurité\r\n\r\nLa présente politique définit les règles applicables aujourd’hui à "
      "l’ensemble du personnel. Les élèves stagiaires reçoivent un compte temporaire. Où ? Là-bas, "
      "à côté de la fenêtre, œuvre commune.\r\n")
ES = ("Manual de procedimientos\r\n\r\n¿Olvidó su contraseña? Llame al señor Núñez. Los empleados tienen "
      "derecho a veintitrés días de vacaciones al año. ¡Atención! Nº 5, 1º piso, ¿listo¿vale?\r\n")
EN = ("Expenses\r\n\r\nA naïve café receipt for £5 or 5 € isn’t enough: it’s the “original” that counts, "
      "3½ days at most, 20°C in the server room.\r\n")


def _paragraphs(text: str) -> list[str]:
    return [" ".join(p.split()) for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]


@pytest.mark.parametrize("text, encoding", [(PL, "cp1250"), (RU, "cp1251")], ids=["pl-1250", "ru-1251"])
def test_polish_and_russian_windows_text_is_decoded_not_stored_as_mojibake(tmp_path, text, encoding):
    """Windows' "ANSI" in Poland is 1250 and in Russia 1251; read as 1252 they were stored as
    "Ka¿dy w³asne" and "Èíñòðóêöèÿ", silently. The streamed path (a CSV over 1 MB) chooses the same."""
    path = tmp_path / "doc.txt"
    path.write_bytes(text.encode(encoding))
    assert [b.text for b in read(path).blocks] == _paragraphs(text)
    assert text_encoding(path) == encoding


@pytest.mark.parametrize("text", [DE, FR, ES, EN], ids=["de", "fr", "es", "en"])
def test_western_and_english_windows_text_reads_exactly_as_before(tmp_path, text):
    """German, French, Spanish and English in Windows-1252 (and the same bytes in Latin-1 where they
    fit) still decode as 1252: their accents are letters in the other code pages too, so a tie keeps
    1252, and one typo that reads better in 1250 ("listo¿vale": ż) does not turn the file."""
    for encoding in ("cp1252", "latin-1"):
        try:
            data = text.encode(encoding)
        except UnicodeEncodeError:  # ’ “ € œ are 1252's, not Latin-1's
            continue
        path = tmp_path / f"{encoding}.txt"
        path.write_bytes(data)
        assert [b.text for b in read(path).blocks] == _paragraphs(text)
        assert text_encoding(path) == "cp1252"


def test_a_polish_csv_streamed_in_groups_keeps_its_letters(tmp_path):
    """A big CSV is decoded as a stream in the encoding `text_encoding` picks: the rows must carry ł and ż."""
    path = tmp_path / "adresy.csv"
    rows = "".join(f"Małgorzata Żak {i};ul. Łąkowa {i};Łódź\r\n" for i in range(300))
    path.write_bytes(("Imię i nazwisko;Ulica;Miasto\r\n" + rows).encode("cp1250"))
    blocks = [b for group in stream_csv(path, group_chars=4096) for b in group]
    assert len(blocks) == 300
    assert blocks[7].text == "Imię i nazwisko: Małgorzata Żak 7; Ulica: ul. Łąkowa 7; Miasto: Łódź"


def test_polish_and_russian_words_find_their_windows_files(ws, embedder, tmp_path):
    """Searching "Każdy", "Łódź" or a Russian word finds the file written in its code page (nothing
    matched the mojibake before), and a word typed without its accents ("wlasne") still does."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "regulamin_łódź.txt").write_bytes(PL.encode("cp1250"))
    (docs / "Резервное_копирование.txt").write_bytes(RU.encode("cp1251"))
    (docs / "handbuch.txt").write_bytes(DE.encode("cp1252"))
    ingest_paths(ws, [docs], embedder=embedder, progress=False)
    for query, doc in [("Każdy pracownik", "regulamin_łódź.txt"), ("Łodzi", "regulamin_łódź.txt"),
                       ("wlasne konto", "regulamin_łódź.txt"), ("резервное копирование", "Резервное_копирование.txt"),
                       ("Außenwand", "handbuch.txt")]:
        hits = search(ws, query, k=3, mode="lexical")
        assert [h.document.rsplit("/", 1)[-1] for h in hits][:1] == [doc], query


@pytest.mark.parametrize("text, want", [
    ("Das Kennwort wird alle 90 Tage geändert. Über den Server läuft die Warteschlange. Älteren Druckern fehlt das.",
     ["Das Kennwort wird alle 90 Tage geändert.", "Über den Server läuft die Warteschlange.", "Älteren Druckern fehlt das."]),
    ("Le VPN est obligatoire. À la fin du stage, le compte est fermé. Élèves inclus. « Merci » dit-il.",
     ["Le VPN est obligatoire.", "À la fin du stage, le compte est fermé.", "Élèves inclus.", "« Merci » dit-il."]),
    ("Tienen veintitrés días. ¿Olvidó su contraseña? ¡Llame ya! Núñez responde.",
     ["Tienen veintitrés días.", "¿Olvidó su contraseña?", "¡Llame ya!", "Núñez responde."]),
    ("Każdy ma konto. Żółty toner zamawia pani Żak. Łódź jest duża.",
     ["Każdy ma konto.", "Żółty toner zamawia pani Żak.", "Łódź jest duża."]),
    ("Копии хранятся тридцать дней. Ответственный: Иван Петров.", ["Копии хранятся тридцать дней.", "Ответственный: Иван Петров."]),
    # English splits as it always did: before a capital, a digit or a straight quote, not before
    # a lower-case word or a curly quote
    ("Press Enter. the next one. 3 days. \"Quoted\" here. “Curly” stays. Done.",
     ["Press Enter. the next one.", "3 days.", "\"Quoted\" here. “Curly” stays.", "Done."]),
], ids=["de", "fr", "es", "pl", "ru", "en"])
def test_a_sentence_opening_with_a_european_capital_is_a_sentence(text, want):
    """The sentence split (claim checks, quoted answers) knew only A-Z: a German, French, Polish or
    Russian passage whose next sentence opens with Ü, É, Ż or Ж was one long sentence."""
    from archivist.retrieval.verify import sentences

    assert [text[a:b] for a, b in sentences(text)] == want


def test_a_german_quote_is_the_answering_sentence_alone(embedder):
    """The quoted answer takes the sentence that answers, not the ones after it up to the paragraph's end."""
    from archivist.records import Hit
    from archivist.retrieval.quote import quote

    text = ("Die Tonerkartusche wird jährlich geprüft. Ersatzkartuschen lagern im Büro 3.14 im zweiten Stock. "
            "Über den zentralen Server läuft die Druckerwarteschlange. Ältere Drucker werden 2027 ersetzt.")
    hit = Hit(1, 1, "handbuch.txt", "default", text, 1.0)
    got = quote("Wo lagern die Ersatzkartuschen?", [hit], embedder, max_sentences=1)
    assert got.text == "Ersatzkartuschen lagern im Büro 3.14 im zweiten Stock. [1]"


@pytest.mark.parametrize("text, encoding", [(DE, "utf-16-le"), (RU, "utf-16-le"), (PL, "utf-16-be")],
                         ids=["de-le", "ru-le", "pl-be"])
def test_utf16_without_a_bom_is_text_not_a_binary_file(tmp_path, text, encoding):
    """SQL Server's `bcp -w` and some Windows exports write UTF-16 with no BOM: its NUL bytes made it
    "binary file (contains NUL bytes), not text", refused."""
    path = tmp_path / "export.txt"
    path.write_bytes(text.encode(encoding))
    assert [b.text for b in read(path).blocks] == _paragraphs(text)
    assert text_encoding(path) == encoding
    csv_path = tmp_path / "export.csv"
    csv_path.write_bytes("Nazwa;Miasto\r\nŻak;Łódź\r\nМюллер;Köln\r\n".encode(encoding))
    assert [b.text for group in stream_csv(csv_path) for b in group] == ["Nazwa: Żak; Miasto: Łódź", "Nazwa: Мюллер; Miasto: Köln"]


def test_a_binary_file_with_nul_bytes_is_still_refused(tmp_path):
    """NUL bytes on both sides of the code units (a table of integers, an image named .txt) are no UTF-16."""
    from archivist.ingest.readers import ReadError

    path = tmp_path / "data.txt"
    path.write_bytes(b"".join(i.to_bytes(4, "little") for i in range(3000)))  # NULs on both sides, many
    with pytest.raises(ReadError, match="binary file"):
        read(path)
    with pytest.raises(ReadError, match="binary file"):
        text_encoding(path)


def test_small_16_bit_numbers_are_not_taken_for_utf16(tmp_path):
    """A raw array of small 16-bit numbers has its NULs all on one side, like UTF-16 text, but spells
    control characters: still a binary file."""
    from archivist.ingest.readers import ReadError

    path = tmp_path / "samples.txt"
    path.write_bytes(b"".join((i % 40).to_bytes(2, "little") for i in range(5000)))
    with pytest.raises(ReadError, match="binary file"):
        read(path)
