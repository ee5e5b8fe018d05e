"""A hostile member against this morning's surface (prune, `now` marks, erase of earlier versions,
backup, /health, the PDF page drawn apart, evaluation warnings), over real workspaces: an admin,
`mallory` (writes `team`, reads `ref`, nothing on `secret`).

Found: every child process archivist starts with `python -m` (the readers' sandbox, the PDF page
drawn for "Show on the page", background runs, the app) imported first from the current folder.
`cd share && archivist ingest . -c team`, where `share` is a folder members write into, ran a
`csv.py` placed there as the reader of the folder's PDFs, with the workspace's rights.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import SAMPLES

# Module names the readers' child imports after its own start (csv, tempfile: ingest/readers.py).
# Each, if ever run, leaves a mark beside it and then fails the import, as an attacker's would not.
_PLANTED = ("csv", "tempfile", "dataclasses", "json")


def _plant(folder: Path) -> Path:
    """Python files in `folder` named like modules the child imports; returns the mark they leave."""
    mark = folder.parent / "RAN"
    for name in _PLANTED:
        (folder / f"{name}.py").write_text(f"open({str(mark)!r}, 'a').write('{name}\\n')\n")
    return mark


def test_a_python_file_in_the_folder_being_ingested_is_never_run(ws, embedder, tmp_path, monkeypatch):
    """Before: `cd share && archivist ingest .` read share's PDF in `python -m archivist.ingest.readers`,
    which imported share/csv.py: the planted code ran (and the PDF failed: "module 'csv' has no
    attribute 'field_size_limit'"). Now the child never imports from the current folder."""
    from archivist import access
    from archivist.ingest.pipeline import ingest_paths

    share = tmp_path / "share"
    share.mkdir()
    shutil.copy(SAMPLES / "regional-sales-2024.pdf", share / "sales.pdf")
    mark = _plant(share)
    access.create_collection(ws, "team")
    monkeypatch.chdir(share)
    results = ingest_paths(ws, [Path(".")], collection="team", embedder=embedder, progress=False)
    assert not mark.exists(), mark.read_text()
    by_name = {r.name: (r.status, r.reason) for r in results}
    assert by_name["sales.pdf"][0] == "added", by_name
    assert ws.db.execute("SELECT count(*) FROM chunks c JOIN documents d ON d.id = c.document_id "
                         "WHERE d.path = 'sales.pdf'").fetchone()[0] > 0


def test_a_python_file_in_the_apps_folder_is_never_run_to_draw_a_page(tmp_path, monkeypatch):
    """The page a citation shows (`page_picture`, drawn in a child process): before, a `csv.py` in the
    folder the app was started from ran there on every "Show on the page"."""
    from archivist.ingest.readers_pdf import page_picture

    here = tmp_path / "started-here"
    here.mkdir()
    mark = _plant(here)
    monkeypatch.chdir(here)
    image = page_picture(SAMPLES / "regional-sales-2024.pdf", "pdf", 1, width=300)
    assert not mark.exists(), mark.read_text()
    assert image.size[0] == 300 and image.size[1] > 100


def _old_answer(ws, user: str, question: str, collection: str | None, cited: list[tuple[str, str, int, str]],
                passages: list[tuple[str, int, str]]) -> tuple[int, int]:
    """An answer as a release before this morning's stored it: citations (document, collection, chunk
    id, text) named their collection, passages (document, chunk id, text) did not. Returns
    (conversation id, message id)."""
    from archivist import conversations

    conv = conversations.start_conversation(ws, user)
    conversations.add_message(ws, conv, user, "user", question)
    cites = [{"n": i, "document": d, "collection": c, "page": None, "chunk_id": k, "score": 0.9, "text": t}
             for i, (d, c, k, t) in enumerate(cited, start=1)]
    kept = [{"n": i, "document": d, "page": None, "chunk_id": k, "score": 0.5, "text": t}
            for i, (d, k, t) in enumerate(passages, start=1)]
    mid = conversations.add_message(ws, conv, user, "assistant", cited[0][3] + " [1]", citations=cites,
                                    meta={"question": question, "collection": collection, "status": "answered",
                                          "passages": kept})
    return conv, mid


def _chunk(ws, collection: str, name: str) -> tuple[int, str]:
    return tuple(ws.db.execute("SELECT c.id, c.text FROM chunks c JOIN documents d ON d.id = c.document_id "
                               "JOIN collections k ON k.id = d.collection_id WHERE k.name = ? AND d.path = ? "
                               "ORDER BY c.seq LIMIT 1", (collection, name)).fetchone())


def test_an_old_answer_names_no_collection_the_member_never_read(ws, embedder, tmp_path):
    """mallory (team only) kept an answer of an earlier release: it cited team's policy.md and showed
    a passage of team's guide.md (passages then named no collection). team's files were ingested again
    since (their chunks are new), and hr, which mallory never read, holds a policy.md and a guide.md
    too. Before: her own answer came back withheld, "this answer came from hr, which you can no longer
    read": the name of a collection she cannot see and that it holds files of those names. Now the
    answer's own citation says policy.md was team's, and team's guide.md still holds the passage's
    text: the answer is hers to read, each passage marked as it stands."""
    from archivist import access, conversations
    from archivist.ingest.pipeline import ingest_paths

    for c in ("team", "hr"):
        access.create_collection(ws, c)
    access.add_user(ws, "mallory", "member")
    access.grant(ws, "mallory", "team", "write")
    team, hr = tmp_path / "team", tmp_path / "hr"
    team.mkdir(), hr.mkdir()
    (team / "policy.md").write_text("# Badges\n\nVisitor badges are renewed every March at the front desk.\n")
    standup = "# Stand-up\n\nThe team stand-up is at 09:30 in room K-12.\n\n# Retros\n\n"
    (team / "guide.md").write_text(standup + "Retros are on Thursdays.\n")
    (hr / "policy.md").write_text("# Pay\n\nSalary bands are reviewed every October by the pay board.\n")
    (hr / "guide.md").write_text("# Guide\n\nPayroll closes on the 25th of each month.\n")
    for folder, c in ((team, "team"), (hr, "hr")):
        ingest_paths(ws, [folder / "policy.md", folder / "guide.md"], collection=c, embedder=embedder, progress=False)
    policy, guide = _chunk(ws, "team", "policy.md"), _chunk(ws, "team", "guide.md")
    conv, mid = _old_answer(ws, "mallory", "When are badges renewed?", None,
                            [("policy.md", "team", *policy)], [("policy.md", *policy), ("guide.md", *guide)])
    # both of team's files change: policy.md's passage is gone, guide.md keeps it, its other section changed
    (team / "policy.md").write_text("# Badges\n\nVisitor badges are renewed every April at the front desk.\n")
    (team / "guide.md").write_text(standup + "Retros are on Fridays.\n")
    ingest_paths(ws, [team / "policy.md", team / "guide.md"], collection="team", embedder=embedder, progress=False)
    assert _chunk(ws, "team", "policy.md")[0] != policy[0] and _chunk(ws, "team", "guide.md")[0] != guide[0]

    [shown] = [m for m in conversations.messages(ws, conv, "mallory") if m["id"] == mid]
    assert shown.get("status") == "answered" and "hr" not in str(shown), shown.get("withheld")
    assert shown["content"] == policy[1] + " [1]"
    assert [(p["document"], p["collection"], p["now"]) for p in shown["passages"]] == \
        [("policy.md", "team", "changed"), ("guide.md", "team", "current")]
    # when read access to team goes, the answer is withheld, naming team alone
    access.revoke(ws, "mallory", "team")
    [gone] = [m for m in conversations.messages(ws, conv, "mallory") if m["id"] == mid]
    assert gone["withheld"] == ["team"] and "K-12" not in str(gone)


def test_an_old_answer_still_withholds_a_passage_of_a_revoked_collection_under_a_cited_name(ws, embedder, tmp_path):
    """The other side of the test above: an old answer cited team's policy.md and also showed hr's
    policy.md (not cited). hr's file changed since and mallory's read on hr was revoked: the hr
    passage is not taken for the cited team one (a citation vouches for its own chunk only), and the
    answer stays withheld."""
    from archivist import access, conversations
    from archivist.ingest.pipeline import ingest_paths

    for c in ("team", "hr"):
        access.create_collection(ws, c)
    access.add_user(ws, "mallory", "member")
    access.grant(ws, "mallory", "team", "write")
    access.grant(ws, "mallory", "hr", "read")
    team, hr = tmp_path / "team", tmp_path / "hr"
    team.mkdir(), hr.mkdir()
    (team / "policy.md").write_text("# Badges\n\nVisitor badges are renewed every March at the front desk.\n")
    (hr / "policy.md").write_text("# Pay\n\nSalary bands are reviewed every October by the pay board.\n")
    for folder, c in ((team, "team"), (hr, "hr")):
        ingest_paths(ws, [folder / "policy.md"], collection=c, embedder=embedder, progress=False)
    mine, theirs = _chunk(ws, "team", "policy.md"), _chunk(ws, "hr", "policy.md")
    conv, mid = _old_answer(ws, "mallory", "When are badges renewed?", None,
                            [("policy.md", "team", *mine)], [("policy.md", *mine), ("policy.md", *theirs)])
    (hr / "policy.md").write_text("# Pay\n\nSalary bands are reviewed every November by the pay board.\n")
    ingest_paths(ws, [hr / "policy.md"], collection="hr", embedder=embedder, progress=False)
    access.revoke(ws, "mallory", "hr")
    [shown] = [m for m in conversations.messages(ws, conv, "mallory") if m["id"] == mid]
    assert shown["withheld"] == ["hr"] and "October" not in str(shown), shown


def test_erasing_a_document_leaves_another_collections_file_of_the_same_name(ws, embedder, tmp_path):
    """mallory writes team and names a file there like one of hr's (policy.md), then has it erased.
    An answer of an earlier release, asked in hr, showed hr's policy.md (its passages named no
    collection); hr's file changed since. Before: the erase took that passage for an earlier version
    of team's policy.md, and the admin's answer and feedback about hr's policy were erased with it.
    Now an old passage is the collection's that the answer was asked in, and only team's text goes."""
    from archivist import access, conversations, feedback
    from archivist.ingest.erase import erase
    from archivist.ingest.pipeline import ingest_paths

    for c in ("team", "hr"):
        access.create_collection(ws, c)
    access.add_user(ws, "mallory", "member")
    access.grant(ws, "mallory", "team", "write")
    team, hr = tmp_path / "team", tmp_path / "hr"
    team.mkdir(), hr.mkdir()
    (hr / "policy.md").write_text("# Pay\n\nSalary bands are reviewed every October by the pay board.\n")
    ingest_paths(ws, [hr / "policy.md"], collection="hr", embedder=embedder, progress=False)
    hr_chunk = _chunk(ws, "hr", "policy.md")
    conv, mid = _old_answer(ws, "admin", "When are salary bands reviewed?", "hr",
                            [("policy.md", "hr", *hr_chunk)], [("policy.md", *hr_chunk)])
    fid = feedback.record_feedback(ws, "admin", "When are salary bands reviewed?", hr_chunk[1] + " [1]", rating=1,
                                   message_id=mid)
    (hr / "policy.md").write_text("# Pay\n\nSalary bands are reviewed every November by the pay board.\n")
    ingest_paths(ws, [hr / "policy.md"], collection="hr", embedder=embedder, progress=False)

    (team / "policy.md").write_text("# Badges\n\nVisitor badges are renewed every March at the front desk.\n")
    assert ingest_paths(ws, [team / "policy.md"], collection="team", user="mallory", embedder=embedder,
                        progress=False)[0].status == "added"
    report = erase(ws, "policy.md", "admin", collection="team")  # she asked the admin to erase it
    assert (report.messages, report.feedback_deleted, report.dataset_examples) == (0, 0, {})
    [kept] = [m for m in conversations.messages(ws, conv, "admin") if m["id"] == mid]
    assert kept["content"] == hr_chunk[1] + " [1]" and kept["passages"][0]["text"] == hr_chunk[1]
    assert [f["id"] for f in feedback.list_feedback(ws, "admin")] == [fid]
    assert conversations.passages_of(ws, "policy.md", "hr") == [hr_chunk[1]]  # hr's own erase still finds it


def test_a_backup_refused_or_failed_is_never_logged_as_taken(ws, cli, tmp_path):
    """Before: `archivist backup` wrote its `workspace.backup` record ("a copy of the whole workspace
    was taken") before looking at the destination, so a backup refused (a folder inside the workspace,
    reached through a symlink, or one not empty) was logged as a copy of every collection taken to
    that place. Now a refused destination leaves no such record, and a copy that fails after its
    record gets a `workspace.backup.failed` one."""
    from archivist import audit

    home = ws.home
    (tmp_path / "elsewhere").symlink_to(home)
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("not a backup\n")
    for dest in (tmp_path / "elsewhere" / "snap", full):
        r = cli("backup", dest)
        assert r.returncode == 2 and "cannot back up into" in r.stderr, r.stderr
    assert (full / "keep.txt").read_text() == "not a backup\n"
    taken = lambda: [(x["action"], x["target"]) for x in audit.read(ws, "admin")  # noqa: E731
                     if x["action"].startswith("workspace.backup")]
    assert taken() == []
    (tmp_path / "a-file").write_text("")
    r = cli("backup", tmp_path / "a-file" / "snap")  # allowed, but the copy cannot be made there
    assert r.returncode == 2 and "cannot back up into" in r.stderr, r.stderr
    r = cli("backup", tmp_path / "one")
    assert r.returncode == 0, r.stderr
    failed = str(tmp_path / "a-file" / "snap")
    assert taken() == [("workspace.backup", failed), ("workspace.backup.failed", failed),
                       ("workspace.backup", str(tmp_path / "one"))]


def test_a_stored_evaluation_withholds_what_came_from_a_collection_read_no_more(ws, embedder, tmp_path, monkeypatch):
    """mallory evaluated retrieval and answers while she could read `ref`; then her read on ref was
    revoked. Before: her stored runs (`archivist eval --compare`, the Evaluation page) still gave
    ref's answer text and its document names, which her conversation and feedback withhold. Now each
    run records the collections it drew on; one from a collection she can no longer read keeps her
    questions and numbers, and says `withheld` in place of the answers and rankings."""
    from archivist import access
    from archivist.ingest.pipeline import ingest_paths
    from archivist.retrieval.evaluate import Question, evaluate_answers, evaluate_retrieval
    from archivist.retrieval.evaluation import get_evaluation, list_evaluations, store_evaluation

    monkeypatch.setenv("ARCHIVIST_READ_QUOTES", "0")
    for c in ("team", "ref"):
        access.create_collection(ws, c)
    access.add_user(ws, "mallory", "member")
    access.grant(ws, "mallory", "team", "write")
    access.grant(ws, "mallory", "ref", "read")
    (tmp_path / "arch.md").write_text("# Architecture\n\nThe reference architecture uses three availability zones.\n")
    (tmp_path / "standup.md").write_text("# Stand-up\n\nThe team stand-up is at 09:30 in room K-12.\n")
    ingest_paths(ws, [tmp_path / "arch.md"], collection="ref", embedder=embedder, progress=False)
    ingest_paths(ws, [tmp_path / "standup.md"], collection="team", embedder=embedder, progress=False)
    q = "How many availability zones does the reference architecture use?"
    ranked = evaluate_retrieval(ws, [Question(q, relevant=["arch.md"], line=1)], modes=["lexical"], user="mallory",
                                embedder=embedder)
    answered = evaluate_answers(ws, [Question(q, answer="three", line=1)], user="mallory", adapter=None,
                                embedder=embedder, mode="extractive")
    assert ranked["per_query"][0]["lexical"]["top"][0] == "arch.md" and "three" in answered["per_question"][0]["answer"]
    ids = [store_evaluation(ws, kind, "set.jsonl", r, user="mallory") for kind, r in
           (("retrieval", ranked), ("answers", answered))]
    assert get_evaluation(ws, ids[1], user="mallory").results.get("withheld") is None  # still hers to read

    access.revoke(ws, "mallory", "ref")
    for ev in [get_evaluation(ws, i, user="mallory") for i in ids] + list_evaluations(ws, user="mallory"):
        assert ev.results["withheld"] == ["ref"], ev.results
        shown = [r["lexical"]["top"] for r in ev.results.get("per_query", [])] + \
            [r["cited_documents"] for r in ev.results.get("per_question", [])]
        assert shown == [[]] and "availability zones." not in str(ev.results)
        assert q in str(ev.results)  # her question (and the relevant names she wrote) stay hers
    again = get_evaluation(ws, ids[0], user="mallory").results
    assert again["modes"] == ranked["modes"]  # the numbers of her run stay
    # the admin, who reads ref, sees both runs whole
    assert get_evaluation(ws, ids[1], user="admin").results["per_question"] == answered["per_question"]
