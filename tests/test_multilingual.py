"""Documents that are not English, and odd Unicode: what a company in Germany, France, Japan or China
stores and asks. Lexical search must find a word inside a Japanese or Chinese sentence written without
spaces, "café" typed precomposed (NFC) must find it written decomposed (NFD), fullwidth letters, ligatures,
soft hyphens and zero-width spaces must not hide a word; an index built by an older tokenizer is rebuilt."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import replace

import numpy as np
import pytest

from archivist.ingest.pipeline import ingest_paths
from archivist.retrieval import lexicon, lexicon_store
from archivist.retrieval.query import STOPWORDS
from archivist.retrieval.search import search

JA = ("データベースの設定\n\nこのシステムではデータベースの設定ファイルを/etc/app/db.confに置きます。"
      "バックアップは毎日午前三時に実行されます。保存期間は三十日です。\n\n休暇の申請は上司の承認が必要です。"
      "有給休暇は年間二十日付与されます。\n")
ZH = "网络配置\n\n本系统的网络配置文件位于网关服务器。防火墙规则每周更新一次。员工每年享有十五天带薪年假。\n"
FR = unicodedata.normalize("NFD", "Règlement intérieur\n\nLa cantine propose un menu végétarien chaque jeudi. "
                                  "Les réunions d'équipe ont lieu le mercredi.\n")
ODD = ("Odd characters\n\nThe ＲＯＵＴＥＲ model ＸＲ５００ uses port ８０８０. The con\ufb01guration is kept apart. "
       "Kontrolle der Straßenbahn. Контрольная сумма проверяется ежедневно. سياسة الخصوصية.\n")
EN = "Travel policy\n\nEmployees book trains for trips under four hours. The per diem covers meals.\n"


@pytest.fixture
def world(ws, embedder, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in (("ja.txt", JA), ("zh.txt", ZH), ("fr.txt", FR), ("odd.txt", ODD), ("en.txt", EN)):
        (docs / name).write_text(text, encoding="utf-8")
    ingest_paths(ws, [docs], embedder=embedder, progress=False)
    return ws


def lexical_docs(ws, query: str) -> list[str]:
    return [h.document.rsplit("/", 1)[-1] for h in search(ws, query, k=5, mode="lexical")]


@pytest.mark.parametrize("query, doc", [
    ("設定", "ja.txt"), ("バックアップ", "ja.txt"), ("保存期間", "ja.txt"),  # words inside sentences
    ("防火墙", "zh.txt"), ("年假", "zh.txt"), ("网络配置文件", "zh.txt"),
    ("db.conf", "ja.txt"),  # Latin beside kana, no space between
])
def test_lexical_search_finds_a_cjk_word_inside_a_sentence(world, query, doc):
    assert lexical_docs(world, query)[:1] == [doc]


def test_a_cjk_question_ranks_the_chunk_holding_its_words_first(world):
    assert lexical_docs(world, "バックアップはいつ実行されますか？")[:1] == ["ja.txt"]
    assert lexical_docs(world, "员工有多少天年假？")[:1] == ["zh.txt"]


@pytest.mark.parametrize("query", [
    "végétarien",                                   # typed precomposed, stored decomposed
    unicodedata.normalize("NFD", "réunions"),       # typed decomposed
    "ROUTER", "XR500", "8080",                      # stored in fullwidth letters and digits
    "configuration",                                # stored with the ligature ﬁ
    "Straßenbahn", "Strassenbahn",                  # ß folds to ss
    "Kon\u00adtrolle", "Kontr\u200bolle",           # a soft hyphen or zero-width space typed inside the word
    "Контрольная", "الخصوصية",
])
def test_a_word_is_found_whatever_its_unicode_form(world, query):
    expected = "fr.txt" if query[:2] in ("vé", "re") else "odd.txt"
    assert lexical_docs(world, query)[:1] == [expected], query


def test_the_folded_tokens_keep_words_whole_and_english_unchanged():
    nfd = unicodedata.normalize("NFD", "végétarien réunions café")
    assert lexicon.tokens(nfd) == lexicon.tokens("végétarien réunions café") == ["vegetarien", "reunion", "cafe"]
    assert lexicon.tokens("Daten\u00adbank back\u200bups ﬁle ＸＲ５００") == ["datenbank", "backup", "file", "xr500"]
    assert lexicon.tokens("設定ファイル") == ["設", "定", "フ", "ァ", "イ", "ル", "設定", "定フ", "ファ", "ァイ", "イル"]
    assert lexicon.query_units("設定ファイル conf", STOPWORDS) == [("設定",), ("定フ",), ("ファ",), ("ァイ",), ("イル",), ("conf",)]
    assert lexicon.query_units("猫", STOPWORDS) == [("猫",)]  # a lone character is searched as itself
    # kana keep their voicing marks (デ is not テ), written composed, decomposed or halfwidth
    assert lexicon.tokens("デ") == lexicon.tokens("テ\u3099") == lexicon.tokens("ﾃﾞ") == ["デ"]
    # English text, and English words beside other scripts, give the stems they always gave
    english = "Employees' per-diem covers meals; os.path.join() runs --keep-index"
    old = [lexicon.stem(w) for w in re.findall(r"[^\W_]+", english.lower())]
    assert lexicon.tokens(english) == old
    assert lexicon.tokens(english + " — “quoted” ½") == old + ["quot", "1", "2"]
    assert lexicon.identifier_pairs("設定os.pathは") == ["os\x00path"]


def test_an_index_an_older_tokenizer_built_is_rebuilt(world):
    """A workspace indexed by the previous release holds the unicode61 runs ("データベースの設定") as
    terms: it is rebuilt on first use, not silently searched with terms it cannot hold."""
    ws = world
    rows = lexicon_store._rows(ws, np.array([r[0] for r in ws.db.execute("SELECT id FROM chunks")]))

    def old_tokens(text: str) -> list[str]:
        return [lexicon.stem(w) for w in re.findall(r"[^\W_]+", text.lower())]

    with pytest.MonkeyPatch.context() as m:
        m.setattr(lexicon, "tokens", old_tokens)
        old = replace(lexicon.Index.empty(lexicon.fields_of(ws)).with_chunks(rows), tokenizer=1)
    assert "設定" not in old.terms
    lexicon_store._save(ws, old)  # the sidecar agrees with SQLite: only the version tells
    lexicon_store._cache.clear()
    assert lexicon_store._load(ws).tokenizer == 1
    assert lexical_docs(ws, "設定")[:1] == ["ja.txt"]
    lexicon_store._cache.clear()
    on_disk = lexicon_store._load(ws)
    assert on_disk.tokenizer == lexicon.TOKENIZER and "設定" in on_disk.terms


# -- the answer side: question terms, quotes and claim checks on text without spaces ---------------------


def test_chinese_words_that_hold_a_function_character_stay_question_terms():
    """Pairs with 的 了 吗 ... are left out of a question's terms (什么, 的是); before, so were the
    words that merely hold one: 了解 (understand), 目的 (purpose), 酒吧 (bar)."""
    from archivist.retrieval.query import query_terms

    assert "目的" in query_terms("这个项目的目的是什么？") and "的目" not in query_terms("这个项目的目的是什么？")
    assert "什么" not in query_terms("这个项目的目的是什么？")
    assert "了解" in query_terms("如何了解系统日志？") and "酒吧" in query_terms("酒吧在哪里？")


def test_question_terms_are_the_bigrams_the_index_holds(world):
    from archivist.retrieval.answerability import term_coverage
    from archivist.retrieval.keyanswer import term_stats
    from archivist.retrieval.query import query_terms

    q = "有給休暇は何日ですか？"
    assert query_terms(q) == ["有給", "給休", "休暇", "暇は", "は何", "何日", "日で"]  # kana-only pairs (です, すか) left out
    assert query_terms("Which port?") == ["port"]  # English as before
    assert query_terms("请问如何申请访问权限？") == ["问如", "如何", "何申", "申请", "请访", "访问", "问权", "权限"]  # 请问 only goes
    stats = dict(term_stats(world, q).terms)
    assert stats["休暇"] == 1 and stats["有給"] == 1  # document frequencies found, not 0 for a whole sentence
    hits = search(world, q, k=3)
    assert hits[0].document.endswith("ja.txt")
    assert term_coverage(world, q, hits) > 0.5
    # a question's ROUTER is found in text set in fullwidth letters
    hits = search(world, "Which port does the ROUTER model use?", k=3)
    assert hits[0].document.endswith("odd.txt") and term_coverage(world, "ROUTER model port", hits) == 1.0


@pytest.mark.parametrize("question, sentence", [
    ("有給休暇は何日ですか？", "有給休暇は年間二十日付与されます。"),
    ("バックアップはいつ実行されますか？", "バックアップは毎日午前三時に実行されます。"),
    ("员工每年享有多少天带薪年假？", "员工每年享有十五天带薪年假。"),
])
def test_the_extractive_quote_is_the_answering_sentence_not_the_paragraph(world, embedder, question, sentence):
    from archivist.retrieval.answerability import answerability
    from archivist.retrieval.keyanswer import key_answer, term_stats

    hits = search(world, question, k=5, embedder=embedder)
    k = key_answer(question, hits, embedder, term_stats(world, question), answerability(world, question, hits))
    assert k is not None and k.picked[0][1] == sentence


def test_sentences_end_at_cjk_full_stops_and_keep_their_citations():
    from archivist.retrieval import verify

    text = "服务器的默认端口是八零八零。[1]员工每年享有十五天带薪年假。[2] 「休暇です。」次の文。"
    assert [text[a:b].strip() for a, b in verify.sentences(text)] == [
        "服务器的默认端口是八零八零。[1]", "员工每年享有十五天带薪年假。[2]", "「休暇です。」", "次の文。"]
    english = "Leave is 20 days [1]. Ask HR. [2] See the form."
    assert [english[a:b] for a, b in verify.sentences(english)] == [  # as before
        "Leave is 20 days [1].", "Ask HR.", "[2] See the form."]


@pytest.mark.parametrize("claim, supported", [
    ("服务器的默认端口是八零八零。[1]", True),
    ("服务器的默认端口是九九九九。[1]", False),   # an invented number, in Chinese numerals
    ("员工每年享有三十天带薪年假。[1]", False),
    ("有給休暇は年間二十日付与されます。[1]", True),
    ("有給休暇は年間四十日付与されます。[1]", False),
    ("服务器的备用端口是9090。[1]", False),      # digits right after CJK characters are numbers too
    ("服务器的备用端口是8443。[1]", True),
    ("服务器的备用端口是８４４３。[1]", True),    # fullwidth digits are the same number
    ("Die Aufbewahrungsfrist für Rechnungen beträgt zehn Jahre [1].", True),   # the passage is NFD
    ("Die Aufbewahrungsfrist für Rechnungen beträgt zwölf Jahre [1].", False),
])
def test_claims_in_other_languages_are_checked_word_by_word(claim, supported):
    from archivist.retrieval import verify

    passages = ["本系统的网络配置文件位于网关服务器。服务器的默认端口是八零八零。服务器的备用端口是8443。员工每年享有十五天带薪年假。"
                "有給休暇は年間二十日付与されます。"
                + unicodedata.normalize("NFD", "Die Aufbewahrungsfrist für Rechnungen beträgt zehn Jahre.")]
    checks = [c for c in verify.verify_answer(claim, passages, "") if c.claim]
    assert len(checks) == 1 and checks[0].supported is supported, checks


# -- ingest: chunks of text without spaces, and the text's Unicode form ------------------------------------


def test_a_paragraph_without_spaces_is_cut_into_chunks_of_the_embedders_size(embedder):
    from archivist.ingest.chunking import chunk_blocks, hf_token_spans
    from archivist.records import Block

    para = "员工每年享有十五天带薪年假，病假需要提供医生证明。" * 40 + "絵文字👍🏽と👨‍👩‍👧の家族です。" * 30
    text, chunks = chunk_blocks([Block(text=para, kind="paragraph")], hf_token_spans(embedder.tokenizer), 64, 8)
    assert len(chunks) > 10 and max(c.n_tokens for c in chunks) <= 64  # was one chunk of every token
    for c in chunks:
        assert c.text == text[c.start:c.end]
        assert c.text.endswith(("。", "，")) or c.end == len(text) or "\u4e00" <= c.text[-1] <= "\u9fff" \
            or "\u3041" <= c.text[-1] <= "\u30ff"
        assert not unicodedata.category(c.text[0]).startswith("M") and c.text[0] not in "\u200d\U0001f3fd"
        assert c.text[-1] != "\u200d"
    assert sum(c.text.endswith("。") for c in chunks) >= len(chunks) - 2  # cut at sentence ends
    # English is cut where it always was: at spaces
    eng = "The per diem covers meals and local transport. " * 60
    _, chunks = chunk_blocks([Block(text=eng, kind="paragraph")], hf_token_spans(embedder.tokenizer), 64, 8)
    assert all(c.text.endswith(".") for c in chunks)


def test_readers_store_text_with_composed_accents(tmp_path):
    from archivist.ingest.readers import read

    path = tmp_path / "nfd.md"
    path.write_text(unicodedata.normalize("NFD", "# Café\n\nLe résumé de la réunion, signé à Zürich."), encoding="utf-8")
    blocks = read(path).blocks
    assert [b.text for b in blocks] == ["Café", "Le résumé de la réunion, signé à Zürich."]
    assert all(unicodedata.is_normalized("NFC", b.text) for b in blocks)


def test_a_document_named_with_decomposed_accents_is_found_by_either_form(ws, embedder, tmp_path):
    """Names are stored NFC; a name typed or pasted decomposed (macOS) still names the document for
    `search --document` and for `delete`/`erase`/`chunks` (find_document)."""
    from archivist.ingest.pipeline import find_document
    from archivist.retrieval.search import resolve_documents

    folder = tmp_path / "names"
    folder.mkdir()
    nfd = unicodedata.normalize("NFD", "Règlement café.txt")
    (folder / nfd).write_text("La cantine propose un menu végétarien chaque jeudi.", encoding="utf-8")
    ingest_paths(ws, [folder], embedder=embedder, progress=False)
    (doc_id,) = [r[0] for r in ws.db.execute("SELECT id FROM documents")]
    for typed in (nfd, unicodedata.normalize("NFC", nfd)):
        assert resolve_documents(ws, [typed]) == [doc_id], ascii(typed)
        assert find_document(ws, typed)["id"] == doc_id
        assert [h.chunk_id for h in search(ws, "cantine", k=3, mode="lexical", documents=[typed])]


def test_html_furigana_does_not_run_into_the_text(tmp_path):
    """<ruby>東京<rt>とうきょう</rt></ruby>: the reading above the word is no part of the sentence."""
    from archivist.ingest.readers import read

    path = tmp_path / "kisoku.html"
    path.write_text("<html><body><h1>規則</h1><p>この<ruby>規則<rp>(</rp><rt>きそく</rt><rp>)</rp></ruby>は"
                    "<ruby>東京<rt>とうきょう</rt></ruby>本社に適用されます。</p></body></html>", encoding="utf-8")
    assert [b.text for b in read(path).blocks] == ["規則", "この規則は東京本社に適用されます。"]


def test_the_coverage_reranker_weighs_a_cjk_bigram_by_the_chunks_holding_it(world, embedder):
    """FTS5 holds "データベースの設定ファイルを" as one token, so its count of 設定 was 0 (the rarest
    weight); the lexical index counts the chunk that holds it."""
    from archivist.retrieval.rerank import CoverageReranker, _idf_of

    n = world.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
    reranker = CoverageReranker(world, embedder)
    assert reranker._idf("設定") == pytest.approx(_idf_of(n, 1))
    assert reranker._idf("travel") == pytest.approx(_idf_of(n, 1))  # English still counted by FTS5
    hits = reranker.rerank("設定ファイル", search(world, "設定ファイル", k=5, embedder=embedder))
    assert hits[0].document.endswith("ja.txt")


def test_a_character_cut_by_the_token_limit_is_not_shown(llm):
    """SmolLM2 writes Korean and kanji a byte per token; an answer cut by max_new_tokens inside a
    character ended in U+FFFD ("한訳�"), streamed and kept as the draft."""
    messages = [{"role": "user", "content": "日本語で答えてください：東京の暗号化されたパスワードについて説明してください。"}]
    texts = ["".join(llm.stream(messages, max_new_tokens=n)) for n in (6, 7, 8, 10, 13)]
    assert all("\ufffd" not in t for t in texts), texts
    assert texts[1].startswith(texts[0]) and len(texts[1]) > len(texts[0])  # the character comes once its bytes do


@pytest.mark.parametrize("name, encoding, text", [
    ("kitei.txt", "cp932", "有給休暇は年間二十日付与されます。\nバックアップは毎日午前三時に実行されます。"),   # Shift_JIS (Windows)
    ("kitei.md", "euc_jp", "# 規則\n\n有給休暇は年間二十日付与されます。"),
    ("nianjia.txt", "gbk", "员工每年享有十五天带薪年假，病假需要提供医生证明。"),
    ("nianjia.csv", "gb18030", "姓名,部门,年假\n张三,财务部,15\n李四,技术部,20\n"),
    ("big5.txt", "big5", "員工每年享有十五天帶薪年假。"),
    ("hangul.txt", "cp949", "직원은 매년 유급 휴가를 이십 일 받습니다."),
])
def test_text_in_a_legacy_cjk_encoding_is_decoded_not_stored_as_mojibake(tmp_path, name, encoding, text):
    """Shift_JIS from a Japanese Excel, GBK, Big5: decoded as Windows-1252 they were stored as
    "LxÉÍNÔñ", silently. The streamed path (a CSV over 1 MB) chooses the same encoding."""
    from archivist.ingest.readers import read
    from archivist.ingest.readers_base import text_encoding

    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    got = " ".join(b.text for b in read(path).blocks)
    words = [w for w in re.split(r"[\s,#。，]+", text) if w]
    assert all(w in got for w in words[:2] + words[-1:]), got
    assert text_encoding(path) not in ("cp1252", "latin-1")


def test_western_text_in_latin_1_stays_latin_1(tmp_path):
    """A German or French file in Latin-1 is not taken for Big5 ("prédéfinis" read as "pr嶮嶨inis")."""
    from archivist.ingest.readers import read
    from archivist.ingest.readers_base import text_encoding

    text = ("Les descripteurs de fichiers 0-2 sont prédéfinis.\nRépéter une commande avec un intervalle constant.\n"
            "Die Aufbewahrungsfrist für Rechnungen beträgt zehn Jahre. Größere Änderungen müssen genehmigt werden.\n")
    for encoding in ("latin-1", "cp1252"):
        path = tmp_path / f"{encoding}.txt"
        path.write_bytes(text.encode(encoding))
        assert " ".join(b.text for b in read(path).blocks) == " ".join(text.split())
        assert text_encoding(path) == "cp1252"
