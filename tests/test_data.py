"""Embedded N-MNIST, offline local N-MNIST, framing, caching, and malformed recordings."""
import json
import shutil

import numpy as np
import pytest
import torch

from sast_deploy.data import count_frames, load_frames, normalize, read_nmnist, recordings, validate_events
from sast_deploy.data.datasets import embedded_root
from sast_deploy.errors import DataError


def test_embedded_split_is_fixed_stratified_and_disjoint():
    parts = {s: recordings("nmnist-small", s) for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [700, 100, 200]
    sets = [set(parts[s].paths) for s in parts]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    total = sum(np.bincount(parts[s].labels, minlength=10) for s in parts)
    for s, n in (("val", 100), ("test", 200)):
        counts = np.bincount(parts[s].labels, minlength=10)
        assert counts.sum() == n and np.all(np.abs(counts - n * total / 1000) < 1)  # stratified
    assert recordings("nmnist-small", "test").paths == parts["test"].paths  # deterministic
    manifest = json.loads((embedded_root() / "splits.json").read_text())
    assert all(p.endswith(e + ".bin") for p, e in zip(parts["test"].paths, manifest["test"]))


def test_embedded_recordings_read_with_tonic_and_validate():
    recs = recordings("nmnist-small", "val")
    ev = recs.read(0)
    assert set("xytp") <= set(ev.dtype.names) and 1000 < len(ev) < 20000
    assert ev["x"].max() < 34 and ev["y"].max() < 34 and set(np.unique(ev["p"])) <= {0, 1}
    assert (embedded_root() / "LICENSE").exists() and "CC BY-SA 4.0" in (embedded_root() / "README.md").read_text()


def naive_frames(ev, T):
    t0, t1 = ev["t"].min(), ev["t"].max()
    out = np.zeros((T, 2, 34, 34), np.int64)
    for x, y, t, p in zip(ev["x"], ev["y"], ev["t"], ev["p"]):
        out[int((t - t0) * T // (t1 - t0 + 1)), p, y, x] += 1
    return out


def test_framing_counts_every_event_deterministically():
    ev = recordings("nmnist-small", "test").read(3)
    c = count_frames(ev, (34, 34, 2), 7)
    assert c.shape == (7, 2, 34, 34) and c.dtype == np.uint16
    assert c.sum() == len(ev)  # unlike tonic's ToFrame, the last event is kept
    np.testing.assert_array_equal(c, naive_frames(ev, 7))
    np.testing.assert_array_equal(c, count_frames(ev, (34, 34, 2), 7))
    b = normalize(c, "binary")
    assert b.dtype == np.float32 and set(np.unique(b)) == {0.0, 1.0}
    m = normalize(c, "max")
    assert m.max() == 1.0 and np.allclose(m * c.max(), c)
    torch.testing.assert_close(normalize(torch.from_numpy(c.astype(np.int32))[None], "max")[0], torch.from_numpy(m))
    d = count_frames(ev, (34, 34, 2), 7, downsample=4)
    assert d.shape == (7, 2, 9, 9) and d.sum() == len(ev)


def test_load_frames_caches_and_batches_time_major(tmp_path, monkeypatch):
    monkeypatch.setenv("SAST_DEPLOY_CACHE", str(tmp_path))
    fs = load_frames("nmnist-small", "val", T=5, progress=False)
    assert len(list(tmp_path.glob("frames-nmnist-small-val-T5-*.npy"))) == 1
    again = load_frames("nmnist-small", "val", T=5, progress=False)
    np.testing.assert_array_equal(fs.counts, again.counts)
    x = fs.frames([4, 0, 9])
    assert x.shape == (5, 3, 2, 34, 34) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, 1], normalize(count_frames(fs_read(fs, 0), (34, 34, 2), 5), "binary"))


def fs_read(fs, i):
    return read_nmnist(fs.paths[i])


def write_nmnist(path, x, y, p, t):
    """Encode events in the N-MNIST .bin format (5 bytes each)."""
    x, y, p, t = map(np.asarray, (x, y, p, t))
    raw = np.zeros((len(x), 5), np.uint8)
    raw[:, 0], raw[:, 1] = x, y
    raw[:, 2] = (p << 7) | ((t >> 16) & 0x7F)
    raw[:, 3], raw[:, 4] = (t >> 8) & 0xFF, t & 0xFF
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw.tobytes())


def test_nmnist_writer_round_trips_through_tonic(tmp_path):
    f = tmp_path / "a.bin"
    write_nmnist(f, [1, 33, 0], [2, 0, 33], [1, 0, 1], [5, 70000, 300000])
    ev = read_nmnist(f)
    assert ev["x"].tolist() == [1, 33, 0] and ev["t"].tolist() == [5, 70000, 300000] and ev["p"].tolist() == [1, 0, 1]


@pytest.mark.parametrize("case, message", [
    ("truncated", "truncated"),
    ("empty", "truncated"),
    ("outside", "outside the sensor"),
    ("backwards", "backwards"),
])
def test_malformed_nmnist_files_name_the_file(tmp_path, case, message):
    f = tmp_path / f"{case}.bin"
    if case == "truncated":
        good = (embedded_root() / "NMNIST/Train/0").glob("*.bin").__next__().read_bytes()
        f.write_bytes(good[: len(good) - 3])
    elif case == "empty":
        f.write_bytes(b"")
    elif case == "outside":
        write_nmnist(f, [1, 60], [1, 1], [0, 0], [1, 2])
    else:
        write_nmnist(f, [1, 2], [1, 1], [0, 0], [500, 2])
    with pytest.raises(DataError, match=message) as e:
        read_nmnist(f)
    assert str(f) in str(e.value)


def test_wrong_sensor_size_and_empty_arrays_are_rejected():
    ev = recordings("nmnist-small", "val").read(0)
    with pytest.raises(DataError, match="outside the sensor"):
        validate_events(ev, (28, 28, 2), "rec.bin")
    with pytest.raises(DataError, match="no events"):
        validate_events(ev[:0], (34, 34, 2), "rec.bin")


def test_local_nmnist_folder_works_offline(tmp_path):
    src = embedded_root() / "NMNIST" / "Train"
    for split in ("Train", "Test"):
        for d in range(10):
            files = sorted((src / str(d)).glob("*.bin"))[: 6 if split == "Train" else 2]
            (tmp_path / "NMNIST" / split / str(d)).mkdir(parents=True)
            for f in files:
                shutil.copy(f, tmp_path / "NMNIST" / split / str(d) / f.name)
    train, val, test = (recordings("nmnist", s, tmp_path) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (50, 10, 20)
    assert not set(train.paths) & set(val.paths)
    assert sorted(np.bincount(val.labels)) == [1] * 10
    fs = load_frames("nmnist", "test", T=4, data_dir=tmp_path, cache=False, progress=False)
    assert fs.counts.shape == (20, 4, 2, 34, 34)


def test_missing_dataset_says_where_to_put_it(tmp_path):
    with pytest.raises(DataError, match=r"NMNIST.*Train.*--data-dir"):
        recordings("nmnist", "train", tmp_path)
    with pytest.raises(DataError, match="pass --data-dir"):
        recordings("dvsgesture", "train")
    with pytest.raises(DataError, match="ibmGestureTest"):
        recordings("dvsgesture", "test", tmp_path)
    with pytest.raises(DataError, match="CIFAR10DVS"):
        recordings("cifar10dvs", "test", tmp_path)
    with pytest.raises(DataError, match="unknown dataset"):
        recordings("mnist", "test")
