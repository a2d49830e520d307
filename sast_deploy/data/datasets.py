"""Event datasets, offline: the embedded N-MNIST subset and users' local N-MNIST, DVS Gesture and
CIFAR10-DVS folders, all read with tonic's own readers.

tonic's dataset classes download whenever their archive check fails, which offline ends in a
urllib traceback (DESIGN §8). The subclasses below keep tonic's class names (tonic derives the
folder from them) but accept any folder in the real layout and never download: a missing folder
raises a DataError that names it and says where the data comes from.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np
import numpy.lib.recfunctions  # noqa: F401  (tonic's DVSGesture reader needs it loaded)
import tonic

from ..errors import DataError
from .events import check_aedat4, check_dvsgesture_npy, read_nmnist, validate_events

SPLITS = ("train", "val", "test")


def _missing(cls_name: str, location: Path, folder: Path, layout: str, source: str):
    """Raise the DataError for a dataset folder without recordings: what to create, where the data
    comes from, and what to pass as --data-dir. `location` is tonic's <data-dir>/<ClassName>."""
    data_dir = location.parent
    hint = ""
    if data_dir.name == location.name:
        hint = (f" (--data-dir {data_dir} looks like the {location.name}/ folder itself: "
                f"pass the folder that holds it, {data_dir.parent})")
    raise DataError(
        f"{cls_name} not found: no recordings in {folder}. Create that folder in tonic's layout "
        f"{location.name}/{layout} with the data from {source}, extracted, and pass the folder that "
        f"holds {location.name}/ as --data-dir{hint}. Nothing is downloaded."
    )


def _has_files(folder: Path, suffix: str) -> bool:
    return folder.is_dir() and next(folder.rglob(f"*{suffix}"), None) is not None


def _sort_samples(ds: tonic.Dataset, *extra: str) -> None:
    """Order a tonic dataset's samples by path. tonic's DVSGesture and CIFAR10DVS list files in
    os.walk order, which depends on the file system: seeded splits of that order differ between
    machines and copies of the same data."""
    order = sorted(range(len(ds.data)), key=lambda i: ds.data[i])
    for name in ("data", "targets") + extra:
        values = getattr(ds, name)
        setattr(ds, name, [values[i] for i in order])


class NMNIST(tonic.datasets.NMNIST):
    """tonic's N-MNIST reading an existing `<save_to>/NMNIST/{Train,Test}/<digit>/<id>.bin` folder."""

    def _check_exists(self) -> bool:
        return _has_files(Path(self.location_on_system, self.folder_name), ".bin")

    def download(self) -> None:
        _missing("N-MNIST", Path(self.location_on_system), Path(self.location_on_system, self.folder_name),
                 f"{self.folder_name}/<digit>/<id>.bin",
                 "https://www.garrickorchard.com/datasets/n-mnist (train.zip, test.zip)")


DVSGESTURE_SOURCE = ("tonic's figshare archives ibmGestureTrain.tar.gz / ibmGestureTest.tar.gz "
                     "(https://figshare.com/ndownloader/files/38022171 and .../38020584)")


class DVSGesture(tonic.datasets.DVSGesture):
    """tonic's preprocessed DVS Gesture: `<save_to>/DVSGesture/ibmGesture{Train,Test}/user<NN>_<lighting>/<label>.npy`.

    Reads an existing folder and never downloads. Folders and file names that tonic's own listing
    would crash on or mislabel raise a DataError naming them; samples are ordered by path.
    """

    def __init__(self, save_to: str, train: bool = True, **kwargs):
        super().__init__(save_to, train=train, **kwargs)
        _sort_samples(self, "users", "lighting")

    def _check_exists(self) -> bool:
        root = Path(self.location_on_system, self.folder_name)
        if not _has_files(root, ".npy"):
            return False
        n_classes = len(self.classes)
        for path, dirs, files in os.walk(root):
            rel = os.path.relpath(path, root)
            npy = [f for f in files if f.endswith("npy")]  # what tonic lists
            if rel == ".":
                if npy:
                    raise DataError(f"{Path(path, npy[0])}: DVS Gesture recordings belong in "
                                    f"user<NN>_<lighting>/ folders inside {root}")
                continue
            user, sep, lighting = rel.partition("_")
            if not sep or not re.fullmatch(r"user\d+", user) or not lighting:
                raise DataError(f"{path}: unexpected folder in {root}; tonic's DVS Gesture layout holds only "
                                f"user<NN>_<lighting>/ folders (e.g. user01_fluorescent)")
            for f in npy:
                m = re.fullmatch(r"(\d+)\.npy", f)
                if m is None or int(m.group(1)) >= n_classes:
                    raise DataError(f"{Path(path, f)}: a DVS Gesture recording's name is its label, "
                                    f"0.npy .. {n_classes - 1}.npy")
        return True

    def download(self) -> None:
        _missing("DVS Gesture", Path(self.location_on_system), Path(self.location_on_system, self.folder_name),
                 f"{self.folder_name}/user<NN>_<lighting>/<label>.npy (tonic's preprocessed release)",
                 DVSGESTURE_SOURCE)


class CIFAR10DVS(tonic.datasets.CIFAR10DVS):
    """tonic's CIFAR10-DVS: `<save_to>/CIFAR10DVS/<class>/<id>.aedat4`.

    Reads an existing folder and never downloads. A recording outside a class-named folder (which
    tonic's listing would crash on) raises a DataError naming it; samples are ordered by path.
    """

    def __init__(self, save_to: str, **kwargs):
        super().__init__(save_to, **kwargs)
        _sort_samples(self)

    def _check_exists(self) -> bool:
        root = Path(self.location_on_system, self.folder_name)
        if not _has_files(root, ".aedat4"):
            return False
        for path, dirs, files in os.walk(root):
            for f in files:
                if f.endswith("aedat4") and os.path.basename(path) not in self.classes:
                    raise DataError(f"{Path(path, f)}: a CIFAR10-DVS recording belongs in a folder named "
                                    f"after its class ({', '.join(self.classes)}) inside {root}")
        return True

    def download(self) -> None:
        _missing("CIFAR10-DVS", Path(self.location_on_system), Path(self.location_on_system, self.folder_name),
                 "<class name>/<id>.aedat4",
                 "tonic's figshare archive CIFAR10DVS.zip (https://figshare.com/ndownloader/files/38023437; "
                 "it holds one zip per class)")


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is: its sensor, classes and default spatial pooling."""

    name: str
    sensor_size: tuple[int, int, int]  # (width, height, polarities), tonic's convention
    classes: tuple[str, ...]
    downsample: int  # default spatial pooling factor for frames
    sorted_times: bool = True  # the format stores events in time order (a backwards step means garbling)


DIGITS = tuple(str(d) for d in range(10))
DATASETS = {
    "nmnist-small": DatasetInfo("nmnist-small", (34, 34, 2), DIGITS, 1),
    "nmnist": DatasetInfo("nmnist", (34, 34, 2), DIGITS, 1),
    # DVS Gesture arrays and AEDAT 4 packets may hold slightly out-of-order events (camera packets do)
    "dvsgesture": DatasetInfo("dvsgesture", (128, 128, 2), tuple(tonic.datasets.DVSGesture.classes), 4, False),
    "cifar10dvs": DatasetInfo("cifar10dvs", (128, 128, 2), tuple(tonic.datasets.CIFAR10DVS.classes), 4, False),
}


def dataset_info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}") from None


@dataclass
class Recordings:
    """The recordings of one split: file paths, integer labels, and a validating reader."""

    info: DatasetInfo
    split: str
    paths: list[str]
    labels: np.ndarray
    reader: Callable[[str], np.ndarray]

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, i: int) -> np.ndarray:
        """Events of recording i, validated against the sensor; DataError names the file."""
        path = self.paths[i]
        try:
            events = self.reader(path)
        except (DataError, KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:  # readers raise anything on malformed files; aedat's Rust panics
            # arrive as pyo3's PanicException, a BaseException
            raise DataError(f"{path}: cannot read as {self.info.name} recording ({type(e).__name__}: {e})") from None
        return validate_events(events, self.info.sensor_size, path, sorted_times=self.info.sorted_times)


def embedded_root() -> Path:
    """Folder holding the embedded nmnist-small recordings (package data)."""
    return Path(str(resources.files("sast_deploy.data") / "nmnist_small"))


def stratified_split(labels: np.ndarray, fractions: dict[str, float], seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic per-class split of indices: each named part gets round(fraction * n_class)
    of every class (after one seeded permutation per class); the last named part takes the rest."""
    rng = np.random.default_rng(seed)
    names = list(fractions)
    parts = {n: [] for n in names}
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        start = 0
        for n in names[:-1]:
            k = int(round(fractions[n] * len(idx)))
            parts[n].append(idx[start:start + k])
            start += k
        parts[names[-1]].append(idx[start:])
    return {n: np.sort(np.concatenate(v)) if v else np.zeros(0, int) for n, v in parts.items()}


def _pick(paths, labels, idx):
    return [paths[i] for i in idx], np.asarray(labels, dtype=np.int64)[idx]


def recordings(name: str, split: str, data_dir: str | os.PathLike | None = None) -> Recordings:
    """The recordings of `split` ('train' | 'val' | 'test') of dataset `name`.

    nmnist-small: the embedded fixed 700/100/200 split (see its splits.json). nmnist and dvsgesture:
    test is the official test set; val is a fixed stratified 10% of the official training set
    (seed 0) and train the other 90%. cifar10dvs (no official split): stratified 80/10/10, seed 0.
    Recordings are ordered by path before splitting, so a split is the same on every copy of the data.
    Missing folders and bad layouts raise DataError at once; bad files raise it from `read`.
    """
    info = dataset_info(name)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if name == "nmnist-small":
        root = embedded_root()
        manifest = json.loads((root / "splits.json").read_text())
        entries = manifest[split]
        paths = [str(root / "NMNIST" / "Train" / f"{e}.bin") for e in entries]
        labels = np.array([int(e.split("/")[0]) for e in entries], dtype=np.int64)
        return Recordings(info, split, paths, labels, read_nmnist)
    if data_dir is None:
        raise DataError(f"--dataset {name} reads a local copy: pass --data-dir (the folder that holds "
                        f"{ {'nmnist': 'NMNIST/', 'dvsgesture': 'DVSGesture/', 'cifar10dvs': 'CIFAR10DVS/'}[name] })")
    data_dir = os.path.expanduser(os.fspath(data_dir))
    if name == "cifar10dvs":
        ds = CIFAR10DVS(data_dir)
        parts = stratified_split(np.asarray(ds.targets), {"test": 0.1, "val": 0.1, "train": 0.8})
        paths, labels = _pick(ds.data, ds.targets, parts[split])
        return Recordings(info, split, paths, labels, _tonic_reader(ds, check_aedat4, info.sensor_size))
    cls = NMNIST if name == "nmnist" else DVSGesture
    ds = cls(data_dir, train=split != "test")
    if split == "test":
        paths, labels = list(ds.data), np.asarray(ds.targets, dtype=np.int64)
    else:
        parts = stratified_split(np.asarray(ds.targets), {"val": 0.1, "train": 0.9})
        paths, labels = _pick(ds.data, ds.targets, parts[split])
    reader = read_nmnist if name == "nmnist" else _tonic_reader(ds, check_dvsgesture_npy, info.sensor_size)
    return Recordings(info, split, paths, labels, reader)


def _tonic_reader(ds: tonic.Dataset, check: Callable[[str, tuple], None],
                  sensor_size: tuple[int, int, int]) -> Callable[[str], np.ndarray]:
    """Read files through a tonic dataset object's own __getitem__ (its real reader), after `check`
    has vetted the raw file (tonic wraps or truncates some bad values silently)."""
    index = {p: i for i, p in enumerate(ds.data)}

    def read(path: str) -> np.ndarray:
        check(path, sensor_size)
        return ds[index[path]][0]

    return read
