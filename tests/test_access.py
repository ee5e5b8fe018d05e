"""Users, roles, grants and who may manage them: archivist.access and the `users`/`grant`/`revoke` CLI."""

from __future__ import annotations

import json

import pytest

from archivist import access
from archivist.access import AccessDenied
from archivist.workspace import LOCAL_ADMIN


@pytest.fixture
def team(ws):
    """admin (local), alice (admin role), rita reads A, will writes B, owen admins A, nobody holds nothing."""
    for name, role in [("alice", "admin"), ("rita", "member"), ("will", "member"), ("owen", "member"), ("nobody", "member")]:
        access.add_user(ws, name, role)
    access.grant(ws, "rita", "A", "read")
    access.grant(ws, "will", "B", "write")
    access.grant(ws, "owen", "A", "admin")
    return ws


def test_local_admin_exists_and_is_the_default_actor(ws):
    assert access.current_user(ws) == LOCAL_ADMIN
    assert access.list_users(ws) == [{"name": LOCAL_ADMIN, "role": "admin", "grants": {}}]


def test_levels_are_ordered_and_admin_role_sees_everything(team):
    ws = team
    assert access.collections_for(ws, "rita", "read") == ["A"]
    assert access.collections_for(ws, "rita", "write") == []
    assert access.collections_for(ws, "will", "read") == ["B"]
    assert access.collections_for(ws, "will", "write") == ["B"]
    assert access.collections_for(ws, "will", "admin") == []
    assert access.collections_for(ws, "owen", "admin") == ["A"]
    assert access.collections_for(ws, "alice", "admin") == ["A", "B"]
    assert access.collections_for(ws, "nobody", "read") == []
    assert access.can(ws, "will", "B", "write") and not access.can(ws, "will", "A", "read")
    assert not access.can(ws, LOCAL_ADMIN, "no-such-collection", "read")


def test_require_gives_the_same_message_for_missing_and_forbidden_collections(team):
    with pytest.raises(AccessDenied) as missing:
        access.require(team, "rita", "secret-plans", "read")
    with pytest.raises(AccessDenied) as forbidden:
        access.require(team, "rita", "B", "read")
    # Only the collection name differs: a member cannot probe which collections exist.
    assert str(missing.value).replace("secret-plans", "X") == str(forbidden.value).replace("'B'", "'X'")
    with pytest.raises(AccessDenied, match="no such user: 'mallory'"):
        access.require(team, "mallory", "A", "read")


def test_add_user_validates_names_roles_and_duplicates(ws):
    access.add_user(ws, "bob.smith@example.com")
    with pytest.raises(ValueError, match="already exists"):
        access.add_user(ws, "bob.smith@example.com")
    for bad in ["", "../etc", "a/b", " lead", "tab\there", "x" * 65, "null\x00", "rtl\u202eevil", "-dash"]:
        with pytest.raises(ValueError, match="user name"):
            access.add_user(ws, bad)
    with pytest.raises(ValueError, match="role must be one of admin, member"):
        access.add_user(ws, "carol", role="root")
    assert [u["name"] for u in access.list_users(ws)] == [LOCAL_ADMIN, "bob.smith@example.com"]


def test_only_admins_manage_users(team):
    ws = team
    for actor in ("rita", "will", "owen", "nobody"):
        with pytest.raises(AccessDenied, match="needs the admin role"):
            access.add_user(ws, "eve", by=actor)
        with pytest.raises(AccessDenied):
            access.delete_user(ws, "rita", by=actor)
        with pytest.raises(AccessDenied):
            access.set_role(ws, actor, "admin", by=actor)
        with pytest.raises(AccessDenied):
            access.create_collection(ws, "C", by=actor)
    access.add_user(ws, "eve", by="alice")
    # A member listing users sees only themselves (the list would reveal collection names).
    assert access.list_users(ws, by="rita") == [{"name": "rita", "role": "member", "grants": {"A": "read"}}]
    assert len(access.list_users(ws, by="alice")) == 7


def test_grant_and_revoke_need_admin_role_or_collection_admin(team):
    ws = team
    # owen administers A: may grant and revoke there, nowhere else, and may not create collections.
    access.grant(ws, "nobody", "A", "write", by="owen")
    assert access.grants_of(ws, "nobody") == {"A": "write"}
    with pytest.raises(AccessDenied, match="may not manage access to collection 'B'"):
        access.grant(ws, "nobody", "B", "read", by="owen")
    with pytest.raises(AccessDenied):
        access.grant(ws, "owen", "new-one", "admin", by="owen")
    assert ws.collection_id("new-one") is None
    with pytest.raises(AccessDenied):
        access.grant(ws, "rita", "A", "admin", by="rita")  # no self-promotion
    with pytest.raises(AccessDenied):
        access.revoke(ws, "rita", "A", by="will")
    assert access.revoke(ws, "nobody", "A", by="owen") is True
    assert access.revoke(ws, "nobody", "A", by="owen") is False
    assert access.grants_of(ws, "nobody") == {}
    # The admin role creates the collection on grant; a re-grant replaces the level.
    access.grant(ws, "rita", "C", "read")
    access.grant(ws, "rita", "C", "write")
    assert access.grants_of(ws, "rita") == {"A": "read", "C": "write"}
    with pytest.raises(LookupError, match="no such user: 'ghost'"):
        access.grant(ws, "ghost", "A", "read")
    with pytest.raises(ValueError, match="level must be one of read, write, admin"):
        access.grant(ws, "rita", "A", "owner")
    with pytest.raises(ValueError, match="collection name"):
        access.grant(ws, "rita", "../../etc", "read")


def test_delete_user_cascades_and_keeps_the_last_admin(team):
    ws = team
    access.delete_user(ws, "rita")
    assert access.readable_collections(ws, "owen") == ["A"]
    assert ws.db.execute("SELECT COUNT(*) FROM grants g JOIN users u ON u.id = g.user_id WHERE u.name = 'rita'").fetchone()[0] == 0
    with pytest.raises(AccessDenied, match="no such user"):
        access.readable_collections(ws, "rita")
    with pytest.raises(LookupError):
        access.delete_user(ws, "rita")
    access.delete_user(ws, "alice")
    with pytest.raises(ValueError, match="last admin"):
        access.delete_user(ws, LOCAL_ADMIN)
    with pytest.raises(ValueError, match="last admin"):
        access.set_role(ws, LOCAL_ADMIN, "member")
    access.set_role(ws, "owen", "admin")
    access.set_role(ws, LOCAL_ADMIN, "member")
    assert not access.is_admin(ws, LOCAL_ADMIN) and access.is_admin(ws, "owen")


def test_cli_users_grant_revoke(settings, cli):
    def _cli(*args, env_user: str | None = None):
        return cli(*args, env={"ARCHIVIST_USER": env_user}) if env_user else cli(*args, unset=("ARCHIVIST_USER",))

    r = _cli("users", "add", "rita")
    assert r.returncode == 0 and "no password yet" in r.stderr  # they cannot sign in to the app until one is set
    assert _cli("users", "add", "boss", "--role", "admin").returncode == 0
    r = _cli("grant", "rita", "finance", "read")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "rita may now read finance"
    # rita (by --user or ARCHIVIST_USER) may not manage anything, and says so clearly.
    r = _cli("--user", "rita", "grant", "rita", "finance", "admin")
    assert r.returncode == 2
    assert "may not manage access to collection 'finance'" in r.stderr
    r = _cli("users", "add", "eve", env_user="rita")
    assert r.returncode == 2 and "needs the admin role" in r.stderr
    r = _cli("users", "list", "--json", env_user="rita")
    assert json.loads(r.stdout) == [{"name": "rita", "role": "member", "grants": {"finance": "read"}}]
    r = _cli("users", "list", "--json", "--user", "boss")
    assert [(u["name"], u["role"], u["grants"]) for u in json.loads(r.stdout)] == [
        ("admin", "admin", {}), ("boss", "admin", {}), ("rita", "member", {"finance": "read"})]
    r = _cli("revoke", "rita", "finance")
    assert r.returncode == 0 and "revoked" in r.stdout
    r = _cli("collections", "--json", "--user", "rita")
    assert json.loads(r.stdout) == []
    r = _cli("--user", "ghost", "users", "list")
    assert r.returncode == 2 and "no such user: 'ghost'" in r.stderr
