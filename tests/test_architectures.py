"""Architecture shapes, layer names, and the Appendix C structure of the interpretable CNN."""

import gymnasium as gym
import pytest
import torch
from torch import nn

from agents.architectures import ARCHS, ConvReLU, HWCFeatures, L2Pool2d
from agents.policies import HWCActorCriticPolicy

IMAGE_64 = gym.spaces.Box(0, 255, (64, 64, 3), "uint8")
ATARI_84 = gym.spaces.Box(0, 255, (84, 84, 4), "uint8")


def test_interpretable_matches_appendix_c():
    net = HWCFeatures(IMAGE_64, "interpretable").net
    names = [name for name, _ in net.named_children()]
    assert names == [
        "input",
        "1a",
        "pool1",
        "2a",
        "2b",
        "pool2",
        "3a",
        "pool3",
        "4a",
        "pool4",
        "flatten",
        "fc1",
        "fc2",
    ]
    convs = {n: net.get_submodule(n).conv for n in ["1a", "2a", "2b", "3a", "4a"]}
    assert [(c.out_channels, c.kernel_size) for c in convs.values()] == [
        (16, (7, 7)),
        (32, (5, 5)),
        (32, (5, 5)),
        (32, (5, 5)),
        (32, (5, 5)),
    ]
    assert all(isinstance(net.get_submodule(n).relu, nn.ReLU) for n in convs)
    assert net.get_submodule("fc1").linear.out_features == 256
    assert net.get_submodule("fc2").linear.out_features == 512


@pytest.mark.parametrize("space", [IMAGE_64, ATARI_84], ids=["64x64x3", "84x84x4"])
@pytest.mark.parametrize("arch", ARCHS)
def test_trunk_shapes_and_same_padding(arch, space):
    extractor = HWCFeatures(space, arch)
    x = torch.randint(0, 256, (5, *space.shape)).float()
    assert extractor(x).shape == (5, extractor.features_dim)
    if arch == "interpretable":  # "same" padding keeps 64x64 through 1a; pools halve it
        acts = {}
        h = x
        for name, module in extractor.net.named_children():
            h = module(h)
            acts[name] = h.shape
        assert acts["1a"] == (5, 16, *space.shape[:2])
        assert acts["2b"] == (5, 32, space.shape[0] // 2, space.shape[1] // 2)


def test_l2_pool_is_root_mean_square():
    x = torch.tensor([[[[3.0, 4.0], [0.0, 0.0]]]])
    expected = torch.sqrt(torch.tensor((9.0 + 16.0) / 4))
    assert torch.allclose(L2Pool2d(2, eps=0.0)(x).squeeze(), expected)


@pytest.mark.parametrize("shape", [(3, 4, 6, 8), (2, 3, 5, 7)])
def test_l2_pool_gradient(shape):
    """The hand-written backward against numerical differentiation and against autograd's
    own chain of sqrt(avgpool(x^2) + eps) (odd sizes take autograd's path)."""
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    pool = L2Pool2d(2, eps=1e-8)
    assert torch.autograd.gradcheck(pool, (x,))
    (ours,) = torch.autograd.grad(pool(x).sum(), x)
    chain = torch.sqrt(torch.nn.functional.avg_pool2d(x * x, 2, 2) + 1e-8)
    (reference,) = torch.autograd.grad(chain.sum(), x)
    assert torch.allclose(ours, reference, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_l2_pool_in_place_temporaries_give_the_out_of_place_bits(dtype):
    """Forward and backward update temporaries in place (memory); the values, and the strides
    the convolutions below see, are bit for bit those of the out-of-place formulas."""
    torch.manual_seed(0)
    x = torch.relu(torch.randn(4, 8, 16, 16)).to(dtype)
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    out = L2Pool2d(2, eps=1e-8)(x)
    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    plain = x.detach()
    expected = torch.sqrt(nn.functional.avg_pool2d(plain * plain, 2, 2) + 1e-8)
    per_window = grad_out / (expected * 4)
    expected_grad = plain * nn.functional.interpolate(per_window, scale_factor=2, mode="nearest")
    assert torch.equal(out, expected) and out.stride() == expected.stride()
    assert torch.equal(x.grad, expected_grad) and x.grad.stride() == expected_grad.stride()


def test_input_stage_reads_hwc_and_is_channels_last():
    extractor = HWCFeatures(IMAGE_64, "interpretable")
    x = torch.randint(0, 256, (2, 64, 64, 3)).float()
    chw = extractor.net.input(x)
    assert chw.shape == (2, 3, 64, 64)
    assert chw.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(chw, x.permute(0, 3, 1, 2) / 255.0)
    policy = HWCActorCriticPolicy(IMAGE_64, gym.spaces.Discrete(15), lambda _: 5e-4)
    conv = policy.features_extractor.net.get_submodule("1a")
    assert isinstance(conv, ConvReLU)
    assert conv.conv.weight.is_contiguous(memory_format=torch.channels_last)
    # Channels-last storage does not change the function: compare with a contiguous copy.
    ref = nn.Conv2d(3, 16, 7, padding=3)
    ref.load_state_dict({k: v.contiguous() for k, v in conv.conv.state_dict().items()})
    assert torch.allclose(conv.conv(chw), ref(chw.contiguous()), atol=1e-5)


def test_unknown_arch_is_a_clear_error():
    with pytest.raises(ValueError, match="valid: interpretable, impala, nature"):
        HWCFeatures(IMAGE_64, "resnet")
    with pytest.raises(ValueError, match="unknown arch 'resnet'; valid: interpretable, impala"):
        HWCActorCriticPolicy(IMAGE_64, gym.spaces.Discrete(15), lambda _: 5e-4, arch="resnet")
