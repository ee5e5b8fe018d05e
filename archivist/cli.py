"""The `archivist` command line. Each stage registers its own subcommands (see COMMAND_MODULES);
this file holds the shared options and error handling (`doctor` is archivist/doctor.py).

`--json` output goes to stdout alone; progress and logs go to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sqlite3
import sys
import warnings

from archivist import __version__

# Modules with `register(subparsers)`; a stage adds its commands by adding its module here.
COMMAND_MODULES = [
    "archivist.doctor",  # first: later modules add their options to it (finetune's --finetune)
    "archivist.ingest.cli",
    "archivist.retrieval.cli",
    "archivist.finetune.cli",
    "archivist.retrieval.eval_cli",
    "archivist.users_cli",
    "archivist.jobs_cli",
    "archivist.ui.cli",
    "archivist.api.cli",
    "archivist.audit_cli",
    "archivist.feedback_cli",
    "archivist.backup",
]


class CLIError(Exception):
    """A user-facing error: printed as `archivist: error: ...`, exit status 2 unless given."""

    def __init__(self, message: str, status: int = 2):
        super().__init__(message)
        self.status = status


def settings_from(args) -> "Settings":
    from archivist.settings import Settings

    overrides = {k: getattr(args, k, None) for k in ("home", "user", "llm", "embedder", "device", "cache", "ocr")}
    for name, value in overrides.items():  # `--home "$DIR"` with DIR unset made the current folder the workspace,
        if value is not None and not str(value).strip():  # and `--user "$U"` acted as the local admin
            raise CLIError(f"--{name} is empty (an unset variable in a script?); leave it out for the default")
    return Settings.from_env(**overrides)


# The commands that add what a new deployment starts from (documents, adapters, accounts, keys, collections) may
# create the workspace, and say so; every other one needs it there: a mistyped --home had made a new,
# empty workspace, and the user saw "no documents" with no hint (docs/cli.md).
CREATES_WORKSPACE = ("ingest", "finetune", "users add", "keys create", "collections --create")


def open_ws(args, check_index: bool = True, upgrade: bool = True):
    """The workspace the command's flags (or the environment) name. With check_index (for commands
    that search or answer) its files derived from SQLite are checked and repaired, by the retrieval
    stage: the CLI is a shell over the stages, the one kernel module that names them. upgrade=False
    (with check_index=False: `archivist backup`) leaves its schema unmigrated (`open_workspace`).
    Raises CLIError when no workspace is there and the command is not one of CREATES_WORKSPACE."""
    from archivist.workspace import open_workspace

    settings = settings_from(args)
    missing = _missing_workspace(settings.home)
    words = " ".join(_command_words(args) + (["--create"] if getattr(args, "create", None) else []))
    if missing is not None and words not in CREATES_WORKSPACE:
        source = "--home" if getattr(args, "home", None) else "ARCHIVIST_HOME" if os.environ.get("ARCHIVIST_HOME") \
            else "the default"
        advice = "name the workspace folder" if settings.home.is_file() else \
            "check the path, or start a workspace there with `archivist ingest FILES`"
        raise CLIError(f"no workspace at {settings.home.resolve()} ({source}): {missing}; {advice}")
    if check_index:
        from archivist.retrieval.repair import open_checked

        ws = open_checked(settings)
    else:
        ws = open_workspace(settings, upgrade=upgrade)
    if missing is not None:
        print(f"archivist: created a new workspace at {settings.home.resolve()}", file=sys.stderr)
    return ws


def _missing_workspace(home) -> str | None:
    """Why `home` holds no workspace yet ("the folder does not exist", "... holds no archivist.db"),
    or None when it holds one: asked before opening, as `open_workspace` creates whatever is missing."""
    try:
        if (home / "archivist.db").exists():
            return None
        if not home.exists():
            return "the folder does not exist"
    except OSError:  # a folder this user may not enter: opening it names the owner (workspace.unwritable_database)
        return None
    if home.name == "archivist.db":
        return f"it is the database file of the workspace {home.parent}, not its folder"
    if not home.is_dir():
        return "it is a file, not a folder"
    return "the folder holds no archivist.db"


def _command_words(args) -> list[str]:
    """The command and its action as typed: ["users", "add"], ["search"]."""
    actions = [getattr(args, k) for k in sorted(vars(args)) if k.endswith("_command")]
    return [w for w in [getattr(args, "command", None), *actions] if w]


def check_collections(ws, user: str | None, names) -> None:
    """Collections named by -c that `user` may not read: a typo there found nothing with exit 0 and
    no word, which a script cannot tell from a real miss. An admin, who may know every name, gets
    an error (CLIError: exit 2), as from the API; a member a note on stderr that names no collection
    as existing, and the command goes on in the rest (the search's audit record lists the refused)."""
    from archivist import access

    if not names:
        return
    user = access.current_user(ws, user)
    readable = set(access.readable_collections(ws, user))
    for name in dict.fromkeys(names):
        if name in readable:
            continue
        if access.is_admin(ws, user):
            raise CLIError(f"no collection {name!r} (see `archivist collections`)")
        print(f"archivist: note: you may not read a collection {name!r}, or there is none; it is left out",
              file=sys.stderr)


def collection_arg(value: str) -> str:
    """argparse's type of every -c/--collection: an empty or blank name (`-c "$C"`, C unset) is refused
    (exit 2) before the workspace is opened, as the API refuses it (422): ingest stored into the default
    collection, `documents` printed "no documents" and `delete` "no document", all without a word."""
    from archivist.access import blank_collection

    refusal = blank_collection(value, "-c")
    if refusal:
        raise argparse.ArgumentTypeError(refusal)
    return value


def emit_json(obj) -> None:
    """`obj` as the one JSON document on stdout; a dict, or a list's dicts, get iso_times' date twins."""
    if isinstance(obj, dict):
        obj = iso_times(obj)
    elif isinstance(obj, list):
        obj = [iso_times(o) if isinstance(o, dict) else o for o in obj]
    # the whole document first, then one write: json.dump wrote it piece by piece, and a Ctrl-C while a
    # long result (eval's per-question rows) was going out left half a document in the script's file
    text = json.dumps(obj, ensure_ascii=False, indent=2, default=str)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def iso_times(row: dict) -> dict:
    """`row` with an ISO 8601 UTC copy (`2026-12-07T10:11:12+00:00`, the audit log's form) beside each
    epoch-seconds field named `*_at` (`added_at` -> `added_at_iso`; None stays None): the numbers
    stay, as the API gives them, and a script or a reader gets a date with its zone (docs/cli.md)."""
    from datetime import datetime, timezone

    out = {}
    for key, value in row.items():
        out[key] = value
        if key.endswith("_at") and isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"{key}_iso"] = datetime.fromtimestamp(value, timezone.utc).isoformat(timespec="seconds")
        elif key.endswith("_at") and value is None:
            out[f"{key}_iso"] = None
    return out


def list_or_json(rows: list, as_json: bool, empty: str) -> bool:
    """Print `rows` as JSON, or `empty` on stderr when there are none.
    Returns True when the caller should still print its table."""
    if as_json:
        emit_json(rows)
        return False
    if not rows:
        print(empty, file=sys.stderr)
        return False
    return True


def common(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options every subcommand takes (they may also come before the subcommand)."""
    g = parser.add_argument_group("workspace")
    g.add_argument("--home", default=argparse.SUPPRESS, help="workspace folder (ARCHIVIST_HOME, default ./archivist-data)")
    g.add_argument("--user", default=argparse.SUPPRESS, help="act as this user (ARCHIVIST_USER; default the local admin)")
    g.add_argument("--llm", default=argparse.SUPPRESS, help="chat model: catalog name, HF id or path (ARCHIVIST_LLM)")
    g.add_argument("--embedder", default=argparse.SUPPRESS, help="embedder: catalog name, HF id or path (ARCHIVIST_EMBEDDER)")
    g.add_argument("--device", default=argparse.SUPPRESS, choices=["auto", "cpu", "cuda"], help="ARCHIVIST_DEVICE")
    g.add_argument("--cache", default=argparse.SUPPRESS, help="model cache (ARCHIVIST_CACHE, default ~/.cache/archivist)")
    g.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log more to stderr")
    return parser


def command(sub, common, name: str, func, help: str, *, json: bool = False) -> argparse.ArgumentParser:
    """Subcommand `name` of `sub`, running `func`, with the common options (and `--json` when it can
    print its result as JSON); returns its parser for the options of its own."""
    p = common(sub.add_parser(name, help=help))
    if json:
        p.add_argument("--json", action="store_true", help="the result as JSON on stdout")
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = common(argparse.ArgumentParser(prog="archivist", description="Fine-tuning and RAG over your own documents."))
    parser.add_argument("--version", action="version", version=f"archivist {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # that stage has no commands yet
                continue
            raise
        module.register(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit status (docs/cli.md): 0 done, 1 done with a problem it names, 2 an
    error or refusal, 130 interrupted (Ctrl-C), 141 stdout closed early (`archivist ... | head`)."""
    _hold_standard_streams()
    stdout, sys.stdout = sys.stdout, _Output(sys.stdout)
    stderr, sys.stderr = sys.stderr, _Stderr(sys.stderr)
    try:
        try:
            return _run(argv)
        finally:
            try:
                sys.stdout.flush()  # a pipe's reader that went away shows here, not as Python's "Exception ignored" at exit
            finally:
                sys.stdout, sys.stderr = stdout, stderr
    except KeyboardInterrupt:  # also while the libraries import, before a command runs
        print("archivist: interrupted; run the same command again to finish", file=sys.stderr)
        return 130
    except BrokenPipeError:
        if not _stdout_gone():
            raise
        # the reader (head, grep -q) has what it wanted: no traceback, no "error"; what is left unwritten
        # goes nowhere, and the status says the output was cut short, as a program killed by SIGPIPE's would
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OutputError as e:  # stdout on a full disk (`> /var/log/x.json`): was a traceback
        print(f"archivist: error: cannot write the output to stdout: {e}", file=sys.stderr)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # what is left is dropped at exit
        return 1


class _Stderr:
    """sys.stderr while a command runs. Once its reader has gone (`archivist ingest DIR 2>&1 | head`)
    the progress bar's next line raised BrokenPipeError and stopped the ingest half done, its job
    left for dead; now what goes to stderr is dropped and the work goes on (stdout says 141 at the end)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._drop()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._drop()

    def _drop(self) -> None:
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())  # what is buffered goes there too
        except (OSError, ValueError, AttributeError):  # no file descriptor (a test's captured stderr)
            pass

    def __getattr__(self, name):
        return getattr(self._stream, name)


class OutputError(Exception):
    """Writing the command's output to stdout failed (a full disk, an I/O error); not a broken pipe."""


class _Output:
    """sys.stdout while a command runs, its failed writes raised as OutputError, so main tells them
    from the same OSError met writing the workspace."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        return self._guard(self._stream.write, text)

    def flush(self) -> None:
        self._guard(self._stream.flush)

    def _guard(self, call, *args):
        try:
            return call(*args)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise OutputError(e.strerror or str(e)) from e

    def __getattr__(self, name):  # isatty, fileno, encoding ... as the stream has them
        return getattr(self._stream, name)


def _hold_standard_streams() -> None:
    """A cron line's `archivist ... >&-` starts Python with fd 1 closed and sys.stdout None: the first
    print was an AttributeError traceback, and the next file opened (a FAISS index, a dataset) took
    fd 1 and would have taken the prints. /dev/null holds a closed 0, 1 or 2, and the output is dropped,
    as the command line asked."""
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
        except OSError:
            held = os.open(os.devnull, os.O_RDWR)  # the lowest free fd: this one, as the lower ones are open
            if held != fd:
                os.dup2(held, fd)
                os.close(held)
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, mode, closefd=False))


def _stdout_gone() -> bool:
    """True when stdout is a pipe whose reader has closed it (Linux flags it POLLERR)."""
    import select

    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poll.poll(0))
    except (OSError, ValueError, AttributeError):  # no file descriptor (a test's captured stdout)
        return False


def _run(argv: list[str] | None = None) -> int:
    from archivist.models import hub_offline_by_default

    hub_offline_by_default()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    _quiet_libraries(getattr(args, "verbose", False))
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    from archivist.access import AccessDenied
    from archivist.catalog import ModelNotFound
    from archivist.workspace import WorkspaceError

    try:
        return int(args.func(args) or 0)
    except CLIError as e:
        print(f"archivist: error: {e}", file=sys.stderr)
        return e.status
    except (AccessDenied, WorkspaceError, LookupError, ValueError, FileNotFoundError, ConnectionError, ModelNotFound) as e:
        if isinstance(e, BrokenPipeError) and _stdout_gone():  # not an error: the output's reader stopped (main)
            raise
        print(f"archivist: error: {e}", file=sys.stderr)
        if isinstance(e, AccessDenied):
            _record_refusal(args, e)
        return 2
    except KeyboardInterrupt:
        print("archivist: interrupted; run the same command again to finish", file=sys.stderr)
        return 130
    except sqlite3.DatabaseError as e:  # a damaged page of archivist.db, met after the workspace opened
        from archivist.workspace import damaged

        if (error := damaged(e, settings_from(args).home)) is None:
            raise
        print(f"archivist: error: {error}", file=sys.stderr)
        return 2


def _record_refusal(args, e: Exception) -> None:
    """A refused command is on the audit log (`access.denied`, docs/governance.md): written on a
    connection of its own once the command's transaction has rolled back. The target is the command
    and its action, never its arguments (`keys revoke` takes a key). Failing to record never hides
    the refusal itself."""
    try:
        from archivist import audit
        from archivist.workspace import LOCAL_ADMIN, open_workspace

        settings = settings_from(args)
        if not (settings.home / "archivist.db").exists():
            return
        attempt = " ".join(str(a) for a in [*_command_words(args), getattr(args, "what", None)] if a)
        with open_workspace(settings) as ws:
            audit.denied(ws, settings.user or LOCAL_ADMIN, "cli", attempt, str(e))
    except Exception as err:  # noqa: BLE001 - the refusal is already printed; say why it is not on the log
        print(f"archivist: warning: the refusal could not be written to the audit log: {err}", file=sys.stderr)


def _quiet_libraries(verbose: bool) -> None:
    if verbose:
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", category=FutureWarning)  # libraries' deprecation notes are not the user's business
    for name in ("transformers", "sentence_transformers", "bitsandbytes", "httpx", "filelock", "faiss"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as tlog

        tlog.set_verbosity_error()
        tlog.disable_progress_bar()
    except Exception:
        pass


if __name__ == "__main__":
    # `python -m archivist.cli` runs this file as __main__, a second copy of the module: the stages
    # raise archivist.cli.CLIError, which this copy's `except CLIError` would not catch (a traceback
    # and exit 1 instead of the one-line error and exit 2), so run the imported module's main
    from archivist.cli import main as _main

    sys.exit(_main())
