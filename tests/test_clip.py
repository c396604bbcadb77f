"""mmtutorial.models.clip against open_clip itself (float64, weights copied by mmtutorial.zoo.openclip), plus
bad-input errors, the ViT-B/32 parameter count and the chapter 15 exercise checkers.  The key map's own
errors and round trip are in test_zoo_vision.py.

The reference models are built from small open_clip config dicts (random init, no download) so every test
runs in well under a second; the ViT-B-32 count uses open_clip's factory once (about 1.5 s).
"""
from __future__ import annotations

import math

import open_clip
import pytest
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss
from torch.testing import assert_close

from mmtutorial.exercises import ExerciseError, ch15
from mmtutorial.models.clip import (CLIP, CLIPConfig, CLIPTextConfig, clip_image_config, clip_logits, clip_loss,
                                    zero_shot_classifier)
from mmtutorial.models.vit import ViT, ViTConfig
from mmtutorial.nn.transformer import QuickGELU
from mmtutorial.zoo import openclip

TINY_OPENCLIP = {"embed_dim": 24,
                 "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 2, "head_width": 8},
                 "text_cfg": {"context_length": 12, "vocab_size": 50, "width": 32, "heads": 4, "layers": 2}}


def reference_pair(quick_gelu: bool = False, seed: int = 0) -> tuple[torch.nn.Module, CLIP]:
    """A tiny open_clip CLIP and ours with its weights, both float64 in eval mode."""
    torch.manual_seed(seed)
    reference = open_clip.CLIP(TINY_OPENCLIP["embed_dim"], TINY_OPENCLIP["vision_cfg"], TINY_OPENCLIP["text_cfg"],
                               quick_gelu=quick_gelu).double().eval()
    with torch.no_grad():  # a non-default temperature, so that a forgotten exp() or swap would show
        reference.logit_scale.fill_(2.0)
    ours = CLIP(openclip.clip_config_from_openclip(TINY_OPENCLIP, quick_gelu=quick_gelu)).double().eval()
    openclip.load_openclip_state_dict(ours, reference.state_dict())
    return reference, ours


def inputs(batch: int = 5, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, 32, 32, generator=generator, dtype=torch.float64)
    tokens = torch.randint(1, 49, (batch, 12), generator=generator)       # ids 1..48
    lengths = torch.tensor([3, 12, 7, 1, 9][:batch])
    tokens[torch.arange(batch), lengths - 1] = 49                         # EOT = the largest id (49)
    tokens[torch.arange(12)[None, :] >= lengths[:, None]] = 0             # padding after EOT
    return images, tokens


# --------------------------------------------------------------------------------------------------
# The loss
# --------------------------------------------------------------------------------------------------
def test_clip_loss_equals_open_clip_cliploss_with_a_learned_scale():
    generator = torch.Generator().manual_seed(0)
    image = F.normalize(torch.randn(9, 16, generator=generator, dtype=torch.float64), dim=-1).requires_grad_()
    text = F.normalize(torch.randn(9, 16, generator=generator, dtype=torch.float64), dim=-1).requires_grad_()
    log_scale = torch.tensor(math.log(1 / 0.07), dtype=torch.float64, requires_grad=True)
    ours = clip_loss(image, text, log_scale.exp())
    theirs = ClipLoss()(image, text, log_scale.exp())
    assert_close(ours, theirs)
    grads_ours = torch.autograd.grad(ours, (image, text, log_scale))
    grads_theirs = torch.autograd.grad(theirs, (image, text, log_scale))
    for got, expected in zip(grads_ours, grads_theirs):
        assert_close(got, expected)
    assert grads_ours[2].abs() > 0   # the temperature really is learned


def test_clip_loss_definition_and_limits():
    generator = torch.Generator().manual_seed(1)
    image = F.normalize(torch.randn(6, 8, generator=generator, dtype=torch.float64), dim=-1)
    text = F.normalize(torch.randn(6, 8, generator=generator, dtype=torch.float64), dim=-1)
    logits_per_image, logits_per_text = clip_logits(image, text, 3.0)
    assert_close(logits_per_text, logits_per_image.T)
    by_hand = -(torch.log_softmax(logits_per_image, 1).diag().mean() + torch.log_softmax(logits_per_image, 0).diag().mean()) / 2
    assert_close(clip_loss(image, text, 3.0), by_hand)
    # identical features and a sharp temperature: loss -> 0; a scale of 0: every pair equally likely, log B
    assert clip_loss(image, image, 1000.0) < 1e-6
    assert_close(clip_loss(image, text, 0.0), torch.tensor(math.log(6), dtype=torch.float64))
    # asymmetric: swapping the roles of images and texts gives the same symmetric loss
    assert_close(clip_loss(image, text, 5.0), clip_loss(text, image, 5.0))


@pytest.mark.parametrize("image, text, scale, error, words", [
    (torch.zeros(4, 8), torch.zeros(5, 8), 1.0, ValueError, "same shape"),
    (torch.zeros(4, 8), torch.zeros(4, 7), 1.0, ValueError, "same shape"),
    (torch.zeros(8), torch.zeros(8), 1.0, ValueError, "(batch, embed_dim)"),
    (torch.zeros(4, 8, dtype=torch.long), torch.zeros(4, 8), 1.0, TypeError, "floating-point"),
    (torch.zeros(4, 8), torch.zeros(4, 8), torch.ones(2), ValueError, "scalar"),
])
def test_clip_loss_bad_input(image, text, scale, error, words):
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        clip_loss(image, text, scale)


# --------------------------------------------------------------------------------------------------
# Same embeddings as open_clip
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("quick_gelu", [False, True])
def test_loaded_open_clip_weights_give_the_same_embeddings(quick_gelu):
    reference, ours = reference_pair(quick_gelu)
    images, tokens = inputs()
    with torch.no_grad():
        assert_close(ours.encode_image(images), reference.encode_image(images), rtol=1e-10, atol=1e-10)
        assert_close(ours.encode_text(tokens), reference.encode_text(tokens), rtol=1e-10, atol=1e-10)
        for got, expected in zip(ours(images, tokens), reference(images, tokens)):
            assert_close(got, expected, rtol=1e-10, atol=1e-10)
    assert_close(ours.scale(), torch.tensor(math.exp(2.0), dtype=torch.float64))
    assert isinstance(ours.visual.vit, ViT) and ours.config.vision.norm_pre and not ours.config.vision.patch_bias
    assert isinstance(ours.visual.vit.encoder.blocks[0].mlp.activation, QuickGELU) == quick_gelu
    assert isinstance(ours.text.blocks[0].mlp.activation, QuickGELU) == quick_gelu


def test_gradients_match_open_clip_through_the_key_map():
    reference, ours = reference_pair()
    images, tokens = inputs()
    clip_loss(*ours(images, tokens)).backward()
    ClipLoss()(*reference(images, tokens)).backward()
    ours_params = dict(ours.named_parameters())
    for theirs_name, parameter in reference.named_parameters():
        ours_name = openclip.openclip_key_map(ours.config)[theirs_name]
        ours_grad = ours_params[ours_name].grad.reshape(parameter.shape)   # the class token: (1, 1, w) vs (w,)
        assert_close(ours_grad, parameter.grad, rtol=1e-8, atol=1e-10, msg=theirs_name)


def test_float32_agreement_and_truncated_context():
    reference, ours = reference_pair()
    reference, ours = reference.float(), ours.float()
    images, tokens = inputs()
    with torch.no_grad():
        assert_close(ours.encode_image(images.float()), reference.encode_image(images.float()), rtol=1e-5, atol=1e-5)
        # causal attention: cropping the padding after the longest EOT changes nothing
        tokens = tokens[[0, 2, 3, 4]]                                     # every text ends by position 9
        cropped = tokens[:, :tokens.argmax(dim=-1).max() + 1]             # (4, 9)
        assert cropped.size(1) < tokens.size(1)
        assert_close(ours.encode_text(cropped), reference.encode_text(tokens), rtol=1e-5, atol=1e-5)


def test_vit_b_32_has_the_published_parameter_count():
    with torch.device("meta"):
        ours = CLIP(CLIPConfig.vit_b_32())
    reference = open_clip.create_model("ViT-B-32", pretrained=None)
    assert ours.num_parameters() == sum(p.numel() for p in reference.parameters()) == 151_277_313
    assert CLIPConfig() == CLIPConfig.vit_b_32()


def test_the_image_tower_is_the_one_vit():
    """CLIP's image tower is a ViT configured as open_clip's: no head, ln_pre, no patch bias, class token."""
    torch.manual_seed(0)
    model = CLIP(CLIPConfig.tiny()).eval()
    images = torch.randn(3, 3, 32, 32)
    vision = model.config.vision
    assert isinstance(vision, ViTConfig) and vision.num_classes == 0 and vision.pool == "cls"
    assert model.visual.vit.patch_embedding.proj.bias is None and isinstance(model.visual.vit.head, torch.nn.Identity)
    with torch.no_grad():
        tokens = model.visual.vit.forward_tokens(images)                     # (3, 17, 64): ln_post on every token
        assert_close(model.encode_image(images), tokens[:, 0] @ model.visual.projection)


# --------------------------------------------------------------------------------------------------
# The model's own behaviour and errors
# --------------------------------------------------------------------------------------------------
def test_logit_scale_initialisation_and_clamp():
    model = CLIP(CLIPConfig.tiny())
    assert_close(model.scale(), torch.tensor(1 / 0.07))
    with torch.no_grad():
        model.logit_scale.fill_(7.0)                      # exp(7) = 1097 > 100
    assert_close(model.scale(), torch.tensor(100.0))       # the output never exceeds the limit
    model.clamp_logit_scale_()                             # and the parameter is clipped as open_clip does
    assert_close(model.logit_scale.detach(), torch.tensor(math.log(100.0)))


def test_forward_returns_unit_features_and_is_seeded():
    torch.manual_seed(0)
    first = CLIP(CLIPConfig.tiny(in_channels=1))
    torch.manual_seed(0)
    second = CLIP(CLIPConfig.tiny(in_channels=1))
    images = torch.randn(4, 1, 32, 32)
    tokens = torch.randint(0, 64, (4, 10))
    image_features, text_features, scale = first(images, tokens)
    assert image_features.shape == text_features.shape == (4, 64) and scale.dim() == 0
    assert_close(image_features.norm(dim=-1), torch.ones(4))
    for got, expected in zip(second(images, tokens), (image_features, text_features, scale)):
        assert torch.equal(got, expected)
    assert first(images=images)[1] is None and first(tokens=tokens)[0] is None
    classes = zero_shot_classifier(first, tokens.view(2, 2, 10))
    assert classes.shape == (2, 64)
    assert_close(classes.norm(dim=-1), torch.ones(2))


def test_eot_token_id_pooling_matches_argmax_when_eot_is_largest():
    torch.manual_seed(0)
    argmax_model = CLIP(CLIPConfig.tiny(vocab_size=20)).eval()
    eot_model = CLIP(CLIPConfig.tiny(vocab_size=20, eot_token_id=19)).eval()
    eot_model.load_state_dict(argmax_model.state_dict())
    tokens = torch.tensor([[1, 5, 19, 0, 0], [3, 19, 0, 0, 0]])
    assert_close(eot_model.encode_text(tokens), argmax_model.encode_text(tokens))
    eot2 = CLIP(CLIPConfig.tiny(vocab_size=20, eot_token_id=2)).eval()      # EOT not the largest id
    assert eot2.text.eot_positions(torch.tensor([[1, 9, 2, 0]])).tolist() == [2]
    with pytest.raises(ValueError, match="end-of-text token id 2"):
        eot2.encode_text(torch.tensor([[1, 9, 3, 0]]))


@pytest.mark.parametrize("images, error, words", [
    (torch.zeros(2, 3, 28, 28), ValueError, "built for 32 x 32"),
    (torch.zeros(2, 1, 32, 32), ValueError, "channels, expected 3"),
    (torch.zeros(3, 32, 32), ValueError, "add a batch dimension"),
    (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), TypeError, "floating-point"),
    ([[0.0]], TypeError, "torch.Tensor"),
])
def test_bad_images(images, error, words):
    model = CLIP(CLIPConfig.tiny())
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        model.encode_image(images)


@pytest.mark.parametrize("tokens, error, words", [
    (torch.tensor([[1, 64]]), ValueError, r"\[0, vocab_size=64\)"),
    (torch.tensor([[-1, 3]]), ValueError, r"\[0, vocab_size=64\)"),
    (torch.zeros(2, 17, dtype=torch.long), ValueError, "longer than max_seq_len=16"),
    (torch.zeros(2, 4), TypeError, "integer token ids"),
    (torch.zeros(4, dtype=torch.long), ValueError, r"\(batch, seq\)"),
])
def test_bad_tokens(tokens, error, words):
    model = CLIP(CLIPConfig.tiny())
    with pytest.raises(error, match=words):
        model.encode_text(tokens)


def test_bad_configs():
    with pytest.raises(ValueError, match="divisible by patch_size"):
        clip_image_config(image_size=30, patch_size=8)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        CLIPTextConfig(dim=30, num_heads=4)
    with pytest.raises(ValueError, match="CLIPTextConfig: activation"):
        CLIPTextConfig(activation="tanh")
    with pytest.raises(ValueError, match="num_classes=0"):
        CLIPConfig(vision=ViTConfig())                                     # a classifier, not an image tower
    with pytest.raises(TypeError, match="ViTConfig"):
        CLIPConfig(vision=CLIPTextConfig())
    with pytest.raises(ValueError, match="positive int"):
        CLIPConfig(embed_dim=0)
    with pytest.raises(ValueError, match="eot_token_id"):
        CLIPTextConfig(vocab_size=10, eot_token_id=10)
    with pytest.raises(TypeError, match="CLIPConfig"):
        CLIP({"embed_dim": 4})
    assert CLIPConfig(vision={"image_size": 28, "patch_size": 7}).vision.num_patches == 16
    config = CLIPConfig.tiny(eot_token_id=2)
    assert CLIPConfig(**config.to_dict()) == config                        # the dict round trip of a cache key


# --------------------------------------------------------------------------------------------------
# Exercise checkers
# --------------------------------------------------------------------------------------------------
def test_ch15_checkers_accept_solutions_and_reject_mistakes():
    def infonce(image, text, scale):
        logits = scale * image @ text.T
        labels = torch.arange(len(image))
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2

    def one_way(image, text, scale):
        return F.cross_entropy(scale * image @ text.T, torch.arange(len(image)))

    ch15.check_symmetric_infonce(infonce)
    with pytest.raises(ExerciseError, match="only the image -> text direction"):
        ch15.check_symmetric_infonce(one_way)

    def predict(images, classes):
        return (F.normalize(images, dim=-1) @ F.normalize(classes, dim=-1).T).argmax(dim=-1)

    ch15.check_zero_shot_predict(predict)
    with pytest.raises(ExerciseError, match="Normalise both sides"):
        ch15.check_zero_shot_predict(lambda images, classes: (images @ classes.T).argmax(dim=-1))

    def count(config):
        def blocks(width, layers, ratio):
            hidden = int(width * ratio)
            return layers * (4 * width * width + 4 * width + 2 * width * hidden + hidden + width + 4 * width)
        v, t = config.vision, config.text
        vision = (v.in_channels * v.patch_size ** 2 * v.dim + v.dim + (v.num_patches + 1) * v.dim
                  + 4 * v.dim + blocks(v.dim, v.num_layers, v.mlp_ratio) + v.dim * config.embed_dim)
        text = ((t.vocab_size + t.max_seq_len) * t.dim + blocks(t.dim, t.num_layers, t.mlp_ratio)
                + 2 * t.dim + t.dim * config.embed_dim)
        return vision + text + 1

    ch15.check_clip_parameter_count(count)
    with pytest.raises(ExerciseError, match="off by -1"):
        ch15.check_clip_parameter_count(lambda config: count(config) - 1)
    with pytest.raises(ExerciseError, match="NotImplementedError"):
        ch15.check_clip_parameter_count(lambda config: (_ for _ in ()).throw(NotImplementedError))
