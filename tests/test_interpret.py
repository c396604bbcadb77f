"""Grad-CAM, the randomisation sanity check and deletion/insertion curves (mmtutorial.interpret) against
captum and pytorch-grad-cam."""
import numpy as np
import pytest
import scipy.stats
import torch
from torch import nn
from torch.testing import assert_close

from mmtutorial import interpret
from mmtutorial.models.vit import ViT, ViTConfig


def small_cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 6 * 6, 5)).eval()


def small_vit(seed=0):
    torch.manual_seed(seed)
    model = ViT(ViTConfig.tiny(image_size=16, patch_size=4, dim=32, num_layers=2, num_heads=2, mlp_ratio=2.0,
                               num_classes=5))
    nn.init.normal_(model.head.weight, std=0.5)                       # the head starts at zero: give it a slope
    return model.eval()


@pytest.fixture
def images():
    return torch.randn(3, 1, 12, 12, generator=torch.Generator().manual_seed(1))   # (batch, C, H, W)


def test_grad_cam_equals_captum_layer_grad_cam(images):
    from captum.attr import LayerAttribution, LayerGradCam
    model = small_cnn()
    target = torch.tensor([0, 3, 4])
    ours = interpret.grad_cam(model, model[2], images, target)                       # (3, 12, 12)
    theirs = LayerGradCam(model, model[2]).attribute(images, target=target, relu_attributions=True)
    theirs = LayerAttribution.interpolate(theirs, (12, 12), "bilinear")[:, 0]
    assert ours.shape == (3, 12, 12) and ours.abs().sum() > 0
    assert_close(ours, theirs.detach(), rtol=1e-5, atol=1e-6)
    low_res = interpret.grad_cam(model, model[2], images, target, upsample=False)
    assert low_res.shape == (3, 12, 12)                                               # conv keeps the size


def test_grad_cam_equals_pytorch_grad_cam_on_cnn(images):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    model = small_cnn()
    ours = interpret.grad_cam(model, model[4], images, [1, 2, 0], normalize=True)    # after pooling: 6x6 -> 12x12
    with GradCAM(model=model, target_layers=[model[4]]) as cam:
        theirs = cam(input_tensor=images, targets=[ClassifierOutputTarget(c) for c in (1, 2, 0)])
    assert_close(ours, torch.from_numpy(theirs), rtol=1e-4, atol=1e-5)


def test_grad_cam_on_vit_tokens_equals_pytorch_grad_cam():
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    model = small_vit()
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    layer = model.encoder.blocks[-1].norm1                                           # output (2, 1 + 16, 32)
    ours = interpret.grad_cam(model, layer, x, normalize=True)                       # predicted classes
    with GradCAM(model=model, target_layers=[layer], reshape_transform=interpret.tokens_to_grid) as cam:
        theirs = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in model(x).argmax(-1)])
    assert ours.shape == (2, 16, 16) and ours.max() > 0.99
    assert_close(ours, torch.from_numpy(theirs), rtol=1e-4, atol=1e-5)


def test_tokens_to_grid_drops_the_class_token_and_keeps_raster_order():
    tokens = torch.arange(2 * 5 * 3, dtype=torch.float32).view(2, 5, 3)              # class token + 2x2 patches
    grid = interpret.tokens_to_grid(tokens)                                          # (2, 3, 2, 2)
    assert grid.shape == (2, 3, 2, 2)
    assert_close(grid[1, :, 0, 1], tokens[1, 2])                                     # patch (row 0, col 1) = token 2
    assert interpret.tokens_to_grid(tokens[:, 1:]).shape == (2, 3, 2, 2)             # no prefix: inferred
    with pytest.raises(ValueError, match="square grid"):
        interpret.tokens_to_grid(torch.zeros(1, 7, 3))


def test_grad_cam_refuses_bad_inputs(images):
    model, other = small_cnn(), small_cnn(seed=1)
    with pytest.raises(ValueError, match="sub-module"):
        interpret.grad_cam(model, other[0], images)                                  # a layer of another model
    with pytest.raises(ValueError, match="sub-module"):
        interpret.grad_cam(model, "features", images)
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        interpret.grad_cam(model, model[2], images, target=5)
    with pytest.raises(ValueError, match="one per image"):
        interpret.grad_cam(model, model[2], images, target=[0, 1])
    with pytest.raises(TypeError, match="integer"):
        interpret.grad_cam(model, model[2], images, target=torch.tensor([0.5, 1.0, 2.0]))
    with pytest.raises(ValueError, match="4-D"):
        interpret.grad_cam(model, model[2], images[:, 0])                            # (batch, H, W)
    with pytest.raises(ValueError, match="maps"):
        interpret.grad_cam(model, model[6], images)                                  # logits are not a map


def test_spearman_correlation_equals_scipy_with_ties():
    generator = torch.Generator().manual_seed(3)
    a = torch.randint(0, 4, (3, 5, 5), generator=generator).float()                  # many ties
    b = a + torch.randn(3, 5, 5, generator=generator)
    ours = interpret.spearman_correlation(a, b)
    theirs = [scipy.stats.spearmanr(x.flatten().numpy(), y.flatten().numpy()).statistic for x, y in zip(a, b)]
    assert_close(ours, torch.tensor(theirs, dtype=torch.float64))
    with pytest.raises(ValueError, match="one shape"):
        interpret.spearman_correlation(a, b[:2])


def test_cascading_randomization_destroys_grad_cam_and_leaves_the_model_alone(images):
    model = small_cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    target = model(images).argmax(-1)
    explain = lambda m, x: interpret.grad_cam(m, m[2], x, target)
    results = interpret.cascading_randomization(model, ["6", "2", "0"], explain, images)
    assert [name for name, _ in results] == ["6", "2", "0"]
    assert results[-1][1].shape == (3,) and results[-1][1].mean() < 0.9
    for key, value in model.state_dict().items():
        assert_close(value, before[key])
    with pytest.raises(ValueError, match="unknown layers"):
        interpret.cascading_randomization(model, ["head"], explain, images)


def test_randomize_layer_is_seeded_and_changes_weights():
    first, second = small_cnn(), small_cnn()
    original = first[0].weight.clone()
    interpret.randomize_layer_(first[0], 5), interpret.randomize_layer_(second[0], 5)
    assert_close(first[0].weight, second[0].weight)
    assert not torch.allclose(first[0].weight, original)
    with pytest.raises(ValueError, match="reset_parameters"):
        interpret.randomize_layer_(nn.ReLU())


def test_deletion_and_insertion_curves(images):
    model = small_cnn()
    target = model(images).argmax(-1)
    saliency = torch.rand(3, 12, 12, generator=torch.Generator().manual_seed(4))
    deletion = interpret.deletion_insertion_curves(model, images, saliency, target, steps=8)
    insertion = interpret.deletion_insertion_curves(model, images, saliency, target, steps=8, insertion=True)
    with torch.no_grad():
        probability = lambda x: model(x).softmax(-1).gather(1, target[:, None])[:, 0]
        full, blank = probability(images), probability(torch.zeros_like(images))
    assert deletion.shape == (3, 9)
    assert_close(deletion[:, 0], full) and assert_close(deletion[:, -1], blank)
    assert_close(insertion[:, 0], blank) and assert_close(insertion[:, -1], full)
    half = saliency.flatten(1).argsort(1, descending=True)[:, :72]                  # top half of 144 pixels
    kept = images.clone().flatten(2)
    for row in range(3):
        kept[row, :, half[row]] = 0.0
    assert_close(deletion[:, 4], probability(kept.view_as(images)))
    with pytest.raises(ValueError, match="saliency"):
        interpret.deletion_insertion_curves(model, images, saliency[:, :4], target)


def test_curve_area_is_the_trapezoid_rule():
    curve = torch.rand(4, 11, generator=torch.Generator().manual_seed(5))
    expected = torch.tensor(np.trapezoid(curve.numpy(), dx=0.1, axis=-1))
    assert_close(interpret.curve_area(curve), expected.float())
    assert_close(interpret.curve_area(torch.ones(17)), torch.tensor(1.0))
    with pytest.raises(ValueError, match="points"):
        interpret.curve_area(torch.ones(1))


def test_gradient_maps_have_the_image_shape(images):
    model = small_cnn()
    assert interpret.input_gradient(model, images).shape == (3, 12, 12)
    product = interpret.input_x_gradient(model, images, 2)
    assert_close(product, interpret.input_gradient(model, images, 2) * images[:, 0])   # one channel


def test_targets_may_be_numpy(images):
    model = small_cnn()
    expected = interpret.grad_cam(model, model[2], images, torch.tensor([1, 2, 3]))
    assert_close(interpret.grad_cam(model, model[2], images, np.array([1, 2, 3])), expected)
    assert_close(interpret.grad_cam(model, model[2], images, [1, 2, 3]), expected)
    assert_close(interpret.grad_cam(model, model[2], images, np.int64(4)),
                 interpret.grad_cam(model, model[2], images, 4))
    with pytest.raises(TypeError, match="target"):
        interpret.grad_cam(model, model[2], images, target="cat")


def test_randomize_layer_draws_batch_norm_affine_parameters():
    block = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
    interpret.randomize_layer_(block, 0)
    assert not torch.allclose(block[1].weight, torch.ones(4))                   # not reset to the identity
    assert_close(block[1].running_mean, torch.zeros(4))                         # statistics reset


def test_tokens_to_grid_explicit_prefix_and_bad_prefix():
    tokens = torch.randn(1, 2 + 9, 5)                                            # two registers + 3x3 patches
    assert interpret.tokens_to_grid(tokens, prefix_tokens=2).shape == (1, 5, 3, 3)
    with pytest.raises(ValueError, match="prefix_tokens"):
        interpret.tokens_to_grid(tokens, prefix_tokens=11)
    with pytest.raises(ValueError, match=r"\(batch, tokens, dim\)"):
        interpret.tokens_to_grid(torch.randn(2, 3, 4, 4))
