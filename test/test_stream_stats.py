"""The bridge's motor-stream bookkeeping (core/deploy/stream_stats.py): state -> packet latency by
the state's step, and packets the firmware's app accepted of those sent."""
import pytest

from snn_drone.core.deploy.stream_stats import KEEP_STATES, StreamStats


def test_latency_is_matched_by_step_and_the_app_counters_count_from_the_stream_start():
    st = StreamStats()
    st.reset(accepted_at_start=1000, err_seq_at_start=3)
    for step in range(10):
        st.state(step, 10.0 + 0.01 * step)
    st.sent_for(4, 10.04 + 0.012)
    st.sent_for(5, 10.05 + 0.008)
    st.sent_for(None, 11.0)  # a command without a step
    st.sent_for(99, 11.0)  # for a state not seen
    st.stale += 1
    st.stop_sent()  # the app counts the stop packet among those it accepted
    out = st.summary(accepted=1003, err_seq=4)
    assert out["sent"] == 4 and out["stops_sent"] == 1 and out["unmatched"] == 2 and out["stale_dropped"] == 1
    assert out["latency_mean_ms"] == pytest.approx(10.0) and out["latency_max_ms"] == pytest.approx(12.0)
    assert (out["accepted"], out["not_accepted"], out["err_seq"]) == (3, 2, 1)
    assert st.summary(accepted=1005)["not_accepted"] == 0  # all four and the stop: none lost
    assert "accepted" not in StreamStats().summary(accepted=5)  # no counter at the start: not claimed


def test_old_states_are_forgotten():
    st = StreamStats()
    for step in range(KEEP_STATES + 10):
        st.state(step, float(step))
    st.sent_for(0, 1000.0)
    st.sent_for(KEEP_STATES + 9, KEEP_STATES + 9.5)
    assert st.unmatched == 1 and st.latencies_s == [0.5]
