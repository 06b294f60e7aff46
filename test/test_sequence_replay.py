"""Episodes are sliced into overlapping sequences exactly, and the replay stores/samples them."""
import torch

from snn_drone.core.common import layout
from snn_drone.core.learning.sequence_replay import (EpisodeSlicer, SequenceConfig, SequenceReplay, Sequences,
                                            privileged_history)

H, A = layout.ACTION_HISTORY, layout.ACTION_DIM


def _fly(slicer: EpisodeSlicer, lengths: list[int], crashed: list[bool], steps: int):
    """Drive B drones; state[0] = episode step, state[1] = drone id, state[2] = episode number.
    Drone b's episodes last lengths[b] steps. Returns every emitted Sequences."""
    b = len(lengths)
    t = torch.zeros(b, dtype=torch.long)
    ep = torch.zeros(b)
    out = []
    for _ in range(steps):
        def st(step):
            s = torch.zeros(b, layout.STATE_DIM)
            s[:, 0], s[:, 1], s[:, 2] = step.float(), torch.arange(b).float(), ep
            return s
        done = t + 1 == torch.tensor(lengths)
        term = done & torch.tensor(crashed)
        trunc = done & ~torch.tensor(crashed)
        act = (t.float() + 1)[:, None].expand(b, A).clone()          # action at step t = t + 1
        guide = -act
        hist = (t.float() * 1000)[:, None, None].expand(b, H, A).clone()  # marks the step it belongs to
        target = torch.stack([torch.arange(b).float(), ep, torch.zeros(b)], 1)
        seqs = slicer.record(st(t), act, guide, st(t + 1), term, trunc, hist, target)
        if seqs is not None:
            out.append(seqs)
        t = torch.where(done, 0, t + 1)
        ep = ep + done.float()
    return Sequences.cat(out)


def test_slicer_cuts_overlapping_sequences_with_padding_masks_and_crash_flags():
    cfg = SequenceConfig(length=10, stride=5, warmup=5, min_valid_after_warmup=1)
    slicer = EpisodeSlicer(num_drones=2, max_episode_steps=23, cfg=cfg)
    # drone 0 crashes after 17 steps, drone 1 is truncated after 23 steps; fly 23 steps
    seqs = _fly(slicer, lengths=[17, 23], crashed=[True, False], steps=23)
    got = sorted((int(s[0, 1]), int(s[0, 2]), int(s[0, 0])) for s in seqs.state)
    # drone 0, episode 0 (L = 17): complete starts 0, 5; at the end start 10 (7 valid, 2 after
    # warm-up: kept) and start 15 (2 valid, none after warm-up: dropped). Episode 1 has 6 steps
    # so far, nothing complete. Drone 1 (L = 23): 0, 5, 10 complete; at the end 15 (8 valid) kept,
    # 20 (3 valid) dropped.
    assert got == [(0, 0, 0), (0, 0, 5), (0, 0, 10), (1, 0, 0), (1, 0, 5), (1, 0, 10), (1, 0, 15)]
    by_key = {(int(s[0, 1]), int(s[0, 0])): i for i, s in enumerate(seqs.state)}

    i = by_key[(0, 10)]  # drone 0, start 10, episode ends after step 16
    assert seqs.valid[i].tolist() == [True] * 7 + [False] * 3
    assert seqs.terminated[i].tolist() == [False] * 6 + [True] + [False] * 3
    assert seqs.state[i, :, 0].tolist() == [10, 11, 12, 13, 14, 15, 16, 17, 17, 17, 17]  # padded with s_L
    assert seqs.action[i, :, 0].tolist() == [11, 12, 13, 14, 15, 16, 17, 0, 0, 0]
    assert seqs.guide_action[i, :7, 0].tolist() == [-11, -12, -13, -14, -15, -16, -17]
    assert torch.all(seqs.history0[i] == 10 * 1000)
    assert int(seqs.start_step[i]) == 10

    i = by_key[(1, 15)]  # truncated, not crashed: no terminal flag
    assert seqs.valid[i].tolist() == [True] * 8 + [False] * 2
    assert not seqs.terminated[i].any()

    i = by_key[(1, 5)]  # complete sequence: all valid, next state of the last step included
    assert seqs.valid[i].all() and seqs.state[i, :, 0].tolist() == list(range(5, 16))
    assert torch.all(seqs.history0[i] == 5 * 1000)
    assert seqs.target[i].tolist() == [1.0, 0.0, 0.0]


def test_privileged_history_shifts_in_each_executed_action():
    history0 = torch.arange(H * A, dtype=torch.float).reshape(1, H, A)
    action = 1000 + torch.arange(3 * A, dtype=torch.float).reshape(1, 3, A)
    hist = privileged_history(history0, action)
    assert hist.shape == (1, 4, H, A)
    assert torch.equal(hist[0, 0], history0[0])
    assert torch.equal(hist[0, 1, :-1], history0[0, 1:]) and torch.equal(hist[0, 1, -1], action[0, 0])
    assert torch.equal(hist[0, 3, -3:], action[0])


def test_replay_ring_buffer_keeps_newest_and_round_trips_state():
    cfg = SequenceConfig(length=10, stride=5, warmup=5, capacity_transitions=5 * 4)  # 4 sequences
    slicer = EpisodeSlicer(num_drones=2, max_episode_steps=23, cfg=cfg)
    seqs = _fly(slicer, lengths=[17, 23], crashed=[True, False], steps=23)
    replay = SequenceReplay(cfg)
    replay.add(seqs.index(slice(0, 3)))
    replay.add(seqs.index(slice(3, 7)))
    assert len(replay) == 4 and replay.total_added == 7
    stored = sorted(replay.all().state[:, 0, :2].tolist())
    newest = sorted(seqs.index(slice(3, 7)).state[:, 0, :2].tolist())
    assert stored == newest
    batch = replay.sample(16, torch.Generator().manual_seed(0))
    assert batch.state.shape == (16, 11, layout.STATE_DIM)
    other = SequenceReplay(cfg)
    other.load_state_dict(replay.state_dict())
    assert torch.equal(other.all().state, replay.all().state) and other.total_added == 7


def test_two_million_transitions_fit_in_under_half_a_gigabyte():
    cfg = SequenceConfig()  # paper: 2M transitions, T = 100, stride 50
    per_seq = SequenceReplay(SequenceConfig(capacity_transitions=50)).nbytes()
    assert cfg.capacity_sequences == 40_000
    assert per_seq * cfg.capacity_sequences < 0.5e9


def test_early_crashes_reach_the_replay_with_their_terminal_step():
    # Episodes no longer than the warm-up used to be dropped (no step after the warm-up), so the
    # critic never saw an early crash. Drone 0 crashes after 3 steps, drone 1 after 5 (= warm-up),
    # drone 2 after 6; each such episode is one fragment from step 0 with every step valid.
    cfg = SequenceConfig(length=10, stride=5, warmup=5, min_valid_after_warmup=1)
    slicer = EpisodeSlicer(num_drones=3, max_episode_steps=23, cfg=cfg)
    seqs = _fly(slicer, lengths=[3, 5, 6], crashed=[True, True, True], steps=6)
    got = sorted((int(s[0, 1]), int(s[0, 2]), int(s[0, 0])) for s in seqs.state)
    assert got == [(0, 0, 0), (0, 1, 0), (1, 0, 0), (2, 0, 0)]  # drone 0 crashed twice in 6 steps
    for i in range(seqs.n):
        n = {0: 3, 1: 5, 2: 6}[int(seqs.state[i, 0, 1])]
        assert seqs.valid[i].tolist() == [True] * n + [False] * (10 - n)
        assert seqs.terminated[i].tolist() == [False] * (n - 1) + [True] + [False] * (10 - n)
        assert int(seqs.start_step[i]) == 0


def test_every_flown_step_lands_in_some_sequence_whatever_the_episode_length():
    cfg = SequenceConfig(length=10, stride=5, warmup=5)
    lengths = list(range(1, 24))
    slicer = EpisodeSlicer(num_drones=len(lengths), max_episode_steps=23, cfg=cfg)
    seqs = _fly(slicer, lengths=lengths, crashed=[True] * len(lengths), steps=23)
    for b, L in enumerate(lengths):
        mine = seqs.state[:, 0, 1] == b
        first = seqs.state[:, 0, 2] == 0  # the first episode of each drone
        rows = (mine & first).nonzero().flatten()
        covered = set()
        for i in rows.tolist():
            s0 = int(seqs.start_step[i])
            covered |= {s0 + t for t in range(10) if seqs.valid[i, t]}
        assert covered == set(range(L)), (L, sorted(covered))
        # exactly one stored step per sequence is the crash
        assert int(seqs.terminated[rows].sum()) == sum(1 for i in rows.tolist()
                                                      if int(seqs.start_step[i]) + 10 > L - 1)
