"""The archivist browser app: `archivist ui` serves this file (`streamlit run ui/server.py`).

Signed out, the only page is Sign in. Signed in: Chat, Documents, Fine-tune, Evaluation, Account, and for
admins Admin and Audit. Each page is one file under pages/ and calls stage functions through ui/core.py.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from archivist.ui import core

HERE = Path(__file__).parent
st.set_page_config(page_title="archivist", page_icon="📚", layout="wide")

core.warm_models()
user = core.current_user()
core.sync_cookie()  # after current_user: an ended session's cookie is cleared in the same run


def page(name: str, title: str, icon: str, default: bool = False):
    return st.Page(str(HERE / "views" / f"{name}.py"), title=title, icon=icon, url_path=name, default=default)


if user is None:
    nav = st.navigation([page("signin", "Sign in", ":material/login:", default=True)], position="hidden")
else:
    sections = {
        "Ask": [page("chat", "Chat", ":material/chat:", default=True)],
        "Library": [page("documents", "Documents", ":material/description:")],
        "Models": [page("finetune", "Fine-tune", ":material/model_training:"),
                   page("evaluation", "Evaluation", ":material/monitoring:")],
        "You": [page("account", "Account", ":material/account_circle:")],
    }
    if core.is_admin(user):
        sections["Manage"] = [page("admin", "Admin", ":material/admin_panel_settings:"),
                              page("audit", "Audit", ":material/policy:")]
    nav = st.navigation(sections)
    with st.sidebar:
        role = "admin" if core.is_admin(user) else "member"
        st.caption(f"Signed in as **{core.md_escape(user)}** ({role})")
        if st.button("Sign out", icon=":material/logout:", key="sign-out"):
            core.sign_out()
            st.rerun()

nav.run()
