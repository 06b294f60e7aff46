"""The peer's relay between cflib and CrazySim's SITL firmware: what it must make up for on that
link. The firmware's socket receive queue holds 5 packets and loses the rest of a burst, and
cflib's UDP link never resends (the radio's does): :class:`RequestResender` sends a request again
when its answer is late, :class:`FirmwareLiveness` holds packets while the firmware is stalled.
Pure bookkeeping; the sockets live in the ``sitl-peer`` command (snn_drone/commands/sitl_peer.py).
"""
from __future__ import annotations

from .sitl import header_port


# ---- holding cflib's packets while the firmware does not run ----------------------------------------
class FirmwareLiveness:
    """Whether the firmware runs, from its motor packets (every 1-2 ms while its stabilizer may run
    the motors): the peer holds cflib's packets while that stream is silent and for ``resumed_s``
    after it comes back. A firmware stalled by its host reads nothing; on waking it drains the sensor
    packets that piled up in its socket through its 5-packet queue, which loses the rest, a
    high-level command among them (cflib's UDP link never resends; the radio would). Held packets
    go down afterwards, as a radio's retries would deliver them. A silence longer than
    ``max_hold_s`` is a firmware that stopped its motors (the supervisor locked, an emergency stop),
    not a stall: packets flow again without waiting for motors."""

    def __init__(self, silent_after_s: float = 0.02, resumed_s: float = 0.05, max_hold_s: float = 1.0):
        if not (silent_after_s > 0 and resumed_s >= 0 and max_hold_s > silent_after_s):
            raise ValueError(f"silent_after_s = {silent_after_s}, resumed_s = {resumed_s}, max_hold_s = "
                             f"{max_hold_s}: expected > 0, >= 0 and > silent_after_s")
        self.silent_after_s, self.resumed_s, self.max_hold_s = silent_after_s, resumed_s, max_hold_s
        self.last_s: float | None = None
        self.live_since_s: float | None = None
        self.stalls = 0
        self.longest_stall_s = 0.0

    def heard(self, now_s: float) -> float | None:
        """A motor packet from the firmware arrived at ``now_s``; the stall it ends (s), if any."""
        stall = None
        if self.last_s is not None and now_s - self.last_s > self.silent_after_s:
            gap = now_s - self.last_s
            if gap <= self.max_hold_s:
                self.stalls += 1
                self.longest_stall_s = max(self.longest_stall_s, gap)
                stall = gap
            self.live_since_s = now_s
        elif self.live_since_s is None:
            self.live_since_s = now_s
        self.last_s = now_s
        return stall

    def ready(self, now_s: float) -> bool:
        """True: a packet sent now is read. False while the motor stream is silent (up to
        ``max_hold_s``) and for ``resumed_s`` after it (re)started."""
        if self.last_s is None:
            return True  # no motor stream yet: nothing to judge by
        silent = now_s - self.last_s
        if silent > self.silent_after_s:
            return silent > self.max_hold_s
        return now_s - self.live_since_s >= self.resumed_s

    def summary(self) -> dict:
        return {"fw_stalls": self.stalls, "fw_longest_stall_ms": round(self.longest_stall_s * 1e3, 1)}


# ---- resending cflib's lost requests ---------------------------------------------------------------
RESENT_REQUESTS: dict[tuple[int, int], int] = {
    (2, 0): 3, (2, 1): 2, (2, 2): 3,  # parameters: table (command, index), read (id), write (id, value)
    (2, 3): 3,                         # parameters, misc: extended type, default value (command, id)
    (4, 0): 2, (4, 1): 3,              # memory: table, read (id, address)
    (5, 0): 3, (5, 1): 2,              # log: table (command, index), block control (command, block id)
    (13, 1): 1,                        # platform: version requests (command)
    (15, 1): 0,                        # link service: the firmware's name (cflib asks it on connect)
}
"""(port, channel) of the cflib requests the firmware answers, and how many leading data bytes its
answer repeats (what identifies the answer). All are reads or idempotent writes, safe to send again."""


class RequestResender:
    """cflib's UDP link never resends, and the SITL firmware's 5-packet receive queue loses packets
    when its receive task runs late (a loaded host): one lost table request stalls cflib's connect for
    good. The peer keeps each request of RESENT_REQUESTS it relayed until the firmware's answer comes
    back, sends it again after ``timeout_s`` (at most ``max_resends`` times), and drops the second
    answer when both the request and its resend were answered. Other traffic (setpoints, motor
    packets, external pose) has no answer and is never resent."""

    def __init__(self, timeout_s: float = 0.1, max_resends: int = 20, duplicate_window_s: float = 1.0):
        self.timeout_s, self.max_resends, self.duplicate_window_s = timeout_s, max_resends, duplicate_window_s
        self.pending: list[list] = []  # [packet, last sent, resends]
        self._answered: list[tuple[bytes, float]] = []  # (packet, until) of resent requests answered
        self.resent = 0
        self.duplicates = 0
        self.given_up = 0

    @staticmethod
    def _key(packet: bytes) -> tuple[int, int] | None:
        if not packet:
            return None
        return header_port(packet[0]), packet[0] & 0x03

    @classmethod
    def _answers(cls, request: bytes, answer: bytes) -> bool:
        key = cls._key(request)
        n = min(RESENT_REQUESTS[key], len(request) - 1)
        return cls._key(answer) == key and answer[1:1 + n] == request[1:1 + n]

    def sent(self, packet: bytes, now_s: float) -> None:
        """A cflib packet went to the firmware (first time)."""
        if self._key(packet) in RESENT_REQUESTS:
            self.pending.append([packet, now_s, 0])

    def answer(self, packet: bytes, now_s: float) -> bool:
        """A packet from the firmware for cflib: True to relay it, False for a duplicate answer."""
        self._answered = [(p, t) for p, t in self._answered if t > now_s]
        for i, (req, _, resends) in enumerate(self.pending):
            if self._answers(req, packet):
                del self.pending[i]
                if resends:
                    self._answered.append((req, now_s + self.duplicate_window_s))
                return True
        for i, (req, _) in enumerate(self._answered):
            if self._answers(req, packet):
                del self._answered[i]
                self.duplicates += 1
                return False
        return True

    def due(self, now_s: float) -> list[bytes]:
        """Requests to send again now (their answer is ``timeout_s`` late)."""
        out, keep = [], []
        for entry in self.pending:
            if now_s - entry[1] < self.timeout_s:
                keep.append(entry)
            elif entry[2] >= self.max_resends:
                self.given_up += 1
            else:
                entry[1], entry[2] = now_s, entry[2] + 1
                self.resent += 1
                out.append(entry[0])
                keep.append(entry)
        self.pending = keep
        return out

    def summary(self) -> dict:
        return {"requests_resent": self.resent, "duplicate_answers_dropped": self.duplicates,
                "requests_given_up": self.given_up, "requests_pending": len(self.pending)}
