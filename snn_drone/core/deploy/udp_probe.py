"""The probe cflib's UDP link needs before it connects (``udp://HOST:PORT``, a simulated Crazyflie).

cflib's UDP driver never resends a packet: a connect that starts before the simulator answers loses
its first table requests and hangs. cflib's own ``scan_interface`` sends the one-byte null CRTP
packet 0xFF and takes any answer as "a Crazyflie is there"; :func:`wait_for_udp_crazyflie` sends it
until answered or a timeout (the project's ``sitl-peer`` answers only once the firmware has
calibrated its sensors, so an answer means the firmware is ready too).
"""
from __future__ import annotations

import socket
import time
from urllib.parse import urlparse

PROBE = b"\xff"


def udp_address(uri: str) -> tuple[str, int] | None:
    """(host, port) of a ``udp://HOST:PORT`` URI; None for other links (radio://, usb://)."""
    if not uri.startswith("udp://"):
        return None
    parsed = urlparse(uri)
    if not parsed.hostname or parsed.port is None:
        raise ValueError(f"URI {uri!r}: expected udp://HOST:PORT")
    return parsed.hostname, parsed.port


def wait_for_udp_crazyflie(uri: str, timeout_s: float = 60.0, interval_s: float = 0.25) -> float:
    """Probe ``uri`` every ``interval_s`` until something answers; return the seconds it took.

    Raises TimeoutError (naming the URI and what to check) when nothing answers in ``timeout_s``."""
    addr = udp_address(uri)
    if addr is None:
        raise ValueError(f"URI {uri!r} is not a udp:// link: nothing to probe")
    start = time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(interval_s)
        probes = 0
        while True:
            sock.sendto(PROBE, addr)
            probes += 1
            try:
                sock.recvfrom(64)
                return time.monotonic() - start
            except socket.timeout:  # there, not answering yet
                pass
            except ConnectionRefusedError:  # nobody bound there yet (port unreachable): answers at once
                time.sleep(interval_s)
            if time.monotonic() - start > timeout_s:
                raise TimeoutError(
                    f"no answer from {uri} to {probes} probes in {timeout_s:g} s: is the simulator "
                    f"(e.g. `snn-drone sitl-peer --cf2 CF2`) running there, and has the firmware finished "
                    f"its sensor calibration?")
