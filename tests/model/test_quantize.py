"""Weight-only quantisation while loading (model/quantize.py): exactly the table's kinds are
converted, each Linear as soon as its weight is read, the quantised model's last logits stay
within a stated tolerance of the float model's, a missing library is one line naming the extra,
and loading int8 takes at most 0.6x the memory of float32 (measured in fresh processes).

Tolerances, as max |logit difference| / max |float32 logit| at the last position of a 64-token
prompt: int8 0.05 on a tiny random model (measured 0.02), 0.02 on the trained demo model
(0.005); nf4 0.6 on the tiny random model (0.39: random weights of gain 1.5 amplify the ~9 %
error of each NF4 layer through the network) and 0.25 on the demo model (0.16, same top token).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from model import api
from model.errors import QuantizationError
from model.loading import load_tensors, open_checkpoint
from model.longllava import load_model
from model.module_kinds import is_quantized, module_kind
from model.quantize import QUANT_EXTRA, quantize_model
from model.request import ModelSpec, RunOptions
from model.testing import write_tiny_longllava

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "model" / "demo"
# A tiny LongLLaVA with MoE whose quantised layers bitsandbytes' CPU kernel takes (multiples of 64 in, 32 out).
TINY_LM = dict(hidden_size=64, intermediate_size=128, num_attention_heads=2, num_key_value_heads=1, num_experts=4,
               num_experts_per_tok=2, mamba_dt_rank=4)  # fmt: skip
TOLERANCE = {("tiny", "int8"): 0.05, ("tiny", "nf4"): 0.6, ("demo", "int8"): 0.02, ("demo", "nf4"): 0.25}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_tiny_longllava(tmp_path_factory.mktemp("tiny_quant"), lm=TINY_LM, shards=2)


def _last_logits(model) -> torch.Tensor:
    ids = torch.randint(3, 500, (1, 64), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        return model.lm(ids, logits_to_keep=1)[0, -1]


@pytest.fixture(scope="module")
def float_logits(tiny) -> dict[str, torch.Tensor]:
    return {"tiny": _last_logits(load_model(tiny)), "demo": _last_logits(load_model(DEMO))}


@pytest.mark.parametrize("quantize", ["int8", "nf4"])
@pytest.mark.parametrize("which", ["tiny", "demo"])
def test_last_logits_stay_within_the_stated_tolerance(tiny, float_logits, which, quantize):
    reference = float_logits[which]
    logits = _last_logits(load_model(tiny if which == "tiny" else DEMO, quantize=quantize))
    error = (logits - reference).abs().max() / reference.abs().max()
    assert error <= TOLERANCE[which, quantize]
    if which == "demo":
        assert logits.argmax() == reference.argmax()


@pytest.mark.parametrize("quantize", ["int8", "nf4"])
def test_exactly_the_tables_kinds_are_quantised(tiny, quantize):
    model = load_model(tiny, quantize=quantize)
    assert model.quantization == quantize
    converted = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):  # bitsandbytes' Linear4bit derives from nn.Linear
            converted[name] = type(module) is not nn.Linear or type(module.weight.data) is not torch.Tensor
    assert {module_kind(name) for name, done in converted.items() if done} == {"attention", "dense_mlp", "moe_experts"}
    assert all(done == is_quantized(module_kind(name), quantize) for name, done in converted.items())


def test_int8_equals_the_float_model_with_its_weights_rounded(tiny):
    """The plumbing exactly: the int8 model computes what the float model computes once each of the
    table's Linear weights is replaced by its int8 value times its scale."""
    quantised, rounded = load_model(tiny, quantize="int8"), load_model(tiny)
    for name, module in quantised.named_modules():
        if isinstance(module, nn.Linear) and is_quantized(module_kind(name), "int8"):
            rounded.get_submodule(name).weight.data = module.weight.data.dequantize()
    torch.testing.assert_close(_last_logits(quantised), _last_logits(rounded), rtol=1e-4, atol=1e-4)


def test_quantising_after_loading_equals_quantising_while_loading(tiny):
    after = quantize_model(load_model(tiny), "int8")
    assert torch.equal(_last_logits(after), _last_logits(load_model(tiny, quantize="int8")))


def test_the_loader_hands_each_module_over_once_its_tensors_are_in_place(tiny):
    model = load_model(tiny)
    config = model.config
    from model.jamba import JambaLM
    from model.loading import empty_weights, jamba_key_renamer

    with empty_weights():
        lm = JambaLM(config.lm)
    calls = []

    def record(root: nn.Module, name: str) -> None:
        module = root.get_submodule(name)
        own = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
        assert own and not any(t.is_meta for t in own)
        calls.append(name)

    load_tensors(lm, open_checkpoint(tiny), jamba_key_renamer(config.lm), dtype=torch.float32, device="cpu",
                 on_module_loaded=record)  # fmt: skip
    owners = {name.rpartition(".")[0] for name, _ in lm.named_parameters(remove_duplicate=False)}
    assert sorted(calls) == sorted(owners)  # each once, right after its last own tensor


def test_a_missing_library_is_one_line_naming_the_extra_before_anything_loads(monkeypatch, tmp_path):
    for package in ("torchao", "bitsandbytes"):
        monkeypatch.setitem(sys.modules, package, None)  # what `import` then raises: ModuleNotFoundError
    for quantize, package in (("int8", "torchao"), ("nf4", "bitsandbytes")):
        with pytest.raises(QuantizationError) as caught:
            load_model(tmp_path / "not-even-a-checkpoint", quantize=quantize)
        message = str(caught.value)
        assert package in message and QUANT_EXTRA in message and "\n" not in message


def test_nf4_on_the_cpu_refuses_shapes_its_kernel_cannot_take(tmp_path):
    narrow = write_tiny_longllava(tmp_path / "narrow", shards=1)  # hidden 32: not a multiple of 64
    with pytest.raises(QuantizationError, match=r"multiple of 64 inputs.*use int8"):
        load_model(narrow, quantize="nf4")


def test_the_spec_takes_the_three_names_only():
    assert ModelSpec(path=Path("x")).quantize == "none"
    with pytest.raises(ValueError, match="quantize must be one of none, int8, nf4"):
        ModelSpec(path=Path("x"), quantize="int4")


def test_the_memory_check_counts_the_model_as_quantised(tiny, monkeypatch):
    seen = {}
    monkeypatch.setattr(api, "check_fits", lambda budget, lm, vision, **kwargs: seen.update(kwargs))
    model = api.load(ModelSpec(path=tiny, quantize="int8"))
    api.check_request_fits(model, 100, RunOptions(memory_budget=2**30))
    assert seen["quantize"] == "int8" and seen["projector_type"] == "mlp2x_gelu"


# --- memory while loading: fresh processes --------------------------------------------------------

# Loads the checkpoint argv[1] quantised as argv[2] and prints the peak RSS the load added. The
# library's one-time start-up (imports, a first quantised layer) comes before the baseline; every
# float weight is read once after loading, so float32 weights that safetensors maps lazily from
# the file count as they will once the model runs.
_LOAD_PEAK = """
import sys, torch
from model import load_model
from model.memory_usage import current_rss_bytes, peak_rss_bytes, reset_peak_rss
path, quantize = sys.argv[1:3]
if quantize != "none":
    from model.quantize import quantize_linear
    quantize_linear(torch.nn.Linear(128, 128), quantize)(torch.ones(1, 128))
before = current_rss_bytes()
if not reset_peak_rss():
    print("no-reset")
    sys.exit()
model = load_model(path, quantize=quantize)
for p in model.parameters():
    if type(p.data) is torch.Tensor:
        p.data.sum()
print(peak_rss_bytes() - before)
"""


def measure_load_peaks(path: Path, methods: tuple[str, ...]) -> dict[str, int]:
    """{method: peak RSS bytes the load added}, each in its own process, all at once."""
    processes = {
        method: subprocess.Popen(
            [sys.executable, "-c", _LOAD_PEAK, str(path), method], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        for method in methods
    }
    outputs = {method: process.communicate(timeout=300)[0].strip() for method, process in processes.items()}
    if any(out == "no-reset" for out in outputs.values()):
        pytest.skip("this kernel cannot reset the peak RSS")
    return {method: int(out) for method, out in outputs.items()}


# A small LM in LongLLaVA-53B-A13B's layout (MoE on every other layer, top-2; FFN 3.5x the width):
# 56 MB of float32, 90 % of it in quantised kinds, as in the released MoE model.
SMALL_MOE = dict(hidden_size=256, intermediate_size=896, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=1, attn_layer_period=4, attn_layer_offset=1, num_experts=8,
                 num_experts_per_tok=2, mamba_d_state=16, mamba_dt_rank=16)  # fmt: skip


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_int8_loads_in_at_most_0_6_of_the_float32_memory(tmp_path):
    path = write_tiny_longllava(tmp_path / "small_moe", lm=SMALL_MOE, shards=1)
    peaks = measure_load_peaks(path, ("none", "int8"))
    assert peaks["int8"] <= 0.6 * peaks["none"], peaks


@pytest.mark.slow
def test_mid_size_models_load_and_answer_within_bounds(tmp_path):
    """The benchmark's mid-size models (benchmarks/bench_quant.py builds them): int8 at most 0.6x the
    float32 load peak on the MoE one; last logits within 0.1 (int8) and 0.8 (nf4) of the float
    model's (measured 0.03-0.05 and 0.31-0.58; random weights amplify NF4's error)."""
    setup = [sys.executable, str(ROOT / "benchmarks" / "bench_quant.py"), "--checkpoints"]
    checkpoints = {k: Path(v) for k, v in json.loads(subprocess.check_output(setup, text=True)).items()}
    peaks = measure_load_peaks(checkpoints["mid-moe"], ("none", "int8"))
    assert peaks["int8"] <= 0.6 * peaks["none"], peaks
    for path in checkpoints.values():
        reference = _last_logits(load_model(path))
        for quantize, tolerance in (("int8", 0.1), ("nf4", 0.8)):
            logits = _last_logits(load_model(path, quantize=quantize))
            assert (logits - reference).abs().max() <= tolerance * reference.abs().max()
