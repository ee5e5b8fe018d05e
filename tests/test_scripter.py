"""The CLI driven from shell scripts and cron: no TTY, pipes, `--json`, exit statuses checked.

Each test drives `archivist` as a script would (a subprocess where the process itself matters: a
pipe closed early, a Ctrl-C) and asserts what the script sees: stdout, stderr, the exit status.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from conftest import ingest_texts

ARCHIVIST = str(Path(sys.executable).with_name("archivist"))  # the console script, as cron runs it

DOCS = {"default": {
    "badger.md": "# Team Badger\n\nThe Badger hotline is extension 5531. Call it for badge printer faults.\n",
    "otter.md": "# Team Otter\n\nTeam Otter meets in room K-117 every Tuesday to plan the warehouse audits.\n",
}}


def _env(**extra) -> dict:
    env = dict(os.environ, **extra)
    env.pop("ARCHIVIST_USER", None)
    return env


def test_stdout_closed_early_is_quiet_with_status_141(tmp_path, ws):
    """`archivist documents --json | head -c1` (or `| grep -q`): the reader closes the pipe and the
    next write fails with EPIPE. That printed `archivist: error: [Errno 32] Broken pipe` with exit 2,
    as if the command had failed, for JSON and tables alike. Now nothing on stderr, and 141
    (128 + SIGPIPE) as for any program the pipe cut."""
    for args in (["documents", "--json"], ["users", "list"]):
        read, write = os.pipe()
        os.close(read)  # the reader has gone before the command writes anything
        try:
            proc = subprocess.run([ARCHIVIST, *args], stdout=write, stderr=subprocess.PIPE, text=True, timeout=300,
                                  env=_env(ARCHIVIST_HOME=str(tmp_path / "ws")))
        finally:
            os.close(write)
        assert proc.stderr == "", (args, proc.stderr)
        assert proc.returncode == 141, (args, proc.returncode, proc.stderr)


def test_ctrl_c_while_starting_is_a_clean_message(tmp_path):
    """A Ctrl-C in the first second, while torch and transformers import (before the command's own
    error handling), ended in a KeyboardInterrupt traceback; now the one-line message and 130."""
    proc = subprocess.Popen([ARCHIVIST, "documents", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(ARCHIVIST_HOME=str(tmp_path / "ws")),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as a terminal's job gets it
    maps, deadline = Path(f"/proc/{proc.pid}/maps"), time.time() + 120

    def started() -> bool:  # numpy loads with archivist.models, the first import inside main(): it is running
        try:
            return "numpy" in maps.read_text()
        except OSError:  # it has ended already
            return True

    while time.time() < deadline and proc.poll() is None and not started():
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)  # while the libraries (transformers, torch) are still importing
    out, err = proc.communicate(timeout=300)
    assert "Traceback" not in err, err
    assert err.strip() == "archivist: interrupted; run the same command again to finish"
    assert proc.returncode == 130
    assert out == ""


def test_question_and_query_from_standard_input(cli, ws, embedder, tmp_path, monkeypatch):
    """`echo QUESTION | archivist search -` searched for the text "-" (and `ask -` asked "-"); now
    '-' reads the query from standard input, without echo's newline."""
    ingest_texts(ws, embedder, tmp_path / "docs", DOCS)
    monkeypatch.setattr(sys, "stdin", io.StringIO("which extension is the Badger hotline?\n"))
    r = cli("search", "-", "-k", "1", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["query"] == "which extension is the Badger hotline?"
    assert [h["document"] for h in out["hits"]] == ["badger.md"]


def test_empty_question_is_an_error(cli, ws, embedder, tmp_path, monkeypatch):
    """An empty or blank question (a script's unset variable: `archivist ask "$Q"`, or nothing piped
    into `ask -`) answered "not in the documents" with exit 0; now an error naming it, exit 2,
    nothing on stdout."""
    ingest_texts(ws, embedder, tmp_path / "docs", DOCS)
    for args, stdin in ((["ask", "", "--json"], ""), (["ask", "  ", "--json"], ""), (["search", "", "--json"], ""),
                        (["ask", "-", "--json"], "\n")):
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        r = cli(*args)
        assert r.returncode == 2, (args, r.stdout)
        assert r.stdout == ""
        assert r.stderr.startswith("archivist: error: the ") and " is empty" in r.stderr, r.stderr


def _draft_on_a_terminal(monkeypatch, **env) -> bytes:
    """What Draft writes to a real terminal (a pty) for one generated piece, then erasing it."""
    from archivist.retrieval.cli import Draft

    for key in ("TERM", "NO_COLOR"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    master, slave = os.openpty()
    try:
        with open(slave, "w", closefd=False) as out:
            draft = Draft(out)
            draft("The hotline is 5531.")
            draft.erase()
        os.close(slave)
        slave = None
        seen = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the slave side is closed and everything was read
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(master)
        if slave is not None:
            os.close(slave)
    return seen


def test_draft_respects_term_dumb_and_no_color(monkeypatch):
    """On a terminal `ask` shows the draft dimmed and erases it with cursor movements: on TERM=dumb
    those escapes were printed as garbage, and NO_COLOR still got the dim colour. Now a dumb terminal
    gets no draft (only the checked answer), NO_COLOR a draft without colour, still erased."""
    assert b"\x1b[2m(draft, being checked) The hotline is 5531." in _draft_on_a_terminal(monkeypatch, TERM="xterm")
    assert _draft_on_a_terminal(monkeypatch, TERM="dumb") == b""
    plain = _draft_on_a_terminal(monkeypatch, TERM="xterm", NO_COLOR="1")
    assert b"(draft, being checked) The hotline is 5531." in plain
    assert b"\x1b[2m" not in plain and b"\x1b[0m" not in plain
    assert plain.endswith(b"\x1b[J")  # erased all the same


def test_json_dates_carry_iso_8601_with_zone(cli, ws, embedder, tmp_path):
    """`documents --json`, `jobs --json`, `keys list --json` gave dates as bare epoch floats
    (1796638272.3559856) only; each `*_at` now has an ISO 8601 UTC twin, the audit log's form,
    naming the same second."""
    ingest_texts(ws, embedder, tmp_path / "docs", DOCS)
    assert cli("keys", "create", "--user", "admin").returncode == 0
    for args in (["documents", "--json"], ["jobs", "--json"], ["keys", "list", "--json"]):
        r = cli(*args)
        assert r.returncode == 0, r.stderr
        rows = json.loads(r.stdout)
        assert rows, args
        for row in rows:
            stamped = [k for k in row if k.endswith("_at") and isinstance(row[k], float)]
            assert stamped, row
            for key in stamped:
                when = datetime.fromisoformat(row[f"{key}_iso"])
                assert when.utcoffset() is not None and when.utcoffset().total_seconds() == 0
                assert abs(when.timestamp() - row[key]) < 1.0


def test_audit_limit_must_be_positive(cli, ws):
    """`audit --limit 0` and `--limit -1` printed the whole log with exit 0; now a usage error."""
    for name in ("carol", "dave"):  # two records on the log
        assert cli("users", "add", name).returncode == 0
    for n in ("0", "-1"):
        r = cli("audit", "--limit", n, "--json")
        assert r.returncode == 2, r.stdout[:200]
        assert r.stdout == ""
        assert f"--limit must be 1 or more, got {n}" in r.stderr
    r = cli("audit", "--limit", "1", "--json")
    assert r.returncode == 0 and len(json.loads(r.stdout)) == 1


def test_a_scope_that_names_nothing_is_said(cli, ws, embedder, tmp_path):
    """`search -c hrr`, `search -d handbok.pdf`, `search --kind pfd`, `documents -c hrr`, `ask -c hrr`,
    `eval retrieval -c hrr`: a typo gave no hits, `[]`, "not found" or a run scoring 0 everywhere,
    with exit 0 and not a word (eval: a warning about the questions). Now an admin gets an error
    (exit 2) naming it, as the API's 404; a member, who must not learn which names exist, a note on
    stderr that says the same of any name, and the rest of the scope is searched."""
    from archivist import access

    ingest_texts(ws, embedder, tmp_path / "docs", DOCS)
    qs = tmp_path / "qs.jsonl"
    qs.write_text(json.dumps({"question": "Which extension is the Badger hotline?", "relevant": ["badger.md"]}) + "\n")
    for args, says in ((["search", "badger", "-c", "defualt"], "no collection 'defualt'"),
                       (["eval", "retrieval", "--set", qs, "-c", "defualt", "--no-store"], "no collection 'defualt'"),
                       (["documents", "-c", "defualt"], "no collection 'defualt'"),
                       (["ask", "badger hotline?", "-c", "defualt"], "no collection 'defualt'"),
                       (["search", "badger", "-d", "badgr.md"], "no document 'badgr.md' you may read"),
                       (["search", "badger", "--kind", "pfd"], "invalid choice: 'pfd'")):
        r = cli(*args, "--json")
        assert r.returncode == 2, (args, r.stdout)
        assert r.stdout == "" and says in r.stderr, (args, r.stderr)
    r = cli("search", "badger hotline", "-c", "default", "-d", "badger.md", "--kind", "markdown", "-k", "1", "--json")
    assert r.returncode == 0 and [h["document"] for h in json.loads(r.stdout)["hits"]] == ["badger.md"]

    access.add_user(ws, "erin", "member")
    access.grant(ws, "erin", "default", "read")
    r = cli("--user", "erin", "search", "badger hotline", "-c", "default", "-c", "board", "-k", "1", "--json")
    assert r.returncode == 0
    assert [h["document"] for h in json.loads(r.stdout)["hits"]] == ["badger.md"]
    assert "archivist: note: you may not read a collection 'board', or there is none" in r.stderr
    r = cli("--user", "erin", "search", "badger", "-d", "otter.md", "-d", "nosuch.md", "--json")
    assert r.returncode == 2 and "no document 'nosuch.md' you may read" in r.stderr


def test_reindex_takes_quiet_like_ingest(cli, ws, embedder, tmp_path):
    """`reindex` had no --quiet (`ingest`, `finetune` and `jobs resume` have): a cron job's
    `reindex --reembed` mailed a progress bar of carriage returns. `-q` drops it; the result stays."""
    ingest_texts(ws, embedder, tmp_path / "docs", DOCS)
    loud = cli("reindex", "--reembed")
    assert loud.returncode == 0 and "re-embed" in loud.stderr
    r = cli("reindex", "--reembed", "-q")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert r.stdout == "default: 2 vectors\n"


def test_a_question_that_is_not_utf8_is_refused_clearly(cli, ws, embedder, tmp_path, monkeypatch):
    """`archivist search "$Q"` with Q in Latin-1 (`caf\\xe9`), or such bytes piped into `ask -`:
    Python hands them on as surrogates and the tokenizer raised a TypeError traceback (exit 1).
    Now exit 2 and a line naming the byte; UTF-8 text goes through."""
    ingest_texts(ws, embedder, tmp_path / "docs", DOCS)
    latin1 = b"caf\xe9 hotline".decode("utf-8", "surrogateescape")  # what sys.argv / sys.stdin hold
    r = cli("search", latin1, "--json")
    assert r.returncode == 2 and r.stdout == ""
    assert "the query is not UTF-8 text (byte 0xe9 at character 4)" in r.stderr
    monkeypatch.setattr(sys, "stdin", io.StringIO(latin1))
    r = cli("ask", "-", "--json")
    assert r.returncode == 2 and "the question is not UTF-8 text (byte 0xe9" in r.stderr
    r = cli("search", "café hotline", "-k", "1", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["query"] == "café hotline"


def test_provisioning_commands_take_json(cli, ws):
    """A provisioning script passes --json to every command: `users add`, `grant`, `revoke`,
    `users role` and `users delete` refused it (a usage error, exit 2), the listing commands took it.
    Each now prints its record as the one JSON document on stdout, and the state is what it says."""
    from archivist import access

    access.create_collection(ws, "hr")
    steps = [(["users", "add", "fay"], {"name": "fay", "role": "member"}),
             (["grant", "fay", "hr", "write"], {"user": "fay", "collection": "hr", "level": "write"}),
             (["revoke", "fay", "hr"], {"user": "fay", "collection": "hr", "revoked": True}),
             (["revoke", "fay", "hr"], {"user": "fay", "collection": "hr", "revoked": False}),
             (["users", "role", "fay", "admin"], {"name": "fay", "role": "admin"})]
    for args, expected in steps:
        r = cli(*args, "--json")
        assert r.returncode == 0, (args, r.stderr)
        assert json.loads(r.stdout) == expected, args
    assert {u["name"]: u["role"] for u in json.loads(cli("users", "list", "--json").stdout)}["fay"] == "admin"
    r = cli("users", "delete", "fay", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == {"deleted": "fay"}
    assert "fay" not in [u["name"] for u in json.loads(cli("users", "list", "--json").stdout)]


def test_a_closed_stdout_is_no_traceback(tmp_path, ws):
    """`archivist users list --json >&-` (a cron line that throws the output away by closing it):
    Python starts with sys.stdout None and printing raised AttributeError, a traceback and exit 1.
    Now /dev/null takes fd 1 (so no file the command opens can land there) and the command succeeds."""
    proc = subprocess.run([ARCHIVIST, "users", "list", "--json"], stderr=subprocess.PIPE, text=True, timeout=300,
                          env=_env(ARCHIVIST_HOME=str(tmp_path / "ws")), preexec_fn=lambda: os.close(1))
    assert proc.stderr == ""
    assert proc.returncode == 0


def test_an_empty_home_or_user_is_refused(cli, tmp_path, monkeypatch):
    """`archivist --home "$DIR" ...` with DIR unset made the current folder the workspace (archivist.db,
    index/, runs/, uploads/ created there, cron's being $HOME), and `--user "$U"` acted as the local
    admin. An empty option is now an error naming it, and nothing is created."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    for args in (["--home", "", "documents", "--json"], ["documents", "--home", " ", "--json"],
                 ["--user", "", "documents", "--json"], ["users", "list", "--user", "", "--json"]):
        r = cli(*args)
        assert r.returncode == 2 and r.stdout == "", args
        assert "is empty (an unset variable in a script?)" in r.stderr
    assert list(cwd.iterdir()) == []


def test_audit_purge_prints_json_when_asked(cli, ws):
    """`archivist audit purge --days N --json` (a retention cron job) printed nothing on stdout, only
    "purged N records" on stderr, so `| jq .purged` read an empty document. Now the JSON result."""
    for name in ("gus", "hal"):
        assert cli("users", "add", name).returncode == 0
    r = cli("audit", "purge", "--days", "1000", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"days": 1000.0, "purged": 0, "through_id": None}
    before = [row["id"] for row in json.loads(cli("audit", "--json").stdout)]
    time.sleep(1.0)
    r = cli("audit", "purge", "--days", "0.00001", "--json")  # older than 0.86 s: all of them
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["purged"] >= len(before) and out["through_id"] >= max(before)
    assert json.loads(cli("audit", "verify", "--json").stdout)["ok"] is True


def test_json_is_written_whole_or_not_at_all(capsys):
    """A Ctrl-C while `eval retrieval --json` wrote its long result left half a JSON document on
    stdout (seen: rc 130 and `{"questions": 32, ... "top": [` in the script's file): json.dump wrote
    it piece by piece. The interrupt is made to land during serialisation here, where it landed then
    (a value whose str() is the point the signal arrives); nothing may be on stdout."""
    import pytest

    from archivist.cli import emit_json

    class SignalArrives:
        def __str__(self):
            raise KeyboardInterrupt

    rows = [{"question": f"question {i}", "top": ["handbook.pdf"] * 5} for i in range(200)]
    with pytest.raises(KeyboardInterrupt):
        emit_json({"questions": 200, "per_query": rows, "set": SignalArrives()})
    assert capsys.readouterr().out == ""
    emit_json({"questions": 200, "per_query": rows})
    assert json.loads(capsys.readouterr().out)["per_query"][199]["question"] == "question 199"


def test_output_to_a_full_disk_is_one_line_not_a_traceback(tmp_path, ws):
    """`archivist users list --json > /var/log/users.json` on a full disk (here /dev/full) ended in an
    OSError traceback. Now one error line naming stdout and the reason, exit 1 (as coreutils' `echo`);
    the same OSError met elsewhere is not mistaken for it."""
    if not os.path.exists("/dev/full"):
        import pytest

        pytest.skip("no /dev/full on this system")
    for args in (["users", "list", "--json"], ["users", "list"]):
        with open("/dev/full", "w") as full:
            proc = subprocess.run([ARCHIVIST, *args], stdout=full, stderr=subprocess.PIPE, text=True, timeout=300,
                                  env=_env(ARCHIVIST_HOME=str(tmp_path / "ws")))
        assert proc.stderr == "archivist: error: cannot write the output to stdout: No space left on device\n", args
        assert proc.returncode == 1


def test_resuming_an_ingest_job_with_a_failed_file_exits_1_like_ingest(cli, ws, tmp_path):
    """`archivist jobs resume ID` finished a cut-short ingest whose batch held a truncated PDF and
    exited 0 ("done"), where `archivist ingest` and `ingest --resume` exit 1 for the same file: a
    cron job resuming could not tell. Now 1, with the failed file in the JSON; the good one landed."""
    from archivist import jobs
    from archivist.ingest.pipeline import create_job

    good, broken = tmp_path / "good.md", tmp_path / "broken.pdf"
    good.write_text("# Good\n\nThe Badger hotline is extension 5531.\n")
    broken.write_bytes(b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog")  # cut short
    job = create_job(ws, "ingest", "admin", "default", [(good, "good.md"), (broken, "broken.pdf")])
    jobs.start(ws, job.id)
    jobs.end(ws, job.id, "interrupted", error="killed")
    r = cli("jobs", "resume", job.id, "--json", "-q")
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    assert {f["name"]: f["status"] for f in out["files"]} == {"good.md": "added", "broken.pdf": "failed"}
    docs = json.loads(cli("documents", "--json").stdout)
    assert [d["name"] for d in docs] == ["good.md"]


def test_a_closed_stderr_does_not_stop_an_ingest(cli, tmp_path):
    """`archivist ingest DIR 2>&1 | head` (or stderr into a pipe whose reader has gone): the progress
    bar's next write raised BrokenPipeError, the ingest stopped half done and its job was left for the
    next process to find dead ("ended without finishing"). Now stderr's writes are dropped once its
    reader is gone: every file lands, the job is done and the summary is on stdout, exit 0."""
    folder = tmp_path / "notes"
    folder.mkdir()
    for name, text in DOCS["default"].items():
        (folder / name).write_text(text)
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([ARCHIVIST, "ingest", str(folder)], stdout=subprocess.PIPE, stderr=write, text=True,
                              timeout=300, env=_env(ARCHIVIST_HOME=str(tmp_path / "ws")))
    finally:
        os.close(write)
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[-1].startswith("2 files: 2 added")
    [job] = json.loads(cli("jobs", "--json").stdout)
    assert (job["state"], job["done"], job["total"]) == ("done", 2, 2)
    assert sorted(d["name"] for d in json.loads(cli("documents", "--json").stdout)) == ["notes/badger.md", "notes/otter.md"]
