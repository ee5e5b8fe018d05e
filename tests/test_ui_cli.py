"""`archivist ui`: the streamlit command it runs, and the checks it makes before starting."""

from __future__ import annotations


from archivist import auth
from archivist.cli import main
from archivist.ui.cli import APP, streamlit_command
from archivist.workspace import open_workspace


def test_streamlit_command_adds_only_what_nobody_chose():
    cmd = streamlit_command(port=8600, address="127.0.0.1", max_upload_mb=50, env={})
    assert cmd[1:5] == ["-m", "streamlit", "run", str(APP)] and APP.exists()
    flags = dict(zip(cmd[5::2], cmd[6::2]))
    assert flags == {"--server.port": "8600", "--server.address": "127.0.0.1", "--server.headless": "true",
                     "--server.maxUploadSize": "50", "--browser.gatherUsageStats": "false",
                     "--client.toolbarMode": "minimal", "--server.fileWatcherType": "none"}
    # Streamlit's own variables win over our defaults: we add nothing for them
    env = {"STREAMLIT_SERVER_PORT": "9000", "STREAMLIT_SERVER_HEADLESS": "false", "STREAMLIT_SERVER_MAX_UPLOAD_SIZE": "5",
           "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "true"}
    flags = dict(zip(*[iter(streamlit_command(env=env)[5:])] * 2))
    assert not {"--server.port", "--server.headless", "--server.maxUploadSize", "--browser.gatherUsageStats"} & set(flags)


def test_ui_dry_run_prepares_workspace_and_admin_from_env(settings, monkeypatch, capsys):
    monkeypatch.setenv("ARCHIVIST_ADMIN_USER", "root")
    monkeypatch.setenv("ARCHIVIST_ADMIN_PASSWORD", "short")
    assert main(["ui", "--dry-run"]) == 2
    assert "at least 8 characters" in capsys.readouterr().err
    monkeypatch.setenv("ARCHIVIST_ADMIN_PASSWORD", "root-pass-123")
    assert main(["ui", "--port", "8611", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "streamlit run" in out and "--server.port 8611" in out
    with open_workspace(settings) as ws:
        assert auth.verify_password(ws, "root", "root-pass-123") and not auth.needs_first_admin(ws)
