"""Sign in, or on a new workspace create the first admin account."""

from __future__ import annotations

import streamlit as st

from archivist import auth
from archivist.ui import core

ws = core.workspace()
st.title("📚 archivist")
if note := core.ended_note():
    st.info(note)

if auth.first_admin_form_open(ws):  # a new workspace; one with people in it gets its first admin where the app starts
    st.header("Create the admin account")
    st.write("This workspace is new: nobody can sign in yet. The account you create now is its admin; "
             "you can add more people on the Admin page afterwards. The setup code is printed in the terminal "
             "where the app was started (`archivist ui`).")
    with st.form("first-admin"):
        name = st.text_input("User name", value="admin")
        password = st.text_input("Password", type="password", help=f"At least {auth.MIN_PASSWORD} characters")
        again = st.text_input("Password again", type="password")
        code = st.text_input("Setup code", type="password", help="printed where the app was started; used once")
        submitted = st.form_submit_button("Create admin account", type="primary")
    if submitted:
        if password != again:
            st.error("The two passwords differ.")
        else:
            try:
                auth.create_first_admin(ws, name, password, from_app=True, setup_code=code)
                core.sign_in(name, password)
            except ValueError as e:  # AuthError and bad names alike
                st.error(core.md_escape(e))
            else:
                st.rerun()
else:
    st.header("Sign in")
    if auth.needs_first_admin(ws):
        st.info(auth.FIRST_ADMIN_FROM_ENV)  # our own words: nobody's name or text in it
    with st.form("sign-in"):
        name = st.text_input("User name")
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        try:
            core.sign_in(name, password)
        except auth.AuthError as e:
            st.error(core.md_escape(e))
        else:
            st.rerun()
    st.caption("No account? Ask an admin of this workspace to create one.")
