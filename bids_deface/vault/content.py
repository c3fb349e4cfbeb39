"""What an entry holds (its payload, before encryption) and how each original is rebuilt from it.

An entry covers one file, or a group of files that share most of their bytes (the slices of a
DICOM series), so that what they share is compressed once. Payload::

    M (4 bytes, big-endian) | zlib(meta JSON) (M bytes) | sections, in the order and with the
    lengths that meta["sections"] lists as [name, length]

Sections, each one zlib stream, holding every file's part one after the other in file order:
``prefix`` and ``suffix`` (an image's bytes before and after its data block), ``positions``
(gaps between the indices of changed items, ``meta["position_dtype"]``; each file's first gap
counts from 0), ``values`` (each file's original items, byte-shuffled: all first bytes, then all
second bytes …) and ``original`` (whole files). ``meta["files"]`` lists, per file: ``original``
(its path relative to the input), ``output`` (the output file it is rebuilt from, relative to the
output; null when the file was left out), ``output_sha256``, ``gzip`` (the rebuilt stream is gzip-
compressed when written), ``sha256`` (of the rebuilt stream), and ``kind``:

``identical``  the output file *is* the original (renamed or copied): nothing stored.
``bytes``      the whole original, ``length`` bytes of ``original`` (text files, anything else).
``patch``      an image whose voxels the output holds in a block of the same size: the original
               stream is ``prefix + block + suffix`` (``prefix``/``suffix``: that many bytes of the
               sections), where ``block`` is the output stream's data block (``region``: offset,
               length, itemsize) with ``count`` items put back. Items are compared as little-
               endian unsigned integers of ``itemsize`` bytes, so any dtype or byte order round-trips.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np
from isal import igzip  # gzip-compatible, ~3x faster than zlib on whole images

from bids_deface.vault.errors import VaultError
from bids_deface.vault.regions import Region, data_region

LEVEL = 3  # zlib level of the sections: 6 would save 0.2 % of the input for 3x the time
SECTIONS = ("prefix", "suffix", "positions", "values", "original")
_LEN = struct.Struct(">I")


@dataclass
class FilePart:
    """One file's meta and its share of each section (uncompressed)."""

    meta: dict
    parts: dict[str, bytes] = field(default_factory=dict)


def is_gzip(data: bytes) -> bool:
    return data[:2] == b"\x1f\x8b"


def stream_of(data: bytes) -> bytes:
    """A file's bytes, decompressed when they are gzip."""
    return igzip.decompress(data) if is_gzip(data) else data


def _items(stream: bytes, region: Region) -> np.ndarray:
    return np.frombuffer(stream, f"<u{region.itemsize}", region.length // region.itemsize, region.offset)


def _around(stream: bytes, region: Region) -> tuple[bytes, bytes]:
    return stream[:region.offset], stream[region.offset + region.length:]


def _patch(original: bytes, ours: Region, output: bytes, theirs: Region) -> FilePart:
    was, now = _items(original, ours), _items(output, theirs)
    positions = np.flatnonzero(was != now)
    gaps = np.diff(positions, prepend=0).astype("<u8")
    prefix, suffix = _around(original, ours)
    values = was[positions].view(np.uint8).reshape(-1, ours.itemsize).T.tobytes()
    meta = {"kind": "patch", "region": [theirs.offset, theirs.length, theirs.itemsize], "count": int(positions.size),
            "prefix": len(prefix), "suffix": len(suffix)}
    return FilePart(meta, {"prefix": prefix, "suffix": suffix, "positions": gaps.tobytes(), "values": values})


def diff_file(original: bytes, output: bytes | None) -> FilePart:
    """The smallest exact part that rebuilds ``original`` from ``output`` (None: no output).

    A ``patch`` is exact by construction, whatever the block holds: prefix, block and suffix
    partition the original stream, and every item of the block that differs is put back. The
    region finders only decide where the small part is; :func:`rebuild` checks the SHA-256.
    """
    if output is not None and original == output:
        return FilePart({"kind": "identical", "gzip": False, "sha256": hashlib.sha256(original).hexdigest()})
    if output is not None:
        original_stream, output_stream = stream_of(original), stream_of(output)
        ours, theirs = data_region(original_stream), data_region(output_stream)
        if ours is not None and theirs is not None and (ours.length, ours.itemsize) == (theirs.length, theirs.itemsize):
            part = _patch(original_stream, ours, output_stream, theirs)
            part.meta.update(gzip=is_gzip(original), sha256=hashlib.sha256(original_stream).hexdigest())
            return part
    return FilePart({"kind": "bytes", "length": len(original), "gzip": False,
                     "sha256": hashlib.sha256(original).hexdigest()}, {"original": original})


def _compress(chunks: list[bytes]) -> bytes:
    c = zlib.compressobj(LEVEL)
    return b"".join(c.compress(chunk) for chunk in chunks) + c.flush()


def pack(files: list[FilePart]) -> bytes:
    """The payload of an entry holding ``files`` (their meta complete: paths and output SHA-256)."""
    most = max((f.meta["region"][1] // f.meta["region"][2] for f in files if "region" in f.meta), default=0)
    dtype = "<u8" if most >= 2**32 else "<u4"
    sections = {}
    for name in SECTIONS:
        chunks = [f.parts.get(name, b"") for f in files]
        if name == "positions":
            chunks = [np.frombuffer(c, "<u8").astype(dtype).tobytes() for c in chunks]
        sections[name] = _compress(chunks)
    meta = {"files": [f.meta for f in files], "position_dtype": dtype,
            "sections": [[name, len(data)] for name, data in sections.items()]}
    text = zlib.compress(json.dumps(meta, sort_keys=True, separators=(",", ":")).encode("utf-8"), 9)
    return _LEN.pack(len(text)) + text + b"".join(sections.values())


def unpack(payload: bytes) -> list[FilePart]:
    """The files of a payload, each with its share of every section."""
    (length,) = _LEN.unpack_from(payload)
    meta = json.loads(zlib.decompress(payload[_LEN.size:_LEN.size + length]).decode("utf-8"))
    streams, at = {}, _LEN.size + length
    for name, size in meta["sections"]:
        streams[name] = memoryview(zlib.decompress(payload[at:at + size]))
        at += size
    positions = np.frombuffer(streams["positions"], meta["position_dtype"]).astype(np.int64)
    cursor = dict.fromkeys(SECTIONS, 0)
    files = []
    for info in meta["files"]:
        sizes = {"prefix": info.get("prefix", 0), "suffix": info.get("suffix", 0), "original": info.get("length", 0),
                 "positions": info.get("count", 0), "values": info.get("count", 0) * info.get("region", [0, 0, 0])[2]}
        parts = {}
        for name, size in sizes.items():
            if name == "positions":
                parts[name] = positions[cursor[name]:cursor[name] + size]
            else:
                parts[name] = bytes(streams[name][cursor[name]:cursor[name] + size])
            cursor[name] += size
        files.append(FilePart(info, parts))
    return files


def _rebuild_patch(meta: dict, parts: dict, output: bytes) -> bytes:
    region = Region(*meta["region"])
    block = _items(output, region).copy()
    positions = np.cumsum(parts["positions"], dtype=np.int64)
    values = np.frombuffer(parts["values"], np.uint8).reshape(region.itemsize, -1).T.copy()
    values = values.view(f"<u{region.itemsize}").ravel()
    if positions.size != meta["count"] or values.size != meta["count"] or (positions.size and positions[-1] >= block.size):
        raise VaultError("the entry's voxel list does not fit the output image")
    block[positions] = values
    return parts["prefix"] + block.tobytes() + parts["suffix"]


def rebuild(part: FilePart, output: bytes | None) -> bytes:
    """The original file's bytes (gzip-compressed again when it was), checked against its SHA-256."""
    meta, kind = part.meta, part.meta.get("kind")
    if kind == "identical" and output is not None:
        stream = output
    elif kind == "bytes":
        stream = part.parts["original"]
    elif kind == "patch" and output is not None:
        stream = _rebuild_patch(meta, part.parts, stream_of(output))
    else:
        raise VaultError(f"entry of unknown kind {kind!r} (written by a newer bids-deface?)")
    if hashlib.sha256(stream).hexdigest() != meta["sha256"]:
        raise VaultError("the rebuilt file does not match the original's SHA-256")
    return igzip.compress(stream, compresslevel=2, mtime=0) if meta["gzip"] else stream
