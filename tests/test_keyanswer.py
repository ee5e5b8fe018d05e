"""Key answers (retrieval/keyanswer.py) on the real embedder and the real sample documents: the
shown span and sentences are copied from the passages, never invented; a question the documents
answer is answered with the right span; one they do not answer is not found."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from archivist.ingest.pipeline import ingest_paths
from archivist.records import Answer, Hit
from archivist.retrieval.answer import NOT_FOUND, UNCERTAIN, answer_json, ask, settle
from archivist.retrieval.answerability import missing_names, names
from archivist.retrieval.keyanswer import TermStats, key_answer, key_span, term_stats
from archivist.retrieval.quote import _box_title, candidates
from archivist.retrieval.search import search
from archivist.retrieval.verify import verify_answer

from conftest import sample_questions


def _hit(n: int, text: str, heading: tuple[str, ...] = ()) -> Hit:
    return Hit(chunk_id=n, document_id=n, document=f"doc{n}.html", collection="default", text=text, score=1.0,
               heading=heading, dense_score=0.6)


@pytest.mark.parametrize("sentence, question, span", [
    ("Run git stash push --keep-index to keep what is staged.", "How do I stash but keep the index intact?",
     "--keep-index"),
    ("Every upgrade is recorded in /var/log/dpkg.log.", "Where does dpkg log upgrades?", "/var/log/dpkg.log"),
    ("Use heapq.nlargest(n, iterable) for the largest items.", "How do I get the n largest items?", "heapq.nlargest"),
    ("Parental leave is 20 weeks, fully paid.", "How many weeks of parental leave are there?", "20 weeks"),
    ("git stash saves your local modifications.", "What does git stash do?", ""),  # the question names it
    # an amount with its currency, range and unit, as written; a currency code alone is never the answer
    ("Every employee has a personal learning budget of EUR 1,500 per year for courses.",
     "How large is the yearly personal learning budget?", "EUR 1,500 per year"),
    ("Use of a private car is reimbursed at EUR 0.30 per km, including fuel.", "At what rate is a private car reimbursed?",
     "EUR 0.30 per km"),
    ("Country: France; Full-day rate: EUR 53; Partial-day rate: EUR 35", "What is the full-day per diem for France?", "EUR 53"),
    ("You are available during the core hours from 10:00 to 15:00 on working days.", "How long are the core hours?",
     "10:00 to 15:00"),
    ("See section 3.2 for details; the limit is 5 MB.", "What is the size limit?", "5 MB"),  # not the section
    ("The IT service desk supports the VPN from 07:00 to 20:00 CET, Monday to Friday.", "What are the VPN support hours?",
     "07:00 to 20:00 CET"),  # a time zone belongs to its time, and is never the key alone
    # what the question asks for, in a sentence with a name, a date and an amount
    ("Decision: Ines Kowalczyk decided to open a hub in Rotterdam on 1 September 2025, with a budget of EUR 420,000.",
     "Who decided to open the Rotterdam hub?", "Ines Kowalczyk"),  # not "Decision:", a label
    ("Decision: Ines Kowalczyk decided to open a hub in Rotterdam on 1 September 2025, with a budget of EUR 420,000.",
     "When does the Rotterdam hub open?", "1 September 2025"),
    ("Decision: Ines Kowalczyk decided to open a hub in Rotterdam on 1 September 2025, with a budget of EUR 420,000.",
     "What budget was approved for the Rotterdam hub?", "EUR 420,000"),
    ("Trips above EUR 2,000 also need the approval of the Chief Financial Officer, Marta Oliveira.",
     "Who must approve trips that cost more than EUR 2,000?", "Chief Financial Officer, Marta Oliveira"),
    ("Forward suspicious emails to phish@northwind-robotics.example and do not click.",
     "Where should suspicious emails be forwarded?", "phish@northwind-robotics.example"),  # whole, not its domain
    ("Forklift inspections take place every Tuesday at 07:30.", "When are the forklift inspections?",
     "every Tuesday at 07:30"),
    ("The meeting notes say nothing about it.", "When is the meeting?", ""),  # no date: no key, never a guess
    ("The contents of /etc/skel/ are copied into the new home directory.",  # "when" as a clause asks no date
     "Which directory's contents are copied into a new user's home directory when the account is created?", "/etc/skel/"),
    # a hyphen joins what the question names: "URL" is named by "URL-safe", "UTF-8" by "UTF 8";
    # an option is not named by its words without the dashes
    ("The URL is encoded with base64.urlsafe_b64encode().", "How do I make a URL-safe string?", "base64.urlsafe_b64encode"),
    ("Files are read as UTF-8 unless locale.getpreferredencoding() returns another encoding.",
     "Are files always read as UTF 8?", "locale.getpreferredencoding"),
    ("Use --keep-index to keep the index.", "How do I stash but keep index?", "--keep-index"),
    # "what is the default ... length" asks the value: the option's name is no answer (sed's manual)
    ("--line-length=N -l N Specify the default line-wrap length for the l command.",
     "What is the default line-wrap length for the l command?", ""),
    ("A length of 0 (zero) means to never wrap long lines; the default is 70.",
     "What is the default line-wrap length for the l command?", "70"),  # the default's, not the first number
    # the kind of term the question asks for by its noun: a term of that shape, not the first one
    ("The SMTP relay configuration file(s), /etc/relay/hosts and /etc/relay/hosts.d/, list the allowed senders.",
     "Which configuration file lists the senders the relay accepts?", "/etc/relay/hosts"),  # "file(s)" is no call
    ("REQUEST_URI — The APP_TRUST_PROXY environment variable may be set to trust the forwarded headers.",
     "Which environment variable makes the app trust forwarded headers?", "APP_TRUST_PROXY"),
    ("--no-cache — Override cache.enabled configuration variable that is set to cache every response.",
     "Which configuration variable turns on caching of every response?", "cache.enabled"),
    ("You can list pending jobs again with the jobq command, which prints the queue.",
     "Which command lists the pending jobs?", "jobq"),  # a rare word next to the asked noun
    ("The first step is to install the zabbix7 and zabbix-agent packages.", "Which packages are needed for monitoring?",
     "zabbix7"),  # the first of a list
    ("Each share must be marked with the option ro=1 to be read-only.", "Which share option makes it read-only?", "ro=1"),
    ("lz.pack(data, level=LEVEL_MAX) — LEVEL_DEFAULT is a compromise between speed and size.",
     "Which constant is the default level of lz.pack?", "LEVEL_DEFAULT"),  # a signature's argument is not described
    ("Source code: Lib/things.py — The THINGS_HOME environment variable sets where things are kept.",
     "Which environment variable sets where things are kept?", "THINGS_HOME"),  # a label, not an answer
    ("Each worktree keeps its files in the $APP_DIR/trees directory.", "In which directory are the worktree files kept?",
     "$APP_DIR/trees"),  # as written, with its "$"
    ("How do I choose which merge tool runs? --tool=<tool> — Use the merge resolution program given.",
     "How do I choose which merge tool runs?", "--tool=<tool>"),  # "which merge tool" is a clause of a how-question
    ("Objects older than the date are pruned (default is 3 days ago).",
     "How old must objects be before they are pruned, by default?", "3 days ago"),
    ('The daemon listens on port "DEFAULT_PORT" aka 7077.', "On which TCP port does the daemon listen by default?", "7077"),
    ("Mint ships Cinnamon by default, and its updater is based on APT.", "Which desktop does Mint ship by default?",
     ""),  # a bare acronym names no answer: no key
])
def test_the_key_span_is_what_the_question_does_not_name(sentence, question, span):
    assert key_span(sentence, question) == span


def test_an_invented_span_cannot_appear(embedder):
    """The question names an option the passages lack: whatever is shown is the passages' own text."""
    passages = [_hit(1, "git-stash - Stash the changes in a dirty working directory away.\n\n"
                        "--keep-index\nAll changes already added to the index are left intact.", ("git-stash",)),
                _hit(2, "git-clean - Remove untracked files from the working tree.\n\n"
                        "-n, --dry-run\nDon't actually remove anything, just show what would be done.", ("git-clean",))]
    for question in ("Which option makes git stash --frobnicate the index?", "How do I stash but keep the index?"):
        k = key_answer(question, passages, embedder, TermStats(), 0.8)
        assert "--frobnicate" not in k.text
        assert k.span == "" or any(k.span in p.text for p in passages)
        for n, sentence in k.picked:
            for part in sentence.split(" — "):
                assert " ".join(part.split()) in " ".join(passages[n - 1].text.split()) + " " + passages[n - 1].heading[-1]


def test_a_definitions_term_is_shown_once(embedder):
    """The span is the term the quoted definition starts with: the answer does not repeat it."""
    passages = [_hit(1, "git-stash - Stash the changes in a dirty working directory away.\n\n"
                        "--keep-index\nAll changes already added to the index are left intact.", ("git-stash",))]
    k = key_answer("Which git stash option leaves the changes already added to the index intact?", passages,
                   embedder, TermStats(), 0.8)
    assert k.span == "--keep-index"
    assert k.text == "--keep-index — All changes already added to the index are left intact. [1]"
    # a term that holds the span with more around it (a signature): still shown once
    passages = [_hit(1, "textwrap - Text wrapping and filling.\n\n"
                        "textwrap.dedent(text)\nRemove any common leading whitespace from every line in text.",
                     ("textwrap",))]
    k = key_answer("Which function removes the common leading whitespace from every line of a string?", passages,
                   embedder, TermStats(), 0.8)
    assert k.span and k.span in "textwrap.dedent(text)", k.span
    assert k.text == "textwrap.dedent(text) — Remove any common leading whitespace from every line in text. [1]"


@pytest.mark.slow
def test_every_shown_span_is_in_a_passage(sample_ws, embedder):
    for q in sample_questions()[:6] + sample_questions(answerable=False)[:3]:
        hits = search(sample_ws, q["question"], k=5, embedder=embedder)
        k = key_answer(q["question"], hits, embedder, term_stats(sample_ws, q["question"]), 0.8)
        assert k is not None and 0.0 <= k.right <= 1.0 and 0.0 <= k.answerable <= 1.0
        if k.span:
            assert any(k.span in hits[n - 1].text for n, _ in k.picked), (q["question"], k.span)


@pytest.mark.slow
def test_a_right_span_is_answered(sample_ws, llm, embedder):
    a = ask(sample_ws, "How many weeks of fully paid parental leave does policy HR-17 give?", llm=llm,
            embedder=embedder, adapter=None, mode="extractive")
    assert (a.status, a.mode) == ("answered", "extractive")
    assert a.answer.startswith("20 weeks") and a.citations[0].document == "employee-handbook.pdf"


@pytest.mark.slow
def test_an_unanswerable_question_is_not_found(sample_ws, llm, embedder):
    a = ask(sample_ws, "What is the Northwind Robotics stock ticker symbol?", llm=llm, embedder=embedder,
            adapter=None, mode="extractive")
    assert (a.status, a.answer) == ("not_found", NOT_FOUND)


@pytest.mark.parametrize("question, expected", [
    ("How do I squash commits in the Sourcetree graphical client?", ["sourcetree"]),
    ("Which PyTorch function moves a tensor to the GPU?", ["pytorch", "gpu"]),
    ("What does the default branch protection do?", []),  # the first word's capital is no name
    ("How do I read a file in Python, and can I?", ["python"]),  # "I" is no name
])
def test_the_names_a_question_asks_about(question, expected):
    assert names(question) == expected


def test_a_name_the_passages_lack_is_missing():
    passages = [_hit(1, "git stash push --keep-index keeps what is staged.", ("git-stash",)),
                _hit(2, "The index is also called the staging area.", ("Git > glossary",))]
    assert missing_names("How do I stash in Git but keep the index?", passages) == 0  # "Git": in a heading
    assert missing_names("How do I stash in Sourcetree but keep the index?", passages) == 1
    assert missing_names("How do I stash in Sourcetree with Git and GitHub?", passages) == 2  # "git" is no "github"
    assert missing_names("how do i stash?", passages) == 0  # no name asked about: nothing missing


def test_another_products_name_lowers_answerable(embedder):
    """The same question about a product the passages never name is less likely answerable."""
    passages = [_hit(1, "git-stash - Stash the changes in a dirty working directory away.\n\n"
                        "--keep-index\nAll changes already added to the index are left intact.", ("git-stash",))]
    stats = TermStats([("stash", 3), ("keep", 40), ("index", 30)], 2000)
    plain = key_answer("How do I stash changes but keep the index?", passages, embedder, stats, 0.8)
    other = key_answer("How do I stash changes but keep the index in Sourcetree?", passages, embedder,
                       TermStats(stats.terms + [("sourcetree", 0)], 2000), 0.8)
    assert (other.features["names_missing"], plain.features["names_missing"]) == (1.0, 0.0)
    assert other.answerable < plain.answerable


# A real page of the Debian Administrator's Handbook: two boxed sidebars whose titles ("BACK TO BASICS
# Quota") the reader keeps as a line of their own, between the section's paragraphs.
HANDBOOK_PAGE = Path(__file__).parent / "data" / "handbook-creating-accounts.html"
SKEL = "Which directory's contents are copied into a new user's home directory when the account is created?"


def _page_hit() -> Hit:
    from archivist.ingest.chunking import join_blocks
    from archivist.ingest.readers_html import read_html

    blocks = read_html(HANDBOOK_PAGE).blocks
    return _hit(1, join_blocks(blocks)[0], blocks[0].heading)


def test_a_sidebar_title_is_no_definition_term():
    """A box's title is not the term of a definition: the sentences after it (the box's, and the
    section's once the box has ended) are quoted as they stand, and the title is no candidate."""
    cands = [text for _, text, _ in candidates([_page_hit()])]
    assert not [c for c in cands if c.startswith("BACK TO BASICS")]
    assert "The creation of an account populates the user's home directory with the contents of the /etc/skel/ " \
           "template." in cands
    assert key_span(next(c for c in cands if "/etc/skel/" in c), SKEL) == "/etc/skel/"


@pytest.mark.parametrize("line, title", [
    ("BACK TO BASICS Quota", True), ("VOCABULARY Blocks and inodes", True), ("TIP whatis", True),
    ("CULTURE DNSSEC", True), ("NOTE NSS and DNS", True), ("BACK TO BASICS RFC — Internet standards", True),
    # lines of code, tables and command output in the same corpora
    ("INSERT INTO movie VALUES", False), ("ORDER BY x ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING", False),
    ("USER PID %CPU %MEM VSZ RSS TTY STAT START TIME COMMAND", False), ("MAILADDR root", False),
    ("IDL Type: int; Python Type: int", False), ("PORT STATE SERVICE", False), ("SEE ALSO", False),
    ("UNC drive names are not considered:", False),
])
def test_a_box_title_is_told_from_code(line, title):
    """Real lines of the handbook, git and Python corpora: sidebar titles, and lines in capitals that are not."""
    assert _box_title(line) is title


def test_a_heading_line_is_the_sources_label_not_a_term():
    """The handbook's chunks start with their headings, some code-like ("8.4.1. User List: /etc/passwd"):
    the sentence after it is quoted alone (the heading names the source), and a heading that says
    something is still a candidate of its own."""
    heading = ("8.4. User and Group Databases", "8.4.1. User List: /etc/passwd")
    text = "8.4. User and Group Databases\n\n8.4.1. User List: /etc/passwd\n\n" \
           "Here is the list of fields in the /etc/passwd file:\n\nlogin, for example rhertzog;"
    cands = [c for _, c, _ in candidates([_hit(1, text, heading)])]
    assert cands == ["8.4.1. User List: /etc/passwd", "Here is the list of fields in the /etc/passwd file:",
                     "login, for example rhertzog;"]


@pytest.mark.slow
def test_a_quote_from_a_page_with_sidebars_starts_with_its_sentence(ws, llm, embedder, cli):
    """Through the real reader, ingestion and answer: the quote is the answering sentence with its span,
    the sidebar's title is not glued in front of it, and the section is the source's label."""
    ingest_paths(ws, [HANDBOOK_PAGE], collection="default", embedder=embedder, progress=False)
    a = ask(ws, SKEL, llm=llm, embedder=embedder, adapter=None, mode="extractive")
    assert a.status != "not_found"
    body = a.body
    assert "BACK TO BASICS" not in a.answer and "BASICS" not in body
    assert body.startswith(("/etc/skel/ — The creation of an account", "The creation of an account")), a.answer
    assert a.citations[0].heading == ("8.5. Creating Accounts",)
    js = json.loads(cli("ask", SKEL, "--mode", "extractive", "--json").stdout)
    assert (js["answer"], js["status"], js["citations"][0]["heading"]) == (a.answer, a.status, ["8.5. Creating Accounts"])
    out = cli("ask", SKEL, "--mode", "extractive").stdout
    assert out.startswith(a.answer + "\n") and "[1] handbook-creating-accounts.html — 8.5. Creating Accounts (" in out


def test_an_uncertain_quote_is_shown_as_a_passage(embedder, settings):
    """Uncertain: the notice says the passage is the closest, not that it answers nor that nothing was
    found, and the passage's sentence follows as it stands, without the key span claimed in front."""
    passages = [_hit(1, "Run git stash push --keep-index to keep what is staged.", ("git-stash",))]
    question = "How do I stash my changes but keep what is staged?"
    k = key_answer(question, passages, embedder, TermStats(), 0.8)
    assert k.text == "--keep-index — Run git stash push --keep-index to keep what is staged. [1]"
    assert k.quote == "Run git stash push --keep-index to keep what is staged. [1]"
    for answered, status, notice, body in ((0.0, "answered", "", k.text), (1.01, "uncertain", UNCERTAIN, k.quote)):
        s = replace(settings, key_not_found=0.0, key_answered=answered, quote_answered=99.0)
        a = Answer(question=question, answer="", citations=[], passages=passages)
        settle(a, question, passages, "", "extractive", embedder, s, relevance=0.8)
        assert (a.status, a.notice, a.body, [c.n for c in a.citations]) == (status, notice, body, [1])
        assert a.answer == (f"{notice}\n{body}" if notice else body)
        assert a.key == ("--keep-index" if status == "answered" else "")  # what key accuracy reads (evaluation.key_right)
        assert answer_json(a)["key"] == a.key
    assert "not" in UNCERTAIN and "closest passage" in UNCERTAIN and "no answer" not in UNCERTAIN.lower()


def test_a_yes_no_question_s_quote_is_never_shown_as_its_answer(embedder, settings):
    """A copied sentence says neither yes nor no; one that shares the question's words was shown as
    the answer to "Does Valgrind support Windows?" on Valgrind's manual. Asked for a thing in yes/no
    form ("Is there a command ...?"), the quote may still answer."""
    from archivist.retrieval.verify import asks_yes_no

    assert [asks_yes_no(q) for q in ("Does Valgrind support Windows?", "Can git grep search untracked files?",
                                     "  is the stash kept after a reboot?", "Is there a command that keeps the index?",
                                     "Are there limits on the stack size?", "How do I keep the index?",
                                     "Which option keeps the index?")] == [True, True, True, False, False, False, False]
    passages = [_hit(1, "PDB — In particular, initial support for reading Windows .PDB debug information has been "
                        "added.", ("NEWS",)),
                _hit(2, "Run git stash push --keep-index to keep what is staged.", ("git-stash",))]
    s = replace(settings, key_not_found=0.0, key_answered=0.0, quote_answered=99.0)  # every quote would be answered
    for question, status in (("Does Valgrind support Windows?", "uncertain"),
                             ("Is there a way to stash my changes but keep what is staged?", "answered"),
                             ("How do I stash my changes but keep what is staged?", "answered")):
        a = Answer(question=question, answer="", citations=[], passages=passages)
        settle(a, question, passages, "", "extractive", embedder, s, relevance=0.8)
        assert a.status == status, (question, a.status)
    assert a.notice == "" and "--keep-index" in a.answer
    a = Answer(question="Does Valgrind support Windows?", answer="", citations=[], passages=passages)
    settle(a, a.question, passages, "", "extractive", embedder, replace(s, key_not_found=1.01), relevance=0.8)
    assert a.status == "not_found"  # not found stays not found


@pytest.mark.slow
def test_the_chat_model_reads_the_answering_sentence_higher(llm):
    """keyanswer.reading with the real chat model: the sentence that answers the question makes the
    model expect the question more than a sentence of the same documents about something else."""
    from archivist.retrieval.keyanswer import reading

    question = "How many weeks of fully paid parental leave does policy HR-17 give?"
    right = "Under policy HR-17, employees receive 20 weeks of fully paid parental leave."
    other = "The on-call duty manager is reached on phone extension 4417 outside office hours."
    scores = reading(llm, question, [other, right])
    assert scores.shape == (2,) and scores[1] > scores[0] > -5, scores


def test_a_reader_ranks_the_best_candidates_again_and_settle_uses_its_thresholds(embedder, settings, monkeypatch):
    """With a reader, the best READ_TOP candidates are ranked by log P + READ_WEIGHT * reading, the
    question-level models get READ_FEATURES, and settle applies the reader's own thresholds."""
    from archivist.retrieval import keyanswer

    monkeypatch.setattr(keyanswer, "READ_WEIGHT", 100.0)  # the reading decides among the best candidates
    passages = [_hit(1, "Run git stash push --keep-index to keep what is staged. Use git stash list to see the "
                        "stashes. The stash is stored under refs/stash.", ("git-stash",))]
    question = "How do I stash my changes but keep what is staged?"
    plain = key_answer(question, passages, embedder, TermStats(), 0.8)
    assert plain.span == "--keep-index" and "read" not in plain.features
    prefer = "The stash is stored under refs/stash."
    asked: list[list[str]] = []

    def reader(q, texts):
        asked.append(list(texts))
        return [1.0 if t == prefer else 0.0 for t in texts]

    k = key_answer(question, passages, embedder, TermStats(), 0.8, reader=reader)
    assert asked and len(asked[0]) == min(keyanswer.READ_TOP, len(candidates(passages))) and prefer in asked[0]
    assert k.span == "refs/stash" and prefer in [t for _, t in k.picked]  # the span is the first candidate's
    assert k.features["read"] == 1.0 and k.features["read_margin"] == 1.0
    unread = key_answer(question, passages, embedder, TermStats(), 0.8, reader=lambda q, texts: None)
    assert (unread.span, unread.right, "read" in unread.features) == (plain.span, plain.right, False)  # a reader that cannot
    for answered, status in ((0.0, "answered"), (1.01, "uncertain")):
        s = replace(settings, key_not_found_read=0.0, key_answered_read=answered, key_answered=0.0, quote_answered=99.0)
        a = Answer(question=question, answer="", citations=[], passages=passages)
        settle(a, question, passages, "", "auto", embedder, s, relevance=0.8, reader=reader)
        assert a.status == status and prefer in a.answer


def test_a_verified_draft_that_names_nothing_the_question_does_not_is_no_answer(embedder, settings):
    """A draft that echoes the question and adds common words passes every claim check and rates high
    as an answer for its overlap with the question; it is answered only when it names something the
    question does not (its key span). Finding 40: a fully trained adapter writes such drafts."""
    passages = [_hit(1, "calendar.isleap(year) — Return True if year is a leap year, otherwise False. "
                        "The result depends on the proleptic Gregorian calendar.", ("calendar",))]
    question = "How do I check whether a year is a leap year with the calendar module?"
    echo = "How do I check whether a year is a leap year with the calendar module depends on the calendar [1]."
    right = "Use calendar.isleap(year) to check whether a year is a leap year [1]."
    for draft in (echo, right):
        checks = verify_answer(draft, [p.text for p in passages], question)
        assert [c.supported for c in checks if c.claim] == [True], [(c.text, c.reason) for c in checks]
    s = replace(settings, quote_answered=0.0, key_not_found=0.0, key_answered=99.0)  # any score is high enough
    # auto: the echo is dropped for the passages' own key answer (answered by the same low quote threshold)
    for draft, mode, shown in ((echo, "auto", ("answered", "extractive")), (echo, "generate", ("uncertain", "generated")),
                               (right, "auto", ("answered", "generated")), (right, "generate", ("answered", "generated"))):
        a = Answer(question=question, answer="", citations=[], passages=passages)
        settle(a, question, passages, draft, mode, embedder, s, relevance=0.8)
        assert (a.status, a.mode) == shown, (draft, mode, a.answer)
        assert (echo[:40] in a.answer) == (draft == echo and mode == "generate")
        assert ("calendar.isleap" in a.answer) == (a.status == "answered")


def test_a_rare_question_word_written_fullwidth_in_a_sentence_counts_as_present(embedder):
    """The candidate feature `rare_overlap` looks for the question's rare words in a sentence: a
    sentence that writes them in fullwidth forms (ＲＯＵＴＥＲ, common in Japanese documents) holds
    them as much as one in ASCII, as the other features and the answerability checks already say."""
    from archivist.retrieval.keyanswer import CANDIDATE_FEATURES, candidate_features

    question = "How do I reset the router?"
    sentences = ["Hold the ＲＯＵＴＥＲ button for ten seconds to ｒｅｓｅｔ it.",
                 "Hold the ROUTER button for ten seconds to reset it."]
    passages = [_hit(1, sentences[0]), _hit(2, sentences[1])]
    stats = TermStats([("reset", 5), ("router", 2)], 1000)
    rows = candidate_features(question, [(1, sentences[0], ""), (2, sentences[1], "")], passages, stats, embedder)
    rare = CANDIDATE_FEATURES.index("rare_overlap")
    assert rows[1][rare] == pytest.approx(1.0)
    assert rows[0][rare] == pytest.approx(rows[1][rare])
