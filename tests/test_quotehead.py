"""A question's own language everywhere its words are read: the lexical search, the learned
reranker's BM25, the follow-up rewrite, the claim overlap and the retriever's hard negatives leave
out a German question's "wo" and "die" (query.stopwords_of), English's words as before; and
"Mueller" finds "Müller" (lexicon.umlaut_twins, lexical tokenizer 4)."""

from __future__ import annotations

import unicodedata

import numpy as np
import pytest

from conftest import ingest_texts

LAGER = ("Lagerordnung der Geschäftsstelle\n\nErsatzkartuschen lagern im Büro 3.14 im dritten Stock. Der Schlüssel "
         "liegt bei Frau Müller am Empfang.")
# Each holds "die" and "wo" and nothing else the question asks: found only through its function words.
OTHERS = {"kantine.txt": "Die Kantine ist dort, wo die Treppe endet. Die Küche schließt um 14 Uhr.",
          "parken.txt": "Wo die Schranke steht, parken die Besucher. Die Ausfahrt ist links.",
          "post.txt": "Die Post kommt um neun. Wo die Pakete bleiben, sagt die Zentrale.",
          "printer.txt": "Who orders the toner for the printer? The office does, where the man died."}
QUESTION = "Wo lagern die Ersatzkartuschen?"


@pytest.fixture
def office(ws, embedder, tmp_path):
    ingest_texts(ws, embedder, tmp_path / "docs", {"office": {"lager.txt": LAGER, **OTHERS}})
    return ws


def _documents(ws, chunk_ids) -> list[str]:
    name = dict(ws.db.execute("SELECT c.id, d.path FROM chunks c JOIN documents d ON d.id = c.document_id"))
    return [name[c] for c in chunk_ids]


# -- 1. the question's language's stop words wherever its words are read -------------------------------------

def test_a_german_question_searches_for_its_content_words(office, embedder):
    from archivist.retrieval.lexicon import query_units
    from archivist.retrieval.rerank import features
    from archivist.retrieval.search import lexical, search, searched

    _, cids, _ = searched(office, None)
    # "wo" and "die" matched every other German document; now only the passage that answers is found
    assert _documents(office, [c for c, _ in lexical(office, QUESTION, cids, 10)]) == ["lager.txt"]
    hits = search(office, QUESTION, k=5)
    assert hits[0].document.endswith("lager.txt")
    assert [h.document for h in hits if h.lexical_rank is not None] == [hits[0].document]
    # the learned reranker's BM25 feature reads the query as the search did
    bm25 = features(office, QUESTION, hits, np.asarray(embedder.embed([QUESTION])[0], np.float32))[:, 1]
    assert bm25[0] > 0.1 and bm25[1:].tolist() == [0.0] * (len(hits) - 1)

    from archivist.retrieval.query import STOPWORDS, stopwords_of

    assert query_units(QUESTION, stopwords_of(QUESTION)) == [("lagern",), ("ersatzkartuschen",)]
    # English keeps its words: "man" and "die" are content there, and the set is English's alone
    english = "Where did the man die?"
    assert stopwords_of(english) == STOPWORDS
    assert query_units(english, stopwords_of(english)) == [("man",), ("die",)]
    found = _documents(office, [c for c, _ in lexical(office, english, cids, 10)])
    assert found[0] == "printer.txt" and sorted(found[1:]) == ["kantine.txt", "parken.txt", "post.txt"]  # by "die"


def test_a_german_follow_up_and_claim_read_without_function_words():
    from archivist.retrieval.answer import standalone_question, token_overlap

    asked = [{"role": "user", "content": "Wer bestellt die Ersatzkartuschen für den Drucker?"}]
    # "und", "wo", "ist", "das" were four content words, so the follow-up was not seen to refer back
    assert standalone_question("Und wo ist das?", asked) == "bestellt Ersatzkartuschen Drucker Und wo ist das?"
    asks = "Und wo lagern die Ersatzkartuschen im Keller?"  # three content words of its own: no follow-up
    assert standalone_question(asks, asked) == asks
    # shared "die", "sind", "im" made 3 of 5 words of an unsupported claim supported (0.6)
    assert token_overlap("Die Ersatzkartuschen sind im Keller.", "Die Bänder sind im Lager.") == 0.0
    assert token_overlap("Die Ersatzkartuschen sind im Keller.", "Ersatzkartuschen: Keller") == 1.0
    # English as before
    assert standalone_question("And where is it?", [{"role": "user", "content": "Who orders the toner for the printer?"}]) \
        == "orders toner printer And where is it?"
    assert token_overlap("The man will die.", "the man") == pytest.approx(1 / 2)


def test_a_german_questions_hard_negative_is_no_passage_sharing_only_its_function_words(office, embedder):
    from archivist.finetune.retriever import Pair, mine_negatives

    chunk, doc = office.db.execute("SELECT c.id, d.id FROM chunks c JOIN documents d ON d.id = c.document_id "
                                   "WHERE d.path = 'lager.txt'").fetchone()
    docs = [r[0] for r in office.db.execute("SELECT id FROM documents")]
    pair = Pair(query=QUESTION, text=LAGER, heading="", chunk_id=chunk, document_id=doc, kind="question")
    mine_negatives(office, [pair], docs, embedder, seed=0)
    # BM25 ranked the other German documents 2nd to 4th on "wo" and "die" alone, and one became the
    # negative; no other document shares a word of the question, so there is none
    assert pair.negative is None


# -- 2. "Mueller" finds "Müller" ------------------------------------------------------------------------------

def test_umlaut_words_are_also_indexed_as_typed_without_umlauts():
    from archivist.retrieval.lexicon import TOKENIZER, Index, tokens, umlaut_twins

    assert TOKENIZER == 4  # indexes tokenized before are rebuilt
    text = "Frau Müller misst die Größe über der Tür. Feuer! " + unicodedata.normalize("NFD", "Ärger")
    assert tokens(text) == ["frau", "muller", "misst", "die", "gross", "uber", "der", "tur", "feuer", "arger"]
    assert umlaut_twins(text) == ["mueller", "groess", "ueber", "tuer", "aerger"]
    # English words holding ue, oe, ae are no umlauts' twins: their text gives no extra term
    english = "The queue does not hold Israel's aerial photos; Joe's poetry goes on."
    assert umlaut_twins(english) == [] and umlaut_twins("Søren Kjær, Łódź, café") == []
    index = Index.empty().with_chunks([(1, 1, 1, text, "Größe"), (2, 1, 1, english, "")])
    assert index.length.tolist() == [len(tokens(text)) + 0.5 * 2, len(tokens(english))]  # twins count in no length
    assert {"mueller", "groess", "tuer"} <= set(index.terms) and "quu" not in index.terms and "dos" not in index.terms


def test_mueller_finds_the_passage_naming_mueller(office, embedder):
    from archivist.retrieval.answerability import missing_names, present, term_coverage
    from archivist.retrieval.rerank import CoverageReranker, _idf_of
    from archivist.retrieval.search import search

    for query in ("Frau Mueller", "Frau Müller", "Frau Muller"):
        hits = search(office, query, k=3)
        assert hits[0].document.endswith("lager.txt") and hits[0].lexical_rank == 1, query
    question = "Wer hat den Schlüssel bei Frau Mueller?"
    hits = search(office, question, k=3)
    assert hits[0].document.endswith("lager.txt") and hits[0].matched_terms == ["schlüssel", "frau", "mueller"]
    assert term_coverage(office, question, hits) == pytest.approx(1.0)
    assert missing_names("Wo ist Frau Mueller?", hits) == 0
    assert present("mueller", "frau müller") and not present("mueller", "frau muller")
    n = int(office.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])
    assert CoverageReranker(office, embedder)._idf("mueller") == pytest.approx(_idf_of(n, 1))


# -- 3. a section's title is no answer; a heading that names something still is -------------------------------

ANACRON = ("9.8. Scheduling Asynchronous Tasks: anacron\n\n"
           "anacron is the daemon that completes cron for computers that are not on at all times. Since regular "
           "tasks are usually scheduled for the middle of the night, they will never be executed if the computer is "
           "off at that time. The purpose of anacron is to execute them, taking into account periods in which the "
           "computer is not working.\n\n"
           "Please note that anacron will frequently execute such activity a few minutes after booting the machine, "
           "which can render the computer less responsive. This is why the tasks in the /etc/anacrontab file are "
           "started with the nice command, which reduces their execution priority and thus limits their impact on "
           "the rest of the system.")


def _passage(n: int, text: str, *heading: str):
    from archivist.records import Hit

    return Hit(chunk_id=n, document_id=n, document=f"doc{n}.html", collection="default", text=text, score=1.0,
               heading=heading, dense_score=0.6)


def test_a_heading_is_a_candidate_only_when_it_names_something():
    from archivist.retrieval.quote import candidates

    title = "9.8. Scheduling Asynchronous Tasks: anacron"
    named = {"8.4.1. User List: /etc/passwd": "Here is the list of fields in the /etc/passwd file.",
             "git-stash - Stash the changes in a dirty working directory away": "Use git stash when you want to "
             "record the current state of the working directory.",
             "os.path — Common pathname manipulations": "This module implements some useful functions on pathnames."}
    passages = [_passage(1, ANACRON, title)] + [_passage(n, f"{h}\n\n{t}", h) for n, (h, t) in enumerate(named.items(), 2)]
    cands = [c for _, c, _ in candidates(passages)]
    assert title not in cands and cands[0].startswith("anacron is the daemon")  # its label, not an answer
    for heading, text in named.items():  # each still answers on its own, before its passage's sentence
        assert cands.index(heading) + 1 == cands.index(text)


def test_the_sentence_under_a_title_is_quoted_not_the_title(embedder):
    from archivist.retrieval.keyanswer import TermStats, key_answer
    from archivist.retrieval.quote import quote

    question = "Which file lists the asynchronous tasks anacron schedules?"
    passages = [_passage(1, ANACRON, "9.8. Scheduling Asynchronous Tasks: anacron")]
    # the title shared four of the question's words and was quoted, by the quoter and the key answer
    assert "/etc/anacrontab" in quote(question, passages, embedder).text
    # the question's words as rare as in the Debian Handbook's workspace (chunks holding each, of 3,800)
    stats = TermStats([("file", 2146), ("lists", 1023), ("asynchronous", 12), ("tasks", 335), ("anacron", 9),
                       ("schedules", 121)], 3800)
    k = key_answer(question, passages, embedder, stats, 0.9)
    assert "/etc/anacrontab" in k.quote and not k.quote.startswith("9.8.")
