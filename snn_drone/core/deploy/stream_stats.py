"""Bookkeeping of one motor stream from the ground (crazyflie_bridge): how long each state took to
become a motor packet on the link (state sample received -> packet handed to cflib: the ground's
share of the radio-path latency, with the actor, guide and jump-start nodes in between), and how many
packets the firmware's snn_motor app accepted of those sent (its log counters snnmotor.accepted and
snnmotor.errSeq, read back over the link). The app counts every valid packet, the stop packet too, so
``not_accepted`` counts it among those sent: it is the packets lost (or refused) on the way."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

KEEP_STATES = 256
"""States remembered for matching their commands (2.5 s at 100 Hz)."""


class StreamStats:
    def __init__(self):
        self.reset()

    def reset(self, accepted_at_start: int | None = None, err_seq_at_start: int | None = None) -> None:
        self._states: OrderedDict[int, float] = OrderedDict()
        self.latencies_s: list[float] = []
        self.sent = 0
        self.unmatched = 0
        self.stale = 0
        """Commands dropped because they answered a state too old (the bridge's max_command_age_steps)."""
        self.stops_sent = 0
        """Stop packets (motor_packet.MotorStream.stop) sent: not motor commands, but counted by the app."""
        self._start = (accepted_at_start, err_seq_at_start)

    def state(self, step: int, t_s: float) -> None:
        """State ``step`` was received at ``t_s`` (monotonic)."""
        self._states[int(step)] = t_s
        while len(self._states) > KEEP_STATES:
            self._states.popitem(last=False)

    def sent_for(self, step: int | None, t_s: float) -> None:
        """A motor packet answering state ``step`` went to the link at ``t_s``."""
        self.sent += 1
        t0 = self._states.get(int(step)) if step is not None else None
        if t0 is None:
            self.unmatched += 1
        else:
            self.latencies_s.append(t_s - t0)

    def stop_sent(self) -> None:
        """The stream's stop packet went to the link."""
        self.stops_sent += 1

    def summary(self, accepted: int | None = None, err_seq: int | None = None) -> dict:
        """Packet counts and latency (ms); ``accepted``/``err_seq``: the app's counters now."""
        out: dict = {"sent": self.sent, "stops_sent": self.stops_sent, "stale_dropped": self.stale,
                     "unmatched": self.unmatched}
        if self.latencies_s:
            lat = np.array(self.latencies_s) * 1e3
            out.update(latency_mean_ms=round(float(lat.mean()), 2),
                       latency_p95_ms=round(float(np.percentile(lat, 95)), 2),
                       latency_max_ms=round(float(lat.max()), 2))
        a0, e0 = self._start
        if accepted is not None and a0 is not None:
            out["accepted"] = int(accepted) - a0
            out["not_accepted"] = self.sent + self.stops_sent - out["accepted"]
        if err_seq is not None and e0 is not None:
            out["err_seq"] = int(err_seq) - e0
        return out
