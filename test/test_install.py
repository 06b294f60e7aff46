"""The package as ROS 2 users install it: a colcon workspace (plain and --symlink-install) and a
non-editable pip install, each giving a prefix with the nodes in lib/snn_drone and every run-time
file in share/snn_drone; the train_sim graph and the fly_real sim flight then start from that
prefix while the working directory is somewhere else entirely.

The real ROS 2 CLI (`ros2 launch`, `ros2 run`) is used when an executable `ros2` with the launch
verb is on PATH (a ROS 2 install); without one those tests skip and the package's own launcher,
run from the installed prefix, covers the same graphs."""
import json
import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from snn_drone.core.common.config import package_root
from snn_drone.nodes.dds import localhost_defaults

from ros_helpers import fresh_domain_id, overrides

ROOT = package_root()
NODES = sorted(ep.name for ep in entry_points(group="console_scripts")
               if ep.value.startswith("snn_drone.nodes."))
"""Every node console script the package declares (setup.py), read from the installed metadata."""
SHARED = ["package.xml", "launch/train_sim.launch.py", "launch/fly_real.launch.py", "config/train.yaml",
          "config/task_symmetric_rotors.yaml", "config/presets/cf21_paper.yaml", "config/fastdds_localhost.xml",
          "config/crazyflies.yaml", "checkpoints/snn_actor.pt", "checkpoints/snn_actor_bc_only.pt",
          "checkpoints/guide.pt"]


def _env(extra_path: Path | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("AMENT_PREFIX_PATH", "PYTHONPATH", "COLCON_PREFIX_PATH")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(localhost_defaults(), ROS_DOMAIN_ID=str(fresh_domain_id()), PYTHONUNBUFFERED="1")
    return env


def _sourced(setup: Path, env: dict) -> dict:
    """The environment after `source <setup>` in bash."""
    out = subprocess.run(["bash", "-c", f"source {setup} >/dev/null && env -0"], env=env, check=True,
                         capture_output=True).stdout
    return dict(line.split("=", 1) for line in out.decode().split("\0") if "=" in line)


@pytest.fixture(scope="module", params=["plain", "symlink"])
def colcon_prefix(request, tmp_path_factory):
    pytest.importorskip("colcon_core", reason="colcon-common-extensions is not installed (requirements.txt)")
    ws = tmp_path_factory.mktemp(f"ws_{request.param}")
    (ws / "src").mkdir()
    (ws / "src" / "snn_drone").symlink_to(ROOT, target_is_directory=True)
    cmd = [sys.executable, "-m", "colcon", "build", "--packages-select", "snn_drone"]
    if request.param == "symlink":
        cmd.append("--symlink-install")
    env = _env()
    r = subprocess.run(cmd, cwd=ws, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return ws / "install" / "snn_drone", _sourced(ws / "install" / "setup.bash", env)


def _check_prefix(prefix: Path) -> None:
    assert len(NODES) == 10, NODES  # the metadata lists every node (an empty list would check nothing)
    for name in NODES + ["snn-drone"]:
        exe = prefix / "lib" / "snn_drone" / name
        assert exe.is_file() and os.access(exe, os.X_OK), f"{exe} missing or not executable"
    for rel in SHARED:
        assert (prefix / "share" / "snn_drone" / rel).is_file(), f"share/snn_drone/{rel} not installed"
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "snn_drone").is_file()


def _train_sim_from(launcher: list[str], env: dict, where: Path) -> None:
    out = where / "run"
    ov = overrides(epochs=2, eval_every=1)
    r = subprocess.run(launcher + ["launch", "train_sim", "drones_per_worker:=4", f"out:={out}", f"overrides:={ov}"],
                       cwd=where, env=env, capture_output=True, text=True, timeout=400)
    log = r.stdout[-4000:] + r.stderr[-4000:]
    assert r.returncode == 0, log
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2], log
    assert "epoch 2/2" in r.stdout + r.stderr and "left)" in r.stdout + r.stderr  # the trainer's labelled progress


def _fly_real_sim_from(launcher: list[str], env: dict, where: Path) -> str:
    r = subprocess.run(launcher + ["launch", "fly_real", "backend:=sim", "hover_s:=2", "record:=false"],
                       cwd=where, env=env, capture_output=True, text=True, timeout=300)
    log = r.stdout + r.stderr
    assert "not found" not in log and "Traceback" not in log, log[-4000:]
    assert "policy (take-off done)" in log, log[-4000:]  # the shipped actor and guide were found and flew
    return log


def _kind(request) -> str:
    return request.node.callspec.params["colcon_prefix"]


def test_colcon_install_holds_every_node_and_file_and_runs_train_sim_from_elsewhere(colcon_prefix, tmp_path,
                                                                                   request):
    """Both workspaces hold every node and file; the plain one runs train_sim (the symlink one flies
    fly_real below: each kind of prefix runs one graph, which keeps CI short)."""
    prefix, env = colcon_prefix
    _check_prefix(prefix)
    assert str(prefix) in env["AMENT_PREFIX_PATH"].split(os.pathsep)
    if _kind(request) == "plain":
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        _train_sim_from([str(prefix / "lib" / "snn_drone" / "snn-drone")], env, elsewhere)


def test_colcon_install_flies_fly_real_sim_from_elsewhere(colcon_prefix, tmp_path, request):
    """The symlink workspace flies (its share/ files are links into the source tree); the plain one
    runs train_sim above."""
    prefix, env = colcon_prefix
    if _kind(request) != "symlink":
        pytest.skip("the plain workspace runs train_sim; the symlink one flies fly_real")
    _fly_real_sim_from([str(prefix / "lib" / "snn_drone" / "snn-drone")], env, tmp_path)


def test_pip_install_gives_a_prefix_launch_ros_accepts(tmp_path):
    """`pip install .` (non-editable) into a prefix: lib/snn_drone/<node> runs bin/<node>, share/ and
    the ament index are there, so AMENT_PREFIX_PATH=<prefix> is all a ROS 2 CLI needs."""
    prefix = tmp_path / "prefix"
    # --ignore-installed: leave this environment's own (editable) install alone; pip would uninstall it
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--ignore-installed",
                        "--prefix", str(prefix), str(ROOT)], capture_output=True, text=True, timeout=600,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    _check_prefix(prefix)
    site = next(prefix.glob("lib/python3*/site-packages"))
    env = _env()
    env.update(PYTHONPATH=str(site), AMENT_PREFIX_PATH=str(prefix))
    help_ = subprocess.run([str(prefix / "lib" / "snn_drone" / "sim_node"), "--help"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    assert help_.returncode == 0 and "sim_node" in help_.stdout + help_.stderr, help_.stdout + help_.stderr
    where = subprocess.run([sys.executable, "-c", "import snn_drone, snn_drone.core.common.config as c; "
                            "print(snn_drone.__file__); print(c.find_file('checkpoints/guide.pt'))"],
                           env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr
    module, guide = where.stdout.split()
    assert module.startswith(str(site)) and guide == str(prefix / "share" / "snn_drone" / "checkpoints" / "guide.pt")


def _ros2() -> str | None:
    exe = shutil.which("ros2")
    if exe is None:
        return None
    r = subprocess.run([exe, "launch", "--help"], capture_output=True, text=True, timeout=60)
    return exe if r.returncode == 0 else None


ROS2 = _ros2()
needs_ros2 = pytest.mark.skipif(ROS2 is None, reason="no executable `ros2` with the launch verb on PATH "
                                                     "(a ROS 2 install with ros2cli and launch_ros)")


@needs_ros2
def test_ros2_launch_train_sim_from_the_colcon_prefix(colcon_prefix, tmp_path):
    prefix, env = colcon_prefix
    out = tmp_path / "run"
    r = subprocess.run([ROS2, "launch", "snn_drone", "train_sim.launch.py", "drones_per_worker:=4", f"out:={out}",
                        f"overrides:={overrides(epochs=2, eval_every=1)}"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


@needs_ros2
def test_ros2_launch_fly_real_sim_from_the_colcon_prefix(colcon_prefix, tmp_path):
    prefix, env = colcon_prefix
    r = subprocess.run([ROS2, "launch", "snn_drone", "fly_real.launch.py", "backend:=sim", "hover_s:=2",
                        "record:=false"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    log = r.stdout + r.stderr
    assert "policy (take-off done)" in log and "not found" not in log, log[-4000:]


@needs_ros2
@pytest.mark.parametrize("node", NODES)
def test_ros2_run_finds_every_node(colcon_prefix, node, tmp_path):
    prefix, env = colcon_prefix
    r = subprocess.run([ROS2, "run", "snn_drone", node, "--help"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]


def test_the_pip_setup_launches_train_sim_from_any_directory(tmp_path):
    """`make setup`'s environment (this interpreter, the package editable): `snn-drone launch` from a
    directory that holds none of the package's files."""
    _train_sim_from([sys.executable, "-m", "snn_drone.cli"], _env(), tmp_path)


@needs_ros2
def test_ros2_launch_fly_real_stops_the_graph_when_a_node_is_killed_and_the_drone_lands(colcon_prefix, tmp_path):
    """As `snn-drone launch`: a node killed mid-flight shuts the ros2 launch down, saying which."""
    import os
    import signal
    import time
    prefix, env = colcon_prefix
    p = subprocess.Popen([ROS2, "launch", "snn_drone", "fly_real.launch.py", "backend:=sim", "hover_s:=3",
                          "record:=false"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in p.stdout:
            lines.append(line)
            if "policy (take-off done)" in line:
                break
        from ros_helpers import child_pid
        victim = child_pid(p.pid, b"__node:=actor_node")  # this launch's actor, not another graph's
        os.kill(victim, signal.SIGKILL)
        lines += p.stdout.readlines()
        assert p.wait(timeout=120) is not None
    finally:
        if p.poll() is None:
            p.kill()
            time.sleep(1)
    log = "".join(lines)
    assert re.search(r"\[actor_node-\d+\]: process has died \[pid \d+, exit code -9", log), log[-4000:]
    assert "shutting down launched system" in log, log[-4000:]
    assert re.search(r"graph stopped at [\d.]+ s with the drone airborne; at rest on the ground", log), log[-4000:]
