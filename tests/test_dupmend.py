"""Duplication and waste a code review found, mended: each test checks the behaviour the one home
now gives (job progress throttled without losing the step a run stopped at; `archivist erase` reads
the workspace's files once; ...). Real SQLite, real files, a real 2-layer model for the training run."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import pytest

from archivist import jobs


# -- 1. job progress: throttled, the first, the last and the step a run stopped at written ---------


def test_the_reporter_writes_the_first_call_and_flush_writes_the_last_one_it_held_back(ws):
    job = jobs.create(ws, "train", None, total=10)
    jobs.start(ws, job.id)
    report = jobs.Reporter(ws, job.id)
    for step in range(1, 6):  # five steps within a second: the first is written, the next four held back
        assert report(step, 10, f"step {step}") is False
    assert (jobs.get(ws, job.id).done, jobs.get(ws, job.id).message) == (1, "step 1")
    report.flush()  # the loop stopped at step 5 of 10 (cancelled): its state is written, not step 1's
    got = jobs.get(ws, job.id)
    assert (got.done, got.total, got.message) == (5, 10, "step 5")
    report(10, 10, "step 10")  # reaching the total is always written
    assert jobs.get(ws, job.id).done == 10
    jobs.cancel(ws, job.id, None, wait=0)  # a cancel asked meanwhile is what a flush returns
    assert report.flush() is False  # nothing held back: nothing written, the last answer stands
    report(11, 12, "step 11")  # within the second: held back
    assert report.flush() is True and jobs.get(ws, job.id).done == 11


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    """A 2-layer, 64-dim Llama with the chat model's tokenizer (tests/make_tiny_models.py): a step
    takes milliseconds, so many steps fall within one throttle interval."""
    from make_tiny_models import tiny_llm

    from archivist.settings import Settings

    out = tmp_path_factory.mktemp("tiny-llm")
    tiny_llm(out, Settings.from_env().cache)
    return out


@pytest.mark.slow  # a training run (of a 2-layer model: seconds)
@pytest.mark.usefixtures("one_torch_thread")
def test_a_run_stopped_mid_way_leaves_its_job_at_the_step_it_reached(ws, tiny, tiny_base):
    """SIGTERM (what `archivist jobs cancel` sends a run) stops the loop after a step; the job must
    say that step and its loss, which the checkpoint and metrics.jsonl hold. Before, the throttle
    had written a step up to a second earlier (with millisecond steps: step 1) and nothing after."""
    from archivist.finetune import runs
    from archivist.finetune.train import FinetuneConfig, run

    cfg = FinetuneConfig(data=[str(tiny)], base=str(tiny_base), method="lora", batch_size=1, max_steps=20000,
                         save_every=100000, max_seq_len=160, rank=4, eval_limit=1, eval_max_new_tokens=4,
                         device="cpu", activate=False, threads=1)
    home = ws.home

    def stop_after_some_steps() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            files = list(home.glob("runs/*/metrics.jsonl"))
            if files and len(files[0].read_text().splitlines()) >= 5:
                signal.raise_signal(signal.SIGTERM)  # handled on the main thread, by the run's handler
                return
            time.sleep(0.005)

    watcher = threading.Thread(target=stop_after_some_steps, daemon=True)
    watcher.start()
    result = run(ws, cfg, progress=False, say=lambda m: None)
    watcher.join(timeout=10)
    assert result["status"] == "cancelled"
    steps = result["train"]["steps"]
    metrics = runs.read_metrics(ws, result["run_id"])
    assert 5 <= steps < 20000 and [m["step"] for m in metrics] == list(range(1, steps + 1))
    job = jobs.get(ws, result["run_id"])
    assert job.state == "cancelled"
    assert (job.done, job.total) == (steps, 20000)
    assert job.message == f"loss {metrics[-1]['loss']:.3f}"


# -- 3. `archivist erase` reads the workspace's files once -------------------------------------------


SHARED = "The quartermaster of Vintry Lane hides the brass key under the ninth flagstone."
DEPOT = f"# Depot\n\n{SHARED} Deliveries arrive on Tuesdays before seven in the morning.\n\nThe depot has fourteen loading docks and three forklifts for the couriers.\n"
HANDBOOK = f"# Handbook\n\n{SHARED} The canteen serves lunches every weekday at noon for the staff.\n"


def test_erase_reads_each_file_once_when_another_document_shares_a_sentence(ws, embedder, tmp_path, monkeypatch):
    """The leftover scan reads every file of the workspace; the check of which sentences other
    documents hold read the database files a second time (the largest files a workspace has)."""
    from archivist.ingest.erase import erase
    from conftest import ingest_texts

    ingest_texts(ws, embedder, tmp_path / "docs", {"default": {"depot.md": DEPOT, "handbook.md": HANDBOOK}})
    reads: dict[str, int] = {}
    real = Path.open

    def counted(self, mode="r", *args, **kwargs):  # Path.read_bytes opens through it too
        if "r" in mode:
            reads[self.name] = reads.get(self.name, 0) + 1
        return real(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", counted)
    report = erase(ws, "depot.md")
    monkeypatch.undo()
    assert [h.endswith("handbook.md (default)") for h in report.held_elsewhere] == [True], report.held_elsewhere
    assert report.leftovers == []  # the shared sentence is the handbook's, not a leftover
    assert reads.get("archivist.db") == 1, reads
    # lexical.json, the lexical index's sidecar, also by erase's index sync: the delete already forgot the words
    assert all(n == 1 for f, n in reads.items() if f != "lexical.json") and reads["lexical.json"] <= 2, reads
    # the sentence only the erased document had is in no file; the shared one is still the handbook's
    from archivist.files import files_holding

    assert files_holding(ws.home, [b"Deliveries arrive on Tuesdays before seven in the morning."]) == {}
    assert ws.db.execute("SELECT COUNT(*) FROM chunks WHERE instr(text, ?) > 0", (SHARED,)).fetchone()[0] == 1


# -- 2. one compaction (VACUUM, then the WAL emptied) for erase and users erase ----------------------


def _free_pages_and_wal(ws) -> tuple[int, int]:
    wal = ws.home / "archivist.db-wal"
    return ws.db.execute("PRAGMA freelist_count").fetchone()[0], wal.stat().st_size if wal.exists() else 0


def test_erase_and_users_erase_leave_no_free_page_and_an_empty_wal(ws, embedder, tmp_path):
    """Both compact through workspace.compact: the database file keeps no free page (VACUUM) and the
    WAL, which holds pages as they were before the delete, is emptied."""
    from archivist import access, conversations
    from archivist.ingest.erase import erase
    from archivist.user_erase import erase_user
    from conftest import ingest_texts

    ingest_texts(ws, embedder, tmp_path / "docs", {"default": {"depot.md": DEPOT, "handbook.md": HANDBOOK}})
    access.add_user(ws, "rita", "member")
    access.grant(ws, "rita", "default", "read")
    question = "Where exactly does the quartermaster of Vintry Lane hide the brass key?"
    cid = conversations.start_conversation(ws, "rita")
    conversations.add_message(ws, cid, "rita", "user", question)
    for i in range(200):  # pages to free
        conversations.add_message(ws, cid, "rita", "assistant", f"answer {i} " + "x" * 400)
    assert _free_pages_and_wal(ws)[1] > 0  # the writes above sit in the WAL

    report = erase_user(ws, "rita")
    assert report.wal_truncated and report.leftovers == [] and report.messages == 201
    assert _free_pages_and_wal(ws) == (0, 0)

    ws.db.execute("CREATE TABLE scratch(x)")  # pages erase's VACUUM must give back
    ws.db.executemany("INSERT INTO scratch VALUES (?)", [("y" * 500,)] * 200)
    ws.db.execute("DROP TABLE scratch")
    assert _free_pages_and_wal(ws)[0] > 0
    report = erase(ws, "depot.md")
    assert report.wal_truncated and report.leftovers == []
    assert _free_pages_and_wal(ws)[0] == 0  # the WAL now holds only the job's end, written after
    assert b"Deliveries arrive on Tuesdays" not in (ws.home / "archivist.db-wal").read_bytes()


# -- 4. a saved dataset's rows are read in one place, which names the file and line it cannot read ---


def test_erase_names_the_dataset_file_and_line_it_cannot_read_and_keeps_the_document(ws, embedder, tmp_path, cli):
    """A dataset split with a torn line (a copy cut short, an edit by hand): erase cannot tell whether
    it holds the document's text, so it stops, saying which file and line, and the document stays.
    Before, the rows were parsed apart from load_dataset's reader: erase failed with json's bare
    'Unterminated string starting at: line 1 column 28', naming no file."""
    from archivist.finetune import dataset_store
    from archivist.finetune.dataset_store import DatasetError
    from archivist.ingest.erase import erase
    from conftest import ingest_texts

    ingest_texts(ws, embedder, tmp_path / "docs", {"default": {"depot.md": DEPOT, "handbook.md": HANDBOOK}})
    folder = ws.home / "datasets" / "kept"
    folder.mkdir(parents=True)
    good = {"messages": [{"role": "user", "content": "q?"}, {"role": "assistant", "content": "a."}],
            "source": "file", "group": "file:x:1", "question": "q?", "answer": "a."}
    (folder / "manifest.json").write_text(json.dumps({"name": "kept", "collections": ["default"]}))
    torn = json.dumps(good) + "\n" + '{"messages": [], "source": "docs:extr\n'
    (folder / "train.jsonl").write_text(torn)
    (folder / "eval.jsonl").write_text("")

    with pytest.raises(DatasetError) as e:
        erase(ws, "depot.md")
    assert str(e.value).startswith(f"{folder / 'train.jsonl'}:2: not a saved example (")
    assert (folder / "train.jsonl").read_text() == torn  # left as it was
    assert ws.db.execute("SELECT COUNT(*) FROM documents WHERE path LIKE '%depot.md'").fetchone()[0] == 1
    out = cli("erase", "depot.md")
    assert out.returncode != 0 and f"{folder / 'train.jsonl'}:2: not a saved example" in out.stderr, out.stderr
    # the same reader loads a dataset: a line that is JSON but not an object is named too
    (folder / "train.jsonl").write_text(json.dumps(good) + "\n[1, 2]\n")
    with pytest.raises(DatasetError, match=r"train\.jsonl:2: not a saved example \(a JSON list, not an object\)"):
        dataset_store.load_dataset(ws, "kept", None)
    (folder / "train.jsonl").write_text(json.dumps(good) + "\n")
    assert [x.question for x in dataset_store.load_dataset(ws, "kept", None).train] == ["q?"]
    assert erase(ws, "depot.md").dataset_examples == {}  # readable again: the erase goes through


# -- 3'. `archivist users erase`: whose text a leftover is, looked up only for what the scan found ----


def test_users_erase_looks_up_only_the_texts_the_scan_found_in_the_database(ws, embedder, tmp_path):
    """Which of the person's texts a remaining row holds (someone else's, so not a leftover) takes a
    scan of whole tables per text; it was asked for every text they ever typed, before the file scan
    said which are still there at all. Now only for those the database files still hold: here the one
    question that quotes a document's sentence, which stays the document's, not a leftover."""
    from archivist import access, conversations
    from archivist.user_erase import erase_user
    from conftest import ingest_texts

    ingest_texts(ws, embedder, tmp_path / "docs", {"default": {"depot.md": DEPOT, "handbook.md": HANDBOOK}})
    access.add_user(ws, "rita", "member")
    access.grant(ws, "rita", "default", "read")
    asked = [SHARED, "Which forklift is reserved for the night shift at the depot?",
             "Who signs the courier manifests on Tuesday mornings?", "Is the canteen open on public holidays this year?"]
    cid = conversations.start_conversation(ws, "rita")
    for q in asked:
        conversations.add_message(ws, cid, "rita", "user", q)
    lookups = []
    ws.db.set_trace_callback(lambda sql: lookups.append(sql) if "FROM chunks WHERE instr(text" in sql else None)
    try:
        report = erase_user(ws, "rita")
    finally:
        ws.db.set_trace_callback(None)
    assert report.messages == 4 and report.leftovers == []  # the quoted sentence is the documents'
    assert len(lookups) == 1 and SHARED.replace("'", "''") in lookups[0], lookups
    from archivist.files import files_holding

    assert files_holding(ws.home, [q.encode() for q in asked[1:]]) == {}


def test_an_erase_finished_by_a_rerun_does_not_claim_the_leftover_check_it_could_not_make(ws, embedder, tmp_path,
                                                                                            monkeypatch, cli):
    """An erase cut short after the document was deleted is finished by running it again; the scan
    of the files for its text needs the text, which went with the document, so the rerun cannot
    make it. Before, the report still said `leftovers_checked: true` with no leftovers: a script
    reading --json took the erase as verified clean."""
    from archivist.ingest.erase import erase
    from archivist.retrieval import lexicon_store
    from conftest import ingest_texts

    ingest_texts(ws, embedder, tmp_path / "docs", {"default": {"depot.md": DEPOT, "handbook.md": HANDBOOK}})
    real = lexicon_store.sync

    def disk_trouble(*args, **kwargs):  # the step after the delete fails once
        raise OSError("No space left on device")

    for name in ("depot.md", "handbook.md"):
        monkeypatch.setattr(lexicon_store, "sync", disk_trouble)
        with pytest.raises(OSError):
            erase(ws, name)
        monkeypatch.setattr(lexicon_store, "sync", real)
        assert ws.db.execute("SELECT COUNT(*) FROM documents WHERE path LIKE ?", (f"%{name}",)).fetchone()[0] == 0
    out = cli("erase", "depot.md", "--json")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["resumed"] is True and r["leftovers_checked"] is False and r["leftovers"] == []
    out = cli("erase", "handbook.md")
    assert out.returncode == 0 and "finished an erase that was cut short" in out.stdout, out.stderr
    assert "your own chats" not in out.stdout  # an admin's rerun: not told it was a member's erase


# -- audit retention and erase: the uploads of a document's earlier versions ----------------------------


def test_erase_removes_earlier_versions_uploads_after_retention_purged_the_records_naming_them(ws, embedder):
    """A new upload under a document's name replaces it, and the earlier version's file stays under
    uploads/<its hash>/. Erase found those files only through the audit log's document.added and
    .updated records; once retention (`audit purge`, the audit_days setting) had purged them, the
    earlier upload stayed with its text, and the report said nothing was left (the leftover scan
    looks for the current text). The ingest jobs, which retention does not touch, name those files too."""
    from archivist import audit_retention
    from archivist.files import files_holding
    from archivist.ingest.erase import erase
    from archivist.ingest.pipeline import ingest_paths
    from archivist.ingest.uploads import save_upload

    v1 = b"# Salaries\n\nThe director of the Vintry depot earns exactly 97,400 euros a year before tax.\n"
    v2 = b"# Salaries\n\nSalaries are published once a year by the finance office in March.\n"
    other = b"# Salaries\n\nThe canteen staff are paid by the catering company, not by the depot.\n"
    for data, collection in ((v1, "default"), (v2, "default"), (other, "finance")):
        path, name = save_upload(ws, "salaries.md", data)
        ingest_paths(ws, [path], names=[name], collection=collection, embedder=embedder, progress=False)
    uploads = ws.home / "uploads"
    assert len(list(uploads.glob("*/salaries.md"))) == 3
    assert audit_retention.purge(ws, 0)["purged"] > 0  # retention: every record older than now
    # a newer version uploaded meanwhile, its ingest still queued: it would store the document again,
    # so the erase is refused until it has run or is cancelled (tests/test_fixerase.py); cancelled,
    # the file is taken out of the job and its upload goes too
    from archivist import jobs
    from archivist.ingest.pipeline import create_job

    v3 = b"# Salaries\n\nFrom April, salaries are paid on the 25th of each month.\n"
    pending, name = save_upload(ws, "salaries.md", v3)
    queued = create_job(ws, "upload", None, "default", [(pending, name)])
    with pytest.raises(ValueError, match="is queued"):
        erase(ws, "salaries.md", None, "default")
    jobs.cancel(ws, queued.id)

    report = erase(ws, "salaries.md", None, "default")
    assert report.upload and report.earlier_uploads == 2
    assert files_holding(ws.home, [b"earns exactly 97,400 euros"]) == {}
    # the other collection's document of the same name keeps its upload
    assert [f.read_bytes() for f in uploads.glob("*/salaries.md")] == [other]


def test_a_saved_dataset_whose_text_holds_a_line_separator_loads_and_is_erased_from(ws, embedder, tmp_path):
    """Rows are saved with ensure_ascii=False, so U+2028 (Word's manual line break, pasted into a
    question) and U+0085 stand in them as they are; the reader split lines with splitlines(), which
    breaks there: the dataset would not load (a fine-tune on it failed) and erase could not read it."""
    from archivist import access, feedback
    from archivist.finetune import dataset_store, datasets
    from archivist.user_erase import erase_user
    from conftest import ingest_texts

    ingest_texts(ws, embedder, tmp_path / "docs", {"default": {"depot.md": DEPOT}})
    access.add_user(ws, "rita", "member")
    access.grant(ws, "rita", "default", "read")
    asked = "Where does the quartermaster hide the key?\u2028(asked for the night shift)"
    fid = feedback.record_feedback(ws, "rita", asked, "I do not know.", rating=-1,
                                   correction="Under the ninth flagstone of Vintry Lane.\x85", collection="default")
    feedback.review_correction(ws, None, fid, approve=True)  # a member's correction is learned once an admin approved it
    ds = datasets.build_dataset(ws, ["feedback"], user="admin", embedder=embedder, progress=False, name="fb")
    assert fid in ds.manifest["feedback"]["used"]
    loaded = dataset_store.load_dataset(ws, "fb", None)
    assert [e.question for e in loaded.train + loaded.eval] == [asked]
    report = erase_user(ws, "rita")
    assert report.dataset_examples == {"fb": 1} and report.leftovers == []
    assert dataset_store.load_dataset(ws, "fb", None).train == []


def test_the_leftover_scan_holds_a_block_of_a_large_file_at_a_time_and_finds_a_text_across_blocks(tmp_path):
    """The scan read each file whole into memory: a workspace's FAISS index or database of some GB
    took that much memory at the end of every erase. It reads 16 MB at a time now, and a text lying
    across two blocks is still found."""
    import tracemalloc

    from archivist.files import files_holding

    home = tmp_path / "home"
    (home / "index").mkdir(parents=True)
    big = home / "index" / "c1.faiss"
    across, at_end, absent = (b"The quartermaster of Vintry Lane hides the brass key.",
                              b"Deliveries arrive on Tuesdays before seven.", b"The canteen serves lunches at noon.")
    with open(big, "wb") as f:  # 96 MB, sparse: zeros but for the two texts
        f.truncate(96 << 20)
        f.seek((16 << 20) - 20)  # across the first 16 MB boundary
        f.write(across)
        f.seek((96 << 20) - len(at_end))
        f.write(at_end)
    (home / "small.txt").write_bytes(b"x" + absent)
    tracemalloc.start()
    try:
        found = files_holding(home, [across, at_end, absent])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert found == {"index/c1.faiss": {across, at_end}, "small.txt": {absent}}
    assert peak < 48 << 20, f"{peak / 2**20:.0f} MB held to scan a 96 MB file"


# -- synthetic questions split sentences by the rule answers are checked with (verify.sentences) -------


def test_a_synthetic_question_is_one_sentence_when_the_next_starts_with_a_non_ascii_capital():
    """finetune/qa.py kept its own sentence-end rule, without the capitals beyond ASCII: a sentence
    followed by one starting with Ä, Ü, É or Ж was one sentence, and its echo question carried the
    next sentence along. It now splits with verify.sentences (on samples/, git-doc and bash-doc the
    966 English questions came out the same; see the dupmend report)."""
    from archivist.finetune import qa
    from archivist.retrieval import verify

    first = ('Für Japanisch wird gewöhnlich "Content-Type: text/plain; charset=ISO-2022-JP" bei Mails verwendet, '
             'um den Text im 7-Bit-Format zu halten.')
    text = first + " Ältere Microsoft-Systeme könnten jedoch Mail-Daten in Shift-JIS versenden, ohne dies korrekt zu deklarieren."
    [pair] = qa.extractive_pairs(text)
    assert (pair.answer, text[pair.start:pair.end], pair.sentence) == ("ISO-2022-JP", "ISO-2022-JP", first)
    assert pair.question == ('Für Japanisch wird gewöhnlich "Content-Type: text/plain; charset=which code" bei Mails '
                             'verwendet, um den Text im 7-Bit-Format zu halten?')
    assert qa.sentences is verify.sentences  # one rule for both
