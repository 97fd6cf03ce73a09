"""Optional Prometheus metrics (``pip install 'emstream[metrics]'``), served on 127.0.0.1 by
default.  Without ``metrics.port`` nothing is imported or served.

``/metrics`` is the exposition, ``/healthz`` says whether the main loop is turning (200) or
stuck (503), anything else is 404.  The server is the daemon's only listening socket, so it
must not be able to hurt the daemon: each connection serves one request and is closed
``idle_timeout`` seconds after it opened (silent or trickling), and at most
``max_connections`` are open at once (a newcomer takes the place of the oldest that has not
asked for anything yet), so idle or half-open clients can neither use up the file
descriptors that checkpoints need nor keep a health check out.
"""

from __future__ import annotations

import heapq
import logging
import platform
import re
import socket
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from emstream import __version__

log = logging.getLogger("emstreamd")

IDLE_TIMEOUT = 10.0
MAX_CONNECTIONS = 16
TOP_KEYS = 10  # keys labelled in emstreamd_key_recent_anomalies


def reason_label(reason: str) -> str:
    """A reject reason as a Prometheus label: ``wrong field count`` -> ``wrong_field_count``."""
    return re.sub(r"[^a-z0-9]+", "_", reason.lower()).strip("_")


class _Server(ThreadingHTTPServer):
    """A thread per connection, at most ``max_connections`` of them.

    When every slot is taken, a new connection takes the slot of the oldest one that has not
    asked for anything yet (which is closed), so clients that connect and stay silent cannot
    keep a scrape or a health check out: closing the newcomer instead let 16 silent clients,
    reconnecting as they were closed, hold /healthz down for as long as they liked.  Only
    when every slot is answering a request is the newcomer closed.
    """

    daemon_threads = True
    block_on_close = False
    # A burst of connections waits in the kernel's queue rather than being refused (they are
    # accepted, and those over the bound closed, within microseconds each).
    request_queue_size = 128

    def __init__(self, address, handler, max_connections: int):
        self.address_family = socket.getaddrinfo(address[0], address[1],
                                                 type=socket.SOCK_STREAM)[0][0]
        self.max_connections = max_connections
        self._lock = threading.Lock()
        # socket -> [order of arrival, answering yet, closed to make room]
        self._open: dict = {}
        self._arrivals = 0
        super().__init__(address, handler)

    def server_bind(self):
        # HTTPServer's own would look the host name up (getfqdn), which can hang on DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request, client_address):
        with self._lock:
            held = [(state[0], sock) for sock, state in self._open.items() if not state[2]]
            if len(held) >= self.max_connections:
                silent = [(order, sock) for order, sock in held if not self._open[sock][1]]
                if not silent:
                    # Every slot is answering: close the newcomer at once rather than hold a
                    # descriptor for a client that may never speak.
                    self.shutdown_request(request)
                    return
                _, oldest = min(silent, key=lambda pair: pair[0])
                self._open[oldest][2] = True
                try:
                    oldest.shutdown(socket.SHUT_RDWR)  # (its thread's read returns; it ends)
                except OSError:
                    pass
            self._arrivals += 1
            self._open[request] = [self._arrivals, False, False]
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._forget(request)
            raise

    def answering(self, request) -> None:
        """The handler of ``request`` has read it and is answering: not to be closed."""
        with self._lock:
            if request in self._open:
                self._open[request][1] = True

    def _forget(self, request) -> None:
        with self._lock:
            self._open.pop(request, None)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._forget(request)

    def handle_error(self, request, client_address):
        # A client that vanished or timed out mid-response: not the daemon's problem, and no
        # traceback on stderr.
        log.debug("metrics: request from %s failed: %s", client_address,
                  sys.exc_info()[1])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: nothing idles between them
    server_version = "emstreamd"
    timeout = IDLE_TIMEOUT  # set per server below; applied to the socket by StreamRequestHandler
    metrics = None  # the Metrics this handler serves (set per server below)

    def setup(self):
        super().setup()
        # The whole request within the timeout, not only each read: a client that sends a
        # header line every few seconds held its slot for as long as it liked, and 16 of them
        # shut out every scrape and health check.
        self._deadline = threading.Timer(self.timeout, self._expire)
        self._deadline.daemon = True
        self._deadline.start()

    def _expire(self) -> None:
        try:
            self.connection.shutdown(socket.SHUT_RDWR)  # (the blocked read or write returns)
        except OSError:
            pass

    def finish(self):
        self._deadline.cancel()
        super().finish()

    def do_GET(self):  # http.server's naming
        self._respond(body=True)

    def do_HEAD(self):
        self._respond(body=False)

    def _respond(self, body: bool) -> None:
        self.server.answering(self.request)
        path = urlsplit(self.path).path
        if path == "/metrics":
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

            code, kind, text = 200, CONTENT_TYPE_LATEST, generate_latest(self.metrics.registry)
        elif path == "/healthz":
            healthy, message = self.metrics.health()
            code, kind, text = (200 if healthy else 503), "text/plain", (message + "\n").encode()
        else:
            code, kind, text = 404, "text/plain", b"not found: try /metrics or /healthz\n"
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        if body:
            self.wfile.write(text)

    def log_message(self, format, *args):  # the base class's signature
        log.debug("metrics: %s - %s", self.address_string(), format % args)


class Metrics:
    """Counters and gauges of one daemon, on their own registry, served over HTTP.

    Parameters
    ----------
    port : int
        0 picks a free port (see ``self.port``).
    address : str
    health : callable returning ``(healthy, message)``, optional
        What ``/healthz`` reports (default: always healthy).
    idle_timeout : float
        Seconds a connection may stay open (idle or trickling) before it is closed.
    max_connections : int
        Connections served at once.

    Raises ``ImportError`` without prometheus_client and ``OSError`` if the port cannot be
    bound.
    """

    def __init__(self, port: int, address: str = "127.0.0.1", *, health=None,
                 idle_timeout: float = IDLE_TIMEOUT, max_connections: int = MAX_CONNECTIONS):
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Info,
            ProcessCollector,
            disable_created_metrics,
        )

        # Counters' *_created series double the exposition and mean nothing to a scraper that
        # sees restarts anyway (a process-wide switch: the daemon is the only user).
        disable_created_metrics()
        self.health = health or (lambda: (True, "ok"))
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)  # process_cpu_seconds_total, open fds, memory
        Info("emstreamd_build", "Versions of the running daemon", registry=registry).info(
            {"version": __version__, "python": platform.python_version()})
        self.lines = Counter("emstreamd_lines", "Input lines read (accepted or rejected)",
                             registry=registry)
        self.points = Counter("emstreamd_points", "Points in mini-batches (the outlier gate's "
                              "included)", registry=registry)
        self.rejects = Counter("emstreamd_rejected_lines", "Lines rejected, by reason",
                               ["reason"], registry=registry)
        self.anomalies = Counter("emstreamd_anomalies", "Points flagged as anomalies",
                                 registry=registry)
        self.gated = Counter("emstreamd_gated_points", "Points far from every component, "
                             "reported and not learned (the outlier gate)", registry=registry)
        self.batches = Counter("emstreamd_batches", "Mini-batches learned", registry=registry)
        self.refits = Counter("emstreamd_refits", "Batch refits", registry=registry)
        self.alarms = Counter("emstreamd_drift_alarms", "Drift alarms raised",
                              registry=registry)
        self.checkpoint_time = Gauge("emstreamd_last_checkpoint_timestamp_seconds",
                                     "Unix time of the last checkpoint", registry=registry)
        self.log_likelihood = Gauge("emstreamd_average_log_likelihood",
                                    "Average log-likelihood of the last mini-batch, scored "
                                    "before learning it", registry=registry)
        # Keyed input: aggregate gauges, and a per-key label only for the few keys with the most
        # recent anomalies (a label per key would grow the exposition with the fleet).
        self.keys = Gauge("emstreamd_keys", "Keys known (keyed input)", registry=registry)
        self.keys_in_memory = Gauge("emstreamd_keys_in_memory", "Keys whose model is in "
                                    "memory (keyed input)", registry=registry)
        self.top_keys = Gauge("emstreamd_key_recent_anomalies", f"Anomalies since the last "
                              f"checkpoint, for the {TOP_KEYS} keys with the most",
                              ["key"], registry=registry)
        handler = type("Handler", (_Handler,), {"timeout": idle_timeout, "metrics": self})
        self.server = _Server((address, port), handler, max_connections)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={
            "poll_interval": 0.2}, name="emstreamd-metrics", daemon=True)
        self.thread.start()

    def reject(self, reason: str, count: int = 1) -> None:
        """Count rejected lines under a snake_case reason label."""
        self.rejects.labels(reason_label(reason)).inc(count)

    def set_keys(self, known: int, in_memory: int, recent_anomalies: dict) -> None:
        """The keyed gauges: counts of keys, and the top keys by ``recent_anomalies``."""
        self.keys.set(known)
        self.keys_in_memory.set(in_memory)
        self.top_keys.clear()
        for key, count in heapq.nlargest(TOP_KEYS, recent_anomalies.items(),
                                         key=lambda item: (item[1], item[0])):
            self.top_keys.labels(key).set(count)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
