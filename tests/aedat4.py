"""A small AEDAT 4.0 writer for tests, written from the format description (iniVation's AEDAT 4.0
spec and the schemas of the `aedat` decoder), so that tests can make real files.

File layout (all integers little-endian):

    "#!AER-DAT4.0\\r\\n"
    uint32 n, then n bytes: the IOHeader flatbuffer (file identifier "IOHE") with
        compression (int32, 0 none, 1 LZ4, 2 LZ4 high, 3 Zstd, 4 Zstd high),
        dataTablePosition (int64, -1 when there is no data table) and
        infoNode (string: the XML stream description)
    packets, each: int32 stream id, int32 size, then `size` bytes: a size-prefixed EventPacket
        flatbuffer (identifier "EVTS": a vector of 16-byte structs {t int64, x int16, y int16,
        on bool, 3 bytes padding}), LZ4-frame compressed when the header says so
    when dataTablePosition >= 0: at that byte, up to the end of the file, the (compressed)
        size-prefixed FileDataTable flatbuffer ("FTAB") indexing the packets

The XML description names each stream (`<node name="<id>">`) with its `typeIdentifier` and, for
event streams, an `info` node with the sensor's `sizeX` and `sizeY`. DV (iniVation's software)
writes LZ4-compressed packets and a data table by default; both are supported here.
"""
from __future__ import annotations

import struct
from pathlib import Path

import flatbuffers
import lz4.frame
import numpy as np

MAGIC = b"#!AER-DAT4.0\r\n"
COMPRESSION = {"none": 0, "lz4": 1}


def _stream_xml(stream_id: int, width: int, height: int) -> str:
    base = f"/mainloop/Recorder/outInfo/{stream_id}/"
    return (
        f'        <node name="{stream_id}" path="{base}">\n'
        f'            <attr key="compression" type="string">LZ4</attr>\n'
        f'            <attr key="originalModuleName" type="string">capture</attr>\n'
        f'            <attr key="originalOutputName" type="string">events</attr>\n'
        f'            <attr key="typeDescription" type="string">Array of events (polarity ON/OFF).</attr>\n'
        f'            <attr key="typeIdentifier" type="string">EVTS</attr>\n'
        f'            <node name="info" path="{base}info/">\n'
        f'                <attr key="sizeX" type="int">{width}</attr>\n'
        f'                <attr key="sizeY" type="int">{height}</attr>\n'
        f'                <attr key="source" type="string">DVS128</attr>\n'
        f'            </node>\n'
        f'        </node>\n'
    )


def description(sensors: dict[int, tuple[int, int]]) -> str:
    """The XML stream description for event streams {stream id: (width, height)}."""
    body = "".join(_stream_xml(i, w, h) for i, (w, h) in sorted(sensors.items()))
    return ('<dv version="2.0">\n    <node name="outInfo" path="/mainloop/Recorder/outInfo/">\n'
            f"{body}    </node>\n</dv>\n")


def ioheader(compression: int, data_table: int, info: str) -> bytes:
    """The size-prefixed IOHeader flatbuffer. Defaults are written too, so its size does not
    depend on the values (the writer fills in the data table position in a second pass)."""
    b = flatbuffers.Builder(1024)
    b.ForceDefaults(True)
    text = b.CreateString(info)
    b.StartObject(3)
    b.PrependInt32Slot(0, compression, 0)
    b.PrependInt64Slot(1, data_table, -1)
    b.PrependUOffsetTRelativeSlot(2, text, 0)
    b.FinishSizePrefixed(b.EndObject(), b"IOHE")
    return bytes(b.Output())


def event_packet(t, x, y, p) -> bytes:
    """A size-prefixed EventPacket flatbuffer holding the given events, in order."""
    n = len(t)
    b = flatbuffers.Builder(64 + 16 * n)
    b.StartVector(16, n, 8)
    for i in reversed(range(n)):  # flatbuffers build back to front
        b.Prep(8, 16)
        b.Pad(3)
        b.PrependBool(bool(p[i]))
        b.PrependInt16(int(y[i]))
        b.PrependInt16(int(x[i]))
        b.PrependInt64(int(t[i]))
    elements = b.EndVector()
    b.StartObject(1)
    b.PrependUOffsetTRelativeSlot(0, elements, 0)
    b.FinishSizePrefixed(b.EndObject(), b"EVTS")
    return bytes(b.Output())


def data_table(entries: list[tuple[int, int, int, int, int, int]]) -> bytes:
    """A size-prefixed FileDataTable: one (byte offset, stream id, size, events, first t, last t)
    per packet."""
    b = flatbuffers.Builder(1024)
    defs = []
    for offset, sid, size, count, t0, t1 in entries:
        b.StartObject(5)
        b.PrependInt64Slot(4, t1, 0)
        b.PrependInt64Slot(3, t0, 0)
        b.PrependInt64Slot(2, count, 0)
        b.Prep(4, 8)  # the PacketHeader struct, inline
        b.PrependInt32(size)
        b.PrependInt32(sid)
        b.PrependStructSlot(1, b.Offset(), 0)
        b.PrependInt64Slot(0, offset, 0)
        defs.append(b.EndObject())
    b.StartVector(4, len(defs), 4)
    for d in reversed(defs):
        b.PrependUOffsetTRelative(d)
    table = b.EndVector()
    b.StartObject(1)
    b.PrependUOffsetTRelativeSlot(0, table, 0)
    b.FinishSizePrefixed(b.EndObject(), b"FTAB")
    return bytes(b.Output())


def write_aedat4(
    path,
    events: np.ndarray,
    sensor: tuple[int, int] = (128, 128),
    compression: str = "none",
    packet_events: int = 64,
    with_data_table: bool = True,
    streams: dict[int, tuple[np.ndarray, tuple[int, int]]] | None = None,
    packet_sizes: list[int] | None = None,
) -> Path:
    """Write `events` (structured, fields t, x, y, p) as event stream 0 of an AEDAT 4.0 file.

    Events go into packets of `packet_events` (an empty recording has none), or of the sizes
    `packet_sizes` (which may include 0). `streams` adds more event streams {id: (events, (width,
    height))}; their packets are interleaved with stream 0's. Returns the path.
    """
    path = Path(path)
    code = COMPRESSION[compression]
    pack = (lambda raw: raw) if code == 0 else lz4.frame.compress
    all_streams = {0: (events, sensor), **(streams or {})}
    chunks = []  # (stream id, events of one packet), interleaved round-robin over the streams
    per_stream = {sid: [ev[i:i + packet_events] for i in range(0, len(ev), packet_events)]
                  for sid, (ev, _) in all_streams.items()}
    if packet_sizes is not None:
        assert sum(packet_sizes) == len(events)
        bounds = np.cumsum([0] + list(packet_sizes))
        per_stream[0] = [events[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    for k in range(max((len(c) for c in per_stream.values()), default=0)):
        chunks += [(sid, c[k]) for sid, c in sorted(per_stream.items()) if k < len(c)]
    info = description({sid: s for sid, (_, s) in all_streams.items()})
    head_len = len(MAGIC) + len(ioheader(code, 0, info))
    body, entries = bytearray(), []
    for sid, ev in chunks:
        payload = pack(event_packet(ev["t"], ev["x"], ev["y"], ev["p"]))
        t_range = (int(ev["t"][0]), int(ev["t"][-1])) if len(ev) else (0, 0)
        entries.append((head_len + len(body), sid, len(payload), len(ev)) + t_range)
        body += struct.pack("<ii", sid, len(payload)) + payload
    position = head_len + len(body) if with_data_table else -1
    header = MAGIC + ioheader(code, position, info)
    assert len(header) == head_len
    tail = pack(data_table(entries)) if with_data_table else b""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + bytes(body) + tail)
    return path


EVENT_DTYPE = np.dtype([("t", np.int64), ("x", np.int16), ("y", np.int16), ("p", bool)])


def make_events(n: int, seed: int, t0: int = 1_600_000_000_000_000, width: int = 128, height: int = 128,
                duration_us: int = 1_300_000) -> np.ndarray:
    """n random events in time order (t0 is absolute, as DV writes it), fields t, x, y, p."""
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, EVENT_DTYPE)
    ev["t"] = t0 + np.sort(rng.integers(0, duration_us, n))
    ev["x"], ev["y"] = rng.integers(0, width, n), rng.integers(0, height, n)
    ev["p"] = rng.integers(0, 2, n).astype(bool)
    return ev
