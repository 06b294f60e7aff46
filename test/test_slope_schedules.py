"""Slope schedules: exact slopes for short reward traces worked out by hand, and the properties the
paper relies on (clamping to [1, 100], adaptive rises with reward and falls after a collapse,
interval follows its timetable, a resumed schedule continues exactly)."""
import math

import pytest

from snn_drone.core.common import config
from snn_drone.core.snn.slope_schedules import (AdaptiveSlope, FixedSlope, IntervalSlope,
                                            SlopeScheduleConfig, make_slope_schedule,
                                            parse_slope_spec)


def run(schedule, returns):
    return [schedule.update(r) for r in returns]


def adaptive(**kw):
    return make_slope_schedule(SlopeScheduleConfig(kind="adaptive", **kw))


# ---- adaptive: Eq. 7 by hand ------------------------------------------------------------------

def test_adaptive_matches_eq7_by_hand_for_a_three_evaluation_trace():
    # scale 2.5, offset 0, alpha 0.5, window 10 starting filled with k_init = 2.
    # returns 100, 200, 200 -> x = 40, 80, 80
    # r0 = 40, r'0 = 0   -> term 20   k = (9*2 + 20) / 10          = 3.8
    # r1 = 60, r'1 = 20  -> term 40   k = (8*2 + 20 + 40) / 10     = 7.6
    # r2 = 70, r'2 = 10  -> term 40   k = (7*2 + 20 + 40 + 40) / 10 = 11.4
    s = adaptive(lowpass_alpha=0.5)
    assert s.k == 2.0
    assert run(s, [100.0, 200.0, 200.0]) == pytest.approx([3.8, 7.6, 11.4], rel=1e-12)


def test_adaptive_default_filter_and_offset_by_hand():
    # alpha 0.8, offset -100, scale 2.5, window 2, k_init 2: returns 0, 50
    # x = 40, 60;  r0 = 40, r'0 = 0 -> 20; k = (2 + 20)/2 = 11
    # r1 = 0.8*40 + 0.2*60 = 44, r'1 = 4 -> 24; k = (20 + 24)/2 = 22
    s = adaptive(return_offset=-100.0, window=2)
    assert run(s, [0.0, 50.0]) == pytest.approx([11.0, 22.0], rel=1e-12)


def test_adaptive_plateau_converges_to_half_the_normalised_return():
    # On a plateau r' -> 0 and Eq. 7 gives k = 0.5 r: return 400 / 2.5 = 160 -> k = 80.
    s = adaptive()
    ks = run(s, [400.0] * 200)
    assert ks[-1] == pytest.approx(80.0, rel=1e-9)
    # and a perfect 500-step episode (return 500) plateaus exactly at the ceiling 100
    assert run(adaptive(), [500.0] * 200)[-1] == pytest.approx(100.0, rel=1e-9)


def test_adaptive_clamps_to_1_for_negative_returns_and_100_for_huge_returns():
    ks = run(adaptive(), [-500.0] * 30)
    assert min(ks) == 1.0 and ks[-1] == 1.0
    ks = run(adaptive(), [5000.0] * 30)
    assert max(ks) == 100.0 and ks[-1] == 100.0
    assert all(1.0 <= k <= 100.0 for k in run(adaptive(), [(-1) ** i * 3000.0 for i in range(50)]))


def test_adaptive_rises_with_a_rising_trace_and_falls_after_a_collapse():
    s = adaptive()
    rising = run(s, [50.0 + 10.0 * i for i in range(36)])   # 50 -> 400 over 35 evaluations
    assert all(b > a for a, b in zip(rising, rising[1:]))
    assert rising[-1] > 60.0
    collapse = run(s, [0.0] * 15)                             # the policy breaks
    assert collapse[0] < rising[-1]
    assert all(b < a for a, b in zip(collapse, collapse[1:]))
    assert collapse[-1] < 10.0


def test_adaptive_derivative_term_makes_rising_reward_steeper_than_its_plateau():
    # Same filtered level, but r' > 0 while rising: k is above 0.5 r while the return climbs.
    s = adaptive(lowpass_alpha=0.0, window=1)
    assert run(s, [100.0, 200.0]) == pytest.approx([20.0, 40.0 + 0.5 * 40.0], rel=1e-12)


# ---- interval --------------------------------------------------------------------------------

def test_interval_default_timetable_geometric_1_to_100():
    s = make_slope_schedule(SlopeScheduleConfig(kind="interval"))
    assert isinstance(s, IntervalSlope)
    ks = [s.k] + run(s, [0.0] * 600)                      # ks[n] = slope after n evaluations
    ratio = 100.0 ** (1 / 5)
    for step in range(5):
        lo, hi = step * 100, step * 100 + 99
        assert ks[lo] == pytest.approx(ratio ** step, rel=1e-12)
        assert ks[hi] == ks[lo]
    assert ks[500] == 100.0 and ks[600] == 100.0
    assert ks[100] == pytest.approx(2.5118864315, rel=1e-9)


def test_interval_ignores_returns():
    a = run(make_slope_schedule(SlopeScheduleConfig(kind="interval", interval_every=3)), [0.0] * 20)
    b = run(make_slope_schedule(SlopeScheduleConfig(kind="interval", interval_every=3)),
            [1000.0 * (-1) ** i for i in range(20)])
    assert a == b


def test_interval_explicit_timetable():
    cfg = config.from_dict(SlopeScheduleConfig, {
        "kind": "interval", "k_start": 1.0, "interval_timetable": [[2, 5.0], [4, 50.0]]})
    s = make_slope_schedule(cfg)
    assert [s.k] + run(s, [0.0] * 5) == [1.0, 1.0, 5.0, 5.0, 50.0, 50.0]


def test_interval_timetable_out_of_order_is_refused():
    with pytest.raises(ValueError, match=r"interval_timetable\[1\].*greater"):
        SlopeScheduleConfig(kind="interval", interval_timetable=((4, 5.0), (2, 50.0)))


# ---- fixed and spec parsing ------------------------------------------------------------------

def test_fixed_never_moves():
    s = make_slope_schedule(parse_slope_spec("fixed:50"))
    assert isinstance(s, FixedSlope)
    assert [s.k] + run(s, [-500.0, 0.0, 500.0]) == [50.0] * 4


def test_parse_slope_spec_kinds_and_base_config_is_kept():
    assert parse_slope_spec("fixed:2.5").k == 2.5
    wide = parse_slope_spec("fixed:250")
    assert (wide.k, wide.k_min, wide.k_max) == (250.0, 1.0, 250.0)
    assert parse_slope_spec(" Interval ").kind == "interval"
    base = SlopeScheduleConfig(return_scale=4.0)
    cfg = parse_slope_spec("adaptive", base)
    assert cfg.kind == "adaptive" and cfg.return_scale == 4.0
    assert isinstance(make_slope_schedule(cfg), AdaptiveSlope)


@pytest.mark.parametrize("spec, message", [
    ("fixed", "not understood"),
    ("fixed:abc", "'abc' is not a number"),
    ("fixed:-3", "must be a finite number > 0"),
    ("fixed:nan", "must be a finite number > 0"),
    ("adaptive:3", "not understood"),
    ("steep", "expected fixed:K"),
])
def test_parse_slope_spec_bad_specs_name_the_spec(spec, message):
    with pytest.raises(ValueError, match=message) as e:
        parse_slope_spec(spec)
    assert repr(spec) in str(e.value)


def test_bad_config_and_non_finite_return_are_refused():
    with pytest.raises(ValueError, match="k_init=0.5 outside"):
        SlopeScheduleConfig(k_init=0.5)
    with pytest.raises(ValueError, match="lowpass_alpha"):
        SlopeScheduleConfig(lowpass_alpha=1.0)
    with pytest.raises(KeyError, match="slope_max"):
        config.from_dict(SlopeScheduleConfig, {"slope_max": 3})
    with pytest.raises(ValueError, match="nan"):
        adaptive().update(math.nan)


# ---- resume ----------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", ["fixed:7", "interval", "adaptive"])
def test_state_round_trip_continues_the_schedule_exactly(spec):
    cfg = config_with_short_interval(spec)
    trace = [37.0 * math.sin(i / 3.0) + 4.0 * i for i in range(60)]
    full = make_slope_schedule(cfg)
    expected = run(full, trace)

    first = make_slope_schedule(cfg)
    run(first, trace[:25])
    state = first.state_dict()
    resumed = make_slope_schedule(cfg)
    resumed.load_state_dict(state)
    assert resumed.k == first.k
    assert run(resumed, trace[25:]) == expected[25:]


def config_with_short_interval(spec):
    # a short interval so the resumed half crosses steps
    return parse_slope_spec(spec, SlopeScheduleConfig(interval_every=7))


def test_state_of_another_kind_is_refused():
    state = make_slope_schedule(parse_slope_spec("interval")).state_dict()
    with pytest.raises(ValueError, match="kind 'interval'"):
        adaptive().load_state_dict(state)
