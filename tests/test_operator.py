"""The sysadmin who runs archivist for a team on one server: a workspace on a read-only mount or
owned by another user, a disk that fills while the API serves, `archivist doctor` as a health
check, and a backup taken while the workspace is written to, restored and used.

Read-only filesystems and full disks are real: a read-only bind mount and a small tmpfs, mounted
by the test (skipped where that is not permitted). Another user's files are real too: as root the
command runs without the capabilities that let root write anyone's files (setpriv), as anyone else
the folder is chmod-ed.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_faults import (INGEST_CHILD, _child_env, _count, clean_reference, fill, make_corpus, problems,  # noqa: E402
                         settings_at, snapshot)

from archivist.ingest.pipeline import ingest_paths  # noqa: E402
from archivist.retrieval.repair import open_checked  # noqa: E402
from archivist.workspace import WorkspaceError, open_workspace  # noqa: E402


def _mount(args: list[str], where: Path) -> None:
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting needs root and the mount command")
    r = subprocess.run(["mount", *args, str(where)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount here: {r.stderr.strip()}")


@pytest.fixture
def read_only_copy(tmp_path, embedder):
    """(writable workspace, the same folder through a read-only bind mount)."""
    home = tmp_path / "ws"
    corpus = make_corpus(tmp_path / "corpus", 2, seed=3)
    with open_checked(settings_at(home)) as ws:
        ingest_paths(ws, [corpus], collection="docs", embedder=embedder, progress=False)
    ro = tmp_path / "ro"
    ro.mkdir()
    _mount(["--bind", str(home)], ro)
    try:
        r = subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot remount read-only here: {r.stderr.strip()}")
        yield home, ro
    finally:
        subprocess.run(["umount", "-l", str(ro)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    _mount(["-t", "tmpfs", "-o", "size=12m", "tmpfs"], mnt)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


# -- a workspace archivist may not write ----------------------------------------------------------


def test_a_read_only_workspace_is_a_one_line_error_naming_the_file_and_the_reason(read_only_copy, cli):
    """Before: `sqlite3.OperationalError: unable to open database file`, a traceback and exit 1,
    from every command, the API server included."""
    home, ro = read_only_copy
    with pytest.raises(WorkspaceError, match=r"archivist\.db .*read-only filesystem"):
        open_workspace(settings_at(ro))
    for args in (["documents"], ["search", "travel"], ["audit", "verify"]):
        r = cli(*args, env={"ARCHIVIST_HOME": str(ro)})
        assert r.returncode == 2, (args, r)
        assert r.stderr.startswith("archivist: error: cannot open the workspace database") and "Traceback" not in r.stderr
        assert str(ro / "archivist.db") in r.stderr and "read-only filesystem" in r.stderr, r.stderr
    with pytest.raises(WorkspaceError, match="read-only filesystem"):
        from archivist.api.app import create_app

        create_app(settings_at(ro))  # what `archivist serve` starts with: a clean error, not a crash
    with open_workspace(settings_at(home)) as ws:  # nothing stored was touched
        assert problems(ws, check_index=False) == []


def test_doctor_says_when_the_workspace_cannot_be_written_and_exits_1(read_only_copy, cli, tmp_path):
    """Before: doctor printed the workspace's path, exit 0, while every command failed on it."""
    home, ro = read_only_copy
    ok = cli("doctor", env={"ARCHIVIST_HOME": str(home)})
    assert ok.returncode == 0 and "problem" not in ok.stderr, ok.stderr
    bad = cli("doctor", env={"ARCHIVIST_HOME": str(ro)})
    assert bad.returncode == 1
    assert f"archivist: problem: workspace {ro}: {ro} is on a read-only filesystem" in bad.stderr, bad.stderr
    r = cli("doctor", "--json", env={"ARCHIVIST_HOME": str(ro / "not-made-yet")})  # would be made on the mount
    assert r.returncode == 1
    assert any("read-only filesystem" in p for p in __import__("json").loads(r.stdout)["problems"])


def test_a_workspace_owned_by_another_user_is_named_with_both_uids(tmp_path, embedder):
    """Another user's workspace (0755, files 0644): as that other user sees it. Before: a traceback
    ending in "attempt to write a readonly database", exit 1."""
    home = tmp_path / "ws"
    corpus = make_corpus(tmp_path / "corpus", 1, seed=4)
    with open_checked(settings_at(home)) as ws:
        ingest_paths(ws, [corpus], collection="docs", embedder=embedder, progress=False)
    env = _child_env(home)
    cmd = [sys.executable, "-m", "archivist.cli", "documents"]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("needs setpriv to run as root without the right to write others' files")
        for p in [home, *home.rglob("*")]:
            os.chown(p, 65534, 65534)
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", *cmd]
    else:
        for p in [home, *home.rglob("*")]:
            p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    finally:
        for p in [home, *home.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith(f"archivist: error: cannot ") and str(home) in r.stderr, r.stderr
    owner = 65534 if os.geteuid() == 0 else os.geteuid()
    assert f"this user (uid {os.geteuid()}) may not write the folder, owned by uid {owner}" in r.stderr, r.stderr
    # the folder open to this user, archivist.db not: named too
    if os.geteuid() == 0:
        os.chown(home, 0, 0)
        for p in home.iterdir():
            if p.is_dir():
                os.chown(p, 0, 0)
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.startswith(f"archivist: error: cannot open the workspace database {home / 'archivist.db'}"), r.stderr
        assert "may not write archivist.db (owner uid 65534)" in r.stderr, r.stderr


# -- a disk that fills while the API serves -----------------------------------------------------------


def test_a_full_disk_under_the_api_is_a_503_and_health_says_so(small_disk, embedder, tmp_path):
    """Before: every request was a 500 "internal error: OperationalError" with a traceback in the
    log, and GET /health answered {"status": "ok"}: a monitor saw nothing wrong."""
    from archivist.api.app import create_app
    from archivist.api.serve import serve_in_thread
    from archivist.keys import create_key

    home = small_disk / "ws"
    corpus = make_corpus(tmp_path / "corpus", 2, seed=5)
    with open_checked(settings_at(home)) as ws:
        ingest_paths(ws, [corpus], collection="docs", embedder=embedder, progress=False)
        key = create_key(ws, "admin", by="admin")
        before = snapshot(ws)
    running = serve_in_thread(create_app(settings_at(home)))
    try:
        head = {"Authorization": f"Bearer {key}"}
        assert httpx.get(running.url + "/health").json()["workspace"] == "ok"
        filler = fill(small_disk, leave=0)
        health = httpx.get(running.url + "/health").json()
        assert health["status"] == "degraded" and health["workspace"] == "disk full", health
        r = httpx.post(running.url + "/v1/search", json={"query": "travel"}, headers=head, timeout=60)
        assert r.status_code == 503, r.text
        err = r.json()["error"]
        assert err["code"] == "workspace_unavailable" and "disk is full" in err["message"], err
        assert str(home) not in err["message"]  # no server path to the client
        assert r.headers.get("Retry-After")
        filler.unlink()  # room again: the same server answers
        assert httpx.get(running.url + "/health").json()["status"] == "ok"
        r = httpx.post(running.url + "/v1/search", json={"query": "travel"}, headers=head, timeout=60)
        assert r.status_code == 200 and r.json()["data"], r.text
    finally:
        running.stop()
    with open_workspace(settings_at(home)) as ws:
        assert snapshot(ws) == before and problems(ws, check_index=False) == []


# -- backup while it serves, and restore ---------------------------------------------------------------


def test_a_backup_holds_commits_still_in_the_write_ahead_log(tmp_path, embedder, cli):
    """A server keeps recent commits in archivist.db-wal until a checkpoint; copying archivist.db
    alone (a common backup script) loses them. `archivist backup` copies the database as of one
    moment, whatever is in the WAL, while the other connection stays open."""
    home = tmp_path / "ws"
    corpus = make_corpus(tmp_path / "corpus", 3, seed=6)
    with open_checked(settings_at(home)) as ws:
        ingest_paths(ws, [corpus], collection="docs", embedder=embedder, progress=False)
    server = sqlite3.connect(home / "archivist.db", isolation_level=None)  # a process that keeps writing
    server.execute("PRAGMA wal_autocheckpoint=0")
    server.execute("INSERT INTO meta(key, value) VALUES ('operator-probe', 'in the WAL only')")
    plain = tmp_path / "plain.db"
    shutil.copy(home / "archivist.db", plain)
    with sqlite3.connect(plain) as db:  # what copying the file alone keeps
        assert db.execute("SELECT value FROM meta WHERE key = 'operator-probe'").fetchone() is None
    r = cli("backup", tmp_path / "backups" / "one", env={"ARCHIVIST_HOME": str(home)})
    server.close()
    assert r.returncode == 0, r.stderr
    dest = tmp_path / "backups" / "one"
    assert r.stdout.strip() == str(dest) and "backed up 3 documents" in r.stderr, r
    with sqlite3.connect(dest / "archivist.db") as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'operator-probe'").fetchone() == ("in the WAL only",)
    assert not list(dest.parent.glob(".one.part-*")) and not list(dest.rglob("*.lock"))
    with open_checked(settings_at(dest)) as ws:
        assert problems(ws) == []
    again = cli("backup", dest, env={"ARCHIVIST_HOME": str(home)})  # never over an earlier backup
    assert again.returncode == 2 and "exists and is not an empty folder" in again.stderr, again.stderr
    inside = cli("backup", home / "snap", env={"ARCHIVIST_HOME": str(home)})
    assert inside.returncode == 2 and "inside the workspace" in inside.stderr and not (home / "snap").exists()
    member = cli("users", "add", "mia", env={"ARCHIVIST_HOME": str(home)})
    assert member.returncode == 0, member.stderr
    refused = cli("backup", tmp_path / "backups" / "mia", env={"ARCHIVIST_HOME": str(home), "ARCHIVIST_USER": "mia"})
    assert refused.returncode == 2 and "needs the admin role" in refused.stderr and not (tmp_path / "backups" / "mia").exists()


def test_a_backup_taken_during_an_ingest_restores_to_a_working_workspace(tmp_path, embedder, cli):
    """Backups taken while `archivist ingest` commits (in another process) are each a consistent
    workspace: SQLite and FTS5 intact, FAISS equal to SQLite, every document whole and equal to the
    final one, the audit chain intact. Restored (copied back) and ingested again, a backup ends as a
    clean ingest of the same files."""
    home = tmp_path / "ws"
    corpus = make_corpus(tmp_path / "corpus", 24, seed=7)
    with open_checked(settings_at(home)):
        pass
    child = subprocess.Popen([sys.executable, "-c", INGEST_CHILD, "ingest", str(corpus), "--collection", "docs"],
                             env=_child_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    backups, deadline = [], time.monotonic() + 300
    try:
        while child.poll() is None and time.monotonic() < deadline and len(backups) < 3:
            if _count(home / "archivist.db", "SELECT COUNT(*) FROM documents") > 4 * len(backups) + 2:
                dest = tmp_path / "backups" / f"b{len(backups)}"
                r = cli("backup", dest, env=_child_env(home))
                assert r.returncode == 0, r.stderr
                backups.append(dest)
            time.sleep(0.2)
        assert child.wait(timeout=300) == 0, child.stderr.read()
    finally:
        if child.poll() is None:
            child.kill()
    assert backups, "the ingest ended before a backup could be taken during it"
    with open_workspace(settings_at(home)) as ws:
        final = snapshot(ws)
    taken = []
    for dest in backups:
        with open_checked(settings_at(dest)) as ws:
            assert problems(ws) == [], dest
            mid = snapshot(ws)
            assert mid and {k: final[k] for k in mid} == mid  # each document whole, as it ended
            from archivist import audit

            assert audit.verify(ws).ok, dest
            taken.append(len(mid))
    assert min(taken) < len(final), (taken, len(final))  # at least one was taken mid-ingest
    # restore the earliest as docs/reliability.md says: copy it where a workspace lives, and
    # `archivist ingest --resume` finishes the ingest it caught half-way
    restored = tmp_path / "restored"
    subprocess.run(["cp", "-a", str(backups[0]), str(restored)], check=True)
    r = cli("ingest", "--resume", env=_child_env(restored))
    assert r.returncode == 0 and "resum" in r.stderr + r.stdout, r
    with open_checked(settings_at(restored)) as ws:
        assert problems(ws) == []
        after = snapshot(ws)
    reference, _ = clean_reference(tmp_path, corpus, "docs", embedder)
    assert after == reference


# -- `archivist serve` as a service: environment, port, log, SIGTERM ------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_as_a_service_port_taken_timed_log_and_sigterm_mid_request(tmp_path, embedder, cli):
    """`archivist serve` started as a unit would start it (settings from the environment, a
    non-default port, its log to a file): a second one on the same port ends at once with exit 2
    and the reason (before: it loaded the models, printed that it served there, then exit 3);
    every log line carries the time (before: none did, and the access log went to stdout, apart);
    no key's secret is logged; SIGTERM lets the request in flight finish, then the process ends."""
    home = tmp_path / "ws"
    corpus = make_corpus(tmp_path / "corpus", 2, seed=8)
    with open_checked(settings_at(home)) as ws:
        ingest_paths(ws, [corpus], collection="docs", embedder=embedder, progress=False)
    key = cli("keys", "create", "--user", "admin", env={"ARCHIVIST_HOME": str(home)}).stdout.strip().splitlines()[-1]
    port = _free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "archivist.cli", "serve", "--port", str(port), "--no-warm", "-v"],
                                  env=_child_env(home), stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        second = subprocess.run([sys.executable, "-m", "archivist.cli", "serve", "--port", str(port), "--no-warm"],
                                env=_child_env(home), capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second
        assert second.stderr.startswith(f"archivist: error: cannot listen on 127.0.0.1:{port}") and "archivist API on" not in second.stderr
        assert httpx.get(url + "/v1/models", headers={"Authorization": f"Bearer {key[:12]}-wrongsecret"}).status_code == 401
        import threading

        answer = {}

        def search():  # the first search loads the embedder (--no-warm): seconds in flight
            answer["r"] = httpx.post(url + "/v1/search", json={"query": "travel"}, timeout=120,
                                     headers={"Authorization": f"Bearer {key}"})

        t = threading.Thread(target=search)
        t.start()
        time.sleep(0.5)
        server.terminate()
        t.join(120)
        assert answer["r"].status_code == 200 and answer["r"].json()["data"], answer
        assert server.wait(timeout=60) in (0, -15)  # uvicorn re-raises SIGTERM after its graceful shutdown
    finally:
        if server.poll() is None:
            server.kill()
    text = log.read_text()
    assert key.split("-")[-1] not in text and "wrongsecret" not in text
    lines = [ln for ln in text.splitlines() if ln.strip() and "Loading weights" not in ln]
    logged = [ln for ln in lines if " - \"" in ln or "INFO:" in ln or "ERROR" in ln or "WARNING" in ln]
    assert any('"POST /v1/search HTTP/1.1" 200' in ln for ln in logged), text
    import re

    stamped = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} ")
    assert logged and all(stamped.match(ln) for ln in logged), [ln for ln in logged if not stamped.match(ln)]


def test_python_dash_m_archivist_cli_gives_the_same_one_line_errors_and_exit_status(tmp_path):
    """Scripts and units that run `python -m archivist.cli` (no console script on PATH) got a
    traceback and exit 1 for every error a stage raises as CLIError; `archivist` itself exit 2."""
    r = subprocess.run([sys.executable, "-m", "archivist.cli", "keys", "create"], env=_child_env(tmp_path / "ws"),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr == "archivist: error: keys create needs --user NAME: the user the key acts as\n" and r.stdout == ""


def test_a_new_workspace_is_readable_by_its_owner_alone(tmp_path, cli):
    """On a shared server the workspace holds every collection's documents, the chats and the
    password hashes. Before: created 0755 with archivist.db 0644 (umask 022), so any local account
    could copy the database; a folder the administrator made beforehand keeps its own mode."""
    old = os.umask(0o022)
    try:
        r = cli("users", "add", "ann", env={"ARCHIVIST_HOME": str(tmp_path / "team")})  # a command that creates it
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "team").stat().st_mode & 0o777 == 0o700
        shared = tmp_path / "shared"
        shared.mkdir(mode=0o750)
        shared.chmod(0o750)
        assert cli("users", "add", "ann", env={"ARCHIVIST_HOME": str(shared)}).returncode == 0
        assert shared.stat().st_mode & 0o777 == 0o750
        b = cli("backup", tmp_path / "bk", env={"ARCHIVIST_HOME": str(tmp_path / "team")})
        assert b.returncode == 0 and (tmp_path / "bk").stat().st_mode & 0o777 == 0o700, b.stderr
    finally:
        os.umask(old)


def test_search_and_ask_refuse_a_k_below_1_with_exit_2(tmp_path, embedder, cli):
    """A script's `-k 0` or `-k -3` found nothing (search) or answered with the default (ask), exit 0."""
    home = tmp_path / "ws"
    corpus = make_corpus(tmp_path / "corpus", 1, seed=9)
    with open_checked(settings_at(home)) as ws:
        ingest_paths(ws, [corpus], collection="docs", embedder=embedder, progress=False)
    for args in (["search", "travel", "-k", "0"], ["search", "travel", "-k", "-3"], ["ask", "travel?", "-k", "0"]):
        r = cli(*args, env={"ARCHIVIST_HOME": str(home)})
        assert r.returncode == 2 and "argument -k: must be 1 or more" in r.stderr and r.stdout == "", (args, r)
    r = cli("search", "travel", "-k", "1", "--json", env={"ARCHIVIST_HOME": str(home)})
    assert r.returncode == 0 and len(__import__("json").loads(r.stdout)["hits"]) == 1, r


@pytest.mark.parametrize("variable, value, message", [
    ("ARCHIVIST_MAX_FILE_MB", "-1", "max_file_mb must be at least 1, got -1"),  # before: every file "too large", exit 1
    ("ARCHIVIST_TOP_K", "0", "top_k must be at least 1, got 0"),
    ("ARCHIVIST_READER_TIMEOUT", "0", "reader_timeout must be more than 0 seconds, got 0.0"),
])
def test_a_size_or_count_of_0_in_the_services_environment_is_refused_at_start(tmp_path, cli, variable, value, message):
    r = cli("documents", env={"ARCHIVIST_HOME": str(tmp_path / "ws"), variable: value})
    assert r.returncode == 2 and r.stderr == f"archivist: error: {message}\n", r


def test_a_backup_onto_a_full_disk_fails_cleanly_and_leaves_nothing(tmp_path, small_disk, embedder, cli):
    home = tmp_path / "ws"
    corpus = make_corpus(tmp_path / "corpus", 3, seed=10)
    with open_checked(settings_at(home)) as ws:
        ingest_paths(ws, [corpus], collection="docs", embedder=embedder, progress=False)
        before = snapshot(ws)
    fill(small_disk, leave=64 * 1024)
    r = cli("backup", small_disk / "bk", env={"ARCHIVIST_HOME": str(home)})
    assert r.returncode == 2 and "disk is full" in r.stderr and str(small_disk / "bk") in r.stderr, r.stderr
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]  # no half backup, no hidden part folder
    with open_workspace(settings_at(home)) as ws:
        assert snapshot(ws) == before
