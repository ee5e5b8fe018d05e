"""Re-read of today's erase change: a deleted account named as `users delete` left it
(`NAME#deleted-ID`, ID its `user.delete` record) made its log records before that record. And, from
a later re-read of archivist/, ingest/ and finetune/: a moved fine-tune run's method, a finished run's
recorded device, a member's erase text."""

from __future__ import annotations

import pytest

from test_erase_race import _formers, _two_former_maras

from archivist import audit


def test_erasing_the_first_former_mara_leaves_the_second_mara_s_log_records(ws):
    """Before: with no current user of the name, erasing mara#deleted-ID redacted every record made
    as "mara", the second (not erased) mara's questions and ratings too."""
    from archivist import user_erase

    first, second = _two_former_maras(ws)
    one = _formers(ws, first)
    seconds = [r[0] for r in ws.db.execute(
        "SELECT id FROM audit WHERE user = 'mara' AND action = 'feedback.given' AND target = ?", (str(second),))]
    assert seconds  # the second mara's rating is in the log
    report = user_erase.erase_user(ws, one, by="admin")
    assert report.feedback == 1
    left = ws.db.execute(f"SELECT user, redacted_by FROM audit WHERE id IN ({','.join('?' * len(seconds))})",
                         seconds).fetchall()
    assert [tuple(r) for r in left] == [("mara", None)] * len(seconds)
    assert audit.verify(ws).ok


def test_a_cut_short_job_an_erase_took_a_file_from_counts_each_file_once(ws, tmp_path):
    """An erase takes its document's file out of a cut-short ingest job (into its refused files):
    the job's counts, read from its row, counted that file twice (waiting and failed)."""
    from archivist import job_files, jobs
    from archivist.ingest.erase import _drop_from_job
    from archivist.ingest.pipeline import create_job

    paths = []
    for name in ("a.txt", "b.txt", "c.txt"):
        (tmp_path / name).write_text(f"{name} text")
        paths.append((tmp_path / name, name))
    job = create_job(ws, "ingest", "admin", "default", paths)
    jobs.start(ws, job.id)
    jobs.end(ws, job.id, "cancelled", result={"counts": {"added": 1}, "files": [
        {"name": "a.txt", "status": "added", "chunks": 1, "seconds": 0.1}]})
    assert _drop_from_job(ws, jobs.get(ws, job.id, "admin"), "b.txt")
    job = jobs.get(ws, job.id, "admin")
    statuses = job_files.statuses(job)
    assert sorted((f["name"], f["status"]) for f in statuses) == [("a.txt", "added"), ("b.txt", "failed"),
                                                                  ("c.txt", "cancelled")]
    assert job_files.counts(job) == {"added": 1, "cancelled": 1, "failed": 1}


@pytest.mark.usefixtures("one_torch_thread")
def test_a_checkpoint_keeps_the_device_the_run_started_on_after_it_moved(ws, tiny, tmp_path):
    """A run's checkpoints recorded only the device of the process writing them, and `--method auto`
    on resume chose by that: a run started on a CPU (lora) and resumed on a GPU kept lora, but the GPU
    resume's checkpoints said cuda, so resumed once more it switched to qlora mid-run (and a run started
    on a GPU, moved to a CPU and back, to lora). Each checkpoint now keeps the device the run started
    on (`started_on`), which train.setup chooses by. Here a segment trained on the CPU of a run that
    started on a GPU."""
    import torch

    from archivist.catalog import resolve_llm
    from archivist.finetune import checkpoints
    from archivist.finetune.datasets import examples_from_file
    from archivist.finetune.lora import _answer_loss_module, add_lora, encode, load_base
    from archivist.finetune.train import FinetuneConfig, train

    torch.manual_seed(0)
    model, tok = load_base(str(resolve_llm(ws.settings.llm, ws.settings.cache)), "lora", "cpu")
    model = add_lora(model, 8, 16, 0.0, "all-linear", False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    data = [encode(tok, e.messages) for e in examples_from_file(tiny)][:1]
    cfg = FinetuneConfig(dataset="tiny", batch_size=1, max_steps=1, save_every=1)
    train(model, _answer_loss_module()(model), opt, data, tok.pad_token_id, "cpu", 1, cfg, tmp_path / "run",
          progress=False, unpadded=True, started_on="cuda:0")
    state = checkpoints.latest_state(tmp_path / "run" / "checkpoints")
    assert (state["device"], state["started_on"]) == ("cpu", "cuda:0")


def test_a_finished_run_is_not_moved_to_another_device(ws):
    """`archivist finetune --resume RUN --device cpu` moved the run (runs.move_run: its config's device)
    before the resume checked that the run can go on, so on a finished run it was refused only after
    its record had been rewritten to say it trained on a device it never ran on. move_run now refuses,
    as resuming does, a run that is not interrupted, failed or cancelled, and leaves it as it was."""
    from dataclasses import asdict

    from archivist import jobs
    from archivist.finetune import runs
    from archivist.finetune.train import FinetuneConfig

    run_id = runs.create_run(ws, asdict(FinetuneConfig(data=["x.jsonl"], name="finished")))
    jobs.start(ws, run_id)
    jobs.finish(ws, run_id, result={"adapter": "finished"})
    with pytest.raises(jobs.JobError, match="done"):
        runs.move_run(ws, run_id, "cpu")
    assert runs.get_run(ws, run_id)["config"]["device"] == "auto"


def test_a_member_s_erase_text_does_not_say_removed_of_an_earlier_upload_kept_for_another_collection(ws, embedder, cli):
    """mendtail made a member's `archivist erase` text say "upload no longer this document's" rather
    than "upload removed" (a kept file, read by a document of a collection she cannot read, is counted
    as gone for her: ingest/erase.py), but the next words still said "uploads of earlier versions
    removed: 1" of such a file one version back, which stays. Now the same words as for the upload;
    an admin still reads "removed"."""
    from test_mendtail import MINUTES, _upload

    from archivist import access

    access.add_user(ws, "mallory", "member")
    access.create_collection(ws, "team", by="admin")
    access.grant(ws, "mallory", "team", "write")
    shared = _upload(ws, embedder, "minutes.md", MINUTES, "secret", "admin")
    assert _upload(ws, embedder, "minutes.md", MINUTES, "team", "mallory") == shared
    _upload(ws, embedder, "minutes.md", MINUTES.replace(b"41 million", b"an undisclosed sum"), "team", "mallory")
    out = cli("erase", "minutes.md", "--collection", "team", env={"ARCHIVIST_USER": "mallory"})
    assert out.returncode == 0, out.stderr
    assert "uploads of earlier versions no longer this document's: 1" in out.stdout, out.stdout
    assert "removed" not in out.stdout.split("evaluations redacted")[1] and shared.is_file()
