"""Which samples form B and B' at every iteration.

Each epoch has two independent shuffles of the training set, each a pure function of (seed,
stream, epoch): stream "B" gives the minibatches every method steps on (each sample once per
epoch), stream "B'" the second minibatches SAST perturbs with (and compute-matched baselines step
on). Being stateless, the order needs no RNG state to resume mid-epoch, and every method with the
same seed sees the same B at the same step.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch

STREAMS = ("B", "B'")


def epoch_order(n: int, seed: int, stream: str, epoch: int) -> np.ndarray:
    """A permutation of range(n), fixed by (seed, stream, epoch)."""
    if stream not in STREAMS:
        raise ValueError(f"unknown stream {stream!r}")
    key = hashlib.sha256(f"{seed}|{stream}|{epoch}".encode()).digest()
    gen = torch.Generator().manual_seed(int.from_bytes(key[:8], "little") >> 1)
    return torch.randperm(n, generator=gen).numpy()


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, reuse: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    """(B, B') index pairs for one epoch; B' = B with `reuse` (the ablation)."""
    first = epoch_order(n, seed, "B", epoch)
    second = first if reuse else epoch_order(n, seed, "B'", epoch)
    return [(first[i:i + batch_size], second[i:i + batch_size]) for i in range(0, n, batch_size)]


def fixed_subset(n: int, limit: int) -> np.ndarray:
    """The same `limit` samples of n for every run (seed 0, sorted), or all when limit is 0."""
    if limit <= 0 or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).permutation(n)[:limit])


def shard_bounds(n: int, rank: int, size: int) -> tuple[int, int]:
    """[lo, hi) of part `rank` when n items are cut into `size` contiguous parts whose sizes differ
    by at most one, larger parts first (numpy's array_split)."""
    base, extra = divmod(n, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


def shard(idx: np.ndarray, rank: int, size: int) -> np.ndarray:
    """Process `rank`'s part of a global minibatch; the parts in rank order are `idx` again."""
    lo, hi = shard_bounds(len(idx), rank, size)
    return idx[lo:hi]
