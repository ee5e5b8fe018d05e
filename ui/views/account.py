"""Your account: change your own password (every signed-in user, members too)."""

from __future__ import annotations

import streamlit as st

from archivist import auth
from archivist.ui import core

core.require_user()
st.title("Account")
if msg := st.session_state.pop("_account_toast", None):
    st.toast(msg, icon="✅")

st.subheader("Change your password")
st.write("Your sessions in other browsers end; this one stays signed in. If the password may have leaked, "
         "an API key kept with it may have too: revoke your keys with it and create new ones "
         "(`archivist keys create`).")
with st.form("change-password", clear_on_submit=True):
    current = st.text_input("Current password", type="password")
    new = st.text_input("New password", type="password", help=f"At least {auth.MIN_PASSWORD} characters")
    again = st.text_input("New password again", type="password")
    revoke = st.checkbox("Also revoke my API keys")
    submitted = st.form_submit_button("Change password", type="primary")
if submitted:
    if new != again:
        st.error("The two new passwords differ.")
    else:
        try:
            done = core.change_password(current, new, revoke)
        except ValueError as e:  # AuthError: wrong current password, a weak new one, or the wait after failures
            st.error(core.md_escape(e))
        else:
            keys = f"; {len(done['keys_revoked'])} API keys revoked" if revoke else ""
            st.session_state["_account_toast"] = f"Password changed; {done['sessions_ended']} other sessions ended{keys}"
            st.rerun()
