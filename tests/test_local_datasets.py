"""Local DVS Gesture (tonic's preprocessed .npy) and CIFAR10-DVS (.aedat4) folders, offline.

Every file here is written by the tests in the real format and read back with tonic's own readers
(and, for AEDAT 4, the `aedat` decoder under them): no mocks. The only monkeypatching blocks network
access, to check that a missing dataset never tries to download.
"""
import re
import socket
import struct
import urllib.request
from pathlib import Path

import aedat
import numpy as np
import pytest
import tonic
from aedat4 import EVENT_DTYPE, MAGIC, make_events, write_aedat4
from tonic.io import read_aedat4

from sast_deploy.data import load_frames, recordings
from sast_deploy.data.datasets import CIFAR10DVS, DVSGesture
from sast_deploy.errors import DataError

GESTURES = len(tonic.datasets.DVSGesture.classes)  # 11
CIFAR_CLASSES = list(tonic.datasets.CIFAR10DVS.classes)  # airplane .. truck


# ---------------------------------------------------------------- writers and folders in the real layouts

def gesture_events(n, seed, t0_ms=2000):
    """n events as tonic's preprocessed DVS Gesture stores them: x, y, p, t in ms."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n),
                     t0_ms + np.sort(rng.integers(0, 6000, n))], axis=1)


def write_gesture(path, array, dtype=np.int64):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.asarray(array).astype(dtype))
    return path


TRAIN_FOLDERS = [f"user{u:02d}_{light}" for u in range(1, 6) for light in ("fluorescent", "led")]
TEST_FOLDERS = ["user24_fluorescent_led", "user25_natural"]


@pytest.fixture(scope="module")
def gesture_root(tmp_path_factory):
    """DVSGesture/ibmGesture{Train,Test}/user<NN>_<lighting>/<label>.npy; float64 files in half the
    folders, int64 in the others. Returns (root, {path: written array})."""
    root = tmp_path_factory.mktemp("gesture")
    written, seed = {}, 0
    for split, folders in (("ibmGestureTrain", TRAIN_FOLDERS), ("ibmGestureTest", TEST_FOLDERS)):
        for k, folder in enumerate(folders):
            for label in range(GESTURES):
                a = gesture_events(60 + label, seed)
                seed += 1
                p = write_gesture(root / "DVSGesture" / split / folder / f"{label}.npy", a,
                                  np.float64 if k % 2 else np.int64)
                written[str(p)] = a
    return root, written


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    """CIFAR10DVS/<class>/<id>.aedat4, 10 per class, alternating LZ4/none and with/without data table."""
    root = tmp_path_factory.mktemp("cifar")
    written = {}
    for c, name in enumerate(CIFAR_CLASSES):
        for k in range(10):
            ev = make_events(40 + 7 * k, seed=100 * c + k)
            p = write_aedat4(root / "CIFAR10DVS" / name / f"cifar10_{name}_{k}.aedat4", ev,
                             compression=("lz4", "none")[k % 2], with_data_table=k % 3 != 0, packet_events=16)
            written[str(p)] = ev
    return root, written


# ---------------------------------------------------------------- the writers produce the real formats

@pytest.mark.parametrize("compression", ["none", "lz4"])
@pytest.mark.parametrize("table", [True, False])
def test_aedat4_writer_round_trips_through_aedat_and_tonic(tmp_path, compression, table):
    ev = make_events(150, seed=1)
    ev["x"][:4], ev["y"][:4], ev["p"][:4] = [0, 127, 0, 127], [0, 0, 127, 127], [True, False, True, False]
    other = make_events(30, seed=2, width=64, height=48)
    f = write_aedat4(tmp_path / "a.aedat4", ev, compression=compression, with_data_table=table,
                     packet_events=40, streams={3: (other, (64, 48))})
    assert f.read_bytes().startswith(MAGIC)
    decoder = aedat.Decoder(str(f))
    assert decoder.id_to_stream() == {0: {"type": "events", "width": 128, "height": 128},
                                      3: {"type": "events", "width": 64, "height": 48}}
    packets = [(p["stream_id"], len(p["events"])) for p in decoder]
    assert packets == [(0, 40), (3, 30), (0, 40), (0, 40), (0, 30)]  # interleaved, as written
    got = read_aedat4(str(f))  # tonic's reader: the event stream with the lowest id
    assert len(got) == len(ev)
    for field, want in (("t", "t"), ("x", "x"), ("y", "y"), ("on", "p")):
        np.testing.assert_array_equal(got[field], ev[want])
    assert got["t"][0] > 10**15  # absolute microsecond timestamps survive as uint64


def test_gesture_npy_round_trips_through_tonics_reader(gesture_root):
    root, written = gesture_root
    ds = DVSGesture(str(root), train=True)
    for i in (0, len(ds) - 1):  # one int64 folder and one float64 folder
        ev, label = ds[i]
        a = written[ds.data[i]]
        assert ev.dtype.names == ("x", "y", "p", "t") and label == int(Path(ds.data[i]).stem)
        np.testing.assert_array_equal(ev["x"], a[:, 0])
        np.testing.assert_array_equal(ev["y"], a[:, 1])
        np.testing.assert_array_equal(ev["p"], a[:, 2].astype(bool))
        np.testing.assert_array_equal(ev["t"], a[:, 3] * 1000)  # ms -> us
    assert {np.load(ds.data[0]).dtype, np.load(ds.data[-1]).dtype} == {np.dtype(np.int64), np.dtype(np.float64)}


# ---------------------------------------------------------------- good folders

def test_local_dvsgesture_folder_splits_labels_and_frames(gesture_root):
    root, written = gesture_root
    train, val, test = (recordings("dvsgesture", s, root) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (9 * GESTURES, GESTURES, 2 * GESTURES)
    assert all("/ibmGestureTest/" in p for p in test.paths)
    assert not any("/ibmGestureTest/" in p for p in train.paths + val.paths)
    assert not set(train.paths) & set(val.paths)
    assert sorted(train.paths + val.paths) == sorted(p for p in written if "/ibmGestureTrain/" in p)
    assert np.bincount(val.labels).tolist() == [1] * GESTURES  # stratified 10 %
    for recs in (train, val, test):
        assert recs.labels.tolist() == [int(Path(p).stem) for p in recs.paths]
    assert recordings("dvsgesture", "val", root).paths == val.paths  # deterministic
    ds = DVSGesture(str(root), train=True)
    assert ds.data == sorted(ds.data)  # tonic lists in os.walk order; ours is by path
    assert [f"user{u:02d}_{light}" for u, light in zip(ds.users, ds.lighting)] == [Path(p).parent.name for p in ds.data]
    for i in (0, 7):
        ev, a = test.read(i), written[test.paths[i]]
        assert ev["t"].tolist() == (a[:, 3] * 1000).tolist() and ev["x"].tolist() == a[:, 0].tolist()
    fs = load_frames("dvsgesture", "test", T=6, data_dir=root, cache=False, progress=False)
    assert fs.counts.shape == (2 * GESTURES, 6, 2, 32, 32) and fs.downsample == 4  # 128 / 4
    assert fs.counts.sum(axis=(1, 2, 3, 4)).tolist() == [len(written[p]) for p in test.paths]
    assert fs.labels.tolist() == test.labels.tolist() and fs.classes[10] == "Other gestures"
    full = load_frames("dvsgesture", "test", T=6, data_dir=root, downsample=1, cache=False, progress=False)
    assert full.counts.shape[-2:] == (128, 128)
    np.testing.assert_array_equal(full.counts[3].reshape(6, 2, 32, 4, 32, 4).sum(axis=(3, 5)), fs.counts[3])


def test_local_cifar10dvs_folder_splits_labels_and_frames(cifar_root):
    root, written = cifar_root
    parts = {s: recordings("cifar10dvs", s, root) for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [80, 10, 10]
    for s, per_class in (("train", 8), ("val", 1), ("test", 1)):
        assert np.bincount(parts[s].labels, minlength=10).tolist() == [per_class] * 10  # stratified 80/10/10
        assert parts[s].labels.tolist() == [CIFAR_CLASSES.index(Path(p).parent.name) for p in parts[s].paths]
    paths = [set(parts[s].paths) for s in parts]
    assert set.union(*paths) == set(written) and sum(map(len, paths)) == 100
    assert recordings("cifar10dvs", "test", root).paths == parts["test"].paths
    ds = CIFAR10DVS(str(root))
    assert ds.data == sorted(ds.data)
    for i in range(3):
        ev, want = parts["test"].read(i), written[parts["test"].paths[i]]
        assert ev.dtype.names == ("t", "x", "y", "p")  # tonic renames aedat's "on" field
        for k in "txyp":
            np.testing.assert_array_equal(ev[k], want[k])
    fs = load_frames("cifar10dvs", "test", T=4, data_dir=root, cache=False, progress=False)
    assert fs.counts.shape == (10, 4, 2, 32, 32)
    assert fs.counts.sum(axis=(1, 2, 3, 4)).tolist() == [len(written[p]) for p in parts["test"].paths]
    assert fs.classes == tuple(CIFAR_CLASSES)


def test_out_of_order_aedat4_events_are_kept_not_rejected(tmp_path):
    """AEDAT 4 allows out-of-order timestamps (camera packets have them): read and counted, not an error."""
    ev = make_events(50, seed=3)
    ev["t"][20], ev["t"][21] = ev["t"][21], ev["t"][20] - 5
    write_aedat4(tmp_path / "CIFAR10DVS" / "cat" / "0.aedat4", ev)
    recs = recordings("cifar10dvs", "train", tmp_path)
    assert len(recs) == 1 and recs.read(0)["t"].tolist() == ev["t"].tolist()
    assert load_frames("cifar10dvs", "train", T=3, data_dir=tmp_path, cache=False, progress=False).counts.sum() == 50


# ---------------------------------------------------------------- missing folders

class NetworkUsed(BaseException):
    """Raised by any network access; a BaseException so that no `except Exception` hides it."""


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise NetworkUsed(args)

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.parametrize("name, split, folder, source", [
    ("dvsgesture", "train", "DVSGesture/ibmGestureTrain", "figshare.com/ndownloader/files/38022171"),
    ("dvsgesture", "val", "DVSGesture/ibmGestureTrain", "ibmGestureTrain.tar.gz"),
    ("dvsgesture", "test", "DVSGesture/ibmGestureTest", "ibmGestureTest.tar.gz"),
    ("cifar10dvs", "test", "CIFAR10DVS", "figshare.com/ndownloader/files/38023437"),
])
def test_missing_folder_names_what_to_create_and_where_data_comes_from(tmp_path, no_network, name, split, folder, source):
    for setup in ("nothing", "empty folder"):
        if setup == "empty folder":
            (tmp_path / folder).mkdir(parents=True)
        with pytest.raises(DataError) as e:
            recordings(name, split, tmp_path)
        msg = str(e.value)
        assert str(tmp_path / folder) in msg and source in msg and "--data-dir" in msg, msg
        assert "Nothing is downloaded" in msg
    with pytest.raises(DataError, match="pass --data-dir"):
        recordings(name, split)


def test_data_dir_pointing_at_the_dataset_folder_itself_gets_a_hint(tmp_path, no_network):
    (tmp_path / "DVSGesture" / "ibmGestureTrain").mkdir(parents=True)
    with pytest.raises(DataError, match=re.escape(f"pass the folder that holds it, {tmp_path})")):
        recordings("dvsgesture", "train", tmp_path / "DVSGesture")


# ---------------------------------------------------------------- bad layouts

def one_gesture(root, rel="ibmGestureTest/user24_led/3.npy", array=None, dtype=np.int64):
    return write_gesture(root / "DVSGesture" / rel, gesture_events(40, 9) if array is None else array, dtype)


@pytest.mark.parametrize("bad, message", [
    ("ibmGestureTest/notes/3.npy", "unexpected folder"),
    ("ibmGestureTest/user24/3.npy", "unexpected folder"),  # tonic would crash splitting the name
    ("ibmGestureTest/user24_led/clap.npy", "name is its label"),
    ("ibmGestureTest/user24_led/11.npy", "name is its label"),  # only 0..10 exist
    ("ibmGestureTest/3.npy", "belong in user<NN>_<lighting>"),  # tonic would silently skip it
])
def test_bad_gesture_layout_names_the_path(tmp_path, bad, message):
    one_gesture(tmp_path)
    one_gesture(tmp_path, bad)
    bad_path = tmp_path / "DVSGesture" / bad
    with pytest.raises(DataError, match=message) as e:
        recordings("dvsgesture", "test", tmp_path)
    assert str(bad_path.parent if "folder" in message else bad_path) in str(e.value)


def test_cifar_recording_outside_a_class_folder_is_named(tmp_path):
    write_aedat4(tmp_path / "CIFAR10DVS" / "cat" / "0.aedat4", make_events(20, 0))
    stray = write_aedat4(tmp_path / "CIFAR10DVS" / "plane" / "1.aedat4", make_events(20, 1))
    with pytest.raises(DataError, match="folder named after its class") as e:
        recordings("cifar10dvs", "train", tmp_path)
    assert str(stray) in str(e.value)


# ---------------------------------------------------------------- bad DVS Gesture files

def _gesture_case(case):
    a = gesture_events(40, 9)
    if case == "x 128":
        a[5, 0] = 128
    elif case == "x wraps int16":
        a[5, 0] = 65536 + 3  # tonic's int16 cast would make this x = 3
    elif case == "polarity 2":
        a[5, 2] = 2  # tonic's bool cast would make this 1
    elif case == "negative t":
        a[0, 3] = -1
    elif case == "t overflows int32":
        a[-1, 3] = 3_000_000  # ms; x 1000 overflows int32
        return a, np.int32
    elif case == "fractional x":
        return a + np.array([0.5, 0, 0, 0]), np.float64
    elif case == "nan":
        a = a.astype(np.float64)
        a[3, 3] = np.nan
        return a, np.float64
    elif case == "empty":
        return a[:0], np.int64
    elif case == "3 columns":
        return a[:, :3], np.int64
    elif case == "structured":
        return np.zeros(4, EVENT_DTYPE), None
    return a, np.int64


@pytest.mark.parametrize("case, message", [
    ("x 128", "x values span .* outside the sensor"),
    ("x wraps int16", "x values span .* outside the sensor"),
    ("polarity 2", "polarity values span"),
    ("negative t", "negative"),
    ("t overflows int32", "overflows int32"),
    ("fractional x", "not whole numbers"),
    ("nan", "NaN"),
    ("empty", "no events"),
    ("3 columns", r"\[N, 4\].*shape \(40, 3\)"),
    ("structured", r"\[N, 4\]"),
    ("truncated", "truncated"),
    ("garbage", "not a .npy"),
    ("zero bytes", r"empty \(0 bytes\)"),
])
def test_malformed_gesture_file_is_named(tmp_path, case, message):
    f = tmp_path / "DVSGesture" / "ibmGestureTest" / "user24_led" / "4.npy"
    one_gesture(tmp_path)  # a good neighbour
    if case in ("truncated", "garbage", "zero bytes"):
        good = one_gesture(tmp_path, "ibmGestureTest/user24_led/4.npy").read_bytes()
        f.write_bytes({"truncated": good[:-9], "garbage": np.random.default_rng(0).bytes(500),
                       "zero bytes": b""}[case])
    else:
        a, dtype = _gesture_case(case)
        f.parent.mkdir(parents=True, exist_ok=True)
        np.save(f, a if dtype is None else a.astype(dtype))
    recs = recordings("dvsgesture", "test", tmp_path)
    assert len(recs.read(recs.paths.index(str(tmp_path / "DVSGesture/ibmGestureTest/user24_led/3.npy")))) == 40
    with pytest.raises(DataError, match=message) as e:
        recs.read(recs.paths.index(str(f)))
    assert str(f) in str(e.value)
    with pytest.raises(DataError):  # framing a split never silently skips or zero-fills a bad file
        load_frames("dvsgesture", "test", T=3, data_dir=tmp_path, cache=False, progress=False)


# ---------------------------------------------------------------- bad CIFAR10-DVS files

def _first_packet_offset(data: bytes) -> int:
    return len(MAGIC) + 4 + struct.unpack_from("<I", data, len(MAGIC))[0]


@pytest.mark.parametrize("case, message", [
    ("truncated inside a packet", "the file is truncated"),
    ("truncated inside a packet, lz4", "the file is truncated"),
    ("truncated at a packet boundary, with data table", "packets end at byte .* the file is truncated"),
    ("truncated inside a packet header", "ends inside the packet header"),
    ("truncated inside the file header", "truncated"),
    ("garbage", "not an AEDAT 4.0 file"),
    ("zero bytes", r"empty \(0 bytes\)"),
    ("garbled file header", "header is garbled"),  # the aedat decoder itself panics on this one
    ("garbled packet", "cannot read as cifar10dvs"),
    ("garbled packet length", "names stream|declares"),
    ("coordinates outside 128x128", r"x values span \d+..200, outside the sensor's 0..127"),
    ("other sensor", "recorded with a 240x180 sensor"),
    ("no packets", "holds no events"),
    ("empty packet", "holds no events"),
    ("garbled timestamp", "timestamps span"),
])
def test_malformed_cifar10dvs_file_is_named(tmp_path, case, message):
    cls = tmp_path / "CIFAR10DVS" / "dog"
    write_aedat4(cls / "0.aedat4", make_events(30, 0))  # a good neighbour
    f = cls / "1.aedat4"
    ev = make_events(100, 1)
    table = "with data table" in case
    write_aedat4(f, ev, packet_events=32, with_data_table=table, compression="lz4" if "lz4" in case else "none")
    data = f.read_bytes()
    start = _first_packet_offset(data)
    first_len = struct.unpack_from("<I", data, start + 4)[0]
    if case.startswith("truncated inside a packet header"):
        data = data[:start + 8 + first_len + 5]
    elif case.startswith("truncated inside a packet"):
        data = data[:start + 8 + first_len // 2]
    elif case.startswith("truncated at a packet boundary"):
        data = data[:start + 8 + first_len]
    elif case == "truncated inside the file header":
        data = data[:start - 10]
    elif case == "garbage":
        data = np.random.default_rng(0).bytes(2000)
    elif case == "zero bytes":
        data = b""
    elif case == "garbled file header":
        data = data[:len(MAGIC) + 4] + struct.pack("<I", 0x7FFFFFF0) + data[len(MAGIC) + 8:]
    elif case == "garbled packet":
        data = data[:start + 8] + b"\xff" * 12 + data[start + 20:]  # size prefix and root offset
    elif case == "garbled packet length":
        data = data[:start + 4] + struct.pack("<I", 10**6) + data[start + 8:]
    elif case == "coordinates outside 128x128":
        ev["x"][50] = 200
        data = write_aedat4(f, ev).read_bytes()
    elif case == "other sensor":
        data = write_aedat4(f, make_events(100, 1, width=128, height=128), sensor=(240, 180)).read_bytes()
    elif case == "no packets":
        data = write_aedat4(f, ev[:0]).read_bytes()
    elif case == "empty packet":
        data = write_aedat4(f, ev[:0], packet_sizes=[0]).read_bytes()
    elif case == "garbled timestamp":
        ev["t"][-1] = 2**62
        data = write_aedat4(f, ev).read_bytes()
    f.write_bytes(data)
    recs = recordings("cifar10dvs", "train", tmp_path)  # 2 recordings of one class: both in train
    assert len(recs) == 2
    assert len(recs.read(recs.paths.index(str(cls / "0.aedat4")))) == 30
    with pytest.raises(DataError, match=message) as e:
        recs.read(recs.paths.index(str(f)))
    assert str(f) in str(e.value)


def test_garbled_header_makes_the_bare_decoder_panic_but_recordings_raise_dataerror(tmp_path):
    """Why check_aedat4 vets the IOHeader: aedat 2.3 reads it unchecked and raises a Rust panic,
    which Python sees as pyo3's PanicException, a BaseException that `except Exception` misses,
    with no file name."""
    f = write_aedat4(tmp_path / "CIFAR10DVS" / "cat" / "0.aedat4", make_events(20, 0))
    data = f.read_bytes()
    f.write_bytes(data[:len(MAGIC) + 4] + struct.pack("<I", 0x7FFFFFF0) + data[len(MAGIC) + 8:])
    with pytest.raises(BaseException):
        aedat.Decoder(str(f))
    with pytest.raises(DataError, match="header is garbled") as e:
        recordings("cifar10dvs", "train", tmp_path).read(0)
    assert str(f) in str(e.value)
