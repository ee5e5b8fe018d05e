"""Admins: people (add, role, password, delete, erase), collections, who may read or write each one, and
members' corrections awaiting review before a fine-tune may learn them."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from archivist import access, audit, auth, feedback
from archivist.ui import core

me = core.require_admin()
ws = core.workspace()
st.title("Admin")
NONE = "no access"


def attempt(fn, *args, ok: str, warn=None, **kwargs) -> None:
    """Run an access/auth function; show its error, or rerun with a toast on success, and with the
    lines `warn(result)` gives (what is left for an admin to do) as a warning that stays."""
    try:
        result = fn(*args, **kwargs)
    except (ValueError, LookupError, access.AccessDenied) as e:
        st.error(core.md_escape(e))  # errors quote the names typed in
    else:
        st.session_state["_admin_toast"] = core.md_escape(ok)
        st.session_state["_admin_warning"] = [core.md_escape(line.strip()) for line in (warn(result) if warn else [])]
        st.rerun()


def _confirmed(verb: str, who: str, icon: str, warning: str, help: str | None = None, place: str = "user") -> bool:
    """"<Verb> <who>" asks first with `warning`; True once "Yes, <verb> <who>" is clicked ("Cancel" keeps).
    `place` keys the buttons: a page with two such buttons for one verb gives each its own."""
    key = f"confirm-{verb.lower()}-{place}"
    if st.button(f"{verb} {core.md_escape(who)}", key=f"{verb.lower()}-{place}", icon=icon, help=help):
        st.session_state[key] = who
    if st.session_state.get(key) != who:
        return False
    st.warning(f"{verb} {core.md_escape(who)}? {warning} This cannot be undone.")
    yes, no = st.columns(2)
    if yes.button(f"Yes, {verb.lower()} {core.md_escape(who)}", type="primary", key=f"{verb.lower()}-{place}-yes"):
        st.session_state.pop(key, None)
        return True
    if no.button("Cancel", key=f"{verb.lower()}-{place}-no"):
        st.session_state.pop(key, None)
        st.rerun()
    return False


def delete_user_with_confirmation(who: str) -> None:
    """"Delete <who>" asks first, naming the person and what goes with them."""
    if _confirmed("Delete", who, ":material/person_remove:", "Their conversations (their whole chat history), "
                  "access grants, API keys and sessions are deleted with them."):
        attempt(access.delete_user, ws, who, by=me, ok=f"Deleted {who}")


def erase_user_with_confirmation(who: str, place: str = "user") -> None:
    """"Erase <who>" (right to erasure, `archivist users erase`) asks first, saying what goes."""
    if _confirmed("Erase", who, ":material/delete_forever:",
                  "Besides the account: their conversations, feedback and corrections, the dataset examples made of "
                  "that feedback (adapters trained on them are marked stale), and the questions and searches in their "
                  "audit records (redacted; the log still verifies).",
                  help="a former employee's right to erasure: also what they wrote and were shown", place=place):
        from archivist import user_erase

        attempt(user_erase.erase_user, ws, who, by=me, ok=f"Erased {who} (see Manage → Audit: user.erased)",
                warn=user_erase.open_ends)


if msg := st.session_state.pop("_admin_toast", None):
    st.toast(msg, icon="✅")
for line in st.session_state.pop("_admin_warning", None) or []:
    st.warning(line)

# the page opens on People: say here that members' corrections wait, or nobody who uses only the app would know
if pending := feedback.pending_corrections(ws, me):
    st.info(f"Corrections awaiting your review: {len(pending)} (see Corrections). A fine-tune learns a member's "
            "correction only once it is approved.", icon=":material/rate_review:")
# keyed: the note above comes and goes, and an unkeyed tab bar moved by it was a new one, back on People
users_tab, collections_tab, access_tab, review_tab = st.tabs(["People", "Collections", "Access", "Corrections"],
                                                             key="admin-tabs")

# -- people ------------------------------------------------------------------------------------

with users_tab:
    users = access.list_users(ws, by=me)
    st.dataframe(pd.DataFrame([{"name": u["name"], "role": u["role"],
                                "can sign in": "yes" if auth.has_password(ws, u["name"]) else "no (command line only)",
                                "collections": ", ".join(f"{c} ({lvl})" for c, lvl in u["grants"].items())
                                or ("all" if u["role"] == "admin" else "none")} for u in users]),
                 hide_index=True, width="stretch")
    left, right = st.columns(2)
    with left.form("add-user", clear_on_submit=True):
        st.markdown("**Add a person**")
        name = st.text_input("User name", key="new-user-name")
        password = st.text_input("Password", type="password", key="new-user-password",
                                 help=f"At least {auth.MIN_PASSWORD} characters; they can change it later")
        role = st.radio("Role", ["member", "admin"], horizontal=True, key="new-user-role",
                        help="members see the collections they are given; admins see and manage everything")
        if st.form_submit_button("Add", type="primary"):
            attempt(auth.create_user, ws, name.strip(), password, role, by=me, ok=f"Added {name.strip()}")
    with right.container(border=True):
        st.markdown("**Change a person**")
        names = [u["name"] for u in users]
        who = st.selectbox("Person", names, key="edit-user")
        current = next(u for u in users if u["name"] == who)
        new_role = st.radio("Role", ["member", "admin"], index=0 if current["role"] == "member" else 1, horizontal=True,
                            key=f"edit-role-{who}", disabled=who == me, help="you cannot change your own role")
        if new_role != current["role"] and st.button("Save role", key="save-role"):
            attempt(access.set_role, ws, who, new_role, by=me, ok=f"{who} is now {new_role}")
        # a form: one click sends the typed password (a button beside a plain field needed a first
        # click to commit the field), and the field is emptied afterwards
        with st.form(f"set-password-{who}", clear_on_submit=True, border=False):
            # her own asks for the current one, as the Account page does: a browser left signed in must not
            # let whoever sits at it take the admin account over
            own_pw = st.text_input("Your current password", type="password", key=f"edit-pw-current-{who}") \
                if who == me else ""
            new_pw = st.text_input("New password", type="password", key=f"edit-pw-{who}")
            revoke = st.checkbox(f"Also revoke {'your' if who == me else 'their'} API keys", key=f"edit-revoke-{who}",
                                 help="when the password may have leaked, a key kept with it may have too")
            if st.form_submit_button("Set password"):
                if who == me:  # her sessions in other browsers end, not this one's (core.stay_signed_in says why)
                    attempt(core.change_password, own_pw, new_pw, revoke, ok="Your password is set; your sessions "
                            "in other browsers ended" + ("; your API keys were revoked" if revoke else ""))
                else:
                    attempt(auth.set_password, ws, who, new_pw, by=me, revoke_keys=revoke, ok=f"Password of {who} set; "
                            "their sessions ended" + ("; their API keys were revoked" if revoke else ""))
        if who != me:
            delete_user_with_confirmation(who)
            erase_user_with_confirmation(who)
    with st.container(border=True):  # a deleted account is in no list above: it is chosen here, or its name typed
        st.markdown("**Erase a deleted account**")
        from archivist import user_erase

        left = user_erase.deleted_accounts(ws, by=me)
        picked = st.selectbox("Deleted account", left, index=None, key="erase-deleted-pick",
                              placeholder="choose one" if left else "none left to erase",
                              help="as deleting it left it (mara#deleted-7)")
        gone = st.text_input("or the name it had", key="erase-deleted-name",
                             help="as it was (mara), or as deleting it left it (mara#deleted-7) when a current user "
                                  "has the name or several deleted accounts had it").strip() or picked or ""
        if gone in names:
            st.caption(f"{core.md_escape(gone)} is a current user: choose them under Change a person.")
        elif gone:
            erase_user_with_confirmation(gone, place="deleted")

# -- collections -------------------------------------------------------------------------------

with collections_tab:
    cols = access.list_collections(ws, by=me)
    readers: dict[str, list[str]] = {}
    for u in access.list_users(ws, by=me):
        for c, lvl in u["grants"].items():
            readers.setdefault(c, []).append(f"{u['name']} ({lvl})")
    if cols:
        st.dataframe(pd.DataFrame([{"collection": c["name"], "documents": c["documents"],
                                    "shared with": ", ".join(readers.get(c["name"], [])) or "admins only"} for c in cols]),
                     hide_index=True, width="stretch")
    else:
        st.caption("No collections yet: upload documents or create one here.")
    with st.form("new-collection", clear_on_submit=True):
        cname = st.text_input("New collection", key="new-collection-name")
        if st.form_submit_button("Create collection"):
            attempt(access.create_collection, ws, cname.strip(), by=me, ok=f"Created collection {cname.strip()}")

# -- access ------------------------------------------------------------------------------------

with access_tab:
    st.write("Who may read or write each collection. Admins may do everything everywhere; "
             "read lets a member search, chat with and fine-tune on it, write lets them add and delete documents.")
    cols = [c["name"] for c in access.list_collections(ws, by=me)]
    members = [u for u in access.list_users(ws, by=me) if u["role"] != "admin"]
    if not cols or not members:
        st.caption("Create a collection and a member first.")
    else:
        a, b, c = st.columns(3)
        who = a.selectbox("Person", [u["name"] for u in members], key="grant-user")
        coll = b.selectbox("Collection", cols, key="grant-collection")
        have = next(u for u in members if u["name"] == who)["grants"].get(coll, NONE)
        levels = [NONE, "read", "write", "admin"]
        level = c.selectbox("Access", levels, index=levels.index(have), key=f"grant-level-{who}-{coll}")
        if level != have and st.button("Save access", type="primary", key="save-grant"):
            if level == NONE:
                attempt(access.revoke, ws, who, coll, by=me, ok=f"{who} no longer has access to {coll}")
            else:
                attempt(access.grant, ws, who, coll, level, by=me, ok=f"{who} may now {level} {coll}")
        # a collection named "person" gets a column of its own, not the one of the people's names
        grid = pd.DataFrame([{"person": u["name"], **{f"{cn} (collection)" if cn == "person" else cn: u["grants"].get(cn, "")
                                                      for cn in cols}} for u in members])
        st.dataframe(grid, hide_index=True, width="stretch")

# -- corrections -------------------------------------------------------------------------------


def review(feedback_id: int, read: str | None, approve: bool) -> None:
    """Approve or reject the correction of feedback `feedback_id` (feedback.review_correction) if it still reads
    `read`, the words the page showed when the button was clicked: a member may have changed them since, and this
    run (the click's) already shows the new ones; an approval is of the words the admin read."""
    try:  # checked and decided in one transaction (its `expect`), as the CLI's --expect and the API's `correction` are
        feedback.review_correction(ws, me, feedback_id, approve, expect=feedback.correction_digest(read))
    except feedback.CorrectionChanged:
        raise LookupError(f"the correction {feedback_id} was changed or removed since this page showed it: "
                          "read it again") from None


with review_tab:
    st.markdown("**Corrections awaiting review**")
    st.caption("A member's correction of an answer is training data only once an admin approved it: the adapter "
               "fine-tuned on feedback answers everyone. Approve: a fine-tune on feedback may learn it. Reject: none "
               "will. (`archivist feedback review` on the command line.)")
    # other users' rows an admin is shown are on the audit log (`feedback.read`), as the CLI and GET /v1/feedback/review
    # record them: each row once per session, not on every rerun of the page
    recorded = st.session_state.setdefault("_feedback_read", set())
    if unseen := [(f["id"], f["user"]) for f in pending if f["id"] not in recorded]:
        audit.others_read(ws, me, "app", "feedback", unseen)
        recorded.update(i for i, _ in unseen)
    if not pending:
        st.caption("No corrections awaiting review.")
    shown = st.session_state.setdefault("_corrections_shown", {})  # id → the words the page's last run showed
    for f in pending:
        author = f["user"] or "a deleted account"
        read, shown[f["id"]] = shown.get(f["id"]), f["correction"]
        with st.container(border=True):
            cited = sorted({c.get("collection") for c in f["citations"]} - {None, ""}) or [f["collection"] or "no collection"]
            st.markdown(f"**{core.md_escape(author)}** · {core.when(f['created_at'])} · "
                        f"{core.md_escape(', '.join(cited))}")
            for label, key in (("Question", "question"), ("Answer", "answer"), ("Correction", "correction")):
                st.caption(label)
                st.text(core.plain(f[key]))  # as typed, and what is invisible or reorders text shown as such
            yes, no, _ = st.columns([1, 1, 4])
            if yes.button("Approve", key=f"approve-{f['id']}", type="primary", icon=":material/check:"):
                attempt(review, f["id"], read, True, ok=f"Approved the correction by {author}: a fine-tune may learn it")
            if no.button("Reject", key=f"reject-{f['id']}", icon=":material/block:"):
                attempt(review, f["id"], read, False, ok=f"Rejected the correction by {author}: no fine-tune learns it")
