"""CLI: archivist serve | keys create|revoke|list."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import sys
import threading

from archivist.cli import CLIError, command, list_or_json, open_ws, settings_from


def register(sub, common) -> None:
    p = command(sub, common, "serve", cmd_serve, "the OpenAI-compatible HTTP API (http://127.0.0.1:8000/v1)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--max-waiting", type=int, default=16,
                   help="generations that may wait behind the running one; more get 429 with Retry-After (default 16)")
    p.add_argument("--no-warm", action="store_true", help="load the models on the first request instead of at start")
    p.add_argument("--workers", type=int, default=1,
                   help="API processes sharing the port and the workspace (default 1). Each loads its own "
                        "embedder, and its own chat model unless ARCHIVIST_LLM_URL names a server (docs/serving.md)")

    if "keys" in sub.choices:  # another module registered `keys` already
        return
    keys = common(sub.add_parser("keys", help="API keys for `archivist serve`: create, revoke, list"))
    ks = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    command(ks, common, "create", cmd_keys_create, "create a key for --user NAME; the key is printed on the last line, once")
    p = command(ks, common, "revoke", cmd_keys_revoke, "revoke a key by its prefix (ak-1a2b3c4d) or in full")
    p.add_argument("key", metavar="KEY_OR_PREFIX")
    command(ks, common, "list", cmd_keys_list, "keys (prefixes only) with their user and state", json=True)


def cmd_serve(args) -> int:
    import uvicorn

    from archivist.api.app import create_app

    settings = settings_from(args)
    if args.max_waiting < 0:
        raise CLIError(f"--max-waiting must be 0 or more, got {args.max_waiting}")
    if args.workers < 1:
        raise CLIError(f"--workers must be 1 or more, got {args.workers}")
    check_port_free(args.host, args.port)  # before the models load and the banner says it serves
    level = "info" if getattr(args, "verbose", False) else "warning"
    where = (f"archivist API on http://{args.host}:{args.port}/v1 (workspace {settings.home}"
             f"{f', {args.workers} workers' if args.workers > 1 else ''}); docs at http://{args.host}:{args.port}/docs")
    log_config = timed_log_config(getattr(args, "verbose", False))
    reopen_logs_on_hup()  # from now on: SIGHUP while the models load must not end it either
    if args.workers == 1:
        app = create_app(settings, max_waiting=args.max_waiting, warm=not args.no_warm)
        resume_ingest_in_background(settings)
        print(where, file=sys.stderr)
        uvicorn.run(app, host=args.host, port=args.port, log_level=level, log_config=log_config)
        return 0
    # Several processes: uvicorn starts each from an import string, so this process's settings and
    # options travel to them in the environment (the same ARCHIVIST_* variables Settings reads).
    with open_workspace_once(settings):  # create, migrate, repair once, before the workers race to
        pass
    os.environ.update(settings_env(settings))
    os.environ[WORKER_OPTIONS] = json.dumps({"max_waiting": args.max_waiting, "warm": not args.no_warm})
    resume_ingest_in_background(settings)
    print(where, file=sys.stderr)
    # uvicorn.run(..., workers=N) as it is, but with a supervisor whose SIGHUP reopens the logs
    # instead of restarting every worker (each would load its models again)
    config = uvicorn.Config("archivist.api.cli:worker_app", factory=True, workers=args.workers, host=args.host,
                            port=args.port, log_level=level, log_config=log_config)
    _supervisor(config, sockets=[config.bind_socket()]).run()
    return 0


def _log_file(fd: int) -> str | None:
    """The path of the regular file `fd` writes to (`2>>/var/log/archivist.log`, systemd's
    StandardError=append:), None for a terminal, a pipe, journald's socket or a platform without /proc."""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        path = os.readlink(f"/proc/self/fd/{fd}")
        return path if os.path.samestat(os.stat(path), os.fstat(fd)) else None
    except OSError:
        return None


def reopen_logs_on_hup():
    """Make SIGHUP reopen the log file: stderr (and stdout), when redirected to a file, are opened
    again under the name they had at start, so after logrotate renamed the file the server writes
    to the new one; the server keeps serving, requests in flight untouched. Returns the function
    that reopens them; outside the main thread (where no handler can be set), or when stderr is a
    terminal (whose SIGHUP means it was closed: the server ends), only returns it."""
    paths = {fd: path for fd in (1, 2) if (path := _log_file(fd))}

    def reopen(signum=None, frame=None) -> None:
        # Only os calls here: a signal handler must not write to sys.stderr, which the code it
        # interrupted may be writing to (a reentrant call raises); the note goes from a thread.
        done, failed = [], []
        for fd, path in paths.items():
            try:
                new = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            except OSError as e:
                failed.append(f"{path}: {e.strerror}")
                continue
            os.dup2(new, fd)
            os.close(new)
            done.append(path)
        note = ("stderr is not a file, no log to reopen" if not paths else
                "; ".join([f"reopened the log file {', '.join(sorted(set(done)))}"] * bool(done) +
                          [f"could not reopen {f}" for f in failed]))
        threading.Thread(target=print, args=(f"archivist: SIGHUP: {note}; still serving",),
                         kwargs={"file": sys.stderr}, daemon=True).start()

    # not on a terminal: there SIGHUP says the terminal is gone, and the server ends as it always did
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGHUP") and not _on_terminal():
        signal.signal(signal.SIGHUP, reopen)
    return reopen


def _on_terminal() -> bool:
    """Whether stderr is a terminal (`archivist serve` run by hand, not as a service)."""
    try:
        return os.isatty(2)
    except OSError:
        return False


def _supervisor(config, sockets):
    """uvicorn's supervisor of several workers, whose SIGHUP would restart them all (each loading its
    models again): here the parent reopens its log file and passes the signal on to each worker,
    which reopens its own (`worker_app`)."""
    from uvicorn.supervisors.multiprocess import Multiprocess

    reopen = reopen_logs_on_hup()  # the paths as they are now, before any rotation

    class Supervisor(Multiprocess):
        def handle_hup(self) -> None:  # called from its main loop, not in the signal handler
            if _on_terminal():  # the terminal was closed: stop, as the workers do
                self.should_exit.set()
                return
            reopen()
            for process in self.processes:
                if process.pid and process.process.is_alive():
                    os.kill(process.pid, signal.SIGHUP)

    return Supervisor(config, sockets=sockets)


def timed_log_config(verbose: bool = False) -> dict:
    """uvicorn's logging with the time on every line, and its access log (`-v`) on stderr beside
    the rest rather than on stdout: a long-running server's log file must say when, and in order.
    archivist's own loggers (the root) get the time too, in every worker process (uvicorn applies
    this configuration in each)."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    stamp = "%Y-%m-%dT%H:%M:%S%z"
    config = copy.deepcopy(LOGGING_CONFIG)
    for formatter in config["formatters"].values():
        formatter["fmt"] = "%(asctime)s " + formatter["fmt"]
        formatter["datefmt"] = stamp
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    config["formatters"]["archivist"] = {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s", "datefmt": stamp}
    config["handlers"]["archivist"] = {"formatter": "archivist", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
    config["root"] = {"handlers": ["archivist"], "level": "INFO" if verbose else "WARNING"}  # replaces the CLI's handler
    return config


WORKER_OPTIONS = "ARCHIVIST_API_WORKER_OPTIONS"


def check_port_free(host: str, port: int) -> None:
    """Raise CLIError when host:port cannot be listened on (another process holds it, a privileged
    port, an address not on this machine), seconds before uvicorn would find out: after loading
    the models, and after the banner that says the API is served there."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise CLIError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a socket in TIME_WAIT is no obstacle
        try:
            probe.bind(address)
        except OSError as e:
            hint = (f" (another process is listening there: `ss -ltnp 'sport = :{port}'` names it; or choose --port)"
                    if e.errno == errno.EADDRINUSE else "")
            raise CLIError(f"cannot listen on {host}:{port}: {e.strerror}{hint}") from None


def settings_env(settings) -> dict[str, str]:
    """`settings` as the ARCHIVIST_* variables from which `Settings.from_env` rebuilds it. An empty
    value is left out: it is the default of every setting that can be empty (`llm_url`, `user`), and
    from_env refuses some set empty (an unset `$VAR` in a service file)."""
    return {f"ARCHIVIST_{k.upper()}": str(v) for k, v in settings.describe().items() if v != ""}


def open_workspace_once(settings):
    from archivist.retrieval.repair import open_checked

    return open_checked(settings)


def worker_app():
    """The app of one `archivist serve --workers N` process (uvicorn calls it in each worker).

    What the workers share is on disk: SQLite in WAL mode (busy timeout; the workspace's writes
    take its locks), and the FAISS and lexical index files, which each process reloads when their
    mtime changes (retrieval/vectors.py, retrieval/lexicon.py). What they do not share: the models
    in memory and the generation queue (one per worker)."""
    from archivist.api.app import create_app
    from archivist.settings import Settings

    options = json.loads(os.environ.get(WORKER_OPTIONS) or "{}")
    reopen_logs_on_hup()  # the supervisor passes SIGHUP on: reopen this worker's log file, keep serving
    return create_app(Settings.from_env(), max_waiting=options.get("max_waiting", 16), warm=options.get("warm", True))


def resume_ingest_in_background(settings) -> threading.Thread:
    """Finish, beside the server, the ingest jobs a crash or restart cut short (`pipeline.resume_interrupted`)."""
    def work():
        from archivist.ingest.pipeline import resume_interrupted
        from archivist.workspace import open_workspace

        try:
            with open_workspace(settings) as ws:
                for job, results in resume_interrupted(ws):
                    failed = sum(r.status == "failed" for r in results)
                    print(f"archivist: resumed ingest job {job.id} into {job.spec['collection']}: {len(results)} files"
                          + (f", {failed} failed" if failed else ""), file=sys.stderr)
        except Exception as e:  # the server runs on; `archivist ingest --resume` can finish the job
            print(f"archivist: could not resume interrupted ingest jobs: {e}", file=sys.stderr)

    t = threading.Thread(target=work, name="archivist-resume-ingest", daemon=True)
    t.start()
    return t


def cmd_keys_create(args) -> int:
    from archivist.keys import create_key
    from archivist.settings import Settings
    from archivist.workspace import LOCAL_ADMIN

    # `--user` names the key's owner here; who asks is ARCHIVIST_USER (else the local admin), and a
    # member may create a key for themselves only (keys.create_key)
    owner = getattr(args, "user", None)
    if not owner:
        raise CLIError("keys create needs --user NAME: the user the key acts as")
    with open_ws(args, check_index=False) as ws:
        try:
            key = create_key(ws, owner, by=Settings.from_env().user or LOCAL_ADMIN)
        except LookupError as e:
            raise CLIError(str(e)) from None
    print(f"created an API key for {owner}; it is shown only this once, keep it secret:", file=sys.stderr)
    print(key)
    return 0


def cmd_keys_revoke(args) -> int:
    from archivist.keys import revoke_key

    with open_ws(args, check_index=False) as ws:
        k = revoke_key(ws, args.key)
    print(f"revoked {k['prefix']} of {k['user']}")
    return 0


def cmd_keys_list(args) -> int:
    import datetime as dt

    from archivist.keys import list_keys

    with open_ws(args, check_index=False) as ws:
        keys = list_keys(ws)
    if not list_or_json(keys, args.json, "no API keys (create one with `archivist keys create --user NAME`)"):
        return 0
    for k in keys:
        made = dt.datetime.fromtimestamp(k["created_at"]).strftime("%Y-%m-%d %H:%M")
        state = "revoked " + dt.datetime.fromtimestamp(k["revoked_at"]).strftime("%Y-%m-%d %H:%M") if k["revoked_at"] else "active"
        print(f"{k['prefix']}  {k['user']:20} created {made}  {state}")
    return 0
