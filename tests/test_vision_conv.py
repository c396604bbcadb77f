"""mmtutorial.encoders.vision against torch.nn.functional and torchvision (float64 where it matters), plus
bad-input errors, shapes by formula vs by running, and the chapter 10 exercise checkers."""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from mmtutorial.encoders import vision
from mmtutorial.exercises import ExerciseError, ch10

pytestmark = pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel")

CONV_GRID = [(padding, stride, dilation, groups)
             for padding, stride, dilation, groups in itertools.product(
                 [0, 1, 2, (1, 0), "valid", "same"], [1, 2, (2, 1)], [1, 2], [1, 2, 4])
             if not (padding == "same" and stride != 1)]


def _problem(groups: int, kernel=(3, 2), seed: int = 0, in_channels: int = 4, out_channels: int = 8):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(2, in_channels, 9, 8, dtype=torch.float64, generator=generator)                # (B, C, H, W)
    weight = torch.randn(out_channels, in_channels // groups, *kernel, dtype=torch.float64, generator=generator)
    bias = torch.randn(out_channels, dtype=torch.float64, generator=generator)
    return x, weight, bias


@pytest.mark.parametrize("padding,stride,dilation,groups", CONV_GRID)
def test_conv2d_loops_and_im2col_match_torch(padding, stride, dilation, groups):
    x, weight, bias = _problem(groups)
    expected = F.conv2d(x, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)
    for conv in (vision.conv2d_loops, vision.conv2d_im2col):
        assert_close(conv(x, weight, bias, stride, padding, dilation, groups), expected)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_same_padding_even_kernel_puts_extra_zero_after():
    x, weight, _ = _problem(1, kernel=(4, 2))
    expected = F.conv2d(x, weight, padding="same")
    assert expected.shape[-2:] == x.shape[-2:]
    assert_close(vision.conv2d_im2col(x, weight, padding="same"), expected)
    assert_close(vision.conv2d_loops(x, weight, padding="same"), expected)


def test_conv_without_bias_and_depthwise():
    x, weight, _ = _problem(4, out_channels=4)                    # depthwise: one filter per channel
    assert_close(vision.conv2d_im2col(x, weight, groups=4), F.conv2d(x, weight, groups=4))
    assert_close(vision.conv2d_loops(x, weight, groups=4), F.conv2d(x, weight, groups=4))


def test_conv_gradients_match_torch():
    x, weight, bias = _problem(2)
    grads = []
    for conv in (F.conv2d, vision.conv2d_loops, vision.conv2d_im2col):
        leaves = [t.clone().requires_grad_() for t in (x, weight, bias)]
        out = conv(*leaves, stride=2, padding=1, dilation=1, groups=2)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)).sum().backward()
        grads.append([leaf.grad for leaf in leaves])
    for got in grads[1:]:
        for g, e in zip(got, grads[0]):
            assert_close(g, e)


def test_im2col_matches_unfold():
    x = torch.randn(2, 3, 9, 10, dtype=torch.float64)
    for kernel, stride, padding, dilation in [(3, 1, 0, 1), ((3, 2), (2, 1), (1, 0), (1, 2)), (2, 2, 1, 2)]:
        assert_close(vision.im2col(x, kernel, stride, padding, dilation),
                     F.unfold(x, kernel, dilation=dilation, padding=padding, stride=stride))


def test_worked_example_3x3():
    # ERRATA E11: ones(3x3) kernel over [[1,1,1],[1,0,1],[1,1,1]].
    image = torch.tensor([[1., 1, 1], [1, 0, 1], [1, 1, 1]], dtype=torch.float64)[None, None]
    kernel = torch.ones(1, 1, 3, 3, dtype=torch.float64)
    assert vision.conv2d_loops(image, kernel).item() == 8.0
    same = vision.conv2d_im2col(image, kernel, padding=1)[0, 0]
    assert torch.equal(same, torch.tensor([[3., 5, 3], [5, 8, 5], [3, 5, 3]], dtype=torch.float64))
    assert torch.equal(torch.relu(same), same)                    # ReLU leaves non-negative values alone


@pytest.mark.parametrize("kernel,stride,padding", [(2, None, 0), (3, 2, 1), (3, 1, 1), ((3, 2), (2, 1), (1, 0)),
                                                   (3, 3, 0)])
def test_pooling_matches_torch(kernel, stride, padding):
    x = torch.randn(2, 3, 9, 10, dtype=torch.float64)
    assert_close(vision.max_pool2d(x, kernel, stride, padding), F.max_pool2d(x, kernel, stride, padding))
    assert_close(vision.avg_pool2d(x, kernel, stride, padding), F.avg_pool2d(x, kernel, stride, padding))
    assert_close(vision.avg_pool2d(x, kernel, stride, padding, count_include_pad=False),
                 F.avg_pool2d(x, kernel, stride, padding, count_include_pad=False))


def test_max_pool_with_negative_inputs_ignores_padding():
    x = -torch.rand(1, 1, 4, 4, dtype=torch.float64) - 1.0       # all < -1: zero padding would win wrongly
    assert_close(vision.max_pool2d(x, 3, 2, 1), F.max_pool2d(x, 3, 2, 1))
    assert vision.max_pool2d(x, 3, 2, 1).max() < -1.0


@pytest.mark.parametrize("size,kernel,stride,padding,dilation", [
    (28, 3, 1, 0, 1), (28, 3, 1, 1, 1), (224, 7, 2, 3, 1), (112, 3, 2, 1, 1), (11, 3, 2, 0, 3), (5, 5, 1, 0, 1),
    (32, 4, 3, 2, 2)])
def test_conv_output_size_matches_running_a_layer(size, kernel, stride, padding, dilation):
    layer = nn.Conv2d(1, 1, kernel, stride=stride, padding=padding, dilation=dilation)
    with torch.no_grad():
        height = layer(torch.zeros(1, 1, size, size)).shape[-1]
    assert vision.conv_output_size(size, kernel, stride, padding, dilation) == height


def test_linear_128x6x6_only_fits_small_inputs():
    # ERRATA E31: Conv(3,64,3)-Pool(2)-Conv(64,128,3)-Pool(2); Linear(128*6*6) fits 30-33 px inputs only.
    stack = nn.Sequential(nn.Conv2d(3, 64, 3), nn.MaxPool2d(2), nn.Conv2d(64, 128, 3), nn.MaxPool2d(2))
    fits = [size for size in range(10, 80) if vision.conv_output_shape(stack, (3, size, size)) == (128, 6, 6)]
    assert fits == [30, 31, 32, 33]
    for size in (32, 224):
        by_formula = vision.conv_output_shape(stack, (3, size, size))
        with torch.no_grad():
            by_running = tuple(stack(torch.zeros(1, 3, size, size)).shape[1:])
        assert by_formula == by_running == vision.trace_shapes(stack, (3, size, size))[-1][1]
    assert vision.conv_output_shape(stack, (3, 224, 224)) == (128, 54, 54)
    assert 128 * 54 * 54 == 373_248
    with pytest.raises(RuntimeError):
        nn.Sequential(stack, nn.Flatten(), nn.Linear(128 * 6 * 6, 64))(torch.zeros(1, 3, 224, 224))


def test_trace_shapes_leaves_weights_alone():
    stack = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten())
    before = stack[0].weight.clone()
    shapes = vision.trace_shapes(stack, (1, 28, 28))
    assert [s for _, s in shapes] == [(4, 26, 26), (4, 26, 26), (4, 26, 26), (4, 13, 13), (676,)]
    assert stack[0].weight.device.type == "cpu" and torch.equal(stack[0].weight, before)


def test_bad_inputs_raise_clear_errors():
    x, weight, _ = _problem(1)
    with pytest.raises(ValueError, match="expects 4 input channels"):
        vision.conv2d_im2col(x[:, :3], weight)
    with pytest.raises(ValueError, match="4-D"):
        vision.conv2d_loops(x[0], weight)
    with pytest.raises(ValueError, match="larger than the padded input"):
        vision.conv2d_im2col(x[:, :, :2, :2], weight)
    with pytest.raises(ValueError, match="must divide the input channels"):
        vision.conv2d_im2col(torch.randn(1, 6, 5, 5, dtype=torch.float64),
                             torch.randn(8, 2, 3, 3, dtype=torch.float64), groups=4)
    with pytest.raises(ValueError, match="must divide the output channels"):
        vision.conv2d_loops(x, torch.randn(6, 1, 3, 3, dtype=torch.float64), groups=4)
    with pytest.raises(TypeError, match="floating-point"):
        vision.conv2d_im2col(torch.zeros(1, 4, 5, 5, dtype=torch.uint8), weight)
    with pytest.raises(TypeError, match="one dtype"):
        vision.conv2d_im2col(x.float(), weight)
    with pytest.raises(ValueError, match="same"):
        vision.conv2d_im2col(x, weight, stride=2, padding="same")
    with pytest.raises(ValueError, match="bias"):
        vision.conv2d_loops(x, weight, torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="larger than the padded input"):
        vision.conv_output_size(4, 3, dilation=2)
    with pytest.raises(ValueError, match="at most half"):
        vision.max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="1, 28, 28"):
        vision.FashionCNN()(torch.rand(2, 3, 28, 28))
    with pytest.raises(ValueError, match="3 input channels"):
        vision.resnet18()(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="channels"):
        vision.FashionCNNConfig(channels=())


def test_crop_and_flip_matches_torchvision():
    tvf = pytest.importorskip("torchvision.transforms.v2.functional")
    images = torch.rand(4, 1, 6, 5, dtype=torch.float64)
    tops, lefts = torch.tensor([0, 2, 4, 1]), torch.tensor([3, 2, 0, 4])
    flips = torch.tensor([True, False, True, False])
    got = vision.crop_and_flip(images, tops, lefts, flips, padding=2)
    for i in range(4):
        expected = tvf.crop(tvf.pad(images[i], [2]), int(tops[i]), int(lefts[i]), 6, 5)
        if flips[i]:
            expected = tvf.horizontal_flip(expected)
        assert_close(got[i], expected)
    identity = vision.crop_and_flip(images, torch.full((4,), 2), torch.full((4,), 2), torch.zeros(4, dtype=torch.bool), 2)
    assert torch.equal(identity, images)


def test_random_crop_flip_is_seeded_and_translates():
    images = torch.rand(64, 1, 10, 10)
    first = vision.random_crop_flip(images, 2, generator=torch.Generator().manual_seed(3))
    again = vision.random_crop_flip(images, 2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, again) and first.shape == images.shape
    assert not torch.equal(first, images)
    never = vision.random_crop_flip(images, 0, flip_probability=0.0)
    assert torch.equal(never, images)
    always = vision.random_crop_flip(images, 0, flip_probability=1.0)
    assert torch.equal(always, images.flip(-1))


def test_fashion_cnn_shapes_config_and_seeded_init():
    config = vision.FashionCNNConfig(channels=(4, 8), hidden=16)
    assert config.feature_size == 8 * 7 * 7
    torch.manual_seed(0)
    model = vision.FashionCNN(config).eval()
    torch.manual_seed(0)
    twin = vision.FashionCNN(config).eval()
    images = torch.rand(3, 1, 28, 28)
    assert model(images).shape == (3, 10) and model.embed(images).shape == (3, 16)
    assert_close(model(images), twin(images), rtol=0, atol=0)
    assert [tuple(m.shape) for m in model.feature_maps(images)] == [(3, 4, 14, 14), (3, 8, 7, 7)]
    assert vision.FashionCNN(vision.FashionCNNConfig(image_size=30)).config.feature_size == 64 * 7 * 7


def test_fashion_cnn_learns_a_tiny_problem():
    # Two classes that differ in where the bright pixels are; a few steps must separate them.
    torch.manual_seed(0)
    images = torch.zeros(64, 1, 28, 28)
    labels = torch.arange(64) % 2
    images[labels == 0, :, :14] = 1.0
    images[labels == 1, :, 14:] = 1.0
    images += 0.1 * torch.rand_like(images)
    model = vision.FashionCNN(vision.FashionCNNConfig(channels=(4, 8), hidden=16, num_classes=2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(15):
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    assert (model(images).argmax(-1) == labels).float().mean() == 1.0


def test_resnet18_matches_torchvision():
    torchvision = pytest.importorskip("torchvision")
    with torch.device("meta"):
        ours_meta, reference_meta = vision.resnet18(), torchvision.models.resnet18()
    count = sum(p.numel() for p in ours_meta.parameters())
    assert count == sum(p.numel() for p in reference_meta.parameters()) == 11_689_512
    assert {k: v.shape for k, v in ours_meta.state_dict().items()} == \
        {k: v.shape for k, v in reference_meta.state_dict().items()}
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(num_classes=10).eval()
    ours = vision.resnet18(num_classes=10).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert_close(ours(images), reference(images))
        assert ours.embed(images).shape == (2, 512)


def test_basic_block_matches_torchvision():
    resnet = pytest.importorskip("torchvision.models.resnet")
    torch.manual_seed(0)
    for in_channels, out_channels, stride in [(8, 8, 1), (8, 16, 2)]:
        downsample = None
        if stride != 1 or in_channels != out_channels:
            downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                       nn.BatchNorm2d(out_channels))
        reference = resnet.BasicBlock(in_channels, out_channels, stride, downsample).eval()
        ours = vision.BasicBlock(in_channels, out_channels, stride).eval()
        for module in reference.modules():                   # non-trivial BatchNorm statistics
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
        ours.load_state_dict(reference.state_dict(), strict=True)
        x = torch.randn(2, in_channels, 8, 8)
        with torch.no_grad():
            assert_close(ours(x), reference(x))
            assert ours(x).shape == (2, out_channels, 8 // stride, 8 // stride)


def test_small_input_resnet_runs_on_fashion_sized_images():
    model = vision.resnet18(num_classes=10, in_channels=1, small_input=True).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


# --------------------------------------------------------------------------------------------------
# Exercise checkers: they accept a right answer and reject a wrong one
# --------------------------------------------------------------------------------------------------
def test_check_output_size():
    ch10.check_output_size(lambda size, kernel, stride, padding, dilation:
                           (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1)
    with pytest.raises(ExerciseError):
        ch10.check_output_size(lambda size, kernel, stride, padding, dilation: (size + 2 * padding - kernel) // stride + 1)


def test_check_conv_parameters():
    ch10.check_conv_parameters(lambda c_in, c_out, k, groups, bias: c_out * (c_in // groups) * k * k + (c_out if bias else 0))
    with pytest.raises(ExerciseError):
        ch10.check_conv_parameters(lambda c_in, c_out, k, groups, bias: c_out * c_in * k * k + (c_out if bias else 0))


def test_check_receptive_field():
    def receptive_field(kernels, strides):
        field, jump = 1, 1
        for k, s in zip(kernels, strides):
            field += (k - 1) * jump
            jump *= s
        return field
    ch10.check_receptive_field(receptive_field)
    with pytest.raises(ExerciseError):
        ch10.check_receptive_field(lambda kernels, strides: 1 + sum(k - 1 for k in kernels))
    with pytest.raises(ExerciseError):
        ch10.check_receptive_field(lambda kernels, strides: (_ for _ in ()).throw(NotImplementedError))

