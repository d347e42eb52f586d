"""Reading checkpoint directories: the only file reader of the model package.

A checkpoint is a directory with `config.json` and safetensors weights: one `model.safetensors`,
shards listed by `model.safetensors.index.json`, or (as some exporters leave them) bare
`*.safetensors` files. Two weight namings are accepted through one rename table:

| AI21 remote code (LongLLaVA, Jamba-v0.1)   | transformers' native Jamba (ours)          |
|--------------------------------------------|--------------------------------------------|
| layers.{i}.pre_moe_layernorm               | layers.{i}.pre_ff_layernorm                |
| layers.{i}.moe.router                      | layers.{i}.feed_forward.router             |
| layers.{i}.moe.experts.{e}.* (MoE layer)   | layers.{i}.feed_forward.experts.{e}.*      |
| layers.{i}.moe.experts.0.* (dense layer)   | layers.{i}.feed_forward.*                  |
| layers.{i}.mamba.B_layernorm / C_layernorm | layers.{i}.mamba.b_layernorm / c_layernorm |

Modules are built on the meta device and each tensor is read, cast and placed once, so peak
memory while loading is the model's size plus one tensor. Every problem is a `CheckpointError`
naming the file or tensor at fault.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from model.config import JambaConfig
from model.errors import CheckpointError
from model.jamba import JambaLM

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
# model_type values whose config.json carries a Jamba language model.
JAMBA_MODEL_TYPES = ("jamba", "llava_jamba", "longllava", "llava_jamba_moe")
# Checkpoint key prefixes of LongLLaVA's vision side; the LM loader leaves them to vision.py.
MULTIMODAL_PREFIXES = ("model.mm_projector.", "model.vision_tower.", "model.vision_resampler.", "model.image_newline")

# (pattern, replacement) applied in order: AI21 / LongLLaVA names -> ours.
AI21_RENAMES: tuple[tuple[str, str], ...] = (
    (r"\.pre_moe_layernorm\.", ".pre_ff_layernorm."),
    (r"\.moe\.", ".feed_forward."),
    (r"\.mamba\.B_layernorm\.", ".mamba.b_layernorm."),
    (r"\.mamba\.C_layernorm\.", ".mamba.c_layernorm."),
)
# A dense layer is AI21's one-expert "MoE" block: its only expert is our plain MLP.
_DENSE_EXPERT = re.compile(r"^(model\.layers\.\d+\.feed_forward\.)experts\.0\.")

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint directory: its parsed config.json and where each tensor is stored."""

    path: Path
    config: dict
    weight_map: dict[str, str]  # tensor name -> file name inside `path`

    def files(self) -> list[str]:
        return sorted(set(self.weight_map.values()))


def open_checkpoint(path: str | Path) -> Checkpoint:
    """Read config.json and index the safetensors files of a checkpoint directory."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise CheckpointError(
            f"{root}: no such checkpoint directory (expected a folder with config.json and *.safetensors)"
        )
    config = _read_json(root / "config.json", what="config")
    return Checkpoint(root, config, _weight_map(root))


def _read_json(path: Path, *, what: str) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing {what} file; is this a model checkpoint directory?")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable {what} file ({e})") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: {what} file is not a JSON object")
    return data


def _weight_map(root: Path) -> dict[str, str]:
    index = root / INDEX_FILE
    if index.is_file():
        weight_map = _read_json(index, what="safetensors index").get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{index}: has no 'weight_map'")
        for name in sorted(set(weight_map.values())):
            if not (root / name).is_file():
                raise CheckpointError(f"{root / name}: shard listed in {INDEX_FILE} is missing; re-download it")
        return dict(weight_map)
    files = [root / SINGLE_FILE] if (root / SINGLE_FILE).is_file() else sorted(root.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{root}: no *.safetensors weights found (only safetensors checkpoints are supported)")
    weight_map = {}
    for file in files:
        with _open_safetensors(file) as f:
            weight_map.update(dict.fromkeys(f.keys(), file.name))
    return weight_map


def _open_safetensors(file: Path):
    try:
        return safe_open(str(file), framework="pt")
    except (SafetensorError, OSError) as e:
        raise CheckpointError(
            f"{file}: not a readable safetensors file, truncated or corrupt ({e}); re-download it"
        ) from e


def resolve_dtype(dtype: torch.dtype | str | None, config: dict) -> torch.dtype:
    """The dtype to load in: the one asked for, else the checkpoint's own (`torch_dtype` or
    `dtype` in config.json), else float32."""
    if isinstance(dtype, torch.dtype):
        return dtype
    name = dtype or config.get("torch_dtype") or config.get("dtype") or "float32"
    if name not in _DTYPES:
        raise CheckpointError(f"unsupported dtype {name!r}; use one of {', '.join(_DTYPES)}")
    return _DTYPES[name]


def load_tensors(
    module: nn.Module,
    checkpoint: Checkpoint,
    rename: Callable[[str], str | None],
    *,
    dtype: torch.dtype,
    device: torch.device | str,
) -> None:
    """Fill `module` (built on the meta device) from the checkpoint.

    rename maps a checkpoint key to a parameter or buffer name of `module`, or None for a key that
    belongs to another part of the model. Raises CheckpointError naming any tensor that is
    missing, unexpected or mis-shaped, or any file that cannot be read.
    """
    targets = dict(module.named_parameters(remove_duplicate=False)) | dict(module.named_buffers())
    tied = _tied_names(module)  # before loading replaces the shared parameter objects
    by_file: dict[str, list[tuple[str, str]]] = {}
    unexpected = []
    for key, file in checkpoint.weight_map.items():
        name = rename(key)
        if name is None:
            continue
        if name not in targets:
            unexpected.append(key)
            continue
        by_file.setdefault(file, []).append((key, name))
    if unexpected:
        raise CheckpointError(
            f"{checkpoint.path}: unexpected tensor(s) {_some(unexpected)}; is this the right kind of model?"
        )
    loaded = set()
    for file, pairs in by_file.items():
        with _open_safetensors(checkpoint.path / file) as f:
            for key, name in pairs:
                shape = tuple(f.get_slice(key).get_shape())
                if shape != tuple(targets[name].shape):
                    raise CheckpointError(
                        f"{checkpoint.path / file}: tensor {key} has shape {list(shape)}, "
                        f"expected {list(targets[name].shape)} from config.json"
                    )
                try:
                    tensor = f.get_tensor(key)
                except (SafetensorError, OSError, RuntimeError) as e:
                    raise CheckpointError(
                        f"{checkpoint.path / file}: cannot read tensor {key} ({e}); re-download the file"
                    ) from e
                _assign(module, name, tensor.to(device=device, dtype=dtype))
                loaded.add(name)
    for alias, source in tied.items():
        if alias not in loaded and source in loaded:
            _assign(module, alias, module.get_parameter(source))
            loaded.add(alias)
    missing = sorted(set(targets) - loaded)
    if missing:
        raise CheckpointError(f"{checkpoint.path}: missing tensor(s) {_some(missing)}")


def _some(names: Iterable[str], limit: int = 3) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f" (and {len(names) - limit} more)" if len(names) > limit else "")


def _tied_names(module: nn.Module) -> dict[str, str]:
    """{alias: first name} for parameters shared under two names (e.g. a tied lm_head)."""
    first_name: dict[int, str] = {}
    tied = {}
    for name, p in module.named_parameters(remove_duplicate=False):
        if id(p) in first_name:
            tied[name] = first_name[id(p)]
        else:
            first_name[id(p)] = name
    return tied


def _assign(module: nn.Module, name: str, tensor: torch.Tensor) -> None:
    owner_name, _, leaf = name.rpartition(".")
    owner = module.get_submodule(owner_name)
    if leaf in owner._parameters:
        owner._parameters[leaf] = (
            tensor if isinstance(tensor, nn.Parameter) else nn.Parameter(tensor, requires_grad=False)
        )
    else:
        owner._buffers[leaf] = tensor


@contextmanager
def empty_weights() -> Iterator[None]:
    """Build modules on the meta device without running their weight initialisers: initialising a
    meta tensor routes through torch's Python reference kernels, which import torch._dynamo (~80 MB
    of resident memory and a second of start-up) for values that are overwritten anyway."""
    names = ("normal_", "uniform_", "kaiming_uniform_", "xavier_uniform_", "trunc_normal_", "zeros_", "ones_")
    saved = {name: getattr(nn.init, name) for name in names}
    try:
        for name in names:
            setattr(nn.init, name, lambda tensor, *args, **kwargs: tensor)
        with torch.device("meta"):
            yield
    finally:
        for name, function in saved.items():
            setattr(nn.init, name, function)


def jamba_key_renamer(config: JambaConfig) -> Callable[[str], str | None]:
    """Checkpoint key -> JambaLM parameter name, for both namings (table in the module docstring)."""
    dense = {i for i, e in enumerate(config.layer_num_experts) if e == 1}

    def rename(key: str) -> str | None:
        if key.startswith(MULTIMODAL_PREFIXES):
            return None
        for pattern, replacement in AI21_RENAMES:
            key = re.sub(pattern, replacement, key)
        match = _DENSE_EXPERT.match(key)
        if match and int(key.split(".")[2]) in dense:
            key = match.group(1) + key[match.end() :]
        return key

    return rename


def jamba_config_of(checkpoint: Checkpoint) -> JambaConfig:
    model_type = checkpoint.config.get("model_type")
    if model_type not in JAMBA_MODEL_TYPES:
        raise CheckpointError(
            f"{checkpoint.path / 'config.json'}: model_type {model_type!r} is not a Jamba/LongLLaVA model "
            f"(expected one of {', '.join(JAMBA_MODEL_TYPES)})"
        )
    return JambaConfig.from_dict(checkpoint.config, source=str(checkpoint.path / "config.json"))


def load_language_model(
    path: str | Path, *, device: torch.device | str = "cpu", dtype: torch.dtype | str | None = None
) -> JambaLM:
    """Load the Jamba language model of a Jamba or LongLLaVA checkpoint directory (vision and
    projector tensors are left to the multimodal loader). dtype: float32, bfloat16, float16 or
    None for the checkpoint's own. Returns an eval-mode `JambaLM` on `device`."""
    checkpoint = open_checkpoint(path)
    config = jamba_config_of(checkpoint)
    torch_dtype = resolve_dtype(dtype, checkpoint.config)
    with empty_weights():
        lm = JambaLM(config)
    load_tensors(lm, checkpoint, jamba_key_renamer(config), dtype=torch_dtype, device=device)
    return lm.eval().requires_grad_(False)
