"""Reading checkpoint directories: the tensors (the folder's files and headers are opened and
checked first, without torch, by `model/checkpoint_files.py`, whose names this module re-exports).

A checkpoint is a directory with `config.json` and safetensors weights: one `model.safetensors`,
shards listed by `model.safetensors.index.json`, or (as some exporters leave them) bare
`*.safetensors` files. Both weight namings are accepted: AI21's (LongLLaVA, Jamba-v0.1) and
transformers' native Jamba naming, through `model/naming.py`'s rename.

Modules are built on the meta device and each tensor is read, cast and placed once, so peak
memory while loading is the model's size plus one tensor. A quantised load (`model/quantize.py`)
converts each Linear as soon as its weight is in place and reads the files without a memory map,
so its peak is the quantised size plus one layer. Every problem is a `CheckpointError`
naming the file or tensor at fault.

Everything in a checkpoint is untrusted: before any module is built, the config, the index and
every safetensors header are read and checked against each other, and every file read must stay
inside the checkpoint folder (the rules, with the Hugging Face cache's one exception, are in
`model/checkpoint_files.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from model.checkpoint_files import (
    HEADER_LIMIT,
    INDEX_FILE,
    JSON_LIMIT,
    MULTIMODAL_PREFIXES,
    SINGLE_FILE,
    WEIGHTS_SUFFIX,
    Checkpoint,
    Shape,
    check_lm_weights,
    check_tensors,
    checkpoint_file,
    jamba_config_of,
    jamba_key_renamer,
    open_checkpoint,
    read_config,
    read_safetensors_header,
)
from model.errors import CheckpointError
from model.jamba import JambaLM

# The checkpoint's files are read and checked without torch (model/checkpoint_files.py); their
# names are re-exported here for the loader's callers.
__all__ = [
    "HEADER_LIMIT",
    "INDEX_FILE",
    "JSON_LIMIT",
    "MULTIMODAL_PREFIXES",
    "SINGLE_FILE",
    "WEIGHTS_SUFFIX",
    "Checkpoint",
    "Shape",
    "check_lm_weights",
    "check_tensors",
    "checkpoint_file",
    "empty_weights",
    "jamba_config_of",
    "jamba_key_renamer",
    "load_language_model",
    "load_tensors",
    "open_checkpoint",
    "read_config",
    "read_safetensors_header",
    "resolve_dtype",
]

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _open_safetensors(file: Path, *, pread: bool = False):
    """safetensors' reader of `file`: a memory map, or with `pread` plain reads into buffers of its
    own (safetensors 0.8's "pread" backend; older versions only map)."""
    try:
        if pread:
            try:
                return safe_open(str(file), framework="pt", backend="pread")
            except TypeError:  # safetensors before 0.8: no backend argument
                pass
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
    if not isinstance(name, str) or name not in _DTYPES:
        raise CheckpointError(f"unsupported dtype {name!r}; use one of {', '.join(_DTYPES)}")
    return _DTYPES[name]


def load_tensors(
    module: nn.Module,
    checkpoint: Checkpoint,
    rename: Callable[[str], str | None],
    *,
    dtype: torch.dtype,
    device: torch.device | str,
    on_module_loaded: Callable[[nn.Module, str], None] | None = None,
) -> None:
    """Fill `module` (built on the meta device) from the checkpoint.

    rename maps a checkpoint key to a parameter or buffer name of `module`, or None for a key that
    belongs to another part of the model. on_module_loaded(module, name) is called as soon as
    every tensor of the submodule `name` is in place (a quantiser converts it there, while the
    rest still loads); the files are then read with plain reads instead of a memory map, whose
    pages would stay resident until each file is closed. Raises CheckpointError naming any
    tensor that is missing, unexpected or mis-shaped (`check_tensors`), or any file that cannot
    be read.
    """
    targets = dict(module.named_parameters(remove_duplicate=False)) | dict(module.named_buffers())
    tied = _tied_names(module)  # before loading replaces the shared parameter objects
    expected = {name: tuple(t.shape) for name, t in targets.items()}
    pending = _PendingModules(expected, on_module_loaded)
    loaded = set()
    for file, pairs in check_tensors(checkpoint, rename, expected, tied=tied).items():
        with _open_safetensors(checkpoint.path / file, pread=on_module_loaded is not None) as f:
            for key, name in pairs:
                try:
                    tensor = f.get_tensor(key)
                except (SafetensorError, OSError, RuntimeError) as e:
                    raise CheckpointError(
                        f"{checkpoint.path / file}: cannot read tensor {key} ({e}); re-download the file"
                    ) from e
                if tuple(tensor.shape) != expected[name]:  # the file changed since its header was read
                    raise CheckpointError(f"{checkpoint.path / file}: tensor {key} changed while loading")
                _assign(module, name, tensor.to(device=device, dtype=dtype))
                del tensor  # the file's copy, when a cast or a move made another
                loaded.add(name)
                pending.done(module, name)
    for alias, source in tied.items():
        if alias not in loaded and source in loaded:
            _assign(module, alias, module.get_parameter(source))
            pending.done(module, alias)


class _PendingModules:
    """The tensors each submodule still waits for; calls `hook(root, submodule name)` when the last
    of a submodule's own tensors (not its children's) is in place."""

    def __init__(self, names: Iterable[str], hook: Callable[[nn.Module, str], None] | None) -> None:
        self.hook = hook
        self.waiting: dict[str, int] = {}
        for name in names:
            owner = name.rpartition(".")[0]
            self.waiting[owner] = self.waiting.get(owner, 0) + 1

    def done(self, root: nn.Module, name: str) -> None:
        owner = name.rpartition(".")[0]
        self.waiting[owner] -= 1
        if self.waiting[owner] == 0 and self.hook is not None:
            self.hook(root, owner)


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


def load_language_model(
    path: str | Path, *, device: torch.device | str = "cpu", dtype: torch.dtype | str | None = None
) -> JambaLM:
    """Load the Jamba language model of a Jamba or LongLLaVA checkpoint directory (vision and
    projector tensors are left to the multimodal loader). dtype: float32, bfloat16, float16 or
    None for the checkpoint's own. Returns an eval-mode `JambaLM` on `device`."""
    checkpoint = open_checkpoint(path)
    config = jamba_config_of(checkpoint)
    torch_dtype = resolve_dtype(dtype, checkpoint.config)
    check_lm_weights(checkpoint, config)
    with empty_weights():
        lm = JambaLM(config)
    load_tensors(lm, checkpoint, jamba_key_renamer(config), dtype=torch_dtype, device=device)
    return lm.eval().requires_grad_(False)
