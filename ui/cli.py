"""CLI: `archivist ui [--port P] [--address A]` — the browser app, served by Streamlit.

The command checks the workspace (creating it, and the first admin from ARCHIVIST_ADMIN_USER /
ARCHIVIST_ADMIN_PASSWORD), then replaces itself with `python -m streamlit run ui/server.py`, passing
the workspace options on as ARCHIVIST_* variables. Streamlit's own settings keep working: a flag
given here wins, else STREAMLIT_SERVER_* variables and .streamlit/config.toml apply as usual.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from archivist.cli import CLIError, settings_from
from archivist.settings import python_module

APP = Path(__file__).resolve().parent / "server.py"  # ui/app.py, served with the cookie route (ui/cookies.py)


def register(sub, common) -> None:
    p = common(sub.add_parser("ui", help="the browser app: upload, chat with citations, fine-tune (http://localhost:8501)"))
    p.add_argument("--port", "--server.port", dest="port", type=int, default=None,
                   help="port to serve on (default 8501, or STREAMLIT_SERVER_PORT)")
    p.add_argument("--address", "--server.address", dest="address", default=None,
                   help="address to listen on (default 127.0.0.1: this machine only, or STREAMLIT_SERVER_ADDRESS; "
                        "0.0.0.0 shares it on the network — create the admin account first)")
    p.add_argument("--headless", "--server.headless", dest="headless", default=None, choices=["true", "false"],
                   help="true (default): do not open a browser window")
    p.add_argument("--dry-run", action="store_true", help="print the streamlit command instead of running it")
    p.set_defaults(func=cmd_ui)


def streamlit_command(port: int | None = None, address: str | None = None, headless: str | None = None,
                      max_upload_mb: int = 200, env: dict | None = None) -> list[str]:
    """The `python -m streamlit run …` argument list. Flags are added only where neither the caller
    nor a STREAMLIT_* variable chose, so Streamlit's own configuration keeps working."""
    env = os.environ if env is None else env
    cmd = [*python_module("streamlit"), "run", str(APP)]

    def flag(name: str, value) -> None:
        if value is not None:
            cmd.extend([f"--{name}", str(value)])

    flag("server.port", port)
    # this machine only unless asked: until the first admin is created, whoever reaches the page can create it
    flag("server.address", address if address is not None else (None if "STREAMLIT_SERVER_ADDRESS" in env else "127.0.0.1"))
    flag("server.headless", headless if headless is not None else (None if "STREAMLIT_SERVER_HEADLESS" in env else "true"))
    if "STREAMLIT_SERVER_MAX_UPLOAD_SIZE" not in env:
        cmd.extend(["--server.maxUploadSize", str(max_upload_mb)])
    if "STREAMLIT_BROWSER_GATHER_USAGE_STATS" not in env:  # local-only: no usage statistics leave the machine
        cmd.extend(["--browser.gatherUsageStats", "false"])
    if "STREAMLIT_CLIENT_TOOLBAR_MODE" not in env:  # no "Deploy" button: this app is deployed already
        cmd.extend(["--client.toolbarMode", "minimal"])
    if "STREAMLIT_CLIENT_SHOW_ERROR_DETAILS" not in env:  # a page that fails shows no traceback (paths, code) and no
        cmd.extend(["--client.showErrorDetails", "none"])  # "Ask Google/ChatGPT" links; the server's log keeps it all
    if "STREAMLIT_SERVER_FILE_WATCHER_TYPE" not in env:  # no polling of the source tree on a shared CPU
        cmd.extend(["--server.fileWatcherType", "none"])
    return cmd


def serving_port(port: int | None = None, address: str | None = None, env: dict | None = None) -> int:
    """The port the app will serve on, found free before the workspace is touched. Left to Streamlit, a
    busy 8501 was skipped for the next free port while this command printed 8501, so a newcomer opened
    another app there (another workspace's, whose form refused her setup code); and a chosen port in use
    failed only after a new setup code had replaced the one the running app printed. A port chosen
    (--port, STREAMLIT_SERVER_PORT, .streamlit/config.toml) must be free, else CLIError; otherwise the
    first free one from 8501, passed to Streamlit as chosen."""
    from streamlit import config

    env = os.environ if env is None else env
    config.get_config_options()  # reads .streamlit/config.toml, here and in ~
    chosen = port or env.get("STREAMLIT_SERVER_PORT") or (config.get_option("server.port")
                                                          if config.is_manually_set("server.port") else None)
    host = address or env.get("STREAMLIT_SERVER_ADDRESS") or "127.0.0.1"  # as streamlit_command chooses it
    try:
        family, kind, proto, _, where = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0]
    except OSError as e:
        raise CLIError(f"cannot serve on {host}: {e.strerror or e}") from None
    if chosen and not (str(chosen).isdigit() and 0 < int(chosen) < 65536):
        raise CLIError(f"port {chosen!r} is not a port number (1 to 65535)")
    for candidate in [int(chosen)] if chosen else range(8501, 8601):
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Streamlit binds it
                probe.bind((where[0], candidate, *where[2:]))
            return candidate
        except OSError as e:
            if chosen:
                raise CLIError(f"cannot serve on {host} port {candidate}: {e.strerror or e} (another app, an earlier "
                               "`archivist ui`, may hold it: stop it, or pass --port)") from None
    raise CLIError(f"no free port on {host} from 8501 to 8600: pass --port")


def cmd_ui(args) -> int:
    from archivist import auth
    from archivist.retrieval.repair import open_checked

    s = settings_from(args)
    env = dict(os.environ)
    port = serving_port(args.port, args.address, env)  # before a setup code replaces a running app's
    with open_checked(s) as ws:  # fail here, in the terminal, rather than in the browser
        try:
            created = auth.admin_from_env(ws)
        except auth.AuthError as e:
            raise CLIError(str(e)) from None
        fresh, locked = auth.first_admin_form_open(ws), auth.needs_first_admin(ws)
        # a dry run issues no code: it would replace the one a running app printed
        code = auth.issue_setup_code(ws) if fresh and not args.dry_run else None
    env["ARCHIVIST_HOME"] = str(s.home.resolve())
    for key in ("llm", "embedder", "device", "cache"):
        if getattr(args, key, None) is not None:
            env[f"ARCHIVIST_{key.upper()}"] = str(getattr(s, key))
    env.setdefault("HF_HUB_OFFLINE", "1")
    cmd = streamlit_command(port, args.address, args.headless, s.max_file_mb, env)
    if args.dry_run:
        print(" ".join(cmd))
        return 0
    host = args.address or env.get("STREAMLIT_SERVER_ADDRESS") or "localhost"
    from streamlit import config  # read by serving_port; a base URL path is part of the address (else a 404)
    base = (env.get("STREAMLIT_SERVER_BASE_URL_PATH") or config.get_option("server.baseUrlPath") or "").strip("/")
    print(f"archivist: workspace {s.home.resolve()}", file=sys.stderr)
    if created:
        print(f"archivist: created admin {created['name']!r} from ARCHIVIST_ADMIN_USER", file=sys.stderr)
    elif fresh:
        print(auth.setup_code_line(code), file=sys.stderr)
    elif locked:
        print(f"archivist: {auth.FIRST_ADMIN_FROM_ENV}", file=sys.stderr)
    print(f"archivist: serving http://{'localhost' if host in ('0.0.0.0', '::') else host}:{port}/{base}".rstrip("/"), file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(cmd[0], cmd, env)
    return 0  # not reached
