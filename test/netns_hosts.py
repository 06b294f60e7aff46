"""Several "hosts" on one machine: Linux network namespaces joined by veth pairs on a private bridge.

Each host is a network namespace with its own loopback and one interface ``eth0`` (a veth pair
whose other end is a port of a bridge that lives in a namespace of its own), with an address in a
private /24. Nothing is added to the machine's own namespace: no interface, address or route, so
a process on a test host reaches the other test hosts and nothing else. Processes started with
:meth:`Host.popen` run inside the namespace (``ip netns exec``; it execs, so the pid is the
process's own). Processes of different namespaces share the file system (and /dev/shm) but not
the network stack.

Names are ``snndrone-<pid>-<n>-<role>`` (unique per test run); :func:`network` removes what a
killed earlier run left (names whose pid is no longer alive). Needs root and iproute2's ``ip``:
:func:`unavailable` says why not, for a skip.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

PREFIX = "snndrone-"
_count = itertools.count()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip() or r.stdout.strip()} (exit {r.returncode})")
    return r


def unavailable() -> str | None:
    """Why this machine cannot build test hosts (None: it can)."""
    if shutil.which("ip") is None:
        return "needs iproute2's `ip` to create network namespaces (Debian: apt-get install iproute2)"
    if os.geteuid() != 0:
        return "needs root to create network namespaces and veth pairs (ip netns add); run the test as root"
    probe = f"{PREFIX}{os.getpid()}-probe"
    r = _ip("netns", "add", probe, check=False)
    if r.returncode != 0:
        return f"cannot create a network namespace here (ip netns add: {r.stderr.strip()})"
    _ip("netns", "del", probe, check=False)
    return None


def _pids(ns: str) -> list[int]:
    r = _ip("netns", "pids", ns, check=False)
    return [int(p) for p in r.stdout.split()] if r.returncode == 0 else []


def kill_namespace_processes(ns: str, sig: int = signal.SIGKILL, wait_s: float = 10.0) -> list[int]:
    """Send ``sig`` to every process in ``ns``; with SIGKILL, wait until they are gone. Returns the pids."""
    pids = _pids(ns)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    if sig == signal.SIGKILL:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and _pids(ns):
            time.sleep(0.05)
    return pids


def remove_stale() -> list[str]:
    """Delete the namespaces of earlier runs whose process is gone (a run killed before its clean-up)."""
    removed = []
    netns = Path("/run/netns")
    for entry in sorted(netns.iterdir()) if netns.is_dir() else []:
        if not entry.name.startswith(PREFIX):
            continue
        pid = entry.name[len(PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            kill_namespace_processes(entry.name)
            _ip("netns", "del", entry.name, check=False)
            removed.append(entry.name)
    return removed


class Host:
    def __init__(self, name: str, ns: str, address: str):
        self.name, self.ns, self.address = name, ns, address
        self.interface = "eth0"

    def popen(self, cmd: list[str], **kwargs) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.ns, *cmd], **kwargs)

    def run(self, cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.ns, *cmd], **kwargs)

    def pids(self) -> list[int]:
        return _pids(self.ns)

    def kill(self, sig: int = signal.SIGKILL) -> list[int]:
        """Every process of this host gets ``sig`` (SIGKILL: the machine losing power)."""
        return kill_namespace_processes(self.ns, sig)

    def link(self, up: bool) -> None:
        """Plug (True) or unplug (False) this host's cable: eth0 up or down."""
        _ip("-n", self.ns, "link", "set", self.interface, "up" if up else "down")
        if up:  # the kernel drops a device's routes when it goes down: restore the multicast one
            _ip("-n", self.ns, "route", "replace", "224.0.0.0/4", "dev", self.interface)

    def counters(self) -> dict[str, int]:
        """Bytes and packets through this host's eth0 since it was created."""
        stats = json.loads(_ip("-n", self.ns, "-s", "-j", "link", "show", "dev", self.interface).stdout)[0]["stats64"]
        return {"rx_bytes": stats["rx"]["bytes"], "tx_bytes": stats["tx"]["bytes"],
                "rx_packets": stats["rx"]["packets"], "tx_packets": stats["tx"]["packets"]}

    def __repr__(self) -> str:
        return f"Host({self.name}, {self.ns}, {self.address})"


class Network:
    """Hosts ``names`` on one private bridge; :meth:`close` kills their processes and deletes it all."""

    def __init__(self, names: list[str], multicast: bool = True):
        n = next(_count)
        base = f"{PREFIX}{os.getpid()}-{n}"
        self.bridge_ns = f"{base}-bridge"
        self.subnet = f"10.{200 + os.getpid() % 50}.{n % 250}"
        self.hosts: dict[str, Host] = {}
        self.multicast = multicast
        self._created: list[str] = []
        try:
            self._add_ns(self.bridge_ns)
            # multicast=False: the bridge forwards no multicast at all (as Wi-Fi or a cloud network often
            # does not), so DDS participants find each other only by unicast to ROS_STATIC_PEERS
            _ip("-n", self.bridge_ns, "link", "add", "br0", "type", "bridge", *(() if multicast else ("mcast_snooping", "0")))
            _ip("-n", self.bridge_ns, "link", "set", "br0", "up")
            for i, name in enumerate(names):
                host = Host(name, f"{base}-{name}", f"{self.subnet}.{i + 1}")
                self._add_ns(host.ns)
                port = f"p{i}"
                # both ends are created inside the test's namespaces: the machine's own never sees them
                _ip("-n", host.ns, "link", "add", host.interface, "type", "veth", "peer", "name", port,
                    "netns", self.bridge_ns)
                _ip("-n", self.bridge_ns, "link", "set", port, "master", "br0", "up")
                if not multicast:
                    _ip("-n", self.bridge_ns, "link", "set", port, "type", "bridge_slave", "mcast_flood", "off")
                _ip("-n", host.ns, "link", "set", "lo", "up")
                _ip("-n", host.ns, "addr", "add", f"{host.address}/24", "dev", host.interface)
                _ip("-n", host.ns, "link", "set", host.interface, "up")
                # DDS discovery multicast (239.255.0.1) leaves through eth0; no other route exists
                _ip("-n", host.ns, "route", "add", "224.0.0.0/4", "dev", host.interface)
                self.hosts[name] = host
        except BaseException:
            self.close()
            raise

    def _add_ns(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self._created.append(ns)

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def close(self) -> None:
        for ns in reversed(self._created):
            kill_namespace_processes(ns)
            _ip("netns", "del", ns, check=False)
        self._created = []

    def _datagram_reaches(self, src: str, dst: str, group: str | None) -> bool:
        """Whether one UDP datagram from ``src`` reaches ``dst`` (its address, or multicast ``group``)."""
        port = 20000 + os.getpid() % 20000
        listen = ("import socket, struct, sys\n"
                  "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                  "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                  f"s.bind(('', {port}))\n"
                  + (f"s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, struct.pack('4s4s', "
                     f"socket.inet_aton('{group}'), socket.inet_aton('{self[dst].address}')))\n" if group else "")
                  + "s.settimeout(3.0)\nprint('ready', flush=True)\n"
                  "try:\n    s.recv(100); print('got', flush=True)\nexcept socket.timeout:\n    print('none', flush=True)\n")
        send = ("import socket, time\n"
                "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                f"s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton('{self[src].address}'))\n"
                "for _ in range(5):\n"
                f"    s.sendto(b'x', ('{group or self[dst].address}', {port})); time.sleep(0.1)\n")
        rx = self[dst].popen([sys.executable, "-c", listen], stdout=subprocess.PIPE, text=True)
        assert rx.stdout.readline().strip() == "ready"
        self[src].run([sys.executable, "-c", send], check=True, timeout=30)
        out = rx.communicate(timeout=30)[0]
        return "got" in out

    def multicast_reaches(self, src: str, dst: str) -> bool:
        """Whether a datagram to DDS's discovery group 239.255.0.1 from ``src`` reaches ``dst``."""
        return self._datagram_reaches(src, dst, "239.255.0.1")

    def unicast_reaches(self, src: str, dst: str) -> bool:
        return self._datagram_reaches(src, dst, None)

    @property
    def static_peers(self) -> str:
        """Every host's address, as ROS_STATIC_PEERS takes them."""
        return ";".join(h.address for h in self.hosts.values())

    def existing(self) -> list[str]:
        """The namespaces of this network that still exist (none after close)."""
        netns = Path("/run/netns")
        return [ns for ns in [self.bridge_ns, *(h.ns for h in self.hosts.values())] if (netns / ns).exists()]


def network(names: list[str], multicast: bool = True) -> Network:
    remove_stale()
    return Network(names, multicast)
