"""What the daemon says at exit: this run's counts, the lifetime counts, the components.

The daemon's counters are lifetime counts (restored from the checkpoint); this run's are the
difference from their values at start.
"""

from __future__ import annotations

import copy
import time

import numpy as np


def snapshot(counters: dict) -> dict:
    """The counters as they stand (at start, after the resume)."""
    return copy.deepcopy(counters)


def this_run(counters: dict, at_start: dict) -> dict:
    """``counters`` minus ``at_start``, reasons of rejects included."""
    out = {k: v - at_start.get(k, 0) for k, v in counters.items() if k != "rejected"}
    before = at_start.get("rejected", {})
    out["rejected"] = {reason: n - before.get(reason, 0)
                       for reason, n in counters.get("rejected", {}).items()
                       if n - before.get(reason, 0)}
    return out


def _counts(c: dict, timing: str = "") -> str:
    rejected = ", ".join(f"{n} {r}" for r, n in sorted(c["rejected"].items())) or "none"
    return (f"{c['rows']} points in {c['batches']} batches from {c['lines']} lines"
            f"{timing}; rejected: {rejected}; anomalies: {c['anomalies']}; kept out of the "
            f"model by the outlier gate: {c['gated']}; drift alarms: {c['alarms']}; "
            f"refits: {c['refits']}")


def components(model) -> list[dict]:
    """Weight and mean of each component, by the first feature's mean; [] while warming up."""
    if not model._is_fitted():
        return []
    order = np.argsort(model.means_[:, 0])
    return [{"index": int(k), "weight": float(model.weights_[k]),
             "mean": model.means_[k].tolist()} for k in order]


def build(daemon, at_start: dict) -> tuple[str, dict]:
    """The summary of a finished run as text lines and as JSON-compatible fields."""
    seconds = time.monotonic() - daemon.ready_at
    run = this_run(daemon.counters, at_start)
    # The lifetime is what the last checkpoint holds, what a restart continues from: after a
    # halt (a full disk), work not committed is not part of it (a keyed daemon whose store
    # failed said "lifetime: 3051 points" with none committed).
    saved = getattr(daemon, "saved_counters", None)
    life = daemon.counters if saved is None else saved
    rate = run["rows"] / seconds if seconds > 0 else 0.0
    timing = f" in {seconds:.3f} s after start-up ({rate:.0f} points/s)"
    label = "lifetime" if life == daemon.counters else "lifetime, as of the last checkpoint"
    # (after a halt, this run's points include some of lines not counted as read: "175000
    # points ... from 104354 lines" said nothing of why)
    done = "this run" if life == daemon.counters else \
        "this run, whose work since the last checkpoint the next run does again"
    lines = [f"emstreamd: {done}: " + _counts(run, timing),
             f"emstreamd: {label}: " + _counts(life)
             + f"; checkpoint: {daemon.last_checkpoint_path or 'none written'}"]
    known = getattr(daemon, "known", None)  # a keyed daemon's keys
    parts = [] if known is not None else components(daemon.model)
    if known is not None:
        lines.append(f"  {len(known)} keys, {len(daemon.active)} of them in memory at exit")
    elif parts:
        lines.append("  component  weight  mean")
        lines += [f"  {c['index']:9d}  {c['weight']:6.3f}  "
                  + " ".join(f"{v:.4g}" for v in c["mean"]) for c in parts]
    else:
        learner = daemon.model.__dict__.get("_online")
        buffered = learner.buffered if learner is not None else 0
        lines.append(f"  still warming up ({buffered} of {daemon.model.warmup_size} points)")
    fields = {"message": "summary", "this_run": run, "lifetime": life,
              "seconds": round(seconds, 3), "checkpoint": str(daemon.last_checkpoint_path),
              "components": parts}
    return "\n".join(lines), fields
