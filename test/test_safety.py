"""The safety supervisor: every trip (geofence, tilt, stale state, low battery, lost link, NaN)
with its configured action and a message naming value and limit; severity order; latching and
reset; battery sag hold; config validation and config/safety.yaml."""
from __future__ import annotations

import math

import numpy as np
import pytest

from snn_drone.core.common import layout
from snn_drone.core.common.config import from_dict, load_yaml, to_dict
from snn_drone.core.deploy.safety import (SafetyConfig, SafetySupervisor, load_safety_config, safety_config_path,
                                   tilt_deg)


def state(pos=(0.0, 0.0, 1.0), roll_deg=0.0):
    s = np.zeros(layout.STATE_DIM)
    s[layout.POS] = pos
    h = math.radians(roll_deg) / 2
    s[layout.QUAT] = (math.cos(h), math.sin(h), 0.0, 0.0)
    return s


def test_a_healthy_hover_passes_every_check():
    sup = SafetySupervisor()
    v = sup.check(10.0, state(), state_time_s=9.99, battery_v=3.7, last_link_s=9.95)
    assert v.action == "none" and v.violations == () and v.new == ()


@pytest.mark.parametrize("pos, axis, value, limit", [((1.6, 0, 1), "x", 1.6, 1.5), ((0, -1.51, 1), "y", -1.51, -1.5),
                                                     ((0, 0, 2.2), "z", 2.2, 2.0), ((0, 0, -0.2), "z", -0.2, -0.1)])
def test_leaving_the_geofence_box_lands(pos, axis, value, limit):
    v = SafetySupervisor().check(1.0, state(pos), 1.0)
    assert v.action == "land"
    (viol,) = v.violations
    assert (viol.kind, viol.value, viol.limit) == ("geofence", value, limit)
    assert f"position {axis} = {value:.3f} m outside the geofence" in viol.message


def test_tilt_beyond_the_limit_stops_and_tilt_is_measured_from_world_z():
    assert tilt_deg((1, 0, 0, 0)) == 0.0
    assert tilt_deg(state(roll_deg=59.0)[layout.QUAT]) == pytest.approx(59.0)
    assert tilt_deg((0, 0, 0, 1)) == 0.0  # pure yaw of 180 deg is not a tilt
    assert tilt_deg((0, 1, 0, 0)) == pytest.approx(180.0)  # upside down
    sup = SafetySupervisor()
    assert sup.check(0.0, state(roll_deg=59.0), 0.0).action == "none"
    v = sup.check(0.01, state(roll_deg=61.0), 0.01)
    assert v.action == "stop" and v.violations[0].kind == "tilt"
    assert v.violations[0].value == pytest.approx(61.0) and "above the limit 60.0 deg" in v.violations[0].message


def test_stale_or_missing_state_lands():
    sup = SafetySupervisor()
    assert sup.check(1.0, state(), state_time_s=0.9).action == "none"  # exactly 0.1 s old
    v = sup.check(1.0, state(), state_time_s=0.85)
    assert v.action == "land" and v.violations[0].kind == "stale_state"
    assert v.violations[0].value == pytest.approx(0.15) and "0.150 s old, limit 0.1 s" in v.violations[0].message
    v = SafetySupervisor().check(1.0)
    assert v.violations[0].kind == "stale_state" and v.violations[0].message == "no state received"


def test_low_battery_must_last_the_hold_time_before_landing():
    sup = SafetySupervisor()
    for t in np.arange(0.0, 0.9, 0.1):  # a 0.9 s sag under load: no trip
        assert sup.check(t, state(), t, battery_v=3.2).action == "none"
    assert sup.check(0.95, state(), 0.95, battery_v=3.6).action == "none"  # recovered: timer resets
    for t in np.arange(1.0, 2.0, 0.1):
        assert sup.check(t, state(), t, battery_v=3.25).action == "none"
    v = sup.check(2.0, state(), 2.0, battery_v=3.25)
    assert v.action == "land" and v.violations[0].kind == "low_battery"
    assert "3.25 V below 3.3 V for 1.00 s" in v.violations[0].message


def test_lost_link_stops_and_nonfinite_state_stops():
    sup = SafetySupervisor()
    assert sup.check(5.0, state(), 5.0, last_link_s=4.75).action == "none"
    v = sup.check(5.0, state(), 5.0, last_link_s=4.7)
    assert v.action == "stop" and v.violations[0].kind == "lost_link" and v.violations[0].value == pytest.approx(0.3)
    bad = state()
    bad[layout.VEL.start + 1] = math.nan
    v = SafetySupervisor().check(0.0, bad, 0.0)
    assert v.action == "stop" and v.violations[0].kind == "nonfinite_state" and "state[8] is nan" in v.violations[0].message


def test_the_most_severe_action_wins_and_a_trip_latches_until_reset():
    sup = SafetySupervisor(SafetyConfig(geofence_action="warn", tilt_action="land", link_action="stop"))
    v = sup.check(0.0, state((2.0, 0, 1), roll_deg=70), 0.0, last_link_s=-1.0)
    assert v.action == "stop" and {x.kind for x in v.violations} == {"geofence", "tilt", "lost_link"}
    assert {x.kind for x in v.new} == {"geofence", "tilt", "lost_link"}
    # back inside every limit: the verdict stays at the latched action, nothing is new
    v = sup.check(0.1, state(), 0.1, last_link_s=0.1)
    assert v.action == "stop" and v.violations == () and v.new == ()
    # the same kind again is not new
    v = sup.check(0.2, state((2.0, 0, 1)), 0.2, last_link_s=0.2)
    assert v.new == () and v.violations[0].kind == "geofence"
    assert [x.kind for x in sup.history] == ["geofence", "tilt", "lost_link"]
    sup.reset()
    assert sup.check(0.3, state(), 0.3, last_link_s=0.3).action == "none"
    v = sup.check(0.4, state((2.0, 0, 1)), 0.4)
    assert v.action == "warn" and [x.kind for x in v.new] == ["geofence"]


def test_bad_configs_are_rejected_naming_the_key():
    with pytest.raises(ValueError, match="geofence z: min 2.0 m must be below max 1.0 m"):
        SafetyConfig(geofence_min_m=(-1, -1, 2.0), geofence_max_m=(1, 1, 1.0))
    with pytest.raises(ValueError, match=r"tilt_action = 'explode', expected one of \['warn', 'land', 'stop'\]"):
        SafetyConfig(tilt_action="explode")
    with pytest.raises(ValueError, match="max_state_age_s = 0"):
        SafetyConfig(max_state_age_s=0)
    with pytest.raises(ValueError, match=r"state has shape \[13\], expected \[17\]"):
        SafetySupervisor().check(0.0, np.zeros(13), 0.0)


def test_config_file_equals_the_dataclass_defaults_and_overrides_apply():
    assert from_dict(SafetyConfig, load_yaml(safety_config_path())) == SafetyConfig()
    assert to_dict(load_safety_config()) == to_dict(SafetyConfig())
    cfg = load_safety_config(overrides={"max_tilt_deg": 45.0, "geofence_action": "stop"})
    assert cfg.max_tilt_deg == 45.0 and cfg.geofence_action == "stop"
    with pytest.raises((ValueError, KeyError), match="max_tilt"):
        load_safety_config(overrides={"max_tilt": 45.0})


def test_the_hand_back_waits_for_low_body_rates_and_a_small_tilt():
    import math
    from snn_drone.core.deploy.safety import calm_for_hand_back
    cfg = SafetyConfig()
    s = np.zeros(17)
    s[2], s[3] = 1.0, 1.0
    assert calm_for_hand_back(s, cfg)
    s[12] = math.radians(cfg.hand_back_max_rate_deg_s + 1)  # yawing fast
    assert not calm_for_hand_back(s, cfg)
    s[12] = -math.radians(cfg.hand_back_max_rate_deg_s - 1)
    assert calm_for_hand_back(s, cfg)
    half = math.radians(cfg.hand_back_max_tilt_deg + 1) / 2  # rolled past the bound
    s[3], s[4] = math.cos(half), math.sin(half)
    assert not calm_for_hand_back(s, cfg)
    with pytest.raises(ValueError, match="hand_back_wait_s"):
        SafetyConfig(hand_back_wait_s=-1.0)
