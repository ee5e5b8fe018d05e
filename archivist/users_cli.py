"""CLI: archivist users add|list|password|delete|erase|role, grant, revoke, collections.

Every command acts as the local admin unless `--user NAME` or ARCHIVIST_USER names another user;
the checks themselves live in `archivist.access`.
"""

from __future__ import annotations

import sys

from archivist.cli import CLIError, command, emit_json, open_ws


def register(sub, common) -> None:
    users = common(sub.add_parser("users", help="add, list and delete users (admins only, except listing yourself)"))
    us = users.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    p = command(us, common, "add", cmd_users_add, "create a user", json=True)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--role", choices=["admin", "member"], default="member", help="admin: everything everywhere (default member)")
    command(us, common, "list", cmd_users_list, "users with their role and grants", json=True)
    p = command(us, common, "password", cmd_users_password, "set a user's password (yours, or anyone's as an admin); "
                "it ends every browser session of theirs", json=True)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--revoke-keys", action="store_true",
                   help="also revoke every API key of theirs (a leaked password often leaked with a key)")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the new password from the first line of stdin (scripts) instead of asking twice")
    p = command(us, common, "delete", cmd_users_delete, "delete a user with their grants, keys and sessions", json=True)
    p.add_argument("name", metavar="NAME")
    p = command(us, common, "erase", cmd_users_erase, "erase a person: their account and everything they wrote "
                "or were shown (right to erasure); their audit records are redacted", json=True)
    p.add_argument("name", metavar="NAME", help="the user, or a deleted account as `users delete` left it (NAME#deleted-ID) "
                   "once a new user has its name")
    p = command(us, common, "role", cmd_users_role, "make a user admin or member", json=True)
    p.add_argument("name", metavar="NAME")
    p.add_argument("role", choices=["admin", "member"])

    p = command(sub, common, "grant", cmd_grant, "give a user read, write or admin access to a collection", json=True)
    p.add_argument("target", metavar="USER")
    p.add_argument("collection", metavar="COLLECTION")
    p.add_argument("level", choices=["read", "write", "admin"])

    p = command(sub, common, "revoke", cmd_revoke, "remove a user's access to a collection", json=True)
    p.add_argument("target", metavar="USER")
    p.add_argument("collection", metavar="COLLECTION")

    p = command(sub, common, "collections", cmd_collections, "the collections you may read, with your level", json=True)
    p.add_argument("--create", metavar="NAME", help="create an empty collection (admins)")


def _actor(args) -> str | None:
    return getattr(args, "user", None)


def cmd_users_add(args) -> int:
    from archivist import access

    with open_ws(args, check_index=False) as ws:
        u = access.add_user(ws, args.name, args.role, by=_actor(args))
    if args.json:  # provisioning scripts pass --json to every command (docs/cli.md)
        emit_json(u)
    else:
        print(f"added user {u['name']} ({u['role']})")
    print(f"  no password yet: an admin sets one (`archivist users password {u['name']}`, or the app's Admin page) "
          "before they can sign in there (the CLI and API keys need none)", file=sys.stderr)
    return 0


def cmd_users_list(args) -> int:
    from archivist import access

    with open_ws(args, check_index=False) as ws:
        users = access.list_users(ws, by=_actor(args))
    if args.json:
        emit_json(users)
        return 0
    width = max([len(u["name"]) for u in users] + [4])
    for u in users:
        grants = ", ".join(f"{c}:{lvl}" for c, lvl in u["grants"].items()) or ("(all collections)" if u["role"] == "admin" else "(none)")
        print(f"{u['name']:{width}}  {u['role']:6}  {grants}")
    return 0


def cmd_users_password(args) -> int:
    from archivist import auth

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        import getpass

        password = getpass.getpass(f"new password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise CLIError("the two passwords differ; nothing changed")
    else:  # never on the command line, where `ps` and the shell's history would show it
        raise CLIError("give the new password on stdin with --password-stdin, or run this in a terminal")
    with open_ws(args, check_index=False) as ws:
        done = auth.set_password(ws, args.name, password, by=_actor(args), revoke_keys=args.revoke_keys)
    if args.json:
        emit_json(done)
        return 0
    keys = ", ".join(done["keys_revoked"]) or "none"
    print(f"password of {args.name} set; {done['sessions_ended']} browser sessions ended; API keys revoked: {keys}")
    if not args.revoke_keys:
        print("  their API keys still work: add --revoke-keys if the password leaked with one "
              f"(`archivist keys list --user {args.name}`)", file=sys.stderr)
    return 0


def cmd_users_delete(args) -> int:
    from archivist import access

    with open_ws(args, check_index=False) as ws:
        access.delete_user(ws, args.name, by=_actor(args))
    if args.json:
        emit_json({"deleted": args.name})
    else:
        print(f"deleted user {args.name}")
    return 0


def cmd_users_erase(args) -> int:
    from dataclasses import asdict

    from archivist import user_erase

    with open_ws(args, check_index=False) as ws:
        report = user_erase.erase_user(ws, args.name, by=_actor(args))
    if args.json:
        emit_json(asdict(report))
    else:
        print("\n".join(user_erase.as_lines(report)))
    return 1 if report.leftovers else 0


def cmd_users_role(args) -> int:
    from archivist import access

    with open_ws(args, check_index=False) as ws:
        u = access.set_role(ws, args.name, args.role, by=_actor(args))
    if args.json:
        emit_json(u)
    else:
        print(f"{args.name} is now {args.role}")
    return 0


def cmd_grant(args) -> int:
    from archivist import access

    with open_ws(args, check_index=False) as ws:
        g = access.grant(ws, args.target, args.collection, args.level, by=_actor(args))
    if args.json:
        emit_json(g)
    else:
        print(f"{g['user']} may now {g['level']} {g['collection']}")
    return 0


def cmd_revoke(args) -> int:
    from archivist import access

    with open_ws(args, check_index=False) as ws:
        removed = access.revoke(ws, args.target, args.collection, by=_actor(args))
    if args.json:
        emit_json({"user": args.target, "collection": args.collection, "revoked": removed})
    elif removed:
        print(f"revoked {args.target}'s access to {args.collection}")
    else:
        print(f"{args.target} had no grant on {args.collection}", file=sys.stderr)
    return 0


def cmd_collections(args) -> int:
    from archivist import access

    with open_ws(args, check_index=False) as ws:
        if args.create:
            access.create_collection(ws, args.create, by=_actor(args))
            print(f"created collection {args.create}", file=sys.stderr)
        rows = access.list_collections(ws, by=_actor(args))
    if args.json:
        emit_json(rows)
        return 0
    if not rows:
        print("no collections you may read", file=sys.stderr)
    for r in rows:
        print(f"{r['name']:24} {r['level']:6} {r['documents']:6} documents")
    return 0
