"""What the searches read from a query's text: its words, the stopwords left out, the safe FTS5
query, the content terms (marked on hits, weighed by answerability)."""

from __future__ import annotations

import re

STOPWORDS = frozenset("""a an and are as at be been but by can could do does did for from had has have how i if in into is it
its me my no not of on or our so that the their them then there these they this to was we were what when where which
who whom why will with would you your about after all also any before between both each few more most other over same
should some such than too under until very""".split())
# The function and question words of the other languages documents are read in (docs/documents.md:
# German, French, Spanish, Polish, Russian), as typed, with and without accents. A question word
# ("wo", "où", "dónde", "gdzie", "где") is in no passage that answers it, and as a query term its
# idf, the highest, sank answerability. Added to a question's stop words only when it is written in
# that language (`stopwords`): "die", "also", "war", "will", "man" are English content words too.
LANGUAGES = {lang: frozenset(words.split()) for lang, words in {
    "de": """ab aber als also am an auch auf aus bei bin bis bist da damit dann das dass daß dem den denen der des
dich die dir doch dort du durch ein eine einem einen einer eines er es euch euer für fuer gegen gibt habe haben hat
hatte hier ich ihm ihn ihnen ihr ihre im in ist ja jede jeder jedes kann kein keine können man mich mir mit muss
müssen nach nicht noch nun nur ob oder ohne sein seine sich sie sind so soll sollen über ueber um und uns unser
unter vom von vor wann war waren warum was weil welche welcher welches wem wen wenn wer werden wie wieviel
wieviele will wir wird wo woher wohin wurde wurden zu zum zur zwischen""",
    "fr": """à au aux avec c ce ces cette combien comment d dans de des doit dois du elle elles en est et être faut
il ils j je l la le les leur leurs lui m ma mais me mes moi mon n ne nous on ou où par pas peut peux pour pourquoi
qu quand que quel quelle quelles quels qui quoi s sa sans se ses son sont sur t ta te tes toi ton tu un une vos
votre vous y""",
    "es": """a al como cómo con cual cuál cuales cuáles cuando cuándo cuanto cuánto cuánta cuántos cuántas de debe
debo del desde donde dónde el él ella ellos en entre es esta está están este esto hay la las le les lo los me mi
mis muy nada ni no nos o para pero por porque porqué puede puedo que qué quien quién quienes se ser si sí sin
sobre son su sus también te tengo tiene tienen todo un una uno unos unas y ya yo""",
    "pl": """a aby ale bez by być co czego czy czym dla dlaczego do dokąd gdzie i ich ile ilu jak jaka jaką jaki
jakie jakiej jakim jest jestem jeśli już kiedy kogo komu kto która które który lub ma mam mi mnie może można musi
na nad nie o od po pod przez przy sa są sie się skąd ta tak te tego tej ten to trzeba tu w we więc z za ze że""",
    "ru": """а без был была были было быть в во вы где да для до его ее её если есть же за зачем и из или им их к
как какая какие какой когда куда кто ли между мне можно мы на над надо не нет ни но нужно о об от откуда по под
почему при про с сколько со так там то тот ты у уже чем что чтобы это эта эти этот я""",
}.items()}
# The words of those lists that are English words too, or abbreviations, names and commands in English
# text (du, del, DES, ALS): they count for a language but never alone make a question that language's.
ALSO_ENGLISH = frozenset("""a ab al ale als am an au aus aux bin bis by c ce co comment como con d da de del dem den
der des die dir do du el elle en er es est et hat hay i il ile im in j ja jest l la las le les lo los lui m ma mam man
me mes mi mir mis mit moi mon muss n na nad nada ne ni no nos nous nun o ob od on par para pas po pod pour s sa sans se
seine ser si sin so son su sus t ta te ten tes to todo tu um un uno von w war was we wen will y ya yo z za ze""".split())

# The words by which a follow-up in one of those languages refers back to the question before it
# ("Und wie lange dauert es?"), as `answer._REFERRING` holds English's; read only in a question written
# in that language (`written_in`). Left out: words that mostly do not refer back, Polish "to" ("co to
# jest" asks what something is), French "ce" ("qu'est-ce que"), Spanish "esta" (an "está" typed without
# its accent), German "sein" (to be); German "das" counts only as a pronoun (`refers_back`).
REFERRING = {lang: frozenset(words.split()) for lang, words in {
    "de": """es dies diese dieser dieses diesem diesen dort da dabei dafür dafuer dazu davon damit darüber darueber
darauf er ihm ihn seine seinen seinem seiner auch ebenfalls dasselbe dieselbe derselbe""",
    "fr": "ça ca cela ceci cet cette ces celui celle ceux celles y là aussi même il elle ils elles lui eux",
    "es": "eso esto ese esa este estos estas esos esas ello él ella ellos ellas allí ahí allá también mismo misma",
    "pl": "ten ta te tego tej tym tamten tam też także on ona ono oni one go jego ją jej ich",
    "ru": "это этот эта эти этого этой тот та те он она оно они его её ее их там тоже также",
}.items()}

WORD = re.compile(r"\w+", re.UNICODE)


def fts_query(text: str) -> str | None:
    """Turn free user text into a safe FTS5 query: terms OR-ed, each quoted, so quotes,
    operators (AND, NEAR, *, :, ^, parentheses) and odd characters can never raise.
    A term with inner punctuation (NW-4410, HR-17, v2.1) stays a quoted phrase."""
    terms = []
    for piece in text.split():
        piece = piece.strip(".,;:!?()[]{}<>\"'`*^+~=|/\\")
        words = WORD.findall(piece)
        if not words:
            continue
        if len(words) == 1 and words[0].lower() in STOPWORDS:
            continue
        phrase = " ".join(words)
        terms.append('"' + phrase.replace('"', '""') + '"')
    terms = list(dict.fromkeys(terms))
    return " OR ".join(terms) if terms else None


# A CJK bigram that is grammar, not a word a passage would share: Japanese kana alone (particles and
# endings: "どこ", "ます", "すか"), a pair with a Chinese function character (的 了 吗 什么 怎么 这 那 ...),
# or 请问 ("may I ask"); 请 and 问 alone are parts of words (申请 apply, 请求 request, 访问 access, 问题 problem).
# Left out of the question's terms as STOPWORDS are; the lexical search itself keeps every bigram.
_CJK_FUNCTION = re.compile(r"[\u3041-\u309f]+|.?[的了吗呢吧么哪怎什这那]+.?|请问")
# Words that hold one of those characters and still name something: kept.
_CJK_CONTENT = frozenset({"了解", "了结", "明了", "目的", "标的", "的士", "吗啡", "酒吧", "网吧", "呢绒", "刹那"})


def stopwords(words: list[str]) -> frozenset[str]:
    """The stop words of a question of lower-cased `words`: `STOPWORDS`, and the function words of each
    language of `LANGUAGES` it is written in, one with a word of that language that is no English word
    (`ALSO_ENGLISH`) and more of that language's function words than English ones. A question with no
    such word gets `STOPWORDS` alone: "Where did the man die?" keeps "man" and "die"."""
    return STOPWORDS.union(*(LANGUAGES[lang] for lang in written_in(words)))


def written_in(words: list[str]) -> list[str]:
    """The languages of `LANGUAGES` a question of lower-cased `words` is written in, as `stopwords` tells them."""
    english = sum(w in STOPWORDS for w in words)
    return [lang for lang, own in LANGUAGES.items()
            if sum(w in own for w in words) > english and any(w in own and w not in ALSO_ENGLISH for w in words)]


def refers_back(words: list[str]) -> bool:
    """Whether a question of lower-cased `words` written in a language of `LANGUAGES` refers back to the
    one before with a word of that language (`REFERRING`), or German "das" with no noun after it ("Wie
    lange dauert das im Schnitt?", not "Wo ist das Büro?"); English's words are `answer._REFERRING`."""
    langs = written_in(words)
    if "de" in langs and any(w == "das" and (i + 1 == len(words) or words[i + 1] in LANGUAGES["de"])
                             for i, w in enumerate(words)):
        return True
    return any(w in REFERRING[lang] for lang in langs for w in words)


def _words(text: str) -> list[str]:
    """The lower-cased words of a question, Chinese and Japanese as their bigrams (`folding.cjk_pairs`)."""
    from archivist.retrieval.folding import cjk_pairs, plain

    return [t for w in WORD.findall(plain(text)) for t in cjk_pairs(w.lower())]


def stopwords_of(text: str) -> frozenset[str]:
    """`stopwords` of a question's text, read as `query_terms` reads it: what the lexical search
    (`lexicon.query_units`) and the follow-up rewrite leave out of it, so a German question drops
    "wo" and "die" there as well, and an English one `STOPWORDS` alone, as before."""
    return stopwords(_words(text))


def query_terms(text: str) -> list[str]:
    """The query's content words, lower-cased, each once, in order (`stopwords` left out). Chinese and
    Japanese, written without spaces, give their bigrams (`folding.cjk_pairs`), as the lexical index
    holds them: a whole sentence is no word any passage holds."""
    words = _words(text)
    stop = stopwords(words)
    return list(dict.fromkeys(w for w in words if w not in stop
                              and (w in _CJK_CONTENT or not _CJK_FUNCTION.fullmatch(w))))
