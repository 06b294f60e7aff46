"""`snn-drone launch`: run a graph of snn_drone.graphs as plain processes (where launch_ros is absent).

Each node runs as ``python -m snn_drone.nodes.<executable> --ros-args ...`` with its name,
namespace, remappings and a parameter file, the same as launch_ros would start it. Output lines
are prefixed with the node's label. SIGINT/SIGTERM are forwarded (SIGINT to every node, then
SIGTERM, then SIGKILL after ``grace_s``). The launch ends when a required node exits (its exit
code) or when any node dies with a non-zero code (exit 1, the others are stopped).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from .graphs import GRAPHS, NodeSpec, environment


def parse_assignments(items: list[str]) -> dict[str, str]:
    """``name:=value`` items (as ros2 launch takes them) -> dict."""
    out = {}
    for it in items:
        if ":=" not in it:
            raise ValueError(f"expected NAME:=VALUE, got {it!r}")
        k, v = it.split(":=", 1)
        out[k.strip()] = v
    return out


def node_command(spec: NodeSpec, params_file: str | Path) -> list[str]:
    cmd = [sys.executable, "-m", f"snn_drone.nodes.{spec.executable}", "--ros-args",
           "-r", f"__node:={spec.name}", "--params-file", str(params_file)]
    if spec.namespace:
        cmd += ["-r", f"__ns:=/{spec.namespace}"]
    for src, dst in spec.remappings:
        cmd += ["-r", f"{src}:={dst}"]
    return cmd


def write_params(spec: NodeSpec, folder: Path) -> Path:
    path = folder / f"{spec.label.replace('/', '__')}.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": spec.parameters}}, sort_keys=False))
    return path


class _Process:
    def __init__(self, spec: NodeSpec, cmd: list[str], env: dict, out):
        self.spec = spec
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True, bufsize=1, text=True, errors="replace")
        self.thread = threading.Thread(target=self._pump, args=(out,), daemon=True)
        self.thread.start()

    def _pump(self, out) -> None:
        for line in self.proc.stdout:
            out.write(f"[{self.spec.label}] {line}")
            out.flush()

    def signal(self, sig) -> None:
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass


def launch(graph: str, assignments: dict[str, str] | None = None, out=None, grace_s: float = 20.0) -> int:
    """Run ``graph`` until it ends or SIGINT/SIGTERM arrives; returns the exit code (see module doc)."""
    out = out or sys.stdout
    if graph not in GRAPHS:
        raise ValueError(f"no graph {graph!r}; graphs: {', '.join(GRAPHS)}")
    specs = GRAPHS[graph].nodes(assignments)
    env = {**os.environ, **environment(), "PYTHONUNBUFFERED": "1"}
    stop = {"signal": None}

    def on_signal(sig, _frame):
        stop["signal"] = sig

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    procs: list[_Process] = []
    code = 0
    with tempfile.TemporaryDirectory(prefix=f"snn_drone_{graph}_") as tmp:
        try:
            for spec in specs:
                procs.append(_Process(spec, node_command(spec, write_params(spec, Path(tmp))), {**env, **spec.env}, out))
            out.write(f"[launch] {graph}: {len(procs)} nodes ({', '.join(p.spec.label for p in procs)})\n")
            while stop["signal"] is None:
                ended = [(p, p.proc.poll()) for p in procs if p.proc.poll() is not None]
                failed = [(p, rc) for p, rc in ended if rc != 0]
                done = [(p, rc) for p, rc in ended if p.spec.required]
                if failed:
                    p, rc = failed[0]
                    how = f"was killed by {_signal_name(-rc)}" if rc < 0 else f"died with exit code {rc}"
                    out.write(f"[launch] {p.spec.label} {how}; stopping the graph\n")
                    code = 1
                    break
                if done:
                    p, rc = done[0]
                    out.write(f"[launch] {p.spec.label} finished; stopping the graph\n")
                    code = rc
                    break
                time.sleep(0.1)
            if stop["signal"] is not None:
                out.write(f"[launch] {signal.Signals(stop['signal']).name}: stopping the graph\n")
        finally:
            code = _stop(procs, grace_s, out) or code
            for s, h in old.items():
                signal.signal(s, h)
    out.flush()
    return code


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _stop(procs: list[_Process], grace_s: float, out) -> int:
    """SIGINT every running node, then SIGTERM, then SIGKILL; 1 if any had to be killed."""
    killed = 0
    stopping = [p for p in procs if p.proc.poll() is None]
    for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        running = [p for p in procs if p.proc.poll() is None]
        if not running:
            break
        if sig == signal.SIGKILL:
            killed = 1
            out.write(f"[launch] killing {', '.join(p.spec.label for p in running)}\n")
        for p in running:
            p.signal(sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and any(p.proc.poll() is None for p in running):
            time.sleep(0.05)
    for p in procs:
        p.thread.join(timeout=2.0)
    for p in stopping:  # a node whose stop hung dumps its stacks and exits 1 (node_runtime.run_node)
        rc = p.proc.poll()
        if rc not in (0, None, -signal.SIGKILL):
            out.write(f"[launch] {p.spec.label} stopped with exit code {rc}\n")
    return killed
