"""mmtutorial.compression against PyTorch: observers, quantize_per_tensor/per_channel and nn.utils.prune."""
import copy
import warnings

import pytest
import torch
from torch import nn
from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver
from torch.nn.utils import prune

from mmtutorial import compression as C

# torch's eager quantisation API is deprecated in favour of torchao, but it is still the reference here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


def _weights(seed: int, offset: float = 0.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    rows = torch.rand(24, 1, generator=generator) * 3                             # rows of different ranges
    return torch.randn(24, 37, generator=generator) * rows + offset                # (out, in)


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("offset", [0.0, 0.7, -2.0])
def test_per_tensor_matches_torch(symmetric, offset):
    x = _weights(0, offset)
    scale, zero_point = C.quantization_params(x, symmetric=symmetric)
    observer = MinMaxObserver(dtype=torch.qint8,
                              qscheme=torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine)
    observer(x)
    ref_scale, ref_zero_point = observer.calculate_qparams()
    torch.testing.assert_close(scale.reshape(1), ref_scale, rtol=0, atol=0)
    assert torch.equal(zero_point.reshape(1), ref_zero_point.long())
    q = C.quantize(x, scale, zero_point)
    reference = torch.quantize_per_tensor(x, float(scale), int(zero_point), torch.qint8)
    assert q.dtype == torch.int8 and torch.equal(q, reference.int_repr())
    assert reference.q_scale() == pytest.approx(float(scale)) and reference.q_zero_point() == int(zero_point)
    torch.testing.assert_close(C.dequantize(q, scale, zero_point), reference.dequantize(), rtol=0, atol=0)
    # the rounding error is at most half a step inside the range
    assert float((C.dequantize(q, scale, zero_point) - x).abs().max()) <= float(scale) / 2 + 1e-6


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_per_channel_matches_torch(symmetric, axis):
    x = _weights(1, 0.3)
    scale, zero_point = C.quantization_params(x, symmetric=symmetric, axis=axis)
    observer = PerChannelMinMaxObserver(ch_axis=axis % 2, dtype=torch.qint8,
                                        qscheme=torch.per_channel_symmetric if symmetric else torch.per_channel_affine)
    observer(x)
    ref_scale, ref_zero_point = observer.calculate_qparams()
    torch.testing.assert_close(scale, ref_scale, rtol=0, atol=0)
    assert torch.equal(zero_point, ref_zero_point.long())
    q = C.quantize(x, scale, zero_point, axis=axis)
    reference = torch.quantize_per_channel(x, scale, zero_point, axis % 2, torch.qint8)
    assert torch.equal(q, reference.int_repr())
    torch.testing.assert_close(reference.q_per_channel_scales().float(), scale, rtol=0, atol=0)
    torch.testing.assert_close(C.dequantize(q, scale, zero_point, axis=axis), reference.dequantize(), rtol=0, atol=0)


def test_per_channel_beats_per_tensor_on_rows_of_different_ranges():
    x = _weights(2)
    per_tensor = C.quantize_tensor(x).dequantize()
    per_channel = C.quantize_tensor(x, axis=0).dequantize()
    assert float((per_channel - x).pow(2).mean()) < float((per_tensor - x).pow(2).mean())


def test_fewer_bits_use_a_smaller_range():
    assert C.quantization_range(8) == (-128, 127) and C.quantization_range(4) == (-8, 7)
    q = C.quantize_tensor(_weights(3), bits=4, symmetric=False).values
    assert int(q.min()) >= -8 and int(q.max()) <= 7
    x = _weights(3)
    scale, zero_point = C.quantization_params(x, bits=4, symmetric=False)
    observer = MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_affine, quant_min=-8, quant_max=7)
    observer(x)
    torch.testing.assert_close(scale.reshape(1), observer.calculate_qparams()[0], rtol=0, atol=0)


def test_state_dict_round_trip_and_size():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8 * 6 * 6, 64),
                          nn.Linear(64, 10))
    compressed = C.quantize_state_dict(model)
    assert compressed["0.weight"]["values"].dtype == torch.int8
    assert torch.equal(compressed["0.bias"], model.state_dict()["0.bias"])            # 1-D tensors kept
    restored = copy.deepcopy(model)
    restored.load_state_dict(C.dequantize_state_dict(compressed))
    scales = compressed["3.weight"]["scale"]                                           # (64,) one per row
    error = (restored[3].weight - model[3].weight).abs().amax(dim=1)                   # (64,)
    assert bool((error <= scales / 2 + 1e-7).all())
    assert C.serialized_size(compressed) < 0.4 * C.serialized_size(model)


@pytest.mark.parametrize("amount", [0.0, 0.3, 0.9])
def test_l1_mask_matches_torch_prune(amount):
    layer = nn.Linear(31, 17)
    reference = copy.deepcopy(layer)
    prune.l1_unstructured(reference, "weight", amount=amount)
    assert torch.equal(C.l1_unstructured_mask(layer.weight, amount), reference.weight_mask)


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_magnitude_prune_matches_torch_prune(scope):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    ours, reference = copy.deepcopy(model), copy.deepcopy(model)
    masks = C.magnitude_prune(ours, 0.7, scope=scope)
    pairs = C.prunable_parameters(reference)
    if scope == "layer":
        for module, name in pairs:
            prune.l1_unstructured(module, name, amount=0.7)
    else:
        prune.global_unstructured(pairs, pruning_method=prune.L1Unstructured, amount=0.7)
    assert sorted(masks) == ["0.weight", "2.weight"]
    for (mine, _), (theirs, _) in zip(C.prunable_parameters(ours), pairs):
        assert torch.equal(mine.weight_mask, theirs.weight_mask)
        assert torch.equal(mine.weight, theirs.weight)
    # fine-tuning keeps the pruned weights at zero; make_pruning_permanent leaves plain parameters
    optimizer = torch.optim.SGD(ours.parameters(), lr=0.1)
    ours(torch.randn(3, 1, 10, 10)).sum().backward()
    optimizer.step()
    C.make_pruning_permanent(ours)
    assert {name for name, _ in ours.named_parameters()} == {name for name, _ in model.named_parameters()}
    assert C.sparsity(ours) == pytest.approx(0.7, abs=1e-3)


def test_sparse_storage_round_trip_and_pays_only_when_sparse():
    torch.manual_seed(2)
    dense_model = nn.Linear(200, 100)
    pruned = copy.deepcopy(dense_model)
    C.magnitude_prune(pruned, 0.9)
    C.make_pruning_permanent(pruned)
    sparse = C.sparse_state_dict(pruned)
    restored = C.dense_state_dict(sparse)
    for name, value in pruned.state_dict().items():
        assert torch.equal(restored[name], value)
    assert C.serialized_size(sparse) < 0.3 * C.serialized_size(pruned)
    conv = nn.Conv2d(3, 8, 3)
    C.magnitude_prune(conv, 0.6)
    C.make_pruning_permanent(conv)
    assert torch.equal(C.dense_state_dict(C.sparse_state_dict(conv))["weight"], conv.weight)


def test_bad_inputs_are_refused():
    x = torch.randn(4, 5)
    with pytest.raises(ValueError, match="bits must be in"):
        C.quantization_params(x, bits=9)
    with pytest.raises(TypeError, match="bits must be an int"):
        C.quantization_params(x, bits=8.0)
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        C.quantization_params(x, axis=2)
    with pytest.raises(TypeError, match="floating-point"):
        C.quantize_tensor(torch.arange(5))
    with pytest.raises(ValueError, match="NaN"):
        C.quantize_tensor(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="shape"):
        C.quantize(x, torch.ones(3), torch.zeros(3, dtype=torch.long), axis=0)
    with pytest.raises(ValueError, match=r"amount must be a fraction in \[0, 1\)"):
        C.l1_unstructured_mask(x, 1.0)
    with pytest.raises(ValueError, match="scope must be"):
        C.magnitude_prune(nn.Linear(2, 2), 0.5, scope="row")
    with pytest.raises(ValueError, match="no layers"):
        C.magnitude_prune(nn.ReLU(), 0.5)
    masked = nn.Linear(3, 3)
    C.magnitude_prune(masked, 0.5)
    with pytest.raises(ValueError, match="make_pruning_permanent"):
        C.sparsity(masked)
    with pytest.raises(TypeError, match="nn.Module or a state dict"):
        C.serialized_size([1, 2])
