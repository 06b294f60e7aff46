"""`snn-drone simulate` end to end: npz in, npz out, both backends, through a real subprocess;
bad inputs give one-line errors naming the array."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from snn_drone.cli import main
from snn_drone.core.sim.dynamics import QuadrotorDynamics
from snn_drone.core.sim.params import load_preset


def _inputs(params, batch=3, steps=50):
    dyn = QuadrotorDynamics(params, dtype=torch.float64)
    state0 = dyn.hover_state(batch, [0.0, 0.0, 1.0]).numpy()
    state0[:, 0] = np.arange(batch)
    rng = np.random.default_rng(5)
    actions = params.hover_action + 0.01 * rng.standard_normal((steps, batch, 4))
    return state0, actions


def _direct(params, state0, actions):
    dyn = QuadrotorDynamics(params, dtype=torch.float64)
    s, out = torch.as_tensor(state0), [state0]
    for a in actions:
        s = dyn.step(s, torch.as_tensor(a))
        out.append(s.numpy())
    return np.stack(out)


def test_simulate_subprocess_both_backends_match_a_direct_dynamics_run(tmp_path):
    params = load_preset("cf21_l2f2")
    state0, actions = _inputs(params)
    inp = tmp_path / "in.npz"
    np.savez(inp, state0=state0, actions=actions)
    expected = _direct(params, state0, actions)
    for backend, tol_m in (("batched", 1e-12), ("pybullet", 1e-4)):
        out = tmp_path / f"out_{backend}.npz"
        res = subprocess.run(
            [sys.executable, "-m", "snn_drone.cli", "simulate", "--preset", "cf21_l2f2",
             "--input", str(inp), "--output", str(out), "--backend", backend, "--no-ground"],
            capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        with np.load(out) as data:
            states = data["states"]
            assert str(data["preset"]) == "cf21_l2f2" and float(data["dt_s"]) == 0.01
            assert str(data["backend"]) == backend
        assert states.shape == (51, 3, 17) and states.dtype == np.float64
        assert np.array_equal(states[0], state0)
        assert np.abs(states[..., 0:3] - expected[..., 0:3]).max() < tol_m
        assert np.abs(states - expected).max() < (1e-12 if backend == "batched" else 1e-2)


def test_simulate_missing_key_is_a_one_line_error_naming_it(tmp_path, capsys):
    inp = tmp_path / "in.npz"
    np.savez(inp, state0=np.zeros((2, 17)))
    code = main(["simulate", "--input", str(inp), "--output", str(tmp_path / "o.npz")])
    assert code == 2
    err = capsys.readouterr().err
    assert "has no array 'actions'" in err and err.count("\n") == 1
    assert not (tmp_path / "o.npz").exists()


@pytest.mark.parametrize("state0,actions,message", [
    (np.zeros((2, 16)), np.zeros((5, 2, 4)), r"state0 has shape [2, 16], expected [any, 17]"),
    (np.zeros((2, 17)), np.zeros((5, 3, 4)), r"actions has shape [5, 3, 4], expected [any, 2, 4]"),
    (np.zeros((2, 17)), np.full((5, 2, 4), np.nan), r"actions holds a non-finite value nan at index "
                                                   r"(0, 0, 0) (field motor_command[0])"),
])
def test_simulate_bad_shapes_and_nan_name_the_array(tmp_path, capsys, state0, actions, message):
    inp = tmp_path / "in.npz"
    np.savez(inp, state0=state0, actions=actions)
    code = main(["simulate", "--input", str(inp), "--output", str(tmp_path / "o.npz")])
    assert code == 2
    assert message in capsys.readouterr().err
