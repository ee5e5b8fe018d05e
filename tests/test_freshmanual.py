"""A new user's questions on a manual nobody on the project had used (the GNU Bash Reference Manual):
the defects they met, each with the case that showed it."""

from __future__ import annotations

from archivist.records import Answer, Hit
from archivist.retrieval.answer import UNCHECKED, answer_json, settle

# Passages of the Bash manual's "Shell Parameter Expansion" (bashref.pdf, page 33), as archivist read them.
DEFAULT = ("${parameter:−word} If parameter is unset or null, the expansion of word is substituted. Otherwise, the "
           "value of parameter is substituted. $ v=123 $ echo ${v-unset} 123")
ALTERNATE = ("${parameter:+word} If parameter is null or unset, nothing is substituted, otherwise the expansion of "
             "word is substituted. $ var=123 $ echo ${var:+var is set and not null} var is set and not null")
HEADING = ("Bash Reference Manual", "3 Basic Shell Features", "3.5 Shell Expansions", "3.5.3 Shell Parameter Expansion")
QUESTION = "What does ${parameter:-word} expand to?"
# What smollm2-135m wrote for QUESTION over the manual's passages: its second code block, "123", is in
# both passages verbatim, and `archivist ask` failed with "archivist: error: list index out of range".
DRAFT = ("This command will print out the value of `${parameter:-word}` when you use it on a string containing a "
         "non-zero value.\n\nWhen you run this command, it will output something like:\n```\necho ${parameter:-word} "
         "= 123\n```\nSo the output is:\n```\n123\n```\nHowever, if you want to get the actual value of the argument "
         "instead of printing it, you can use the following command:\n```\nprintf \"%s\\n\", ${parameter:-word}\n```\n"
         "This will print the value of `${parameter:-word}`, which is the actual value of the argument passed to the "
         "function.")


def _passages() -> list[Hit]:
    return [Hit(chunk_id=n, document_id=1, document="bashref.pdf", collection="default", text=text, score=1.0,
                page=33, heading=HEADING, dense_score=0.6) for n, text in ((1, DEFAULT), (2, ALTERNATE))]


def test_a_draft_whose_code_block_a_passage_holds_is_settled_not_a_crash(embedder, settings):
    """A fenced code block found verbatim in a passage is a supported check that cites no passage;
    settle read the citation of every supported check and raised IndexError, which the CLI printed as
    "list index out of range" (exit 2), the chat page as "Could not answer: list index out of range".
    Now the draft, whose sentences cite nothing, gives way to the passages' quote (auto mode), or is
    uncertain with nothing of it shown (generate mode); its checks are still reported."""
    passages = _passages()
    for mode in ("auto", "generate"):
        a = Answer(question=QUESTION, answer="", citations=[], passages=passages)
        settle(a, QUESTION, passages, DRAFT, mode, embedder, settings, relevance=0.8)
        code = [c for c in answer_json(a)["claims"] if c["text"] == "123"]
        assert code == [{"text": "123", "cites": [], "supported": True, "reason": ""}], mode
        assert a.generated == DRAFT
        if mode == "auto":
            assert (a.mode, a.status in ("answered", "uncertain")) == ("extractive", True)
            assert "If parameter is unset or null, the expansion of word is substituted. [1]" in a.answer
            assert [c.n for c in a.citations] == [1] and a.citations[0].page == 33
        else:
            assert (a.mode, a.status, a.answer, a.citations) == ("generated", "uncertain", UNCHECKED, [])


def test_a_cited_sentence_beside_a_verified_code_block_is_shown_alone(embedder, settings):
    """A draft with a cited sentence its passage holds and a code block a passage holds verbatim: the
    sentence is shown with its citation (it crashed before); the uncited block is not part of the answer."""
    passages = _passages()
    draft = ("If parameter is unset or null, the expansion of word is substituted [1].\n```\n$ v=123\n```")
    a = Answer(question=QUESTION, answer="", citations=[], passages=passages)
    settle(a, QUESTION, passages, draft, "generate", embedder, settings, relevance=0.8)
    assert a.mode == "generated" and a.answer.endswith("If parameter is unset or null, the expansion of word is "
                                                       "substituted [1].")
    assert "v=123" not in a.answer and [c.n for c in a.citations] == [1]
