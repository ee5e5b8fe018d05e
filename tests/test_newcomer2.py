"""A newcomer's `archivist ui`: the address it prints is the one it serves, and a port already taken is
refused before the setup code of the app running there is replaced."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from archivist import auth
from archivist.cli import main
from archivist.workspace import open_workspace


def _ui(home, *args, cwd, **more):
    env = {**os.environ, "ARCHIVIST_HOME": str(home), "HF_HUB_OFFLINE": "1", "ARCHIVIST_UI_WARMUP": "0", **more}
    for var in ("ARCHIVIST_USER", "ARCHIVIST_ADMIN_USER", "ARCHIVIST_ADMIN_PASSWORD", "STREAMLIT_SERVER_PORT",
                "STREAMLIT_SERVER_ADDRESS"):
        env.pop(var, None)
    return subprocess.Popen([sys.executable, "-m", "archivist.cli", "ui", *args], env=env, cwd=str(cwd),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _hold(port: int) -> socket.socket | None:
    """A listener on 127.0.0.1:port, or None where something else holds it already (busy either way)."""
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        return None
    s.listen()
    return s


def test_a_busy_8501_is_skipped_and_the_printed_address_is_where_the_app_is(tmp_path):
    """`make run` with another app on 8501: Streamlit moved to 8502 while `archivist ui` printed "serving
    http://localhost:8501", so the newcomer opened the other app, whose form refused her setup code. And a
    base URL path (server.baseUrlPath) was left out of the address: it led to a 404."""
    held = _hold(8501)
    proc = _ui(tmp_path / "ws", cwd=tmp_path, STREAMLIT_SERVER_BASE_URL_PATH="/team/")
    try:
        for line in proc.stderr:
            if m := re.search(r"serving (http://localhost:(\d+)\S*)", line):
                break
        else:
            raise AssertionError(f"archivist ui printed no address (exit {proc.wait()})")
        url, port = m.group(1), int(m.group(2))
        assert port != 8501 and url == f"http://localhost:{port}/team"
        deadline = time.monotonic() + 90
        while True:  # the printed address is this app's: healthy there
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "the app did not come up where printed"
            time.sleep(0.3)
    finally:
        proc.terminate()
        proc.wait(20)
        if held:
            held.close()


def test_a_chosen_port_in_use_is_refused_and_the_running_apps_setup_code_kept(tmp_path, settings, capsys):
    """A second `make run` (PORT taken by the first): Streamlit failed with "Port 8501 is not available"
    only after a new setup code had replaced the one the running app's terminal showed."""
    with open_workspace(settings) as ws:
        code = auth.issue_setup_code(ws)  # what the app already running printed
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    port = held.getsockname()[1]
    try:
        proc = _ui(settings.home, "--port", str(port), cwd=tmp_path)
        err = proc.communicate(timeout=120)[1]
    finally:
        held.close()
    assert proc.returncode == 2, err
    assert f"archivist: error: cannot serve on 127.0.0.1 port {port}" in err and "--port" in err
    assert "setup code" not in err and "serving" not in err
    with open_workspace(settings) as ws:  # the running app's code still creates the admin
        assert auth.create_first_admin(ws, "admin", "first-pass-123", from_app=True, setup_code=code)["name"] == "admin"
    assert main(["ui", "--port", "99999", "--dry-run"]) == 2  # not a port: said so, not a traceback from bind()
    assert capsys.readouterr().err == "archivist: error: port 99999 is not a port number (1 to 65535)\n"


def test_make_run_leaves_the_port_to_archivist_ui_unless_one_is_given():
    """`make run` passed --port 8501 always, so a taken 8501 stopped the newcomer's app instead of moving it."""
    root = Path(__file__).resolve().parents[1]

    def ui_line(*args):
        out = subprocess.run(["make", "-n", "run", *args], cwd=root, capture_output=True, text=True, check=True).stdout
        return [line for line in out.splitlines() if "archivist ui" in line][0].split("archivist ui")[1].split()

    assert ui_line() == [] and ui_line("PORT=9000") == ["--port", "9000"]
