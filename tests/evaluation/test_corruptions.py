"""Seeded corruptions: determinism, nesting across severities, identity at p = 0, exact bin counts,
jitter inside the recording's window."""
from dataclasses import replace

import numpy as np
import pytest

from sast_deploy.data import count_frames, event_window, load_frames, recordings
from sast_deploy.data.corruptions import (corrupt_frames, corruption_rng, drop_bins, drop_voxels, dropped_bins,
                                          jitter_times, reflect)
from sast_deploy.errors import DataError

SENSOR = (34, 34, 2)


@pytest.fixture(scope="module")
def recs():
    return recordings("nmnist-small", "test")


@pytest.fixture(scope="module")
def frames():
    return load_frames("nmnist-small", "test", 8, progress=False).subset(np.arange(12))


def recordings_subset(recs, n):
    return replace(recs, paths=recs.paths[:n], labels=recs.labels[:n])


def test_same_seed_same_corruption_other_seed_differs(frames, recs):
    for kind in ("voxel-drop", "bin-drop"):
        a = corrupt_frames(frames, kind, 0.3, seed=5)
        b = corrupt_frames(frames, kind, 0.3, seed=5)
        c = corrupt_frames(frames, kind, 0.3, seed=6)
        assert np.array_equal(a.counts, b.counts)
        assert not np.array_equal(a.counts, c.counts)
    j1 = corrupt_frames(frames.subset(np.arange(3)), "time-jitter", 0.2, 1, recordings_subset(recs, 3))
    j2 = corrupt_frames(frames.subset(np.arange(3)), "time-jitter", 0.2, 1, recordings_subset(recs, 3))
    assert np.array_equal(j1.counts, j2.counts)


def test_voxel_drop_nests_and_does_not_rescale(frames):
    clean = np.asarray(frames.counts)
    prev_zero = clean == 0
    for p in (0.1, 0.2, 0.3, 0.4):
        out = corrupt_frames(frames, "voxel-drop", p, seed=0).counts
        zero = out == 0
        assert np.all(zero[prev_zero]), "a voxel dropped at a lower severity came back"
        kept = ~zero
        assert np.array_equal(out[kept], clean[kept]), "surviving voxels were rescaled"
        prev_zero = zero
    # the dropped fraction of nonzero voxels tracks p (23k voxels per sample, 12 samples)
    nz = clean > 0
    frac = 1 - (out[nz] > 0).mean()
    assert abs(frac - 0.4) < 0.02


def test_bin_drop_exact_counts_and_nesting():
    T = 10
    for seed in range(5):
        previous = set()
        for p, want in ((0.0, 0), (0.1, 1), (0.2, 2), (0.25, 3), (0.3, 3), (0.4, 4), (0.45, 5), (1.0, 10)):
            bins = set(dropped_bins(T, p, corruption_rng(seed, "bin-drop", 0)).tolist())
            assert len(bins) == want, (p, bins)
            assert previous <= bins
            previous = bins
    counts = np.ones((T, 2, 3, 3), np.uint16)
    out = drop_bins(counts, 0.3, corruption_rng(0, "bin-drop", 7))
    zero_bins = [t for t in range(T) if not out[t].any()]
    assert len(zero_bins) == 3 and all(out[t].all() for t in range(T) if t not in zero_bins)


def test_p_zero_is_the_identity(frames, recs):
    for kind in ("voxel-drop", "bin-drop", "time-jitter"):
        assert np.array_equal(corrupt_frames(frames, kind, 0.0, 3, recs).counts, frames.counts)
    counts = np.asarray(frames.counts[0])
    assert np.array_equal(drop_voxels(counts, 0.0, corruption_rng(0, "voxel-drop", 0)), counts)
    events = recs.read(0)
    w = event_window(events)
    same = jitter_times(events, 0.0, 8, w, corruption_rng(0, "time-jitter", 0))
    assert np.array_equal(count_frames(same, SENSOR, 8, window=w), frames.counts[0])


def test_jitter_stays_inside_the_window_and_keeps_every_event(recs):
    events = recs.read(1)
    w = event_window(events)
    for p in (0.1, 0.4, 1.0):
        out = jitter_times(events, p, 8, w, corruption_rng(0, "time-jitter", 1))
        assert out["t"].min() >= w[0] and out["t"].max() <= w[1]
        assert np.all(np.diff(out["t"]) >= 0)
        assert np.array_equal(np.sort(out[["x", "y", "p"]]), np.sort(events[["x", "y", "p"]]))
        counts = count_frames(out, SENSOR, 8, window=w)
        assert int(counts.sum()) == len(events)  # binned in the same fixed window: nothing falls out
        assert not np.array_equal(out["t"], events["t"])


def test_reflect_folds_into_the_interval():
    t = np.array([-25.0, -5.0, 0.0, 3.0, 10.0, 12.0, 27.0, 45.0])
    assert np.allclose(reflect(t, 0.0, 10.0), [5.0, 5.0, 0.0, 3.0, 10.0, 8.0, 7.0, 5.0])


def test_jitter_needs_the_matching_recordings(frames):
    with pytest.raises(DataError, match="time-jitter"):
        corrupt_frames(frames, "time-jitter", 0.1, 0, None)
