"""core/deploy/flight.py (the simulated Crazyflie of fly_real backend:=sim) and the fly_real graph declaration:
the geometric controller's take-off reaches the target, its landing reaches the ground, a stop drops
the drone to rest, commands out of phase are refused; the graph swaps the drone end by backend."""
import pytest
import torch

from snn_drone import graphs
from snn_drone.core.common import layout
from snn_drone.core.env import task
from snn_drone.core.common.config import config_dir
from snn_drone.core.deploy.flight import FlightConfig, FlightSim
from snn_drone.core.sim.params import load_preset


@pytest.fixture(scope="module")
def sim_parts():
    return load_preset("cf21_paper"), task.load_task_config(config_dir() / "task_symmetric_rotors.yaml")


def _run(sim, steps, policy=None):
    for _ in range(steps):
        sim.step(policy)


def test_flight_takeoff_reaches_target_hands_over_then_landing_and_stop_end_at_rest_on_the_ground(sim_parts):
    torch.set_num_threads(1)
    params, task_cfg = sim_parts
    sim = FlightSim(1, params, task_cfg, FlightConfig(policy_after_takeoff=False))
    _run(sim, 20)
    assert sim.phase == "ground" and float(sim.state[0, 2]) == 0.0  # motors off: it sits
    assert "refused" in sim.start_policy() and "ignored" in sim.land()
    sim.takeoff()
    _run(sim, 400)  # 2.5 s ramp + 1.5 s holding the target with the controller (no hand-over)
    err = float((sim.state[0, layout.POS] - sim.target).norm())
    assert sim.phase == "takeoff" and err < 0.05, (sim.phase, err)
    assert "refused" in sim.takeoff()
    sim.start_policy()
    hover = sim.controller_action()
    _run(sim, 3, hover)
    assert sim.phase == "policy" and sim.episode_step == 3
    sim.land()
    _run(sim, 400)
    assert sim.phase == "ground" and float(sim.state[0, 2]) == 0.0 and sim.episode_step == 0
    assert float((sim.state[0, :2] - sim.target[:2]).norm()) < 0.1  # straight down
    sim.takeoff()
    _run(sim, 300)
    sim.disturb(angular_radps=[20.0, 0.0, 0.0])
    sim.stop("test")
    _run(sim, 100)  # motors off: falls 1 m in ~0.45 s, then rests level
    assert sim.phase == "ground" and float(sim.state[0, 2]) == 0.0
    assert float(sim.state[0, layout.QUAT.start]) == 1.0 and float(sim.state[0, layout.VEL].abs().max()) == 0.0
    assert [e.split(" ")[0] for _, e in sim.events] == ["takeoff", "policy", "landing", "ground", "takeoff",
                                                        "stopped", "ground"]


def test_fly_real_graph_swaps_the_bridge_for_sim_and_safety_nodes_and_names_a_missing_actor_file(tmp_path):
    sim = graphs.GRAPHS["fly_real"].nodes({"backend": "sim", "bag": str(tmp_path / "bag")})
    real = graphs.GRAPHS["fly_real"].nodes({"backend": "real", "record": "false"})
    assert [n.executable for n in sim] == ["sim_flight_node", "safety_node", "actor_node", "guide_node",
                                           "jumpstart_node", "recorder_node"]
    assert [n.executable for n in real] == ["crazyflie_bridge", "actor_node", "guide_node", "jumpstart_node"]
    actor = next(n for n in sim if n.executable == "actor_node")
    assert actor.parameters["checkpoint"] == "checkpoints/snn_actor_bc_only.pt" and not actor.parameters["follow_weights"]
    js = next(n for n in sim if n.executable == "jumpstart_node")
    assert js.parameters["deploy"] and js.parameters["use_guide"]
    onboard = graphs.GRAPHS["fly_real"].nodes({"backend": "real", "mode": "onboard", "actor": "nope.pt",
                                               "bag": str(tmp_path / "bag2")})
    assert [n.executable for n in onboard] == ["crazyflie_bridge", "recorder_node"]  # the drone flies its own networks
    assert onboard[0].parameters["mode"] == "onboard" and real[0].parameters["mode"] == "ground"
    with pytest.raises(ValueError, match="mode:=onboard needs backend:=real"):
        graphs.GRAPHS["fly_real"].nodes({"backend": "sim", "mode": "onboard"})
    with pytest.raises(ValueError, match="mode:='air'"):
        graphs.GRAPHS["fly_real"].nodes({"backend": "real", "mode": "air"})
    with pytest.raises(FileNotFoundError, match="actor:='nope.pt'"):
        graphs.GRAPHS["fly_real"].nodes({"backend": "sim", "actor": "nope.pt"})
    with pytest.raises(ValueError, match="backend:='air'"):
        graphs.GRAPHS["fly_real"].nodes({"backend": "air"})
