"""What an engineer running the whole loop on a real manual (GNU sed's, from Debian) ran into:
questions generated from shell examples and Info cross references, an adapter called better on a
held-out split that cannot tell, and dataset builds missing from the audit log."""

from __future__ import annotations

import pytest

from archivist import access, adapters, audit, feedback
from archivist.finetune import evaluate
from archivist.finetune.datasets import build_dataset
from archivist.finetune.qa import extractive_pairs
from archivist.ingest.pipeline import ingest_paths

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# sentences as they stand in sed's Info manual (sed.info, Debian package sed 4.9)
SED_CODE = [
    "banner -w $1 $2 $3 $4 | sed -e :a -e '/^.\\{0,'$1'\\}$/ { s/$/ /; ba; }' | ~/sedscripts/reverseline.sed",
    "The default regular expression is *note Basic Regular Expression (BRE): BRE syntax.",
    "Commands with addresses affect only matching lines. *Note Execution Cycle:: and *note Addresses overview::.",
    "-z \"$1\" ]; then echo Usage: $0 [-h] [-n] [-r] files... exit 1 fi",
    "$ ls -log total 4 -rw-rw-r-- 1 2 Jan 23 23:03 hello.txt ; 2d more words to make a sentence",
    "‘--debug’ Print the input sed program in canonical form, and annotate program execution. $ echo 1 | sed '\\%1%s21232'",
    "Use the POSIX-specified ‘-E’ option to enable Extended Regular Expression (ERE) syntax in every script.",
]


@pytest.mark.parametrize("sentence", SED_CODE)
def test_no_question_from_a_shell_example_or_a_cross_reference(sentence):
    # before: "banner -w how much $2 $3 ...?" -> "$1", "*note who (BRE): BRE syntax?" -> "Basic Regular
    # Expression", "... at what time hello.txt ; 2d?" -> "23:03", "... enable who (ERE) syntax ...?"
    assert [(p.question, p.answer) for p in extractive_pairs(sentence)] == []


def test_an_organisation_after_a_capitalized_word_is_not_a_person():
    text = ("Permission is granted to copy this document under the terms of the license published by the "
            "Free Software Foundation, and the Head of Platform is Jonas Brandt since 2024.")
    # before: "... published by the Free who, and ...?" -> "Software Foundation"
    assert all(p.answer != "Software Foundation" for p in extractive_pairs(text, max_pairs=5))


def test_a_person_with_a_title_is_still_a_name():
    # the sample meeting minutes: "(COO)" is Marek Jansen's title, not his name's acronym
    text = "Attendees: Ines Kowalczyk (CEO, chair), Marek Jansen (COO), Sofia Lindqvist (VP Sales), Tomas Berger."
    assert [(p.question, p.answer) for p in extractive_pairs(text)] == [
        ("Attendees: Ines Kowalczyk (CEO, chair), who (COO), Sofia Lindqvist (VP Sales), Tomas Berger?", "Marek Jansen")]


def test_prose_facts_still_give_questions():
    text = ("The following command prints only line 45 of the input file, nothing else. "
            "A printed copy costs $1 per page for every page of the report. "
            "Submit every expense claim to Anna Berg, Finance within 21 days after the trip ends.")
    got = [(p.question, p.answer) for p in extractive_pairs(text, max_pairs=5)]
    assert got == [
        ("The following command prints only which line of the input file, nothing else?", "45"),
        ("A printed copy costs how much per page for every page of the report?", "$1"),
        ("Submit every expense claim to Anna Berg, Finance within how many days after the trip ends?", "21 days"),
    ]


def _metrics(per_example: list[float]) -> dict:
    n = len(per_example)
    return {"accuracy": sum(per_example) / n, "f1": sum(per_example) / n, "citations": None, "perplexity": 2.0,
            "per_example": per_example}


def test_a_one_example_lead_on_ten_held_out_examples_is_not_better(ws, tmp_path):
    base = {**_metrics([0.0] * 10), "perplexity": 3.0}
    adapter = _metrics([1.0] + [0.0] * 9)  # right once more, surer of the gold
    assert evaluate.verdict(base, adapter)[0]  # the means alone call it better
    better, reason, diff = evaluate.decide(base, adapter)
    assert not better
    assert (diff["diff"], diff["low"], diff["better"], diff["worse"], diff["questions"]) == (0.1, 0.0, 1, 0, 10)
    assert reason.startswith("the held-out split cannot tell it from the base: better than the base")
    assert "score +0.100 (95% CI +0.000..+0.300; better on 1, worse on 0)" in reason
    # registered, not activated, and the note says why
    src = tmp_path / "a"
    src.mkdir()
    (src / "adapter_config.json").write_text("{}")
    rec = adapters.register(ws, "sed-v1", src, ws.settings.llm,
                            {"n": 10, "base": base, "adapter": adapter, "better": better, "reason": reason},
                            {"dataset": {"name": "d"}})
    assert not rec["active"] and rec["note"] == f"not activated: {reason}"
    assert adapters.active(ws, None) is None


def test_activating_an_adapter_the_evaluation_did_not_find_better_says_so(ws, tmp_path, capsys):
    from archivist.cli import main

    src = tmp_path / "a"
    src.mkdir()
    (src / "adapter_config.json").write_text("{}")
    base, worse = _metrics([0.5] * 4), _metrics([0.0] * 4)
    better, reason = evaluate.verdict(base, worse)
    adapters.register(ws, "sed-small", src, ws.settings.llm,
                      {"n": 4, "base": base, "adapter": worse, "better": better, "reason": reason}, {"dataset": {"name": "d"}})
    assert main(["activate", "sed-small"]) == 0
    out, err = capsys.readouterr()
    # before: "the chat now uses adapter sed-small" and nothing else, while `archivist adapters`
    # went on showing "* sed-small ... not activated: worse than the base"
    assert out.strip() == "the chat now uses adapter sed-small"
    assert err.strip() == f"warning: sed-small's held-out evaluation did not find it better than the base: {reason}"
    assert adapters.active(ws, None) == "sed-small"


def test_same_answers_and_a_lower_perplexity_is_not_better():
    base = {**_metrics([0.5, 0.0, 1.0, 0.0]), "perplexity": 3.0}
    better, reason, diff = evaluate.decide(base, _metrics([0.5, 0.0, 1.0, 0.0]))
    assert not better and (diff["diff"], diff["low"], diff["high"]) == (0.0, 0.0, 0.0)
    assert reason.startswith("the held-out split cannot tell it from the base: as good as the base on answers")


def test_a_lead_on_most_examples_is_better_and_a_loss_is_worse():
    base = _metrics([0.0] * 12)
    better, reason, diff = evaluate.decide(base, _metrics([1.0] * 9 + [0.0] * 3))
    assert better and diff["low"] > 0 and reason.startswith("better than the base on the held-out split")
    assert "12 held-out examples, score +0.750" in reason
    worse, reason, _ = evaluate.decide(_metrics([1.0] * 12), _metrics([1.0] * 6 + [0.0] * 6))
    assert not worse and reason.startswith("worse than the base")
    # a report without per-example scores (stored before they were kept) is judged on the means
    legacy = {k: v for k, v in _metrics([0.0] * 4).items() if k != "per_example"}
    assert evaluate.decide(legacy, {**legacy, "accuracy": 0.5}) == (True, evaluate.verdict(legacy, {**legacy, "accuracy": 0.5})[1], None)


def test_people_s_questions_are_scored_apart_from_generated_ones():
    from archivist.finetune.dataset_store import Example

    def ex(source, i):
        return Example(messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                       source=source, group=f"g{i}", question="q", answer="a")

    examples = [ex("docs:extractive", 0), ex("feedback", 1), ex("docs:extractive", 2), ex("file", 3)]
    base, adapter = _metrics([0.0, 0.5, 0.0, 1.0]), _metrics([1.0, 0.25, 0.5, 1.0])
    # on sed's manual the adapter quoted the echo questions' sentences (0.00 -> 0.39) and barely moved
    # on the users' corrections (0.02 -> 0.09): one mean hid the difference
    assert evaluate.split_by_source(examples, base, adapter) == {
        "docs:extractive": {"n": 2, "base": 0.0, "adapter": 0.75},
        "feedback": {"n": 1, "base": 0.5, "adapter": 0.25},
        "file": {"n": 1, "base": 1.0, "adapter": 1.0},
    }


SED = {
    "exit-status.txt": "Exit status\n\nAn exit status of zero indicates success. GNU sed returns exit status 2 "
                       "when one or more of the input files could not be opened, and processing continues.\n",
    "options.txt": "Command-line options\n\nThe -l option specifies the default line-wrap length of 70 characters "
                   "for the l command. A length of 0 means to never wrap long lines.\n",
    "reporting.txt": "Reporting bugs\n\nEmail bug reports to bug-sed@gnu.org with the version of sed you run. "
                     "Send general questions and suggestions to sed-devel@gnu.org instead.\n",
}


def test_building_a_dataset_is_recorded_with_who_what_and_which_feedback(ws, embedder, tmp_path):
    src = tmp_path / "sed"
    src.mkdir()
    for name, text in SED.items():
        (src / name).write_text(text)
    ingest_paths(ws, sorted(src.iterdir()), collection="tools", embedder=embedder, progress=False)
    access.add_user(ws, "alice", "member")
    access.grant(ws, "alice", "tools", "read")
    fid = feedback.record_feedback(ws, "alice", "Which exit status means a file could not be opened?", "0",
                                   rating=-1, correction="Exit status 2.", collection="tools")
    feedback.review_correction(ws, None, fid, approve=True)  # a member's correction is learned once an admin approved it
    ds = build_dataset(ws, ["docs", "feedback"], user="alice", embedder=embedder)
    rows = audit.read(ws, by="admin", action="dataset.built")
    assert len(rows) == 1
    r = rows[0]
    assert (r["user"], r["target"]) == ("alice", ds.name)
    assert r["detail"]["collections"] == ["tools"] and r["detail"]["feedback"] == [fid]
    assert r["detail"]["counts"] == {"train": len(ds.train), "eval": len(ds.eval)}
    assert r["detail"]["train_sha256"] == ds.manifest["train_sha256"]
    assert audit.verify(ws).ok
    with pytest.raises(access.AccessDenied):  # a member reads none of it
        audit.read(ws, by="alice")


@pytest.mark.slow
def test_a_real_run_shows_its_steps_in_jobs_and_keeps_the_paired_comparison(ws, tiny, capsys):
    import json

    from archivist import jobs
    from archivist.cli import main

    rc = main(["finetune", "--data", str(tiny), "--method", "lora", "--max-steps", "2", "--lr", "3e-3", "--max-seq-len", "256",
               "--eval-limit", "2", "--eval-max-new-tokens", "6", "--name", "tiny", "--seed", "2", "--json", "--device", "cpu"])
    result = json.loads(capsys.readouterr().out)
    assert rc == 0 and result["status"] == "done", result
    job = jobs.get(ws, result["run_id"])
    # before: `archivist jobs` showed a training run with no progress (done 0, total None) while it ran
    assert (job.kind, job.done, job.total) == ("train", 2, 2)
    metrics = json.loads((ws.home / "adapters" / "tiny" / "metrics.json").read_text())
    assert len(metrics["base"]["per_example"]) == len(metrics["adapter"]["per_example"]) == 2
    d = metrics["difference"]
    assert d["questions"] == 2 and d["low"] <= d["diff"] <= d["high"]
    # two held-out examples cannot show a lead with a 95% interval above zero unless both improve
    assert metrics["better"] == (d["low"] > 0 and evaluate.verdict(metrics["base"], metrics["adapter"])[0])
    assert "2 held-out examples, score" in metrics["reason"]
    assert sum(k["n"] for k in metrics["by_source"].values()) == 2 and set(metrics["by_source"]) == {"file"}
    built = audit.read(ws, by="admin", action="dataset.built")
    assert [r["target"] for r in built] == [result["dataset"]]
    assert built[0]["detail"]["sources"] == [str(tiny)] and len(built[0]["detail"]["files"]) == 1
    # the run's records name what it trained on (before: `finetune.started` had an empty detail)
    started = audit.read(ws, by="admin", action="finetune.started")[0]
    assert started["detail"]["data"] == [str(tiny)] and started["detail"]["method"] == "lora"
    assert started["detail"]["max_steps"] == 2 and started["id"] < built[0]["id"]
