"""systemd's sd_notify: one datagram to $NOTIFY_SOCKET (a leading '@' is an abstract socket)."""

from __future__ import annotations

import os
import socket
import time


# Pings come at most this often, whatever WATCHDOG_USEC says.
MIN_PING_SECONDS = 0.01
# Seconds a message other than a ping waits for room in a full notify socket.
NOTIFY_WAIT = 1.0


def notify(message: str) -> bool:
    """Send ``message`` (e.g. "READY=1") if running under systemd; False otherwise."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            # A socket whose reader does not read fills after ten datagrams, and a blocking
            # send then held the main loop for good (SIGTERM could not stop it): a watchdog
            # ping never waits (the next one comes soon), READY=1 and STOPPING=1 a second at
            # most (systemd's queue, shared by every unit, may be full for a moment).
            if message.startswith("WATCHDOG="):
                sock.sendto(message.encode(), socket.MSG_DONTWAIT, address)
            else:
                sock.settimeout(NOTIFY_WAIT)
                sock.sendto(message.encode(), address)
    except OSError:  # (BlockingIOError and a timeout included: that message is dropped)
        return False
    return True


def watchdog_interval(environ=os.environ) -> float | None:
    """Seconds between WATCHDOG=1 pings: half of systemd's WATCHDOG_USEC, or None when there
    is no watchdog (or it watches another process: WATCHDOG_PID)."""
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
        pid = int(environ.get("WATCHDOG_PID") or os.getpid())
    except ValueError:
        return None
    if usec <= 0 or pid != os.getpid():
        return None
    # (WATCHDOG_USEC=1 sent 20,000 pings a second from an idle daemon, 43% of a core)
    return max(usec / 2e6, MIN_PING_SECONDS)


class Watchdog:
    """Pings systemd's watchdog when :meth:`ping` is called and half its period has passed.

    The main loop calls it on every turn, so pings stop when the loop hangs: what the
    watchdog is for.  They do not depend on status lines (``status.every_seconds: 0``).
    """

    def __init__(self, environ=os.environ, clock=time.monotonic):
        self.interval = watchdog_interval(environ)
        self.clock = clock
        self.next = 0.0

    def ping(self) -> None:
        if self.interval is None:
            return
        now = self.clock()
        if now >= self.next:
            notify("WATCHDOG=1")
            self.next = now + self.interval
