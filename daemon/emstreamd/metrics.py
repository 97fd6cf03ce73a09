"""Optional Prometheus metrics (``pip install 'emstream[metrics]'``), served on 127.0.0.1 by
default.  Without ``metrics.port`` nothing is imported or served."""

from __future__ import annotations


class Metrics:
    """Counters and gauges of one daemon, on their own registry.

    Parameters
    ----------
    port : int
        0 picks a free port (see ``self.port``).
    address : str
    """

    def __init__(self, port: int, address: str = "127.0.0.1"):
        from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

        self.registry = CollectorRegistry()
        self.points = Counter("emstreamd_points", "Points learned", registry=self.registry)
        self.rejects = Counter("emstreamd_rejected_lines", "Lines rejected, by reason",
                               ["reason"], registry=self.registry)
        self.batches = Counter("emstreamd_batches", "Mini-batches learned",
                               registry=self.registry)
        self.refits = Counter("emstreamd_refits", "Batch refits", registry=self.registry)
        self.alarms = Counter("emstreamd_drift_alarms", "Drift alarms raised",
                              registry=self.registry)
        self.checkpoint_time = Gauge("emstreamd_last_checkpoint_timestamp_seconds",
                                     "Unix time of the last checkpoint", registry=self.registry)
        self.log_likelihood = Gauge("emstreamd_average_log_likelihood",
                                    "Average log-likelihood of the last mini-batch, scored "
                                    "before learning it", registry=self.registry)
        self.server, self.thread = start_http_server(port, addr=address, registry=self.registry)
        self.port = self.server.server_port

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
