"""Chapter 21's video models: the (2+1)D block against torchvision, its shape and receptive field by formula
and by probe, temporal attention against nn.MultiheadAttention, order invariance, the dual encoder, bad inputs
and the load-or-train recipe."""
import math

import pytest
import torch
from torch import nn
from torchvision.models.video.resnet import Conv2Plus1D

from mmtutorial.data import clips
from mmtutorial.models import video
from mmtutorial.models.clip import clip_loss
from mmtutorial.zoo import scenes_video
from mmtutorial.zoo.torch_nn import load_torch_mha

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _videos(batch=2, frames=8, size=20, seed=0):
    return torch.rand(batch, frames, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------------
# (2+1)D
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_in, n_out", [(3, 16), (16, 32), (64, 64), (64, 128)])
def test_mid_channels_is_tran_et_al_and_torchvision(n_in, n_out):
    # torchvision.models.video.resnet.BasicBlock: (inplanes * planes * 3 * 3 * 3) // (inplanes * 3 * 3 + 3 * planes)
    assert video.mid_channels(n_in, n_out) == (n_in * n_out * 27) // (n_in * 9 + 3 * n_out)
    middle = video.mid_channels(n_in, n_out)
    full = 3 * 9 * n_in * n_out
    factorised = 9 * n_in * middle + 3 * middle * n_out
    assert factorised <= full < factorised + 9 * n_in + 3 * n_out       # as many weights as a full 3x3x3 conv


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("train_mode", [False, True])
def test_conv2plus1d_matches_torchvision(stride, train_mode):
    torch.manual_seed(0)
    ours = video.Conv2Plus1d(8, 12, stride=stride)
    middle = ours.spatial.out_channels
    reference = Conv2Plus1D(8, 12, middle, stride=stride)
    key_map = {"spatial.weight": "0.weight", "norm.weight": "1.weight", "norm.bias": "1.bias",
               "norm.running_mean": "1.running_mean", "norm.running_var": "1.running_var",
               "norm.num_batches_tracked": "1.num_batches_tracked", "temporal.weight": "3.weight"}
    with torch.no_grad():
        for p in ours.norm.parameters():
            p.uniform_(0.5, 1.5)
        ours.norm.running_mean.uniform_(-0.2, 0.2)
        ours.norm.running_var.uniform_(0.5, 2.0)
    reference.load_state_dict({key_map[k]: v for k, v in ours.state_dict().items()})
    ours.train(train_mode); reference.train(train_mode)
    x = torch.randn(2, 8, 6, 10, 10)                                    # (batch, C, T, H, W)
    torch.testing.assert_close(ours(x), reference(x))
    # output shape by the formula floor((n + 2p - k) / s) + 1 on each axis
    expected = [video.conv_output_size(n, 3, stride, 1) for n in (6, 10, 10)]
    assert tuple(ours(x).shape) == (2, 12, *expected)


def _positive_block():
    block = video.Conv2Plus1d(2, 3, middle=4).eval()
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(p.abs() + 0.1)                                       # every ReLU active on a positive input
    return block


def test_block_receptive_field_by_probe():
    block = _positive_block()
    x = torch.ones(1, 2, 9, 11, 11, requires_grad=True)
    block(x)[0, 0, 4, 5, 5].backward()                                  # one output in the middle
    support = (x.grad[0].abs().sum(0) > 0).nonzero()                    # (n, 3): t, y, x
    extent = (support.max(0).values - support.min(0).values + 1).tolist()
    assert extent == [3, 3, 3] and len(support) == 27
    assert video.receptive_field([(3, 1)]) == 3


def test_network_receptive_field_formula_and_probe():
    config = video.Conv2Plus1dConfig(channels=(4, 4, 4))
    net = video.Conv2Plus1dNet(config).eval()
    temporal, spatial = net.receptive_field()
    assert temporal == 1 + 3 * 2                                         # three t = 3 convolutions
    assert spatial == video.receptive_field([(3, 1), (2, 2), (3, 1), (2, 2), (3, 1)]) == 18
    # Probe: same windows, but average pooling (its gradient reaches every input of the window) and positive
    # weights (every ReLU active); the gradient of one output is non-zero exactly on its receptive field.
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(p.abs() + 0.05)
    probe = nn.Sequential(*[nn.AvgPool3d(m.kernel_size) if isinstance(m, nn.MaxPool3d) else m for m in net.features])
    x = torch.ones(1, 3, 16, 48, 48, requires_grad=True)
    out = probe(x)                                                       # (1, 4, 16, 12, 12)
    out[0, 0, 8, 6, 6].backward()
    support = (x.grad[0].abs().sum(0) > 0).nonzero()
    extent = (support.max(0).values - support.min(0).values + 1).tolist()
    assert extent == [temporal, spatial, spatial]


def test_receptive_field_formula_hand_values():
    assert video.receptive_field([]) == 1
    assert video.receptive_field([(3, 1), (3, 1)]) == 5
    assert video.receptive_field([(7, 2), (3, 2), (3, 1)]) == 7 + 2 * 2 + 2 * 4


# ---------------------------------------------------------------------------------------------------
# Temporal attention
# ---------------------------------------------------------------------------------------------------
def test_temporal_attention_matches_torch_multihead_attention():
    torch.manual_seed(0)
    model = video.TemporalAttentionClassifier(video.VideoConfig()).eval()
    ours = model.encoder.transformer.blocks[0].attn
    reference = nn.MultiheadAttention(64, 4, batch_first=True).eval()
    load_torch_mha(ours, reference)
    tokens = model.encoder.frames(_videos()) + model.encoder.time_embedding.embedding.weight   # (2, 8, 64)
    torch.testing.assert_close(ours(tokens), reference(tokens, tokens, tokens, need_weights=False)[0])
    # and the from-scratch formula per head
    q, k, v = (tokens @ w.T + b for w, b in zip(reference.in_proj_weight.chunk(3), reference.in_proj_bias.chunk(3)))
    split = lambda x: x.view(2, 8, 4, 16).transpose(1, 2)                # (batch, heads, T, head_dim)
    weights = (split(q) @ split(k).transpose(-2, -1) / math.sqrt(16)).softmax(-1)   # (batch, heads, T, T)
    heads = (weights @ split(v)).transpose(1, 2).reshape(2, 8, 64)
    torch.testing.assert_close(reference.out_proj(heads), ours(tokens))


def test_order_invariance_and_time_embeddings():
    torch.manual_seed(0)
    x = _videos()
    reversed_x = x.flip(1)
    for model in (video.MeanPoolClassifier(video.VideoConfig()), video.SingleFrameClassifier(video.VideoConfig()),
                  video.TemporalAttentionClassifier(video.VideoConfig(time_embedding=False))):
        model.eval()
        torch.testing.assert_close(model(x), model(reversed_x))           # a function of the set of frames
    attention = video.TemporalAttentionClassifier(video.VideoConfig()).eval()
    assert not torch.allclose(attention(x), attention(reversed_x), atol=1e-4)
    conv = video.Conv2Plus1dNet(video.Conv2Plus1dConfig()).eval()
    assert not torch.allclose(conv(x), conv(reversed_x), atol=1e-5)


def test_single_frame_vote_is_log_mean_probability():
    model = video.SingleFrameClassifier(video.VideoConfig()).eval()
    x = _videos()
    expected = model.frame_logits(x).softmax(-1).mean(1).log()
    torch.testing.assert_close(model(x), expected)


@pytest.mark.parametrize("kind", scenes_video.KINDS)
def test_classifier_shapes_and_gradients(kind):
    model = scenes_video.build_classifier(kind)
    x = _videos(batch=3)
    logits = model(x)
    assert logits.shape == (3, 4)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert scenes_video.build_classifier(kind, "order")(x).shape == (3, 2)
    # a shorter clip works too (>= 2 frames)
    assert model(_videos(batch=1, frames=4)).shape == (1, 4)


# ---------------------------------------------------------------------------------------------------
# Video-text
# ---------------------------------------------------------------------------------------------------
def test_video_text_model():
    torch.manual_seed(0)
    config = scenes_video.video_text_config()
    model = video.VideoTextModel(config)
    vocab = clips.caption_vocabulary()
    tokens = vocab.encode_batch(["a red circle moving left", "a blue square moving up", "a cyan cross moving down"],
                                max_len=scenes_video.MAX_CAPTION_LEN)
    v, t, s = model(_videos(batch=3), tokens)
    assert v.shape == t.shape == (3, config.embed_dim)
    torch.testing.assert_close(v.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(model.loss(_videos(batch=3), tokens), clip_loss(v, t, s))
    with pytest.raises(ValueError, match="matching pairs"):
        model(_videos(batch=2), tokens)
    # the reversal loss = the loss on the batch completed by the reversed clips and their captions
    reversed_tokens = vocab.encode_batch(["a red circle moving right", "a blue square moving down",
                                          "a cyan cross moving up"], max_len=scenes_video.MAX_CAPTION_LEN)
    model.train()
    x = _videos(batch=3)
    torch.testing.assert_close(model.reversal_loss(x, tokens, reversed_tokens),
                               model.loss(torch.cat([x, x.flip(1)]), torch.cat([tokens, reversed_tokens])))
    with pytest.raises(ValueError, match="triples"):
        model.reversal_loss(x, tokens, reversed_tokens[:2])


# ---------------------------------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad, error, match", [
    (torch.rand(2, 1, 3, 20, 20), ValueError, "at least 2 frames"),
    ((torch.rand(2, 8, 3, 20, 20) * 255).to(torch.uint8), TypeError, "floating-point"),
    (torch.rand(8, 3, 20, 20), ValueError, "5-D"),
    (torch.rand(2, 8, 3, 16, 16), ValueError, "shape"),
    (torch.rand(2, 8, 1, 20, 20), ValueError, "shape"),
    ("frames", TypeError, "Tensor")])
@pytest.mark.parametrize("kind", scenes_video.KINDS)
def test_bad_videos_refused(kind, bad, error, match):
    with pytest.raises(error, match=match):
        scenes_video.build_classifier(kind)(bad)


def test_too_many_frames_for_time_embeddings():
    with pytest.raises(ValueError, match="max_seq_len"):
        video.TemporalAttentionClassifier(video.VideoConfig(max_seq_len=4))(_videos(frames=6))


@pytest.mark.parametrize("make, error", [
    (lambda: video.VideoConfig(dim=30, num_heads=4), ValueError),
    (lambda: video.VideoConfig(channels=()), ValueError),
    (lambda: video.VideoConfig(channels=(8, 8, 8, 8, 8)), ValueError),
    (lambda: video.VideoConfig(max_seq_len=1), ValueError),
    (lambda: video.VideoConfig(dim=64.0), TypeError),
    (lambda: video.Conv2Plus1dConfig(kernel_size=4), ValueError),
    (lambda: video.Conv2Plus1dConfig(channels=()), ValueError),
    (lambda: video.MeanPoolClassifier(video.VideoConfig(num_classes=0)), ValueError),
    (lambda: video.Conv2Plus1dNet(video.VideoConfig()), TypeError),
    (lambda: video.mid_channels(0, 4), ValueError),
    (lambda: video.conv_output_size(2, 5), ValueError),
    (lambda: scenes_video.build_classifier("lstm"), ValueError),
    (lambda: scenes_video.build_classifier("attention", "speed"), ValueError)])
def test_bad_configs_refused(make, error):
    with pytest.raises(error):
        make()


def test_conv2plus1d_block_refuses_wrong_layout():
    with pytest.raises(ValueError, match="batch, 3, T, H, W"):
        video.Conv2Plus1d(3, 8)(torch.rand(2, 8, 3, 20, 20))             # (batch, T, C, H, W) is not Conv3d's layout


# ---------------------------------------------------------------------------------------------------
# The recipe: trains once, then loads
# ---------------------------------------------------------------------------------------------------
def test_recipe_trains_then_loads(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MMTUTORIAL_CACHE", str(tmp_path))
    tiny = scenes_video.VideoRecipe(train_count=32, epochs=1, retrieval_count=16, retrieval_epochs=1, batch_size=8)
    monkeypatch.setattr(scenes_video, "video_recipe", lambda: tiny)
    first = scenes_video.load_or_train_video_classifier("mean_pool", device="cpu", progress=False)
    assert "training it now" in capsys.readouterr().out
    second = scenes_video.load_or_train_video_classifier("mean_pool", device="cpu", progress=False)
    assert "Found trained model" in capsys.readouterr().out
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        torch.testing.assert_close(a, b)
    text = scenes_video.load_or_train_video_text(device="cpu", progress=False)
    assert text.embed_texts(["a red circle moving left"]).shape == (1, 64)
    videos, labels = clips.to_tensors(clips.direction_clips(4, split="test"))
    assert scenes_video.predict(first.model, videos).shape == labels.shape
    assert 0.0 <= scenes_video.accuracy(first.model, videos, labels) <= 1.0


# ---------------------------------------------------------------------------------------------------
# Exercise checkers
# ---------------------------------------------------------------------------------------------------
def test_exercise_checkers_accept_right_and_reject_wrong(capsys):
    from mmtutorial.exercises import ExerciseError, ch21

    ch21.check_mid_channels(lambda i, o, k, t: (t * k * k * i * o) // (k * k * i + t * o))
    ch21.check_receptive_field(video.receptive_field)

    def attention(tokens, w_query, w_key, w_value):
        q, k, v = tokens @ w_query, tokens @ w_key, tokens @ w_value
        return (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))).softmax(-1) @ v

    ch21.check_temporal_attention(attention)
    assert capsys.readouterr().out.count("correct") == 3
    with pytest.raises(ExerciseError, match="int"):
        ch21.check_mid_channels(lambda i, o, k, t: t * k * k * i * o / (k * k * i + t * o))
    with pytest.raises(ExerciseError, match="jump"):
        ch21.check_receptive_field(lambda layers: 1 + sum(k - 1 for k, _ in layers))
    with pytest.raises(ExerciseError, match="sqrt"):
        ch21.check_temporal_attention(lambda x, wq, wk, wv: ((x @ wq) @ (x @ wk).transpose(-2, -1)).softmax(-1) @ (x @ wv))
    with pytest.raises(ExerciseError, match="NotImplementedError"):
        def stub(*args):
            raise NotImplementedError
        ch21.check_receptive_field(stub)
