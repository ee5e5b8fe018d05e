"""The Fine-tune page's retriever button and the learned rerankers, as a member would use them.

Found: "Adapt the retriever" (`retriever.start_background`) started a bare process per click: no job,
nothing `archivist jobs` listed or could cancel, no limit (a member filled the CPU with trainings by
clicking), and runs started in the same second wrote one log file.
"""

from __future__ import annotations

import pytest
from conftest import job_ended

from archivist import access, jobs


def test_the_retriever_button_starts_a_job_one_per_user_listed_cancellable_with_its_own_log(ws):
    """Before: each call started an untracked process (a second call was not refused, the admin's
    `jobs.list_jobs` listed nothing) and two calls in one second shared runs/retriever-<second>.log.
    The collection holds no document, so a run fails fast (after importing torch) with the reason."""
    from archivist.finetune import retriever

    admin = access.current_user(ws)
    access.create_collection(ws, "team")
    for member in ("eve", "bob"):
        access.add_user(ws, member, "member")
        access.grant(ws, member, "team", "read")

    first = retriever.start_background(ws, "eve", ["team"], 64)
    with pytest.raises(ValueError, match=f"your retriever run {first} is (queued|running).*archivist jobs cancel {first}"):
        retriever.start_background(ws, "eve", ["team"], 64)
    other = retriever.start_background(ws, "bob", ["team"], 64)  # another user's: not limited by eve's
    assert retriever.log_of(ws, first) != retriever.log_of(ws, other)
    assert retriever.log_of(ws, first).exists() and retriever.log_of(ws, other).exists()

    listed = {j.id: j for j in jobs.list_jobs(ws, admin)}
    assert listed[first].kind == "retriever" and listed[first].owner == "eve"
    assert listed[other].kind == "retriever" and listed[other].owner == "bob"
    assert [j.id for j in jobs.list_jobs(ws, "eve")] == [first]  # a member sees her own only
    assert listed[first].spec == {"collections": ["team"], "max_chunks": 64}

    cancelled = jobs.cancel(ws, other, admin, wait=60)  # an admin stops a member's run: its process gets SIGTERM
    assert cancelled.state == "cancelled", cancelled

    failed = job_ended(ws, first, "eve")  # the run itself ends its job, with the reason
    assert failed.state == "failed" and "need at least two readable documents" in failed.error, failed
    assert "need at least two readable documents" in retriever.log_of(ws, first).read_text()

    again = retriever.start_background(ws, "eve", ["team"], 64)  # once it ended, she may start another
    assert again != first and retriever.log_of(ws, again) != retriever.log_of(ws, first)
    assert jobs.cancel(ws, again, "eve", wait=60).state == "cancelled"


def _registered_rerankers(ws) -> None:
    """team (eve reads it) and secret (she does not); a learned reranker on each, and one damaged."""
    from archivist.retrieval import rerank

    for collection in ("team", "secret"):
        access.create_collection(ws, collection)
    access.add_user(ws, "eve", "member")
    access.grant(ws, "eve", "team", "read")
    weights = {f: 0.5 for f in rerank.FEATURES}
    rerank.save_learned(ws, "shared", {"collections": ["team"], "weights": weights})
    rerank.save_learned(ws, "board", {"collections": ["secret"], "weights": weights})
    rerank.save_learned(ws, "broken", {"collections": ["team"], "weights": weights})
    (ws.home / rerank.FOLDER / "broken" / rerank.MANIFEST).write_text("{not json")


def test_a_taken_reranker_name_is_refused_before_training_without_confirming_a_hidden_one(ws):
    """Before: `finetune --target reranker --name X` found X taken only after training. Now a name the
    user may see is refused first; one she may not (learned from `secret`, or damaged) is answered as a
    free name is (here: the workspace has no document to learn from), and refused by the save at the end."""
    from archivist.finetune.reranker import RerankerConfig, finetune_reranker
    from archivist.retrieval import rerank

    _registered_rerankers(ws)
    admin = access.current_user(ws)
    with pytest.raises(FileExistsError, match="a reranker named 'shared' exists already .*choose another --name"):
        finetune_reranker(ws, RerankerConfig(name="shared"), "eve")
    with pytest.raises(ValueError) as free:
        finetune_reranker(ws, RerankerConfig(name="fresh"), "eve")
    assert "need at least two readable documents" in str(free.value)
    for hidden in ("board", "broken"):
        with pytest.raises(ValueError) as said:
            finetune_reranker(ws, RerankerConfig(name=hidden), "eve")
        assert str(said.value) == str(free.value), hidden
        with pytest.raises(FileExistsError, match=f"a reranker named '{hidden}' exists already"):
            finetune_reranker(ws, RerankerConfig(name=hidden), admin)  # an admin sees every one
        with pytest.raises(FileExistsError):  # the end of a member's run still never overwrites it
            rerank.save_learned(ws, hidden, {"collections": ["team"]})


def test_a_damaged_reranker_manifest_is_skipped_in_the_list_and_named_to_an_admin_only(ws, cli, caplog):
    """Before: `archivist rerankers` and `--reranker broken` failed for everyone with a bare JSON error
    ("Expecting property name enclosed in double quotes"), naming no file; a member told it apart from
    an unknown name."""
    from archivist.retrieval import rerank

    _registered_rerankers(ws)
    bad = ws.home / rerank.FOLDER / "broken" / rerank.MANIFEST
    admin = access.current_user(ws)
    assert [m["name"] for m in rerank.list_learned(ws, admin)] == ["shared", "board"]
    assert f"{bad}: not a readable reranker manifest" in caplog.text
    assert [m["name"] for m in rerank.list_learned(ws, "eve")] == ["shared"]
    listed = cli("rerankers", "--json")
    assert listed.returncode == 0, listed.stderr
    assert '"shared"' in listed.stdout and '"broken"' not in listed.stdout

    with pytest.raises(ValueError, match=f"{bad}: not a readable reranker manifest"):
        rerank.load_reranker("broken", ws, user=admin)
    with pytest.raises(access.AccessDenied) as damaged:
        rerank.load_reranker("broken", ws, user="eve")
    with pytest.raises(FileNotFoundError) as unknown:
        rerank.load_reranker("nosuch", ws, user="eve")
    assert str(damaged.value) == str(unknown.value).replace("nosuch", "broken")
    assert rerank.load_reranker("shared", ws, user="eve").weights.tolist() == [0.5] * len(rerank.FEATURES)

    gone = cli("rerankers", "delete", "broken")  # how an admin removes it
    assert gone.returncode == 0, gone.stderr
    assert not bad.parent.exists()


def test_the_runs_tab_shows_a_member_her_run_s_error_and_log_without_server_paths(ws):
    """Before: a member's Runs tab showed `run["error"]` (table and box) and the last lines of
    runs/<id>/log.txt as written, with the workspace's and the code's absolute paths; the API writes
    such text through `errors.without_paths`. An admin (who runs the server) still reads them whole."""
    import os
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from archivist import auth
    from archivist.finetune import runs

    os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")  # no background model loading inside the test process
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    access.add_user(ws, "eve", "member")
    run_id = runs.create_run(ws, {"data": ["docs"], "max_steps": 3}, user="eve")
    dataset = ws.home / "datasets" / "eve-set.jsonl"
    runs.update_run(ws, run_id, "failed", error=f"cannot read {dataset}")
    code = "/opt/archivist/finetune/train.py"
    (runs.run_dir(ws, run_id) / "log.txt").write_text(f'Traceback:\n  File "{code}", line 9\nOSError: cannot read {dataset}\n')

    def shown_to(user: str) -> str:
        at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "ui" / "app.py"), default_timeout=120)
        at.session_state["_token"] = auth.create_session(ws, user)
        at.run()
        tab = at.switch_page("views/finetune.py").run().tabs[1]
        assert not at.exception, at.exception
        return "\n".join([*map(str, tab.dataframe[0].value["error"]), *(e.value for e in tab.error),
                          *(c.value for c in tab.code)]).replace("\\", "")

    member = shown_to("eve")
    assert "cannot read <workspace>/datasets/eve-set.jsonl" in member and 'File "<server path>"' in member, member
    assert str(ws.home) not in member and code not in member
    admin = shown_to("alice")
    assert f"cannot read {dataset}" in admin and code in admin
