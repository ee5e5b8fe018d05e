"""Run the API app under uvicorn in a background thread (tests, benchmarks, notebooks).

`archivist serve` runs uvicorn in the foreground instead; this is the same server, minus signal
handling (uvicorn installs signal handlers only in the main thread).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass
class RunningServer:
    url: str  # http://host:port, without /v1
    server: object  # uvicorn.Server
    thread: threading.Thread

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


def serve_in_thread(app, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0) -> RunningServer:
    """Start `app` on host:port (0: a free port) and return once it accepts connections.

    Raises RuntimeError when it has not started within `timeout` seconds (e.g. the port is taken).
    """
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="archivist-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the API server did not start on {host}:{port}")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    return RunningServer(url=f"http://{host}:{bound}", server=server, thread=thread)
