"""Critics (appendix D) and the hole crop for the local critic."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from inpaintkit.model.critics import GlobalCritic, LocalCritic, crop_hole_boxes, hole_boxes


def conv_specs(critic: torch.nn.Module) -> list[tuple[int, int, int]]:
    return [
        (m.kernel_size[0], m.stride[0], m.out_channels)
        for m in critic.modules()
        if isinstance(m, torch.nn.Conv2d)
    ]


def test_local_critic_architecture():
    critic = LocalCritic()
    assert conv_specs(critic) == [(5, 2, 64), (5, 2, 128), (5, 2, 256), (5, 2, 512)]
    assert critic.fc.in_features == 512 * 8 * 8 and critic.fc.out_features == 1
    slopes = [m.negative_slope for m in critic.modules() if isinstance(m, torch.nn.LeakyReLU)]
    assert slopes == [0.2] * 4


def test_global_critic_architecture():
    critic = GlobalCritic()
    assert conv_specs(critic) == [(5, 2, 64), (5, 2, 128), (5, 2, 256), (5, 2, 256)]
    assert critic.fc.in_features == 256 * 16 * 16 and critic.fc.out_features == 1


def test_critic_forward_matches_plain_reference():
    torch.manual_seed(0)
    critic = LocalCritic(input_size=32, channels=4).double()
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    h = x
    for conv in [m for m in critic.modules() if isinstance(m, torch.nn.Conv2d)]:
        h = F.leaky_relu(F.conv2d(F.pad(h, (2, 2, 2, 2)), conv.weight, conv.bias, stride=2), 0.2)
    expected = h.reshape(3, -1) @ critic.fc.weight[0] + critic.fc.bias[0]
    out = critic(x)
    assert out.shape == (3,)
    torch.testing.assert_close(out, expected)


def test_critic_rejects_wrong_size():
    with pytest.raises(ValueError, match="expects"):
        GlobalCritic(input_size=64, channels=4)(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="multiple of 16"):
        LocalCritic(input_size=40)


def random_masks(n: int, height: int, width: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, 1, height, width), dtype=np.float32)
    for i in range(n - 1):  # the last sample has no hole
        for _ in range(rng.integers(1, 4)):
            top, left = rng.integers(0, height - 1), rng.integers(0, width - 1)
            masks[
                i,
                0,
                top : top + rng.integers(1, height // 2),
                left : left + rng.integers(1, width // 2),
            ] = 1
    return torch.from_numpy(masks)


def test_hole_boxes_vs_nonzero():
    masks = random_masks(6, 17, 23, seed=1)
    boxes = hole_boxes(masks)
    for i in range(6):
        ys, xs = np.nonzero(masks[i, 0].numpy())
        expected = (
            [0, 0, 17, 23] if len(ys) == 0 else [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]
        )
        assert boxes[i].tolist() == expected


@pytest.mark.parametrize("size", [8, 16, 40])
def test_crop_hole_boxes_vs_manual_crop_and_resize(size):
    torch.manual_seed(2)
    masks = random_masks(5, 30, 26, seed=size)
    images = torch.randn(5, 3, 30, 26, dtype=torch.float64)
    out = crop_hole_boxes(images, masks, size)
    assert out.shape == (5, 3, size, size) and out.dtype == torch.float64
    for i in range(5):
        ys, xs = np.nonzero(masks[i, 0].numpy())
        if len(ys):
            crop = images[i : i + 1, :, ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        else:
            crop = images[i : i + 1]  # no hole: the whole image
        expected = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False)
        torch.testing.assert_close(out[i : i + 1], expected)


def test_crop_hole_boxes_single_pixel_hole_and_mask_crop():
    mask = torch.zeros(1, 1, 10, 10)
    mask[0, 0, 4, 7] = 1
    images = torch.randn(1, 3, 10, 10)
    out = crop_hole_boxes(images, mask, 4)
    torch.testing.assert_close(out, images[:, :, 4:5, 7:8].expand(1, 3, 4, 4))
    assert torch.equal(crop_hole_boxes(mask, mask, 4), torch.ones(1, 1, 4, 4))


def test_crop_hole_boxes_is_differentiable():
    masks = random_masks(2, 7, 6, seed=3)
    images = torch.randn(2, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: crop_hole_boxes(x, masks, 5), (images,))
    crop_hole_boxes(images, masks, 5).sum().backward()
    # Pixels outside the (first sample's) box get no gradient.
    ys, xs = np.nonzero(masks[0, 0].numpy())
    outside = torch.ones(7, 6, dtype=torch.bool)
    outside[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = False
    assert images.grad[0][:, outside].abs().sum() == 0


def test_crop_hole_boxes_rejects_mismatch():
    with pytest.raises(ValueError, match="must match"):
        crop_hole_boxes(torch.zeros(2, 3, 8, 8), torch.zeros(1, 1, 8, 8), 4)


@pytest.mark.parametrize(
    "critic", [LocalCritic(input_size=32, channels=8), GlobalCritic(input_size=32, channels=8)]
)
def test_critic_layers_start_like_the_authors_tensorflow_code(critic):
    """Glorot-uniform weights and zero biases (tf.layers.conv2d/dense defaults) on every layer."""
    layers = [m for m in critic.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(layers) == 5
    for layer in layers:
        fan_out, fan_in = layer.weight.shape[0], layer.weight.shape[1]
        receptive = layer.weight[0, 0].numel()
        bound = (6.0 / ((fan_in + fan_out) * receptive)) ** 0.5
        assert bound * 0.8 < layer.weight.abs().max() <= bound
        assert torch.count_nonzero(layer.bias) == 0
