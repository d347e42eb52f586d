"""Which weights, and which arithmetic, a state was computed with: the model's part of the state
cache's key (`model.state_key`).

Each checkpoint folder the model was read from (`LongLLaVA.sources`: the checkpoint, and a separate
CLIP folder if one was given) is described by its files, never by its name: config.json and the
tokenizer by a hash of their bytes; every safetensors file by its size, a hash of its header (every
tensor's name, dtype, shape and offsets) and a version token. Hashing 18 GB of weights at every
run would cost tens of seconds, so the version token stands in for the data: in the Hugging Face
cache, the blob's file name, which is the hash of its content; elsewhere the file's (device,
inode, mtime_ns, ctime_ns), which any rewrite changes (a fine-tuned checkpoint saved over the old
one has the same header and size). Copying or touching a checkpoint therefore costs one miss.

The arithmetic: dtype, device kind (the GPU's name on CUDA), quantisation, the torch version,
CPU threads (a matmul's summation order may depend on them) and which kernels run
(`model.dispatch`): a state is only reused where a fresh run would compute the same bits.
"""

from __future__ import annotations

import dataclasses
import os
import re
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3
import torch

from model.checkpoint_files import HEADER_LIMIT
from model.content_hash import hash_file

if TYPE_CHECKING:
    from model.longllava import LongLLaVA

# The Hub stores files under blobs/ named by their content's hash (sha256 for LFS, sha1 for git).
_BLOB_NAME = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_HASHED_SUFFIXES = (".json", ".model", ".txt")
# A folder's file over this size is described by its identity on disk rather than hashed.
MAX_HASHED_BYTES = 64 << 20


def model_identity(model: LongLLaVA) -> dict[str, Any] | None:
    """The model's key parts (module docstring); None for a model not read from a folder."""
    if not model.sources:
        return None
    return {
        "config": dataclasses.asdict(model.config),
        "folders": [folder_identity(Path(p)) for p in model.sources],
        **arithmetic_identity(model.device, model.dtype, model.quantization),
    }


def arithmetic_identity(device: torch.device, dtype: torch.dtype, quantization: str) -> dict[str, Any]:
    from model.cpu_kernels import kernels_available
    from model.dispatch import flash_cpu_available, mamba_kernels_available

    kind = device.type
    if kind == "cuda":
        kind = f"cuda:{torch.cuda.get_device_name(device)}"
    return {
        "dtype": str(dtype).removeprefix("torch."),
        "device": kind,
        "quantize": quantization,
        "torch": torch.__version__,
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "kernels": {
            "cpu": kernels_available() if device.type == "cpu" else None,
            "flash_cpu": flash_cpu_available() if device.type == "cpu" else None,
            "cuda": mamba_kernels_available(device) if device.type == "cuda" else None,
        },
    }


def folder_identity(folder: Path) -> list[dict[str, Any]]:
    """One entry per weight, config and tokenizer file directly in `folder`, sorted by name."""
    entries = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        name = entry.name
        if not entry.is_file() or not name.endswith((".safetensors", *_HASHED_SUFFIXES)):
            continue
        real = Path(os.path.realpath(entry.path))
        st = real.stat()
        described: dict[str, Any] = {"name": name, "size": st.st_size}
        if name.endswith(".safetensors"):
            described["header"] = _header_hash(real)
            described["version"] = version_token(real, st)
        elif st.st_size <= MAX_HASHED_BYTES:
            described["content"] = hash_file(real)
        else:
            described["version"] = version_token(real, st)
        entries.append(described)
    return entries


def version_token(real: Path, st: os.stat_result) -> str | list[int]:
    """The Hub blob's content-hash name, else the file's identity on disk (module docstring)."""
    if real.parent.name == "blobs" and _BLOB_NAME.match(real.name):
        return real.name
    return [st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns]


def _header_hash(file: Path) -> str:
    """BLAKE3 of a safetensors file's header (its length prefix and JSON), bounded in size."""
    with open(file, "rb") as f:
        prefix = f.read(8)
        size = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else 0
        header = f.read(min(size, HEADER_LIMIT))
    return blake3.blake3(prefix + header).hexdigest()
