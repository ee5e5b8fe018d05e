"""The claim-level check (retrieval/verify.py) on passages of the real sample runbook.

Each kind of invention the issue names is caught, and a correct paraphrase is accepted."""

from __future__ import annotations

import re

import pytest

from archivist.retrieval.verify import asserted_terms, code_blocks_match, verify_answer

from conftest import SAMPLES


def _section(title: str) -> str:
    text = (SAMPLES / "oncall-runbook.md").read_text()
    m = re.search(rf"^## {title}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    return m.group(1).strip()


ROTATION = _section("Rotation")
ESCALATION = _section("Escalation")
CHECKS = _section("First checks")


def verdicts(answer: str, passages: list[str], question: str) -> list[tuple[bool, str]]:
    return [(c.supported, c.reason) for c in verify_answer(answer, passages, question) if c.claim]


def test_correct_answers_and_paraphrases_are_supported():
    q = "When is the on-call handover?"
    assert verdicts("Handover happens every Monday at 10:30 in the platform channel [1].", [ROTATION], q) == [(True, "")]
    # a paraphrase: other words, same facts
    assert verdicts("The on-call handover takes place on Mondays at 10:30 [1].", [ROTATION], q) == [(True, "")]
    assert verdicts("On-call engineers get an allowance of EUR 250 per week [1].", [ROTATION],
                    "How much is the on-call allowance?") == [(True, "")]
    assert verdicts("Check the queue with `nwctl queue lag --topic telemetry --max 500` [1].", [CHECKS],
                    "How do I check the telemetry lag?") == [(True, "")]


@pytest.mark.parametrize("answer, passage, question, named", [
    # invented commands, and a real command with an invented flag
    ("Run `sudo docker exec ingest-worker restart` [1].", "checks", "How do I restart the ingest workers?", ["sudo docker exec"]),
    ("Run EXECUTE -DTRANSPIRAL on the cluster [1].", "checks", "How do I restart the ingest workers?", ["DTRANSPIRAL"]),
    ("Run nwctl restart ingest-worker --force [1].", "checks", "How do I restart the ingest workers?", ["--force"]),
    # swapped numbers and units
    ("The allowance is EUR 300 per week [1].", "rotation", "How much is the on-call allowance?", ["300"]),
    ("The allowance is EUR 250 per month [1].", "rotation", "How much is the on-call allowance?", ["250 month"]),
    ("Call the duty manager on extension 4471 [1].", "escalation", "Whom do I call?", ["4471"]),
    ("Escalate after 45 hours [1].", "escalation", "When to escalate?", ["45 hours"]),
], ids=["invented-command", "invented-keyword", "invented-flag", "swapped-number", "swapped-unit", "swapped-extension",
        "swapped-hours"])
def test_an_invented_command_or_swapped_number_is_caught_and_named(answer, passage, question, named):
    passages = {"checks": CHECKS, "rotation": ROTATION, "escalation": ESCALATION}
    (ok, reason), = verdicts(answer, [passages[passage]], question)
    assert not ok and all(term in reason for term in named)


def test_a_negated_statement_is_caught():
    q = "May engineers on call contact customers directly?"
    (ok, reason), = verdicts("Yes, engineers on call contact customers directly [1].", [ESCALATION], q)
    assert (ok, reason) == (False, "polarity")
    assert verdicts("No, engineers on call do not contact customers directly [1].", [ESCALATION], q) == [(True, "")]


def test_a_sentence_citing_the_wrong_passage_is_caught():
    q = "Who is the Head of Platform?"
    assert verdicts("The Head of Platform is Jonas Brandt [2].", [ROTATION, ESCALATION], q) == [(True, "")]
    (ok, reason), = verdicts("The Head of Platform is Jonas Brandt [1].", [ROTATION, ESCALATION], q)
    assert not ok and "Jonas" in reason and "Brandt" in reason


def test_claims_without_a_citation_are_unsupported_but_restating_the_question_is_no_claim():
    q = "Who is the Head of Platform?"
    checks = verify_answer("Here is who the Head of Platform is. It is Jonas Brandt.", [ESCALATION], q)
    assert [(c.claim, c.supported, c.reason) for c in checks] == [(False, True, ""), (True, False, "no citation")]


def test_code_blocks_must_match_a_passage_verbatim():
    good = "Restart them:\n```bash\nnwctl restart ingest-worker   --one-at-a-time --cluster prod-eu\n```\n"
    bad = "Restart them:\n```bash\nnwctl restart ingest-worker --all --cluster prod-eu\n```\n"
    assert code_blocks_match(good, [CHECKS]) == []
    assert code_blocks_match(bad, [CHECKS]) == ["nwctl restart ingest-worker --all --cluster prod-eu"]
    checks = verify_answer(bad, [CHECKS], "How do I restart the workers?")
    assert any(not c.supported and c.reason.startswith("code differs") for c in checks)


@pytest.mark.parametrize("sentence, expected", [
    ("Use `git stash push --keep-index`.", {("identifier", "git stash push --keep-index"), ("identifier", "--keep-index")}),
    ("Policy HR-17 gives 20 weeks.", {("identifier", "HR-17"), ("number", "20 weeks")}),
    ("Call os.path.join() or read /etc/hosts.", {("identifier", "os.path.join("), ("identifier", "/etc/hosts")}),
    ("The house is large and the garden is green.", set()),
])
def test_asserted_terms(sentence, expected):
    assert set(asserted_terms(sentence)) >= expected
    if not expected:
        assert asserted_terms(sentence) == []


def test_a_code_index_is_checked_as_written_not_taken_for_a_citation_mark(embedder):
    """"sys.argv[2] [1]" asserts sys.argv[2]: the claim check, the citation fixer and the training
    data keep the index (they took it for a mark and checked "sys.argv", which a passage saying
    "sys.argv[1]" held)."""
    from archivist.finetune.datasets import _renumber, strip_citations
    from archivist.records import Hit
    from archivist.retrieval.answer import check_citations

    passage = "The script's own name is sys.argv[0]; the first argument given is sys.argv[1]."
    right, wrong = "The first argument is sys.argv[1] [1].", "The first argument is sys.argv[2] [1]."
    assert verdicts(right, [passage], "Where is the first argument?")[0][0] is True
    ok, reason = verdicts(wrong, [passage], "Where is the first argument?")[0]
    assert not ok and "2" in reason  # the index the passage does not hold
    hits = [Hit(chunk_id=1, document_id=1, document="sys.html", collection="default", text=passage, score=1.0)]
    text, cites, invalid = check_citations("Use sys.argv[1] for it [1][9].", hits, embedder, 0.3)
    assert (text, invalid, [c.n for c in cites]) == ("Use sys.argv[1] for it [1].", [9], [1])
    assert strip_citations("Use sys.argv[1] [2].") == "Use sys.argv[1]."
    assert _renumber("Use x[0] [2], or y [3].", {2: 1}) == "Use x[0] [1], or y."


@pytest.mark.parametrize("text, marks", [
    ("Employees get 30 days per year[1].", [1]),  # a mark glued to a word is a mark, as models write it
    ("The capital is Berlin[9].", [9]),
    ("The daemon listens on port 8080[2].", [2]),
    ("Read sys.argv[1], a[2], _v[5], f(x)[3], x[0][1] and list[0] [4].", [4]),  # code keeps its index
])
def test_a_mark_glued_to_a_word_is_still_a_citation(text, marks):
    """Found on re-reading the change that kept code indexes (verify.citation_marks): "per year[1]."
    was read as code, so the sentence had no citation and was dropped, an invalid "Berlin[9]" stayed
    in the text, and the training data's renumbering left "Paris[1]" citing the wrong passage."""
    from archivist.finetune.datasets import _renumber
    from archivist.retrieval.verify import parse_citations

    assert [n for n, _, _ in parse_citations(text)] == marks
    assert _renumber("Paris[1] and Rome [2].", {2: 1}) == "Paris and Rome [1]."
