"""Durability as an operator meets it: two ingests of one folder at once, a delete beside an
ingest, a damaged database file, a workspace copied to another folder (its uploads and adapters),
a damaged re-embedding staging file, a damaged fine-tuning checkpoint, and a run killed before its
first checkpoint.

Each race is forced at the moment it happens between real processes: the files are read and
compared with SQLite first (what `read_ahead` does in the reader thread), then another connection
to the same workspace commits (as another `archivist ingest` or `archivist delete` would), then the
first ingest commits what it read. The workspace must end as a clean ingest of the same files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest

from archivist.ingest.pipeline import delete_document, ingest_paths
from archivist.ingest.reading import read_ahead
from archivist.workspace import WorkspaceError, open_workspace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_faults import clean_reference, make_corpus, problems, settings_at, snapshot  # noqa: E402


def _meanwhile(action):
    """A Prepare that reads and compares every file first, then runs `action()` (another process's
    commit), then hands over what it read: the commit of this ingest comes after the other one."""

    def prepare(ws, cid, files):
        items = list(read_ahead(ws, cid, files))
        action()
        yield from items

    return prepare


def test_two_ingests_of_one_folder_at_once_end_as_one_clean_ingest(tmp_path, embedder):
    corpus = make_corpus(tmp_path / "corpus", 5, seed=3)
    reference, _ = clean_reference(tmp_path, corpus, "default", embedder)
    settings = settings_at(tmp_path / "ws")

    def other_ingest():
        with open_workspace(settings) as other:
            done = ingest_paths(other, [corpus], embedder=embedder, progress=False)
        assert [r.status for r in done] == ["added"] * 5

    with open_workspace(settings) as ws:
        # before: the commit inserted a second row under each name and the whole ingest died with
        # sqlite3.IntegrityError: UNIQUE constraint failed: documents.collection_id, documents.path
        results = ingest_paths(ws, [corpus], embedder=embedder, progress=False, prepare=_meanwhile(other_ingest))
        assert [r.status for r in results] == ["unchanged"] * 5
        assert [r.chunks for r in results] == [len(reference[("default", r.name)][3]) for r in results]
        assert snapshot(ws) == reference
        assert problems(ws) == []
        job = ws.db.execute("SELECT state FROM jobs ORDER BY created_at DESC LIMIT 1").fetchone()[0]
        assert job == "done"


def test_a_document_deleted_while_its_new_version_is_ingested_is_added_again(tmp_path, embedder):
    corpus = make_corpus(tmp_path / "corpus", 3, seed=4)
    settings = settings_at(tmp_path / "ws")
    with open_workspace(settings) as ws:
        ingest_paths(ws, [corpus], embedder=embedder, progress=False)
        changed = corpus / "note-001.md"
        changed.write_text(changed.read_text() + "\n## Added later\n\nThe fleet budget was revised in March.\n")
        reference, _ = clean_reference(tmp_path, corpus, "default", embedder)

        def other_delete():
            with open_workspace(settings) as other:
                delete_document(other, "corpus/note-001.md")

        # before: the update wrote chunks for a document row that no longer existed and the ingest
        # died with sqlite3.IntegrityError: FOREIGN KEY constraint failed
        results = ingest_paths(ws, [corpus], embedder=embedder, progress=False, prepare=_meanwhile(other_delete))
        assert {r.name: r.status for r in results} == {
            "corpus/note-000.md": "unchanged", "corpus/note-001.md": "added", "corpus/note-002.md": "unchanged"}
        assert snapshot(ws) == reference
        assert problems(ws) == []


def _overwrite(path: Path, offset: int, length: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(bytes([0xA5]) * length)


def test_a_damaged_database_file_gives_a_clear_error_naming_it(tmp_path, embedder, cli):
    home = tmp_path / "ws"  # the `cli` fixture's workspace (ARCHIVIST_HOME)
    corpus = make_corpus(tmp_path / "corpus", 3, seed=5)
    with open_workspace(settings_at(home)) as ws:
        ingest_paths(ws, [corpus], embedder=embedder, progress=False)
        ws.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = ws.db.execute("PRAGMA page_size").fetchone()[0]
        documents_root = ws.db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'documents'").fetchone()[0]
    db_file = home / "archivist.db"

    # a damaged page: the workspace opens, the listing meets it
    _overwrite(db_file, (documents_root - 1) * page, page)
    out = cli("documents")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert f"the workspace database {db_file} is damaged (database disk image is malformed)" in out.stderr

    # a damaged header: opening it says so (before: sqlite3.DatabaseError: file is not a database)
    _overwrite(db_file, 0, 100)
    with pytest.raises(WorkspaceError, match=r"archivist\.db is damaged \(file is not a database\)"):
        open_workspace(settings_at(home))
    out = cli("search", "fleet budget")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"the workspace database {db_file} is damaged (file is not a database)" in out.stderr


def test_erase_in_a_copied_workspace_removes_its_earlier_versions_uploads(tmp_path, embedder):
    """The copy's current upload was removed first, and the earlier versions' were then looked up
    from the old folder's path (the mapping to this workspace needs the file): they stayed."""
    from archivist.ingest.erase import erase
    from archivist.ingest.uploads import save_upload

    old_home, new_home = tmp_path / "old-place", tmp_path / "new-place"
    with open_workspace(settings_at(old_home)) as ws:
        for version in ("The badge office opens at 8.", "The badge office opens at 9 since March."):
            stored, name = save_upload(ws, "badges.md", f"# Badges\n\n{version}\n".encode(), max_mb=10)
            [res] = ingest_paths(ws, [stored], names=[name], embedder=embedder, progress=False)
            assert res.status in ("added", "updated")
    shutil.copytree(old_home, new_home)
    assert len(list((new_home / "uploads").rglob("badges.md"))) == 2
    with open_workspace(settings_at(new_home)) as ws:
        report = erase(ws, "badges.md")
    assert report.upload and report.earlier_uploads == 1
    assert list((new_home / "uploads").rglob("badges.md")) == []
    assert len(list((old_home / "uploads").rglob("badges.md"))) == 2  # the original keeps its own


def test_a_copied_workspace_finds_and_erases_its_own_uploads(tmp_path, embedder):
    from archivist.ingest.erase import erase
    from archivist.ingest.pipeline import document_source
    from archivist.ingest.uploads import save_upload

    corpus = make_corpus(tmp_path / "corpus", 2, seed=6)
    first, second = sorted(corpus.glob("*.md"))
    old_home, new_home = tmp_path / "old-place", tmp_path / "new-place"
    with open_workspace(settings_at(old_home)) as ws:
        for path, collections in ((first, ["default"]), (second, ["default", "shared"])):
            stored, name = save_upload(ws, path.name, path.read_bytes(), max_mb=10)
            for collection in collections:  # the same bytes in two collections share one stored file
                [res] = ingest_paths(ws, [stored], names=[name], collection=collection, embedder=embedder, progress=False)
                assert res.status == "added"
    shutil.copytree(old_home, new_home)  # "copying the folder copies the deployment"
    old_uploads = [p.relative_to(old_home) for p in sorted((old_home / "uploads").rglob("*.md"), key=lambda p: p.name)]
    assert [p.name for p in old_uploads] == ["note-000.md", "note-001.md"]

    with open_workspace(settings_at(new_home)) as ws:
        # before: the copy's documents pointed at the old folder's uploads
        source = document_source(ws, "note-000.md")
        assert source == new_home / old_uploads[0]

        # before: erase left the copy's upload on disk (report.upload None, the file among the leftovers)
        report = erase(ws, "note-000.md")
        assert report.upload == str(new_home / old_uploads[0])
        assert not (new_home / old_uploads[0]).exists()
        assert not any(p.startswith("uploads") for p in report.leftovers)

        # a file another document was read from stays until the last one goes
        shared = ws.db.execute("SELECT id FROM documents WHERE path = 'note-001.md' ORDER BY id").fetchall()
        report = erase(ws, shared[0][0])
        assert report.upload is None and (new_home / old_uploads[1]).is_file()
        report = erase(ws, shared[1][0])
        assert report.upload == str(new_home / old_uploads[1]) and not (new_home / old_uploads[1]).exists()
        assert ws.db.execute("SELECT COUNT(*) FROM documents").fetchone()[0] == 0

    # the original workspace is untouched
    assert all((old_home / p).is_file() for p in old_uploads)
    with open_workspace(settings_at(old_home)) as ws:
        assert ws.db.execute("SELECT COUNT(*) FROM documents").fetchone()[0] == 3


def _tiny_lora(out: Path) -> Path:
    """A real saved LoRA adapter (PEFT) of a 1-layer, 32-dim Llama: what `adapters.register` copies."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    base = LlamaForCausalLM(LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=1))
    get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"])).save_pretrained(out)
    return out


def test_a_copied_workspace_uses_and_scrubs_its_own_adapters(tmp_path, embedder):
    import json

    from archivist import adapters
    from archivist.ingest.erase import erase

    corpus = make_corpus(tmp_path / "corpus", 2, seed=7)
    old_home, new_home = tmp_path / "old-place", tmp_path / "new-place"
    with open_workspace(settings_at(old_home)) as ws:
        ingest_paths(ws, [corpus], embedder=embedder, progress=False)
        doc_id, text = ws.db.execute("SELECT id, text FROM documents WHERE path = 'corpus/note-000.md'").fetchone()
        sentence = next(s for s in text.split(". ") if len(s) > 40)
        metrics = {"better": False, "reason": "test", "examples": [{"question": "q", "answer": sentence}]}
        adapters.register(ws, "learned", _tiny_lora(tmp_path / "lora"), ws.settings.llm, metrics,
                          {"dataset": {"name": "d"}, "documents": [{"id": doc_id, "collection": "default"}]})
    shutil.copytree(old_home, new_home)
    old_metrics = (old_home / "adapters" / "learned" / "metrics.json").read_text()

    with open_workspace(settings_at(new_home)) as ws:
        # before: the adapter the copy answers with was the old folder's
        assert adapters.resolve(ws, None, "learned").path == str(new_home / "adapters" / "learned")
        report = erase(ws, "corpus/note-000.md")
        assert report.adapters == ["learned"] and report.adapter_examples == 1
        # before: the erase scrubbed the old folder's metrics.json and left the copy's holding the text
        copied = json.loads((new_home / "adapters" / "learned" / "metrics.json").read_text())
        assert copied["examples"] == []
        assert not any(p.startswith("adapters") for p in report.leftovers)
    assert (old_home / "adapters" / "learned" / "metrics.json").read_text() == old_metrics


@pytest.mark.parametrize("damage", ["overwritten", "truncated"])
def test_a_damaged_reembed_staging_file_is_started_over(tmp_path, embedder, damage, caplog):
    import numpy as np

    from archivist.retrieval import reembed

    corpus = make_corpus(tmp_path / "corpus", 4, seed=8)
    with open_workspace(settings_at(tmp_path / "ws")) as ws:
        ingest_paths(ws, [corpus], embedder=embedder, progress=False)
        before = dict(ws.db.execute("SELECT id, embedding FROM chunks").fetchall())
        staged = reembed.reembed(ws, reembed.Target(embedder, ""), progress=False, stop_after=1)
        assert not staged.switched and reembed.staged_count(ws) == len(before)
        staging = ws.index_dir / "reembed.db"
        with sqlite3.connect(staging) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        if damage == "overwritten":
            _overwrite(staging, 0, 100)
        else:
            os.truncate(staging, staging.stat().st_size // 2)
        # before: sqlite3.DatabaseError (file is not a database / database disk image is malformed)
        # from `archivist finetune --target retriever --resume`, and every rerun the same
        result = reembed.reembed(ws, reembed.Target(embedder, ""), progress=False)
        assert result.switched and result.embedded == len(before)
        assert f"{staging} is damaged" in caplog.text
        assert not staging.exists()
        after = dict(ws.db.execute("SELECT id, embedding FROM chunks").fetchall())
        assert after.keys() == before.keys()
        for i in before:
            assert np.allclose(np.frombuffer(after[i], np.float32), np.frombuffer(before[i], np.float32), atol=1e-5)
        assert problems(ws) == []


def _lora_and_optimizer(seed: int):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)  # the same base every time; the LoRA weights differ by `seed`
    base = LlamaForCausalLM(LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=1))
    torch.manual_seed(seed)
    model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    return model, optimizer


@pytest.mark.parametrize("damaged", ["lora.safetensors", "optimizer.safetensors", "state.json"])
def test_a_damaged_checkpoint_is_named_and_restores_nothing(tmp_path, damaged):
    import torch

    from archivist.finetune.checkpoints import CheckpointDamaged, load_checkpoint, save_checkpoint

    model, optimizer = _lora_and_optimizer(seed=1)
    ids = torch.arange(16).reshape(1, 16)
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    folder = tmp_path / "runs" / "r1" / "checkpoints"
    target = save_checkpoint(folder, model, optimizer, 1, {"total_steps": 4})
    fresh, fresh_optimizer = _lora_and_optimizer(seed=2)
    assert load_checkpoint(folder, fresh, fresh_optimizer)["step"] == 1  # an intact one restores

    os.truncate(target / damaged, (target / damaged).stat().st_size // 2)
    fresh, fresh_optimizer = _lora_and_optimizer(seed=2)
    before = {n: p.detach().clone() for n, p in fresh.named_parameters() if p.requires_grad}
    # before: safetensors' SafetensorError or json's JSONDecodeError, naming no file, and the LoRA
    # weights already overwritten when the optimizer's file was the damaged one
    with pytest.raises(CheckpointDamaged, match=f"the checkpoint file {target / damaged} is damaged"):
        load_checkpoint(folder, fresh, fresh_optimizer)
    assert all(torch.equal(p, before[n]) for n, p in fresh.named_parameters() if p.requires_grad)
    assert not fresh_optimizer.state


def test_a_checkpoint_is_on_disk_before_latest_names_it(tmp_path, monkeypatch):
    """`save_checkpoint` deletes the older checkpoints once `latest` names the new one: after a power
    cut, written but unsynced files could be empty while the old ones are gone. Each file of the new
    checkpoint, and its folder, is fsynced before `latest` switches (archivist/files.py)."""
    import torch

    from archivist.finetune.checkpoints import save_checkpoint

    model, optimizer = _lora_and_optimizer(seed=1)
    ids = torch.arange(16).reshape(1, 16)
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    folder = tmp_path / "checkpoints"
    synced, real = [], os.fsync

    def fsync(fd):  # the real fsync, noting which file and what `latest` named at that moment
        latest = folder / "latest"
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), latest.read_text() if latest.exists() else None))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    target = save_checkpoint(folder, model, optimizer, 1, {"total_steps": 4})
    before_switch = {Path(p).name for p, latest in synced if latest is None}
    assert {"lora.safetensors", "optimizer.safetensors", "state.json", target.name} <= before_switch
    assert any(re.fullmatch(r"\.latest\.\d+-[0-9a-f]+\.tmp", Path(p).name) and latest is None for p, latest in synced)  # `latest`'s new bytes, before the rename
    assert (str(folder), target.name) in synced  # and the folder, once `latest` names the new checkpoint


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    """A 2-layer, 64-dim Llama with the chat model's tokenizer (tests/make_tiny_models.py): a run of
    hundreds of steps takes seconds, so a kill lands mid-run."""
    from make_tiny_models import tiny_llm

    from archivist.settings import Settings

    out = tmp_path_factory.mktemp("tiny-llm")
    tiny_llm(out, Settings.from_env().cache)
    return out


@pytest.mark.parametrize("case", ["damaged-checkpoint", "before-the-first-checkpoint"])
def test_a_run_killed_then_resumed_logs_every_step_once(tmp_path, tiny_base, case, cli, one_torch_thread):
    import json
    import signal
    import subprocess
    import time

    from test_faults import _child_env, _qa_file

    steps = 300
    home = tmp_path / "ws"
    args = ["--base", str(tiny_base), "--max-steps", str(steps), "--save-every", "2" if case == "damaged-checkpoint" else "1000",
            "--batch-size", "1", "--max-seq-len", "160", "--rank", "4", "--dropout", "0.0", "--eval-limit", "1",
            "--eval-max-new-tokens", "4", "--eval-fraction", "0.25", "--threads", "1", "--device", "cpu", "--no-activate", "-q"]
    cmd = [sys.executable, "-m", "archivist.cli", "finetune"]
    proc = subprocess.Popen([*cmd, "--data", str(_qa_file(tmp_path / "qa.jsonl")), *args], env=_child_env(home),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def logged() -> list[int]:
        return [json.loads(line)["step"] for f in home.glob("runs/*/metrics.jsonl") for line in f.read_text().splitlines()
                if line.endswith("}")]

    def ready() -> bool:
        if case == "damaged-checkpoint":
            return any(home.glob("runs/*/checkpoints/latest"))
        return len(logged()) >= 5

    deadline = time.monotonic() + 300
    while proc.poll() is None and not ready() and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < len(logged()) < steps, "the run ended before it could be killed"
    [run_dir] = list((home / "runs").iterdir())
    if case == "damaged-checkpoint":
        latest = run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text().strip() / "lora.safetensors"
        os.truncate(latest, latest.stat().st_size // 2)
    else:
        assert not (run_dir / "checkpoints" / "latest").exists()

    # before: the damaged checkpoint ended the resume with safetensors' SafetensorError (no file
    # named) every time; a run killed before its first checkpoint logged its first steps twice.
    # The resume runs in this process (`cli`): only the kill needs a process of its own.
    done = cli("finetune", "--resume", run_dir.name, *args, env=_child_env(home))
    assert done.returncode == 0, done.stderr[-2000:]
    if case == "damaged-checkpoint":
        assert f"the checkpoint file {latest} is damaged" in done.stderr and "starts again from step 0" in done.stderr
    assert logged() == list(range(1, steps + 1))


@pytest.fixture(scope="module")
def tiny_retriever(tmp_path_factory):
    """A 2-layer, 64-dim sentence-transformers model (tests/make_tiny_models.py), standing in for a
    retriever adapted to the workspace (finetune --target retriever): another space than the base's."""
    from make_tiny_models import tiny_embedder

    out = tmp_path_factory.mktemp("tiny-retriever") / "tiny"
    tiny_embedder(out)
    return out


def _switch_to(ws, model: Path) -> None:
    """Re-embed the workspace with `model`, kept under embedders/ as an adapted retriever is."""
    from archivist.models import load_embedder
    from archivist.retrieval import reembed

    shutil.copytree(model, ws.home / "embedders" / "tiny")
    s = ws.settings
    adapted = load_embedder(str(ws.home / "embedders" / "tiny"), s.device, s.embed_backend, str(s.cache))
    assert reembed.reembed(ws, reembed.Target(adapted, "tiny-1", path="embedders/tiny", base=s.embedder), progress=False).switched


def _dense(ws, queries=("fleet budget", "security policy", "travel expenses")) -> list:
    from archivist.retrieval.search import search

    return [[(h.chunk_id, round(h.score, 5)) for h in search(ws, q, k=5, mode="dense")] for q in queries]


def test_a_copied_workspace_with_an_adapted_retriever_still_ingests(tmp_path, embedder, tiny_retriever):
    from archivist.retrieval.repair import open_checked

    corpus = make_corpus(tmp_path / "corpus", 3, seed=9)
    old_home, new_home = tmp_path / "old-place", tmp_path / "new-place"
    with open_checked(settings_at(old_home)) as ws:
        ingest_paths(ws, [corpus], embedder=embedder, progress=False)
        _switch_to(ws, tiny_retriever)
        before = _dense(ws)
    shutil.copytree(old_home, new_home)
    extra = make_corpus(tmp_path / "more", 1, seed=10)
    with open_checked(settings_at(new_home)) as ws:
        assert _dense(ws) == before  # the copy searches with the adapted retriever it holds
        # before: EmbedderMismatch: the adapted retriever's identity held the old folder's path
        [res] = ingest_paths(ws, [extra], progress=False)
        assert res.status == "added" and res.chunks > 0
        assert problems(ws, check_index=False) == []


@pytest.mark.parametrize("damage", ["garbage", "deleted"])
def test_a_damaged_embedder_pointer_is_rewritten_from_the_database(tmp_path, embedder, tiny_retriever, damage, caplog):
    from archivist.retrieval.repair import open_checked

    corpus = make_corpus(tmp_path / "corpus", 3, seed=11)
    home = tmp_path / "ws"
    with open_checked(settings_at(home)) as ws:
        ingest_paths(ws, [corpus], embedder=embedder, progress=False)
        _switch_to(ws, tiny_retriever)
        before = _dense(ws)
    pointer = home / "index" / "embedder.json"
    kept = pointer.read_text()
    if damage == "garbage":
        pointer.write_text('{"generation": "tiny-1", "pa')  # a torn write
    else:
        pointer.unlink()
    # before: queries embedded by the base embedder (384 dimensions) against the adapted vectors (64):
    # an AssertionError from FAISS on every search
    with open_checked(settings_at(home)) as ws:
        assert _dense(ws) == before
    assert json.loads(pointer.read_text())["generation"] == "tiny-1" and pointer.read_text() == kept
    assert f"{pointer} is" in caplog.text and "rewritten from it" in caplog.text


def test_an_upload_queued_before_the_workspace_moved_is_ingested_after(tmp_path, embedder):
    from archivist.ingest.pipeline import create_job, run_job
    from archivist.ingest.uploads import save_upload

    note = make_corpus(tmp_path / "corpus", 1, seed=12) / "note-000.md"
    old_home, new_home = tmp_path / "old-place", tmp_path / "new-place"
    with open_workspace(settings_at(old_home)) as ws:
        stored, name = save_upload(ws, note.name, note.read_bytes(), max_mb=10)
        job = create_job(ws, "upload", None, "default", [(stored, name)])  # the server stopped before it ran
    shutil.move(old_home, new_home)
    with open_workspace(settings_at(new_home)) as ws:
        # before: failed, "cannot open: No such file or directory" (the job named the old folder's upload)
        [res] = run_job(ws, job.id, embedder=embedder)
        assert res.status == "added" and res.chunks > 0
        source = ws.db.execute("SELECT source FROM documents").fetchone()[0]
        assert source == str((new_home / stored.relative_to(old_home)).resolve())


def test_a_streamed_csv_deleted_between_its_groups_fails_cleanly(tmp_path, embedder, monkeypatch):
    from dataclasses import replace

    from archivist.ingest import readers

    monkeypatch.setattr(readers, "STREAM_ABOVE_MB", 0)  # a big CSV: committed a group of rows at a time
    monkeypatch.setattr(readers, "STREAM_GROUP_CHARS", 3000)
    ledger = tmp_path / "ledger.csv"
    ledger.write_text("id,name,amount\n" + "".join(f"{i},item-{i % 97},{(i * 37) % 10000}\n" for i in range(400)))
    settings = settings_at(tmp_path / "ws")

    def delete_after_the_first_group(ws, cid, files):
        for item in read_ahead(ws, cid, files):
            groups = item.groups

            def then_delete():
                yield next(groups)
                with open_workspace(settings) as other:  # another process: `archivist delete ledger.csv`
                    delete_document(other, "ledger.csv")
                yield from groups

            yield replace(item, groups=then_delete())

    with open_workspace(settings) as ws:
        # before: sqlite3.IntegrityError: FOREIGN KEY constraint failed, and the ingest died
        [res] = ingest_paths(ws, [ledger], embedder=embedder, progress=False, prepare=delete_after_the_first_group)
        assert res.status == "failed" and "deleted by another process while it was being ingested" in res.reason
        assert ws.db.execute("SELECT COUNT(*) FROM documents").fetchone()[0] == 0
        assert problems(ws) == []
        [again] = ingest_paths(ws, [ledger], embedder=embedder, progress=False)  # ingesting it again adds it
        assert again.status == "added" and again.chunks > 3
        assert problems(ws) == []
