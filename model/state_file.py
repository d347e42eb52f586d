"""One saved engine state as a file: safetensors (no pickle), read straight into preallocated tensors.

Layout (the safetensors format: an 8-byte little-endian header length, a JSON header, the data):
the header's `__metadata__` holds `format` ("longllava-state"), `version`, `header` (our JSON: the
key and its parts, positions, pending rows, frames) and `checksum` ("blake3:<hex>" of the data
section). Any safetensors reader opens it; we write and read it ourselves so that each tensor
travels between the file and the cache's own memory in blocks, with no whole-tensor copy: an
attention layer's K/V are stored [1, h_kv, length, hd] and read head by head into the first
`length` positions of the cache's [1, h_kv, capacity, hd] buffers. Loading therefore costs the
state's size once (plus one `BLOCK` of staging on CUDA), and the checksum is computed as it reads.

Everything read is untrusted: the header is bounded and parsed as JSON only, every tensor's dtype,
shape and offsets must be exactly what the caller expects, the offsets must tile the data section
and the file must end where the data does; anything else raises `StateFileError` (a miss).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

import blake3

if TYPE_CHECKING:
    import torch

FORMAT = "longllava-state"
VERSION = "1"
# Bytes moved between the file and a tensor per call (and hashed while in cache).
BLOCK = 4 << 20
# Our header holds the key's parts and one entry per frame: well under a megabyte at 1000 frames.
MAX_HEADER_BYTES = 16 << 20
_CHECKSUM_PLACEHOLDER = "blake3:" + "0" * 64
# Keyed by the dtype's name: torch is imported only where tensors move, so that listing and clearing
# the cache (`longllava cache ls`) never loads it.
_DTYPES = {"torch.float32": "F32", "torch.bfloat16": "BF16", "torch.float16": "F16"}


class StateFileError(ValueError):
    """A state file is damaged, truncated or not one of ours (the message says which)."""


@dataclass(frozen=True)
class StateTensor:
    """One stored tensor: its `name`, and `pieces`, views whose concatenated bytes (in order) are
    the tensor's data, each contiguous: the cache memory written from or read into."""

    name: str
    shape: tuple[int, ...]
    pieces: tuple[torch.Tensor, ...]

    @property
    def dtype(self) -> torch.dtype:
        return self.pieces[0].dtype

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.pieces)


def write_state(f: BinaryIO, header: dict[str, Any], tensors: Sequence[StateTensor]) -> int:
    """Write a state file to `f` (opened "wb", seekable); returns the bytes written. `header`:
    JSON-ready; it becomes the metadata's `header`."""
    entries: dict[str, Any] = {}
    offset = 0
    for t in tensors:
        entries[t.name] = {
            "dtype": _DTYPES[str(t.dtype)],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + t.nbytes],
        }
        offset += t.nbytes
    metadata = {"format": FORMAT, "version": VERSION, "header": json.dumps(header), "checksum": _CHECKSUM_PLACEHOLDER}
    prefix = _header_bytes(entries, metadata)
    f.write(prefix)
    hasher = blake3.blake3()
    for t in tensors:
        for piece in t.pieces:
            for block in _blocks_of(piece):
                hasher.update(block)
                f.write(block)
    metadata["checksum"] = "blake3:" + hasher.hexdigest()
    f.seek(0)
    f.write(_header_bytes(entries, metadata))  # the same length: only the checksum's digits differ
    return len(prefix) + offset


def read_header(f: BinaryIO, file_size: int) -> tuple[dict[str, Any], dict[str, Any], int]:
    """(our header, the tensor entries, where the data starts) of an open state file."""
    prefix = f.read(8)
    if len(prefix) < 8:
        raise StateFileError("shorter than a safetensors header")
    size = struct.unpack("<Q", prefix)[0]
    if size == 0 or size > MAX_HEADER_BYTES or 8 + size > file_size:
        raise StateFileError("not a safetensors file (header length out of range)")
    try:
        raw = json.loads(f.read(size))
        metadata = raw.pop("__metadata__")
        header = json.loads(metadata["header"]) if metadata.get("format") == FORMAT else None
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
        raise StateFileError("unreadable header") from e
    if header is None or metadata.get("version") != VERSION or not isinstance(header, dict):
        raise StateFileError("not a longllava state file of this version")
    header["checksum"] = metadata.get("checksum")
    return header, raw, 8 + size


def read_tensors(
    f: BinaryIO, entries: dict[str, Any], data_start: int, file_size: int, checksum: Any, tensors: Sequence[StateTensor]
) -> None:
    """Read the data of `tensors` (their pieces: preallocated memory) from the open file, checking
    every entry against them and the checksum against the data. StateFileError when anything differs.
    Each block is hashed in a second thread while the next one is read (BLAKE3 releases the GIL),
    so loading runs at the slower of the disk and the hash, not their sum."""
    check_entries(entries, tensors, file_size - data_start)
    pieces = [piece for t in tensors for piece in t.pieces]
    for piece in pieces:
        # Touch the memory first: fresh pages fault in several times faster through torch's threads
        # than one by one inside `readinto` (measured 3.6 against 1.3 GB/s here).
        piece.zero_()
    f.seek(data_start)
    hasher = blake3.blake3()
    with ThreadPoolExecutor(max_workers=1) as pool:
        hashing = None
        for view in _read_blocks(f, pieces):
            if hashing is not None:
                hashing.result()  # one block in flight: the hash sees the blocks in order
            hashing = pool.submit(hasher.update, view)
        if hashing is not None:
            hashing.result()
    if checksum != "blake3:" + hasher.hexdigest():
        raise StateFileError("checksum mismatch (the file is damaged)")


def check_entries(entries: dict[str, Any], tensors: Sequence[StateTensor], data_size: int) -> None:
    if set(entries) != {t.name for t in tensors}:
        raise StateFileError("its tensors are not this model's state")
    offset = 0
    for t in tensors:
        entry = entries[t.name]
        expected = {"dtype": _DTYPES[str(t.dtype)], "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
        if not isinstance(entry, dict) or entry != expected:
            raise StateFileError(f"tensor {t.name!r} is not what this model's state holds")
        offset += t.nbytes
    if offset != data_size:
        raise StateFileError(f"{data_size} bytes of data where {offset} were expected (truncated?)")


def _read_blocks(f: BinaryIO, pieces: Sequence[torch.Tensor]):
    """Read the pieces' bytes in order, `BLOCK` at a time, yielding each block as read (a view of
    the piece's own memory on the CPU; on another device, of one of two pinned staging buffers,
    copied to the device when the next block is asked for: a yielded block stays untouched until
    the one after the next is read)."""
    import torch

    staging, number = None, 0
    for piece in pieces:
        flat = piece.view(-1).view(torch.uint8)
        if flat.device.type != "cpu" and staging is None:
            staging = [torch.empty(BLOCK, dtype=torch.uint8, pin_memory=torch.cuda.is_available()) for _ in range(2)]
        for start in range(0, flat.numel(), BLOCK):
            end = min(start + BLOCK, flat.numel())
            number += 1
            target = flat[start:end] if staging is None else staging[number % 2][: end - start]
            view = memoryview(target.numpy())
            if f.readinto(view) != end - start:
                raise StateFileError("the file ends early (truncated)")
            yield view
            if staging is not None:
                flat[start:end].copy_(target)


def _blocks_of(piece: torch.Tensor):
    """The piece's bytes in `BLOCK`-sized memoryviews (copied to the CPU block by block)."""
    import torch

    flat = piece.reshape(-1).view(torch.uint8)
    for start in range(0, flat.numel(), BLOCK):
        block = flat[start : start + BLOCK]
        yield memoryview(block.cpu().numpy() if block.device.type != "cpu" else block.numpy())


def _header_bytes(entries: dict[str, Any], metadata: dict[str, str]) -> bytes:
    """The 8-byte length and the JSON header, padded with spaces to a multiple of 8 (safetensors' alignment)."""
    text = json.dumps({"__metadata__": metadata, **entries}, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def file_size(f: BinaryIO) -> int:
    return os.fstat(f.fileno()).st_size
