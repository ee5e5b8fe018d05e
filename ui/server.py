"""The app as Streamlit's ASGI server (`st.App`): `archivist ui` runs `streamlit run` on this file.

It serves ui/app.py as it is, plus one route of ours, the cookie route (ui/cookies.py): through it the
server sets the session and device cookies HttpOnly, which the page's JavaScript cannot do.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from starlette.routing import Route

from archivist.ui import cookies

app = st.App(Path(__file__).resolve().parent / "app.py",
             routes=[Route(cookies.route_path(), cookies.cookie_route, methods=["POST"])])
