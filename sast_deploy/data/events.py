"""Reading and validating event recordings.

Events are numpy structured arrays with at least the fields ``x``, ``y``, ``t`` (microseconds) and
``p`` (polarity), as tonic produces them. Every reader here validates what it returns, so a garbled
file fails loudly with its name instead of producing silent garbage frames. The checks of the raw
files (`check_dvsgesture_npy`, `check_aedat4`) run before tonic's readers see them: tonic silently
wraps or truncates some bad values (int16 coordinates, bool polarity), and the `aedat` decoder under
tonic's AEDAT 4 reader stops silently at a truncated packet header and panics on a garbled file header.
"""
from __future__ import annotations

import os
import struct

import numpy as np
from tonic.io import read_mnist_file

from ..errors import DataError

NMNIST_DTYPE = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])
MAX_SPAN_US = 3600 * 10**6  # no recording of these datasets lasts an hour: a longer span means garbled times
AEDAT4_MAGIC = b"#!AER-DAT4.0\r\n"
AEDAT4_COMPRESSIONS = ("none", "LZ4", "LZ4 high", "Zstd", "Zstd high")  # IOHeader codes 0..4


def validate_events(
    events: np.ndarray, sensor_size: tuple[int, int, int], source: str, sorted_times: bool = True
) -> np.ndarray:
    """Check that `events` fit `sensor_size` = (width, height, polarities); return them unchanged.

    Raises DataError naming `source` for empty recordings, coordinates or polarities outside the
    sensor, negative, non-finite or absurd times (beyond int64 microseconds, or spanning more than an
    hour), and, when `sorted_times`, times that run backwards (a sign of garbled bytes in formats whose
    events are in time order; AEDAT 4 and DVS Gesture's arrays may legitimately hold slightly
    out-of-order events, so their readers pass False).
    """
    width, height, channels = sensor_size
    if events.dtype.names is None or not {"x", "y", "t", "p"} <= set(events.dtype.names):
        raise DataError(f"{source}: not an event array with fields x, y, t, p")
    if len(events) == 0:
        raise DataError(f"{source}: the recording holds no events")
    x, y, t, p = (np.asarray(events[k]) for k in ("x", "y", "t", "p"))
    for name, v, hi in (("x", x, width), ("y", y, height), ("polarity", p.astype(np.int64), channels)):
        lo_bad, hi_bad = v.min() < 0, v.max() >= hi
        if lo_bad or hi_bad:
            raise DataError(
                f"{source}: {name} values span {v.min()}..{v.max()}, outside the sensor's 0..{hi - 1} "
                f"(sensor {width}x{height}x{channels}); the file is garbled or from another sensor"
            )
    tf = t.astype(np.float64)
    if not np.all(np.isfinite(tf)) or tf.min() < 0 or tf.max() >= 2.0**63:
        raise DataError(f"{source}: timestamps are negative, not finite or beyond 64-bit microseconds; "
                        f"the file is garbled")
    if tf.max() - tf.min() > MAX_SPAN_US:
        raise DataError(f"{source}: timestamps span {(tf.max() - tf.min()) / 1e6:.0f} s, far longer than a "
                        f"recording of these datasets; the file is garbled")
    if sorted_times and np.any(np.diff(tf) < 0):
        raise DataError(f"{source}: timestamps run backwards; the file is garbled")
    return events


def read_nmnist(path: str | os.PathLike, sensor_size=(34, 34, 2)) -> np.ndarray:
    """Read one N-MNIST `.bin` recording with tonic's reader, after checking its framing."""
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    if size == 0 or size % 5:
        raise DataError(
            f"{path}: {size} bytes is not a whole number of 5-byte N-MNIST events; the file is truncated"
        )
    events = read_mnist_file(path, dtype=NMNIST_DTYPE)
    return validate_events(events, sensor_size, path)


def _file_size(path: str) -> int:
    """Size of a recording file; DataError naming it when it is unreadable or empty."""
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    if size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes); it is truncated or was never written")
    return size


def check_dvsgesture_npy(path: str | os.PathLike, sensor_size=(128, 128, 2)) -> None:
    """Check one recording of tonic's preprocessed DVS Gesture before tonic reads it.

    The file must be a whole `.npy` array of shape [N, 4], N > 0, numeric, columns x, y, p, t with t in
    milliseconds. tonic multiplies t by 1000 in the file's own dtype and casts x, y to int16 and p to
    bool, so out-of-range values would wrap or collapse silently: they are rejected here with the
    file's name instead.
    """
    path = os.fspath(path)
    size = _file_size(path)
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(f)
            data_start = f.tell()
    except Exception as e:
        raise DataError(f"{path}: not a .npy array file ({type(e).__name__}: {e}); the file is garbled") from None
    what = (f"DVS Gesture recordings (tonic's preprocessed release) are numeric [N, 4] arrays with "
            f"columns x, y, p, t (ms); this file holds a {dtype} array of shape {shape}")
    if dtype.hasobject or dtype.names is not None or dtype.kind not in "iuf" or len(shape) != 2 or shape[1] != 4:
        raise DataError(f"{path}: {what}")
    if shape[0] == 0:
        raise DataError(f"{path}: the recording holds no events")
    need = shape[0] * shape[1] * dtype.itemsize
    if size - data_start < need:
        raise DataError(f"{path}: the .npy header declares {need} bytes of events but the file holds "
                        f"{size - data_start}; the file is truncated")
    a = np.asarray(np.load(path, mmap_mode="r", allow_pickle=False))
    if dtype.kind == "f":
        if not np.all(np.isfinite(a)):
            raise DataError(f"{path}: holds NaN or infinite values; the file is garbled")
        if np.any(a[:, :3] != np.floor(a[:, :3])):
            raise DataError(f"{path}: x, y or polarity values are not whole numbers; the file is garbled")
    width, height, _ = sensor_size
    for name, col, hi in (("x", 0, width), ("y", 1, height), ("polarity", 2, 2)):
        v = a[:, col]
        if v.min() < 0 or v.max() >= hi:
            raise DataError(f"{path}: {name} values span {v.min():g}..{v.max():g}, outside the sensor's "
                            f"0..{hi - 1} (sensor {width}x{height}); the file is garbled or from another sensor")
    t = a[:, 3]
    if t.min() < 0:
        raise DataError(f"{path}: negative timestamps; the file is garbled")
    limit = np.iinfo(dtype).max // 1000 if dtype.kind in "iu" else 2.0**63 / 1000
    if t.max() > limit:
        raise DataError(f"{path}: timestamp {t.max():g} ms overflows {dtype} once converted to microseconds; "
                        f"the file is garbled")


def _ioheader(buf: bytes) -> tuple[int, int, str]:
    """(compression, data table position, description) of an AEDAT 4 IOHeader flatbuffer.

    Every offset is bounds-checked: the `aedat` decoder reads this table unchecked and panics on a
    garbled one. Raises ValueError saying what is wrong.
    """
    n = len(buf)

    def read(fmt: str, at: int) -> int:
        if at < 0 or at + struct.calcsize(fmt) > n:
            raise ValueError(f"offset {at} lies outside the {n}-byte header")
        return struct.unpack_from(fmt, buf, at)[0]

    table = read("<I", 0)
    vtable = table - read("<i", table)
    vt_len, obj_len = read("<H", vtable), read("<H", vtable + 2)
    if vt_len < 4 or vt_len % 2 or vtable + vt_len > n or table + obj_len > n:
        raise ValueError("its table layout is inconsistent")

    def field(i: int, fmt: str, default):
        entry = 4 + 2 * i
        off = read("<H", vtable + entry) if entry + 2 <= vt_len else 0
        if off == 0:
            return default, None
        if off + struct.calcsize(fmt) > obj_len:
            raise ValueError(f"field {i} lies outside its table")
        return read(fmt, table + off), table + off

    compression, _ = field(0, "<i", 0)
    data_table, _ = field(1, "<q", -1)
    rel, at = field(2, "<I", None)
    if at is None:
        raise ValueError("it has no stream description")
    length = read("<I", at + rel)
    if at + rel + 4 + length > n:
        raise ValueError("its stream description runs past its end")
    return compression, data_table, buf[at + rel + 4: at + rel + 4 + length].decode("utf-8")


def check_aedat4(path: str | os.PathLike, sensor_size=(128, 128, 2)) -> None:
    """Check one AEDAT 4 file's structure before tonic's reader (the `aedat` decoder) sees it.

    Checks the magic line, the IOHeader, the sensor size of the event stream tonic reads (the event
    stream with the lowest id), that every packet is whole and names a declared stream, that the file
    reaches its data table when it has one, and that there is at least one event packet. Raises
    DataError naming the file; silent on a good file.
    """
    import aedat

    path = os.fspath(path)
    size = _file_size(path)
    with open(path, "rb") as f:
        head = f.read(len(AEDAT4_MAGIC) + 4)
        if not head.startswith(AEDAT4_MAGIC):
            raise DataError(f"{path}: not an AEDAT 4.0 file (it does not start with '#!AER-DAT4.0'); "
                            f"the file is garbled or in another format")
        if len(head) < len(AEDAT4_MAGIC) + 4:
            raise DataError(f"{path}: the file ends inside its AEDAT 4 header; the file is truncated")
        header_len = struct.unpack("<I", head[len(AEDAT4_MAGIC):])[0]
        pos = len(head) + header_len
        if pos > size:
            raise DataError(f"{path}: the AEDAT 4 header declares {header_len} bytes but the file ends "
                            f"after {size - len(head)}; the file is truncated")
        try:
            compression, data_table, _ = _ioheader(f.read(header_len))
        except (ValueError, UnicodeDecodeError) as e:
            raise DataError(f"{path}: the AEDAT 4 header is garbled ({e})") from None
        if not 0 <= compression < len(AEDAT4_COMPRESSIONS):
            raise DataError(f"{path}: the AEDAT 4 header names unknown compression {compression}; "
                            f"the file is garbled")
        try:
            streams = aedat.Decoder(path).id_to_stream()
        except Exception as e:  # the description is XML that the decoder parses
            raise DataError(f"{path}: the AEDAT 4 stream description is unreadable ({e})") from None
        event_ids = sorted(i for i, s in streams.items() if s["type"] == "events")
        if not event_ids:
            raise DataError(f"{path}: the AEDAT 4 file declares no event stream (only "
                            f"{', '.join(sorted(s['type'] for s in streams.values()))})")
        target = event_ids[0]  # the stream tonic's read_aedat4 reads
        w, h = streams[target]["width"], streams[target]["height"]
        if (w, h) != tuple(sensor_size[:2]):
            raise DataError(f"{path}: recorded with a {w}x{h} sensor, but this dataset's sensor is "
                            f"{sensor_size[0]}x{sensor_size[1]}; the file is from another dataset")
        end = size if data_table < 0 else data_table
        if data_table > size:
            raise DataError(f"{path}: the AEDAT 4 header says its packets end at byte {data_table}, but the "
                            f"file has {size} bytes; the file is truncated")
        if data_table >= 0 and data_table < pos:
            raise DataError(f"{path}: the AEDAT 4 header's data table position {data_table} lies inside "
                            f"the header; the file is garbled")
        event_packets = 0
        while pos < end:
            if end - pos < 8:
                raise DataError(f"{path}: the file ends inside the packet header at byte {pos}; "
                                f"the file is truncated")
            f.seek(pos)
            stream_id, length = struct.unpack("<II", f.read(8))
            if stream_id not in streams:
                raise DataError(f"{path}: the packet at byte {pos} names stream {stream_id}, which the "
                                f"header does not declare; the file is garbled")
            if length < 8:
                raise DataError(f"{path}: the packet at byte {pos} declares {length} bytes, too few for "
                                f"a packet; the file is garbled")
            if pos + 8 + length > end:
                raise DataError(f"{path}: the packet at byte {pos} declares {length} bytes but only "
                                f"{end - pos - 8} follow; the file is truncated")
            event_packets += stream_id == target
            pos += 8 + length
    if event_packets == 0:
        raise DataError(f"{path}: the recording holds no events (no packet in its event stream)")
