"""`longllava info` and `estimate`: the environment and a model's summary as data, the estimate of
a request from the model's configs alone, and both reports as JSON or text on stdout."""

from __future__ import annotations

import importlib
import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from longllava_cli.clickcompat import UsageError
from longllava_cli.output import write_json, write_text

GiB = 2**30
# Video decoders sampling can use: import name -> distribution name.
VIDEO_BACKENDS = {"av": "av", "decord": "decord2", "cv2": "opencv-python-headless"}


def _version(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except Exception:  # a broken binary wheel raises anything from ImportError to OSError
        return False
    return True


def describe_environment() -> dict[str, Any]:
    """Versions, devices, CUDA kernels and video decoders available to this process, and the
    implementations the Mamba mixer and attention run for inference on each device."""
    import torch

    from model.cpu_kernels import kernels_status
    from model.dispatch import inference_paths_here, mamba_kernels_available
    from model.quantize import quantization_support

    cuda = torch.cuda.is_available()
    devices = []
    if cuda:
        for index in range(torch.cuda.device_count()):
            properties = torch.cuda.get_device_properties(index)
            devices.append({"name": properties.name, "memory_bytes": properties.total_memory})
    return {
        "longllava": _version("longllava"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda_available": cuda,
        "cuda_version": torch.version.cuda,
        "cuda_devices": devices,
        "mamba_kernels": mamba_kernels_available(torch.device("cuda")) if cuda else False,
        "mamba_ssm": _version("mamba-ssm"),
        "causal_conv1d": _version("causal-conv1d"),
        "cpu_kernels": dict(zip(("compiled", "detail"), kernels_status(), strict=True)),
        "inference_paths": inference_paths_here(),
        "video_backends": {
            name: _version(dist) or "installed" if _importable(name) else None for name, dist in VIDEO_BACKENDS.items()
        },
        "quantization": quantization_support(("cpu", "cuda") if cuda else ("cpu",)),
    }


def default_budget() -> tuple[int, str, str]:
    """(bytes, device, source) when --gpu-memory is not given: the first CUDA device, else RAM."""
    import torch

    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        return properties.total_memory, "cuda", f"cuda:0 ({properties.name})"
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "cpu", "system RAM (no CUDA device)"


def _lines(rows: list[tuple[str, Any]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "".join(f"{k.ljust(width)}  {v}\n" for k, v in rows)


def _count(n: int) -> str:
    """1.23 B / 45.6 M / 7.8 K."""
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.2f} {suffix}"
    return str(n)


def _gib(n: int) -> str:
    return f"{n / GiB:.2f} GiB"


_VISION_SOURCES = {
    "vision_config": "config.json's vision_config",
    "assumed": "assumed CLIP ViT-L/14-336 (no vision_config in config.json)",
}


def _parameters(model: dict[str, Any]) -> str:
    text = f"{model['num_parameters']:,} ({_count(model['num_parameters'])})"
    if model.get("card"):
        text += f", counted from the configs of the {model['card']} (nothing downloaded)"
    elif model.get("weights") == "absent":
        text += ", counted from config.json: no weights in the folder yet"
    return text


def _or_more(result: dict[str, Any]) -> str:
    return " or more" if result.get("max_tokens_is_a_floor") else ""


def _most_frames(result: dict[str, Any]) -> str:
    """The most frames and what limits them, e.g. "1,024 (limited by frames limit; memory 9,999, context 1,413)"."""
    if result["max_frames"] is None:
        return "n/a (text-only model)"
    limited = result["max_frames_limited_by"]
    others = ", ".join(
        f"{name} {value:,}{_or_more(result) if name == 'memory' else ''}"
        for name, value in result["max_frames_limits"].items()
        if name != limited
    )
    return f"{result['max_frames']:,} (limited by {limited}; {others})"


def _path_rows(paths: dict[str, dict]) -> list[tuple[str, str]]:
    """One row per layer kind and device, e.g. ("attention (cpu)", "prefill compiled (float32), ...")."""
    rows = []
    for device, layers in paths.items():
        mamba, attention = layers["mamba"], layers["attention"]
        prefill, decode = (f"{p['conv']} conv + {p['scan']} scan" for p in (mamba["prefill"], mamba["decode"]))
        rows.append((f"mamba ({device})", f"prefill {prefill}; decode {decode}"))
        rows.append((
            f"attention ({device})",
            f"prefill {attention['prefill_float32']} (float32), {attention['prefill_bfloat16']} (bfloat16); "
            f"decode {attention['decode']}",
        ))  # fmt: skip
    return rows


def _repo_name(model: dict[str, Any]) -> str:
    return f"{model['repo_id']}@{model['revision']}" if model.get("revision") else model["repo_id"]


def _quantization_rows(support: dict[str, dict[str, str | None]]) -> list[tuple[str, str]]:
    """One row per --quantize method: ("--quantize int8", "torchao 0.18.0: cpu yes, ...; cuda yes"),
    or the package and how to install it."""
    rows = []
    for method, row in support.items():
        devices = [device for device in row if device not in ("package", "version")]
        if row["version"] is None:
            text = f"{row['package']} {row[devices[0]]}"  # "not installed: pip install ..."
        else:
            text = f"{row['package']} {row['version']}: " + "; ".join(f"{d} {row[d]}" for d in devices)
        rows.append((f"--quantize {method}", text))
    return rows


def print_info(data: dict[str, Any]) -> None:
    env = data["environment"]
    backends = ", ".join(f"{k} {v}" if v else f"{k} (not available)" for k, v in env["video_backends"].items())
    cpu = env["cpu_kernels"]
    devices = ", ".join(f"{d['name']} ({_gib(d['memory_bytes'])})" for d in env["cuda_devices"]) or "none"
    rows: list[tuple[str, Any]] = [
        ("longllava", env["longllava"] or "not installed"),
        ("python", f"{env['python']} ({env['platform']})"),
        ("torch", env["torch"]),
        ("cuda", f"{env['cuda_version']} available" if env["cuda_available"] else "not available"),
        ("gpus", devices),
        ("mamba kernels", "available" if env["mamba_kernels"] else "not available"),
        ("cpu kernels", "compiled" if cpu["compiled"] else f"not used ({cpu['detail']}): PyTorch mixer code"),
        *_path_rows(env["inference_paths"]),
        ("video backends", backends),
        *_quantization_rows(env["quantization"]),
    ]
    model = data.get("model")
    if model:
        rows += [
            ("model", f"{_repo_name(model)} ({model['path']})" if model.get("repo_id") else model["path"]),
            ("type", f"{model['model_type']} ({'multimodal' if model['multimodal'] else 'text only'})"),
            ("parameters", _parameters(model)),
            ("dtype", model["dtype"]),
            ("layers", f"{model['num_layers']}: {model['layer_pattern']} (M Mamba, A attention)"),
            ("experts", model["num_experts"]),
            ("tokens per frame", model["tokens_per_image"] if model["tokens_per_image"] else "n/a"),
            ("KV bytes per token", f"{model['kv_bytes_per_token']:,}"),
        ]
        if model.get("vision_config_source"):
            source = model["vision_config_source"]
            rows.append(("vision config", _VISION_SOURCES.get(source, source)))
        if model["max_context_tokens"]:
            rows.append(("trained context", f"{model['max_context_tokens']:,} tokens"))
    write_text(_lines(rows))


def _size(n: int) -> str:
    """GiB from 1 GiB up, else MiB: a small model's parts are not all 0.00 GiB."""
    return _gib(n) if n >= GiB else f"{n / 2**20:.2f} MiB"


def _weight_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """A header row, then one row per module kind in the table's order, e.g. ("  attention", "0.31 GiB int8")."""
    from model.module_kinds import MODULE_KINDS, is_quantized

    quantize, by_kind = result["quantize"], result["weights_by_kind"]
    stored = {kind: quantize if is_quantized(kind, quantize) else result["dtype"] for kind in by_kind}
    return [("weights by kind", _size(sum(by_kind.values())))] + [
        (f"  {MODULE_KINDS[kind].label}", f"{_size(size)} {stored[kind]}") for kind, size in by_kind.items()
    ]


def print_estimate(result: dict[str, Any]) -> None:
    memory = result["memory_bytes"]
    parts = ", ".join(f"{k.replace('_', ' ')} {_gib(v)}" for k, v in memory.items() if k != "total")
    verdict = "fits" if result["fits"] else "does NOT fit"
    source = f"; figures from the {result['card']} (nothing downloaded)" if result.get("card") else ""
    quantized = "" if result["quantize"] == "none" else f", {result['quantize']}"
    rows: list[tuple[str, Any]] = [
        ("model", f"{result['model']} ({result['dtype']}{quantized}, {result['device']}{source})"),
        ("request", f"{result['num_frames']} frames x {result['tokens_per_image']} tokens -> {result['num_tokens']:,} "
                    "LM positions with markup, prompt and answer"),
        ("memory", f"{_gib(memory['total'])} ({parts})"),
        *_weight_rows(result),
        ("budget", f"{_gib(result['budget_bytes'])} from {result['budget_source']}: {verdict}"),
        ("context", f"{result['context_tokens']:,} tokens: request "
                    f"{'within it' if result['within_context'] else 'OVER it (answers may degrade)'}"),
        ("most frames", _most_frames(result)),
        ("most tokens", f"{result['max_tokens']:,}{_or_more(result)} fit the memory budget"),
        ("chunk tokens", f"{result['recommended_chunk_tokens']} recommended (--chunk-tokens)"),
    ]  # fmt: skip
    write_text(_lines(rows))


def show_info(model: Path | str | None, vision_tower: Path | None, *, json: bool) -> None:
    """The environment, and the model's summary from its config.json and headers when one is given
    (a folder, or a repo id in the local Hugging Face cache)."""
    data: dict[str, Any] = {"environment": describe_environment()}
    if model is not None:
        from model.summary import summarize_checkpoint

        data["model"] = summarize_checkpoint(model, vision_tower=vision_tower).to_dict()
    if json:
        write_json(data)
    else:
        print_info(data)


def show_estimate(
    model: Path | str,
    vision_tower: Path | None,
    *,
    num_frames: int,
    budget: int | None,
    dtype: str | None,
    chunk_tokens: int,
    max_new_tokens: int,
    json: bool,
    quantize: str = "none",
) -> None:
    """The memory a request of `num_frames` frames needs, against `budget` bytes (None: the CUDA
    device's memory, else RAM), from the model's configs alone, the weights quantised as
    `quantize` says ("none", "int8", "nf4")."""
    from model.summary import estimate_request, summarize_checkpoint

    device, source = ("cuda", "--gpu-memory") if budget else (None, None)
    if budget is None:
        budget, device, source = default_budget()
    summary = summarize_checkpoint(model, vision_tower=vision_tower)
    if summary.vision is None:
        raise UsageError(f"{model} is a text-only model: it takes no frames")
    result = estimate_request(
        summary,
        num_frames=num_frames,
        budget=budget,
        dtype=dtype or summary.dtype,
        chunk_tokens=chunk_tokens,
        max_new_tokens=max_new_tokens,
        device=device,
        quantize=quantize,
    )
    result["budget_source"] = source
    if json:
        write_json(result)
    else:
        print_estimate(result)
