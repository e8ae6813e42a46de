"""An OTLP/HTTP endpoint that accepts every export and keeps nothing.

For measuring tracing's cost (bench/cpu.py, the runner's cpu_per_run tool):
the services export as they would to a collector, and the receiving end
costs as little as possible, so what is measured is the exporting side.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["discarding_receiver"]


class _Discard(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def discarding_receiver() -> str:
    """Starts the receiver on a free 127.0.0.1 port (a daemon thread); its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Discard)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"
