"""The bridge's watch on a take-off / land / emergency-stop command (core/deploy/command_watch.py):
sent again while the drone does not move as asked, never once it does."""
import pytest

from snn_drone.core.deploy.command_watch import CommandWatch, CommandWatchConfig


def test_a_landing_that_does_not_start_is_repeated_until_the_drone_comes_down():
    w = CommandWatch(CommandWatchConfig(land_confirm_s=1.0, move_m=0.05, max_repeats=3))
    w.commanded("land", 10.0, 1.0)
    assert w.check(10.5, 1.0) is None  # still within its second
    assert w.check(11.01, 1.01) == "land" and w.repeats == 1
    assert w.check(11.5, 1.0) is None  # the repeat gets its own second
    assert w.check(12.02, 0.99) == "land" and w.repeats == 2
    assert w.check(12.5, 0.93) is None  # 5 cm below its highest since the repeat: coming down
    assert w.action is None and w.check(20.0, 0.93) is None  # and never again


def test_an_overshoot_is_not_a_descent_and_the_highest_point_counts():
    w = CommandWatch()
    w.commanded("land", 0.0, 0.6)  # a geofence trip while climbing: it rises a little first
    for t, z in ((0.2, 0.65), (0.4, 0.68), (0.8, 0.64)):
        assert w.check(t, z) is None
    assert w.action == "land"  # 4 cm below its highest (0.68): not yet coming down
    assert w.check(0.9, 0.62) is None and w.action is None  # 6 cm below 0.68: coming down, in time


def test_a_stop_is_repeated_the_floor_ends_the_watch_and_it_gives_up_after_max_repeats():
    w = CommandWatch(CommandWatchConfig(stop_confirm_s=0.5, land_confirm_s=1.0, max_repeats=1))
    w.commanded("stop", 0.0, 1.0)
    assert w.check(0.6, 1.0) == "stop"
    assert w.check(1.2, 1.0) == "gave_up" and w.action is None and w.check(2.0, 1.0) is None
    w.commanded("land", 5.0, 0.03)
    assert w.check(9.0, 0.03) is None and w.action is None  # on the floor: down already
    w.commanded("land", 5.0, None)  # no state yet: the first height seen is the reference
    assert w.check(6.0, None) is None and w.check(6.1, 1.0) == "land"
    w.cancel()
    assert w.check(9.0, 1.0) is None


def test_bad_settings_and_actions_are_refused():
    with pytest.raises(ValueError, match="confirm times"):
        CommandWatchConfig(land_confirm_s=0.0)
    with pytest.raises(ValueError, match="max_wait_s"):
        CommandWatchConfig(land_confirm_s=2.0, max_wait_s=1.0)
    with pytest.raises(ValueError, match="expected one of"):
        CommandWatch().commanded("hover", 0.0, 1.0)


def test_a_drone_still_climbing_gets_its_time_from_the_top_of_the_climb_up_to_max_wait():
    # the SITL geofence trip at 0.606 m during the take-off: the drone rose to 0.93 m, 0.7 s later
    w = CommandWatch(CommandWatchConfig(land_confirm_s=1.0, move_m=0.05, max_wait_s=3.0))
    w.commanded("land", 0.0, 0.606)
    for t, z in ((0.2, 0.75), (0.4, 0.85), (0.7, 0.929), (1.0, 0.924)):
        assert w.check(t, z) is None
    assert w.check(1.6, 0.90) is None  # 1 s after the command, but only 0.9 s after the top
    assert w.check(1.65, 0.87) is None and w.action is None  # 6 cm below the top: coming down
    w.commanded("land", 0.0, 0.5)
    for i in range(1, 40):  # a drone that climbs and climbs: at most max_wait_s
        out = w.check(0.1 * i, 0.5 + 0.02 * i)
        if out:
            break
    assert out == "land" and 0.1 * i == pytest.approx(3.0)
    w.commanded("land", 0.0, 1.0)  # height noise of a few mm is not a climb
    assert [w.check(0.25 * i, 1.0 + 0.004 * (i % 2)) for i in range(1, 5)] == [None, None, None, "land"]


def test_a_take_off_that_does_not_rise_is_repeated_and_a_rise_ends_the_watch():
    # seen in SITL: the take-off packet lost, the drone stayed on the floor for 30 s
    w = CommandWatch(CommandWatchConfig(takeoff_confirm_s=1.5))
    w.commanded("takeoff", 0.0, 0.0)
    assert w.check(1.0, 0.0) is None and w.check(1.51, 0.002) == "takeoff"  # the floor is no descent here
    assert w.check(2.0, 0.03) is None and w.check(2.2, 0.06) is None and w.action is None  # 6 cm up
    w.commanded("takeoff", 0.0, 0.5)  # while it still sinks (a take-off from a landing): from its lowest
    for t, z in ((0.5, 0.45), (1.0, 0.40), (1.4, 0.38)):
        assert w.check(t, z) is None
    assert w.check(2.0, 0.39) is None and w.check(2.95, 0.42) == "takeoff"  # 1.5 s after the turn at 1.4 s
