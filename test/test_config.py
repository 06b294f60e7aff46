"""Config loading is strict and presets load with the paper's numbers."""
from dataclasses import dataclass

import pytest

from snn_drone.core.common import config
from snn_drone.core.sim.params import available_presets, load_preset


@dataclass
class _Cfg:
    lr: float = 1e-3
    epochs: int = 10
    name: str = "x"
    hidden: tuple[int, ...] = (256, 128)


def test_from_dict_accepts_ints_for_floats_and_lists_for_tuples():
    c = config.from_dict(_Cfg, {"lr": 1, "hidden": [64, 32]})
    assert c.lr == 1.0 and isinstance(c.lr, float)
    assert c.hidden == (64, 32)


def test_unknown_key_names_the_key():
    with pytest.raises(KeyError, match="'learning_rate'"):
        config.from_dict(_Cfg, {"learning_rate": 0.1})


def test_wrong_type_names_key_and_expected_type():
    with pytest.raises(TypeError, match="'epochs': expected int, got '10'"):
        config.from_dict(_Cfg, {"epochs": "10"})
    with pytest.raises(TypeError, match=r"'hidden\[1\]': expected int"):
        config.from_dict(_Cfg, {"hidden": [64, 0.5]})


def test_diff_lists_changed_values():
    assert config.diff(_Cfg(), _Cfg(lr=0.5)) == ["lr: 0.001 != 0.5"]


def test_presets_load_and_hover_throttle_is_derived_from_thrust_curve():
    assert {"cf21_paper", "cf21_l2f2"} <= set(available_presets())
    paper = load_preset("cf21_paper")
    assert paper.mass_kg == 0.027 and paper.rotor_speed_max == 21702.0
    assert paper.hover_throttle == pytest.approx(0.6670265, abs=1e-6)  # PAPER.md
    l2f2 = load_preset("cf21_l2f2")
    c0, c1, c2 = l2f2.thrust_coefficients
    w = l2f2.hover_rotor_speed
    assert 4 * (c0 + c1 * w + c2 * w * w) == pytest.approx(l2f2.mass_kg * l2f2.gravity_mps2, rel=1e-9)


def test_cf21_l2f2_holds_l2f_2_0_18_constants_exactly():
    """Issue 14: l2f 2.0.18's J = 1 / J_inv and motor time constants, not rounded (the rounded
    values moved trajectories 0.66 m from l2f's in 1 s)."""
    p = load_preset("cf21_l2f2")
    assert p.inertia_kgm2 == (9.41656e-6, 9.64405e-6, 1.745952e-5)
    assert (p.motor_time_constant_rising_s, p.motor_time_constant_falling_s) == (0.055455, 0.249394)
    assert p.mass_kg == 0.0306 and p.thrust_coefficients == (0.003525, 0.014373, 0.09223)
    assert p.torque_constant_m == 0.004665 and (p.rotor_speed_min, p.rotor_speed_max) == (0.0, 1.0)


def test_unknown_preset_lists_available():
    with pytest.raises(FileNotFoundError, match="cf21_paper"):
        load_preset("nope")


def test_train_yaml_departs_from_the_paper_defaults_only_where_it_says_so():
    """TrainConfig's dataclass defaults are the paper's values; config/train.yaml (what `snn-drone
    train` runs) changes exactly these, each explained in its comments and in docs/RESULTS.md."""
    from snn_drone.core.learning.train_config import TrainConfig, load_train_config
    changed = {d.split(":")[0] for d in config.diff(config.to_dict(TrainConfig()), config.to_dict(load_train_config()))}
    assert changed == {"epochs", "eval_every", "guide", "horizon.epochs_per_stage", "learner.lambda_bc",
                       "learner.lambda_bc_decay_per", "slope.interval_every", "steps_per_epoch", "task_config",
                       "threads", "updates_per_epoch"}


def test_package_files_are_found_from_any_directory_and_a_miss_says_where_it_looked(tmp_path, monkeypatch):
    """A path like checkpoints/guide.pt: as given (working directory), then the source tree, then
    <prefix>/share/snn_drone of $AMENT_PREFIX_PATH (an installed package)."""
    from snn_drone.core.common.config import find_file, package_root, resolve_path, share_dirs
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert resolve_path("checkpoints/guide.pt") == package_root() / "checkpoints" / "guide.pt"
    prefix = tmp_path / "install"
    share = prefix / "share" / "snn_drone" / "checkpoints"
    share.mkdir(parents=True)
    (share / "only_installed.pt").write_bytes(b"x")
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    assert prefix / "share" / "snn_drone" in share_dirs()
    assert find_file("checkpoints/only_installed.pt") == share / "only_installed.pt"
    (elsewhere / "checkpoints").mkdir()
    (elsewhere / "checkpoints" / "only_installed.pt").write_bytes(b"mine")
    assert find_file("checkpoints/only_installed.pt").resolve() == elsewhere / "checkpoints" / "only_installed.pt"
    with pytest.raises(FileNotFoundError) as e:
        find_file("checkpoints/nope.pt", "policy checkpoint")
    msg = str(e.value)
    assert msg.startswith("policy checkpoint 'checkpoints/nope.pt' not found: looked in ")
    for where in (elsewhere / "checkpoints/nope.pt", package_root() / "checkpoints/nope.pt",
                  prefix / "share/snn_drone/checkpoints/nope.pt"):
        assert str(where) in msg, (where, msg)
