"""Accounts, passwords, sessions and the first admin (archivist.auth), plus feedback and chat history."""

from __future__ import annotations

import json
import time

import pytest

from archivist import access, auth, conversations, feedback
from archivist.workspace import LOCAL_ADMIN


def test_password_hash_is_salted_scrypt_and_verifies(ws):
    a, b = auth.hash_password("correct horse"), auth.hash_password("correct horse")
    assert a.startswith("scrypt$16384$8$1$") and a != b  # fresh salt each time
    assert auth.password_matches(a, "correct horse") and auth.password_matches(b, "correct horse")
    assert not auth.password_matches(a, "correct horsE")
    assert not auth.password_matches(None, "x") and not auth.password_matches("md5$abc", "x")
    assert not auth.password_matches("scrypt$16384$8$1$!!$??", "x")  # malformed: no match, no crash


def test_new_workspace_needs_first_admin_and_passwordless_admin_cannot_sign_in(ws):
    assert auth.needs_first_admin(ws)
    assert not auth.verify_password(ws, LOCAL_ADMIN, "")
    with pytest.raises(auth.AuthError):
        auth.sign_in(ws, LOCAL_ADMIN, "anything at all")
    auth.create_first_admin(ws, LOCAL_ADMIN, "s3cret-pass")  # the CLI's admin gets a password
    assert not auth.needs_first_admin(ws)
    assert access.is_admin(ws, LOCAL_ADMIN) and auth.verify_password(ws, LOCAL_ADMIN, "s3cret-pass")
    with pytest.raises(auth.AuthError, match="already has an admin"):
        auth.create_first_admin(ws, "mallory", "another-pass")
    assert ws.db.execute("SELECT COUNT(*) FROM users WHERE name = 'mallory'").fetchone()[0] == 0


def test_first_admin_under_a_new_name_and_from_environment(ws):
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    assert access.is_admin(ws, "alice") and auth.verify_password(ws, "alice", "alice-pass-1")
    assert auth.admin_from_env(ws, {"ARCHIVIST_ADMIN_USER": "bob", "ARCHIVIST_ADMIN_PASSWORD": "bob-pass-12"}) is None


def test_admin_from_env_on_new_workspace(ws):
    assert auth.admin_from_env(ws, {}) is None
    with pytest.raises(auth.AuthError, match="ARCHIVIST_ADMIN_PASSWORD.*at least 8"):
        auth.admin_from_env(ws, {"ARCHIVIST_ADMIN_USER": "root", "ARCHIVIST_ADMIN_PASSWORD": "short"})
    made = auth.admin_from_env(ws, {"ARCHIVIST_ADMIN_USER": "root", "ARCHIVIST_ADMIN_PASSWORD": "long-enough"})
    assert made == {"name": "root", "role": "admin"}
    assert auth.verify_password(ws, "root", "long-enough")


def test_create_user_checks_actor_password_and_name(ws):
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    auth.create_user(ws, "bob", "bob-pass-12", "member", by="alice")
    assert auth.verify_password(ws, "bob", "bob-pass-12") and not access.is_admin(ws, "bob")
    with pytest.raises(access.AccessDenied):
        auth.create_user(ws, "carol", "carol-pass-1", by="bob")  # members cannot add people
    with pytest.raises(auth.AuthError, match="at least 8"):
        auth.create_user(ws, "carol", "short", by="alice")
    with pytest.raises(ValueError, match="already exists"):
        auth.create_user(ws, "bob", "bob-pass-99", by="alice")
    with pytest.raises(ValueError):
        auth.create_user(ws, "../etc", "good-password", by="alice")
    # passwords: own or by an admin; a reset ends the user's sessions
    token = auth.sign_in(ws, "bob", "bob-pass-12")
    with pytest.raises(access.AccessDenied):
        auth.set_password(ws, "alice", "hijacked-pw", by="bob")
    auth.set_password(ws, "bob", "new-bob-pass", by="alice")
    assert auth.session_user(ws, token) is None
    assert auth.verify_password(ws, "bob", "new-bob-pass") and not auth.verify_password(ws, "bob", "bob-pass-12")


def test_sessions_store_only_hashes_expire_and_end(ws):
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    token = auth.sign_in(ws, " alice ", "alice-pass-1")
    assert auth.session_user(ws, token) == "alice"
    stored = [r[0] for r in ws.db.execute("SELECT token_hash FROM sessions")]
    assert token not in stored and len(stored) == 1 and len(stored[0]) == 64
    assert auth.session_user(ws, token + "x") is None and auth.session_user(ws, None) is None
    auth.end_session(ws, token)
    assert auth.session_user(ws, token) is None
    short = auth.create_session(ws, "alice", seconds=0.2)
    assert auth.session_user(ws, short) == "alice"
    time.sleep(0.3)
    assert auth.session_user(ws, short) is None
    assert ws.db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 0  # the expired row is gone
    with pytest.raises(auth.AuthError, match="wrong user name or password"):
        auth.sign_in(ws, "alice", "wrong-password")
    with pytest.raises(auth.AuthError, match="wrong user name or password"):
        auth.sign_in(ws, "nobody", "alice-pass-1")


def test_feedback_is_stored_updated_and_scoped(ws):
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    auth.create_user(ws, "bob", "bob-pass-12", by="alice")
    cites = [{"n": 1, "document": "handbook.pdf", "page": 2, "chunk_id": 7, "text": "Leave is 20 weeks.", "heading": ("HR",)}]
    fid = feedback.record_feedback(ws, "bob", "How long is leave?", "10 weeks [1]", -1, citations=cites,
                                   adapter="hr-v1", collection="hr")
    row = ws.db.execute("SELECT f.*, u.name FROM feedback f JOIN users u ON u.id = f.user_id WHERE f.id = ?", (fid,)).fetchone()
    assert (row["name"], row["rating"], row["adapter"], row["collection"]) == ("bob", -1, "hr-v1", "hr")
    assert json.loads(row["citations"])[0]["heading"] == ["HR"]
    feedback.update_feedback(ws, fid, "bob", correction="  20 weeks  ")
    assert feedback.find_feedback(ws, "bob", "How long is leave?", "10 weeks [1]") == {"id": fid, "rating": -1, "correction": "20 weeks",
                                                                                        "review": None}
    with pytest.raises(LookupError):
        feedback.update_feedback(ws, fid, "alice", rating=1)  # not alice's feedback
    with pytest.raises(ValueError, match="rating"):
        feedback.record_feedback(ws, "bob", "q", "a", 5)
    with pytest.raises(ValueError, match="needs a rating"):
        feedback.record_feedback(ws, "bob", "q", "a", 0, correction="   ")
    assert [f["id"] for f in feedback.list_feedback(ws, "alice")] == [fid]  # admins see everyone's
    feedback.record_feedback(ws, "alice", "Other?", "Yes", 1)
    assert [f["question"] for f in feedback.list_feedback(ws, "bob")] == ["How long is leave?"]


def test_conversations_belong_to_their_user(ws):
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    auth.create_user(ws, "bob", "bob-pass-12", by="alice")
    cid = conversations.start_conversation(ws, "bob")
    conversations.add_message(ws, cid, "bob", "user", "What is   the leave policy?")
    conversations.add_message(ws, cid, "bob", "assistant", "20 weeks [1]", citations=[{"n": 1, "document": "h.pdf"}],
                              meta={"not_found": False})
    msgs = conversations.messages(ws, cid, "bob")
    assert [m["role"] for m in msgs] == ["user", "assistant"]
    assert msgs[1]["citations"] == [{"n": 1, "document": "h.pdf"}] and msgs[1]["not_found"] is False
    assert conversations.history(ws, cid, "bob") == [{"role": "user", "content": "What is   the leave policy?"},
                                                     {"role": "assistant", "content": "20 weeks [1]"}]
    assert conversations.list_conversations(ws, "bob")[0]["title"] == "What is the leave policy?"
    assert conversations.list_conversations(ws, "alice") == []
    with pytest.raises(LookupError):
        conversations.messages(ws, cid, "alice")
    with pytest.raises(LookupError):
        conversations.add_message(ws, cid, "alice", "user", "sneaky")
    conversations.delete_conversation(ws, cid, "bob")
    assert conversations.list_conversations(ws, "bob") == []
