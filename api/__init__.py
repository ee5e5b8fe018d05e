"""The OpenAI-compatible HTTP API (`archivist serve`): `create_app` in app.py assembles one router module
per resource (health, models, chat, embeddings, search, documents, jobs, audit) behind the Guard (guard.py: the key,
then the body's size, before the body is read); deps.py holds what the routes share, queue.py the
generation queue, serve.py `serve_in_thread`. See docs/api.md."""
