"""Chapter 19: LoRA against peft (same base weights, same A and B, same alpha: same outputs and gradients),
merge/unmerge, trainable-parameter counts against peft's, the zero start, and bad inputs."""
from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from torch.testing import assert_close

from mmtutorial.models.vit import ViT, ViTConfig
from mmtutorial.nn import LoRALinear, apply_lora, lora_layers, merge_lora, trainable_parameter_count, unmerge_lora


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def peft_pair(rank=4, alpha=8.0, targets=("qkv_proj",), seed=0):
    """Our LoRA ViT and peft's, on the same base weights, with peft's A and B copied into ours (B made non-zero
    so that the adapter matters)."""
    torch.manual_seed(seed)
    base = ViT(ViTConfig.tiny(num_classes=10)).double()
    theirs = get_peft_model(copy.deepcopy(base), LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets),
                                                            modules_to_save=["head"]))
    ours = apply_lora(copy.deepcopy(base), targets, rank=rank, alpha=alpha, trainable="head")
    with torch.no_grad():
        for name, module in theirs.base_model.model.named_modules():
            if hasattr(module, "lora_A") and isinstance(getattr(module, "lora_A"), nn.ModuleDict):
                module.lora_B["default"].weight.normal_(0, 0.1)
                layer = ours.get_submodule(name)
                layer.lora_A.copy_(module.lora_A["default"].weight)
                layer.lora_B.copy_(module.lora_B["default"].weight)
    return ours, theirs


def test_lora_linear_matches_peft_layer_outputs_and_gradients():
    torch.manual_seed(0)
    linear = nn.Linear(12, 7).double()
    theirs = get_peft_model(nn.Sequential(copy.deepcopy(linear)), LoraConfig(r=3, lora_alpha=6, target_modules=["0"]))
    peft_layer = theirs.base_model.model[0]
    ours = LoRALinear(copy.deepcopy(linear), rank=3, alpha=6)
    with torch.no_grad():
        peft_layer.lora_B["default"].weight.normal_()
        ours.lora_A.copy_(peft_layer.lora_A["default"].weight)
        ours.lora_B.copy_(peft_layer.lora_B["default"].weight)
    x = torch.randn(5, 4, 12, dtype=torch.float64, requires_grad=True)
    x_theirs = x.detach().clone().requires_grad_(True)
    out, out_theirs = ours(x), theirs(x_theirs)
    assert_close(out, out_theirs)
    grad = torch.randn_like(out)
    out.backward(grad)
    out_theirs.backward(grad)
    assert_close(x.grad, x_theirs.grad)
    assert_close(ours.lora_A.grad, peft_layer.lora_A["default"].weight.grad)
    assert_close(ours.lora_B.grad, peft_layer.lora_B["default"].weight.grad)
    assert ours.base.weight.grad is None and ours.scaling == 2.0


def test_lora_linear_equals_definition():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(8, 6).double(), rank=2, alpha=5)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(3, 8, dtype=torch.float64)
    expected = x @ (layer.base.weight + 5 / 2 * layer.lora_B @ layer.lora_A).T + layer.base.bias
    assert_close(layer(x), expected)


def test_zero_start_and_first_gradients():
    """B = 0 at init: the adapted layer is the base layer, A gets no gradient at the first step, B does."""
    torch.manual_seed(0)
    base = nn.Linear(10, 6)
    layer = LoRALinear(copy.deepcopy(base), rank=2)
    x = torch.randn(4, 10)
    assert_close(layer(x), base(x))
    layer(x).square().sum().backward()
    assert torch.count_nonzero(layer.lora_A.grad) == 0
    assert torch.count_nonzero(layer.lora_B.grad) > 0


def test_vit_with_lora_matches_peft_outputs_gradients_and_counts():
    ours, theirs = peft_pair()
    images = torch.rand(3, 1, 28, 28, dtype=torch.float64)
    labels = torch.tensor([1, 4, 7])
    out, out_theirs = ours(images), theirs(images)
    assert_close(out, out_theirs)
    nn.functional.cross_entropy(out, labels).backward()
    nn.functional.cross_entropy(out_theirs, labels).backward()
    for name, layer in ((n, m) for n, m in ours.named_modules() if isinstance(m, LoRALinear)):
        peft_layer = theirs.base_model.model.get_submodule(name)
        assert_close(layer.lora_A.grad, peft_layer.lora_A["default"].weight.grad)
        assert_close(layer.lora_B.grad, peft_layer.lora_B["default"].weight.grad)
    assert_close(ours.head.weight.grad, theirs.base_model.model.head.modules_to_save["default"].weight.grad)
    trainable, total = trainable_parameter_count(ours)
    peft_trainable, peft_total = theirs.get_nb_trainable_parameters()
    assert trainable == peft_trainable == 4 * 4 * (64 + 192) + 10 * 64 + 10
    head = 10 * 64 + 10
    assert peft_total == total + head          # peft keeps the original head beside its trainable copy


@pytest.mark.parametrize("targets", [("qkv_proj", "out_proj"), ("fc", "mlp.proj")])
def test_counts_match_peft_for_other_targets(targets):
    ours, theirs = peft_pair(rank=2, alpha=4, targets=targets)
    assert trainable_parameter_count(ours)[0] == theirs.get_nb_trainable_parameters()[0]
    images = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    assert_close(ours(images), theirs(images))


def test_merge_gives_the_adapter_output_and_unmerge_restores():
    ours, theirs = peft_pair()
    images = torch.rand(4, 1, 28, 28, dtype=torch.float64)
    before = ours(images)
    weights = [layer.base.weight.detach().clone() for layer in lora_layers(ours)]
    merge_lora(ours)
    assert all(layer.merged for layer in lora_layers(ours))
    assert_close(ours(images), before)
    theirs.merge_adapter()
    for name, layer in ((n, m) for n, m in ours.named_modules() if isinstance(m, LoRALinear)):
        assert_close(layer.base.weight, theirs.base_model.model.get_submodule(name).base_layer.weight)
    unmerge_lora(ours)
    for layer, weight in zip(lora_layers(ours), weights):
        assert_close(layer.base.weight, weight)
    assert_close(ours(images), before)
    with pytest.raises(RuntimeError, match="not merged"):
        lora_layers(ours)[0].unmerge()


def test_apply_lora_freezes_the_rest():
    torch.manual_seed(0)
    model = apply_lora(ViT(ViTConfig.tiny()), "qkv_proj", rank=2, trainable="head")
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"encoder.blocks.{i}.attn.qkv_proj.lora_{ab}" for i in range(4) for ab in "AB"} | \
        {"head.weight", "head.bias"}
    assert model.encoder.blocks[0].attn.qkv_proj.weight.shape == (192, 64)   # the base weight, reachable


@pytest.mark.parametrize("rank", [0, -1, 65])
def test_bad_rank_is_refused(rank):
    with pytest.raises(ValueError, match=r"rank must be in \[1, min\(in_features, out_features\)\] = \[1, 64\]"):
        LoRALinear(nn.Linear(64, 192), rank=rank)


def test_other_bad_inputs_are_refused():
    with pytest.raises(TypeError, match="wraps an nn.Linear"):
        LoRALinear(nn.Conv2d(3, 4, 3), rank=1)
    with pytest.raises(TypeError, match="rank must be an int"):
        LoRALinear(nn.Linear(4, 4), rank=2.0)
    with pytest.raises(ValueError, match="alpha"):
        LoRALinear(nn.Linear(4, 4), rank=2, alpha=0)
    with pytest.raises(ValueError, match="no nn.Linear layer of the model matches"):
        apply_lora(ViT(ViTConfig.tiny()), "q_proj", rank=2)
    with pytest.raises(ValueError, match="trainable"):
        apply_lora(ViT(ViTConfig.tiny()), "qkv_proj", rank=2, trainable="classifier")
    layer = LoRALinear(nn.Linear(4, 4), rank=2)
    layer.merge()
    with pytest.raises(RuntimeError, match="already merged"):
        layer.merge()


def test_chapter_recipe_trains_under_two_percent_and_starts_at_the_pretrained_model():
    from mmtutorial.models.mae import MAE, mae_classifier
    from mmtutorial.zoo import fashion_mae

    torch.manual_seed(0)
    recipe, config = fashion_mae.fashion_mae_recipe(), fashion_mae.fashion_mae_config()
    mae = MAE(config)
    lora_model = fashion_mae._classifier("lora", mae, config, recipe)
    full_model = fashion_mae._classifier("finetune", mae, config, recipe)
    trainable, total = trainable_parameter_count(lora_model)
    assert trainable / total <= 0.02
    images = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        full_model.head.weight.normal_()
        lora_model.head.weight.copy_(full_model.head.weight)
    assert_close(lora_model(images), full_model(images))          # B = 0: LoRA starts at the pretrained model
    assert set(fashion_mae.labelled_subset(150).tolist()) <= set(fashion_mae.labelled_subset(600).tolist())
    with pytest.raises(ValueError, match="kind must be one of"):
        fashion_mae.load_or_train_fashion_classifier("probe", 150)
    with pytest.raises(ValueError, match="label_count"):
        fashion_mae.labelled_subset(0)
    assert mae_classifier(config).config.num_classes == 10
