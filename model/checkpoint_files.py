"""Checkpoint folders as data, before anything is built: config.json, the safetensors index and
headers, read and checked without torch (so `longllava info`, `estimate` and `frames` never load
it); `model/loading.py` then reads the tensors.

Everything in a checkpoint is untrusted. `open_checkpoint` reads config.json, the index and every
safetensors header (each bounded in size and checked: shapes, dtypes, offsets inside the file),
and `check_tensors` compares the headers with the names and shapes the config implies
(`model/shapes.py`), so a config that does not describe its weights fails at once, naming the
key. The files read stay inside the checkpoint folder:

- an index entry must be a plain file name ending in `.safetensors` (no folder part, no `..`,
  not absolute), and every file read (config.json, the index, the weights) must be a regular
  file whose real path, after following symlinks, lies inside the folder's real path. The folder
  itself may be reached through symlinks (`~/models/x -> /data/x`): its real path is what counts.
- The Hugging Face cache layout is the one exception: in `models--org--name/snapshots/<rev>/`
  each file is a symlink to `../../blobs/<hash>`, so a file of a folder whose real parent is
  named `snapshots` may also resolve into that repository's own `blobs` folder (the sibling of
  `snapshots`), and nowhere else. A symlink leading anywhere else is refused: copy the file in.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from model.config import JAMBA_MODEL_TYPES, JambaConfig
from model.errors import CheckpointError
from model.hub import redownload_hint
from model.naming import dense_layers, to_native
from model.shapes import LM_LAYER, TIED_LM_HEAD, count_layers, lm_tensor_shapes

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
WEIGHTS_SUFFIX = ".safetensors"
# Checkpoint key prefixes of LongLLaVA's vision side; the LM loader leaves them to vision.py.
MULTIMODAL_PREFIXES = ("model.mm_projector.", "model.vision_tower.", "model.vision_resampler.", "model.image_newline")
# A safetensors header over 100 MB is corruption, not metadata (the safetensors library's own
# limit); a JSON file (config, index) over 64 MB likewise.
HEADER_LIMIT = 100 * 2**20
JSON_LIMIT = 64 * 2**20
# Dimensions of a tensor (ours have at most 4): bounds the work of multiplying a planted shape out.
MAX_TENSOR_RANK = 16
# Bytes per element of the safetensors dtypes with a whole number of bytes.
SAFETENSORS_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip

# Expert indices in (renamed) tensor names, for the count check before enumerating the experts.
_EXPERT = re.compile(r"^model\.layers\.\d{1,6}\.feed_forward\.experts\.(\d{1,6})\.")


Shape = tuple[int, ...]


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint directory: its parsed config.json, where each tensor is stored and its shape
    (from the safetensors headers). Both maps are empty for a folder without weights (only
    `open_checkpoint(..., require_weights=False)` returns one)."""

    path: Path
    config: dict
    weight_map: dict[str, str]  # tensor name -> file name inside `path`
    shapes: dict[str, Shape] = field(default_factory=dict)  # tensor name -> shape

    @property
    def has_weights(self) -> bool:
        return bool(self.weight_map)

    def files(self) -> list[str]:
        return sorted(set(self.weight_map.values()))


def open_checkpoint(path: str | Path, *, require_weights: bool = True) -> Checkpoint:
    """Read config.json and the safetensors headers of a checkpoint directory (no tensor data).

    require_weights=False accepts a folder with config.json and no weights at all (no index, no
    `*.safetensors`), for planning before a download; an index whose shards are missing is
    still an error. Raises CheckpointError for anything unreadable, malformed or outside the
    folder (see the module docstring)."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise CheckpointError(
            f"{root}: no such checkpoint directory (expected a folder with config.json and *.safetensors)"
        )
    config = read_config(root)
    weight_map, shapes = _index_weights(root, require_weights=require_weights)
    return Checkpoint(root, config, weight_map, shapes)


def checkpoint_file(root: Path, name: str, *, missing: str) -> Path:
    """`root / name` after checking that it is a regular file inside the checkpoint folder (the
    rule in the module docstring). Raises CheckpointError naming the file otherwise: `missing`
    (a message) when there is no such file or it is a dangling symlink."""
    path = root / name
    if not path.exists():
        raise CheckpointError(missing)
    real = path.resolve()
    real_root = root.resolve()
    allowed = [real_root]
    if real_root.parent.name == "snapshots":  # Hugging Face cache: snapshots/<rev>/x -> ../../blobs/<hash>
        allowed.append(real_root.parent.parent / "blobs")
    if not any(real.is_relative_to(folder) for folder in allowed):
        raise CheckpointError(
            f"{path}: leads out of the checkpoint folder (to {real}); only files inside {root} are read, "
            "copy the file into it"
        )
    if not real.is_file():
        raise CheckpointError(f"{path}: not a regular file; a checkpoint holds plain files")
    return path


def read_config(root: Path) -> dict:
    """The config.json of folder `root` as a dict (bounded, inside the folder, a JSON object)."""
    return _read_json(root, "config.json", what="config")


def _read_json(root: Path, name: str, *, what: str) -> dict:
    missing = f"{root / name}: missing {what} file; is this a model checkpoint directory?"
    path = checkpoint_file(root, name, missing=missing)
    try:
        with open(path, "rb") as f:
            raw = f.read(JSON_LIMIT + 1)
        if len(raw) > JSON_LIMIT:
            raise ValueError(f"over {JSON_LIMIT // 2**20} MiB")
        data = json.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CheckpointError(f"{path}: unreadable {what} file ({_first_line(e)})") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: {what} file is not a JSON object")
    return data


def _first_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:200] or type(error).__name__


def _index_weights(root: Path, *, require_weights: bool) -> tuple[dict[str, str], dict[str, Shape]]:
    """(weight map, shapes) of the folder's weights: the index's files, else `model.safetensors`,
    else every `*.safetensors` file."""
    if (root / INDEX_FILE).exists() or (root / INDEX_FILE).is_symlink():
        return _indexed_weights(root)
    single = (root / SINGLE_FILE).exists()
    names = [SINGLE_FILE] if single else sorted(p.name for p in root.glob("*" + WEIGHTS_SUFFIX))
    if not names:
        if not require_weights:
            return {}, {}
        raise CheckpointError(f"{root}: no *.safetensors weights found (only safetensors checkpoints are supported)")
    weight_map: dict[str, str] = {}
    shapes: dict[str, Shape] = {}
    for name in names:
        missing = f"{root / name}: a dangling symlink; {redownload_hint(root)}"
        header = read_safetensors_header(checkpoint_file(root, name, missing=missing))
        for key, shape in header.items():
            if key in weight_map:
                raise CheckpointError(
                    f"{root}: tensor {key} is in both {weight_map[key]} and {name}; keep one copy of each tensor"
                )
            weight_map[key], shapes[key] = name, shape
    return weight_map, shapes


def _indexed_weights(root: Path) -> tuple[dict[str, str], dict[str, Shape]]:
    index = root / INDEX_FILE
    weight_map = _read_json(root, INDEX_FILE, what="safetensors index").get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index}: has no 'weight_map'")
    shapes: dict[str, Shape] = {}
    headers: dict[str, dict[str, Shape]] = {}
    for key, name in weight_map.items():
        if name not in headers:
            _check_shard_name(index, key, name)
            missing = f"{root / name}: shard listed in {INDEX_FILE} is missing; {redownload_hint(root)}"
            headers[name] = read_safetensors_header(checkpoint_file(root, name, missing=missing))
        if key not in headers[name]:
            raise CheckpointError(
                f"{root / name}: has no tensor {key}, which {INDEX_FILE} places there; re-download it"
            )
        shapes[key] = headers[name][key]
    return dict(weight_map), shapes


def _check_shard_name(index: Path, key: str, name: object) -> None:
    """An index entry must name a file directly inside the folder: a plain `*.safetensors` name."""
    if (
        not isinstance(name, str)
        or not name.endswith(WEIGHTS_SUFFIX)
        or name != Path(name).name
        or name in (".", "..")
        or "\\" in name
        or "\0" in name
    ):
        shown = json.dumps(name)[:200] if isinstance(name, str | int | float | bool | None) else type(name).__name__
        raise CheckpointError(
            f"{index}: tensor {key[:80]} is mapped to {shown}, which is not a plain *.safetensors file name in "
            "the checkpoint folder; the index may only name files next to it"
        )


def read_safetensors_header(file: Path) -> dict[str, Shape]:
    """{tensor name: shape} from a safetensors file's JSON header alone, after checking it: the
    header at most HEADER_LIMIT bytes, each entry a dtype, a shape of non-negative ints and data
    offsets inside the file that fit the shape. Raises CheckpointError naming the file."""
    try:
        with open(file, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            prefix = f.read(8)
            if len(prefix) < 8:
                raise ValueError("shorter than the 8-byte header length")
            (length,) = struct.unpack("<Q", prefix)
            if length > min(HEADER_LIMIT, size - 8):
                raise ValueError(f"header length {length} is impossible for a {size}-byte file")
            header = json.loads(f.read(length).decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError) as e:
        raise CheckpointError(
            f"{file}: not a readable safetensors file, truncated or corrupt ({_first_line(e)}); "
            f"{redownload_hint(file.parent)}"
        ) from e
    if not isinstance(header, dict):
        raise CheckpointError(f"{file}: not a readable safetensors file (its header is not a JSON object)")
    data_size = size - 8 - length
    return {key: _entry_shape(file, key, entry, data_size) for key, entry in header.items() if key != "__metadata__"}


def _entry_shape(file: Path, key: str, entry: object, data_size: int) -> Shape:
    def bad(why: str) -> CheckpointError:
        return CheckpointError(f"{file}: tensor {key[:80]} has a malformed header entry ({why}); re-download the file")

    if not isinstance(entry, dict):
        raise bad("not a JSON object")
    shape, offsets, dtype = entry.get("shape"), entry.get("data_offsets"), entry.get("dtype")
    if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise bad("its shape is not a list of non-negative integers")
    if len(shape) > MAX_TENSOR_RANK:
        raise bad(f"{len(shape)} dimensions")
    if not isinstance(dtype, str):
        raise bad("no dtype")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(n, int) and not isinstance(n, bool) for n in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise bad("its data_offsets are not [begin, end]")
    if offsets[1] > data_size:
        raise CheckpointError(
            f"{file}: tensor {key[:80]} ends at byte {offsets[1]} of a {data_size}-byte data section: the file is "
            f"truncated or corrupt; {redownload_hint(file.parent)}"
        )
    item = SAFETENSORS_DTYPE_BYTES.get(dtype)
    if item is not None and offsets[1] - offsets[0] != math.prod(shape) * item:
        raise bad(f"{offsets[1] - offsets[0]} bytes of data for shape {shape} of {dtype}")
    return tuple(shape)


def check_tensors(
    checkpoint: Checkpoint,
    rename: Callable[[str], str | None],
    expected: Mapping[str, Shape],
    *,
    tied: Mapping[str, str] | None = None,
) -> dict[str, list[tuple[str, str]]]:
    """Compare the checkpoint's tensors (as its headers describe them) with `expected`
    {name: shape}, before anything is read or built.

    rename maps a checkpoint key to a name of `expected`, or None for a key that belongs to
    another part of the model. tied: {alias: source} names that may be absent when their source
    is present (a tied LM head). Raises CheckpointError naming the unexpected, then mis-shaped,
    then missing tensors. Returns {file: [(key, name)]}: what to read from each file.
    """
    by_file: dict[str, list[tuple[str, str]]] = {}
    unexpected, misshaped, present = [], [], set()
    for key, file in checkpoint.weight_map.items():
        name = rename(key)
        if name is None:
            continue
        if name not in expected or name in present:
            unexpected.append(key)
            continue
        if checkpoint.shapes[key] != tuple(expected[name]):
            misshaped.append((key, file, name))
        by_file.setdefault(file, []).append((key, name))
        present.add(name)
    if unexpected:
        raise CheckpointError(
            f"{checkpoint.path}: unexpected tensor(s) {_some(unexpected)}; is this the right kind of model?"
        )
    if misshaped:
        key, file, name = misshaped[0]
        raise CheckpointError(
            f"{checkpoint.path / file}: tensor {key} has shape {list(checkpoint.shapes[key])}, "
            f"expected {list(expected[name])} from config.json"
        )
    tied = tied or {}
    missing = sorted(n for n in expected if n not in present and not (n in tied and tied[n] in present))
    if missing:
        raise CheckpointError(f"{checkpoint.path}: missing tensor(s) {_some(missing)}")
    return by_file


def _some(names: Iterable[str], limit: int = 3) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f" (and {len(names) - limit} more)" if len(names) > limit else "")


def jamba_key_renamer(config: JambaConfig) -> Callable[[str], str | None]:
    """Checkpoint key -> JambaLM parameter name, for both namings (`model.naming.to_native`); None
    for the multimodal tensors, which are not the language model's."""
    dense = dense_layers(config)

    def rename(key: str) -> str | None:
        return None if key.startswith(MULTIMODAL_PREFIXES) else to_native(key, dense)

    return rename


def jamba_config_of(checkpoint: Checkpoint) -> JambaConfig:
    model_type = checkpoint.config.get("model_type")
    if model_type not in JAMBA_MODEL_TYPES:
        raise CheckpointError(
            f"{checkpoint.path / 'config.json'}: model_type {model_type!r} is not a Jamba/LongLLaVA model "
            f"(expected one of {', '.join(JAMBA_MODEL_TYPES)})"
        )
    return JambaConfig.from_dict(checkpoint.config, source=str(checkpoint.path / "config.json"))


def check_lm_weights(checkpoint: Checkpoint, config: JambaConfig) -> None:
    """Check the LM tensors of `checkpoint`'s headers against `config` before the LM is built:
    first the layer and expert counts their names imply (cheap, and they bound what the config
    may make us enumerate), then every name and shape (`model.shapes.lm_tensor_shapes`).
    Raises CheckpointError naming the key or tensor at fault."""
    rename = jamba_key_renamer(config)
    names = [name for key in checkpoint.weight_map if (name := rename(key)) is not None]
    source = checkpoint.path / "config.json"
    found = count_layers(names, LM_LAYER)
    if found != config.num_hidden_layers:
        raise CheckpointError(
            f"{source}: num_hidden_layers is {config.num_hidden_layers} but the weights hold {found} layers "
            "(model.layers.{i}.*); config.json does not describe these weights"
        )
    experts = count_layers(names, _EXPERT)
    if config.num_experts > 1 and experts != config.num_experts:
        raise CheckpointError(
            f"{source}: num_experts is {config.num_experts} but the weights hold {experts} experts per MoE layer; "
            "config.json does not describe these weights"
        )
    tied = dict([TIED_LM_HEAD]) if config.tie_word_embeddings else None
    check_tensors(checkpoint, rename, lm_tensor_shapes(config), tied=tied)
