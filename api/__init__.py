"""The OpenAI-compatible HTTP API (`archivist serve`): `create_app` in app.py, the chat route in
chat.py, the generation queue in queue.py, `serve_in_thread` in serve.py. See docs/api.md."""
