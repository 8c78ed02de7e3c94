"""The generator's exponential moving average against a plain step-by-step reference."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from inpaintkit.weight_average import WeightAverage


def test_average_matches_the_textbook_recurrence_with_rampup():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ELU(), nn.Conv2d(4, 2, 1))
    average = WeightAverage(net, half_life=5.0, rampup=0.5)
    reference = {k: v.clone().double() for k, v in net.state_dict().items()}
    for step in range(1, 31):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p) * 0.1)
        average.update(net, step)
        half_life = min(5.0, 0.5 * step)  # the ramp-up caps it at 0.5, 1.0, ... until step 10
        decay = 0.5 ** (1.0 / half_life)
        for key, value in net.state_dict().items():
            reference[key] = decay * reference[key] + (1 - decay) * value.double()
    for key, value in average.average.state_dict().items():
        torch.testing.assert_close(value.double(), reference[key], rtol=0, atol=1e-6)
    # The average is frozen and separate from the network.
    assert not any(p.requires_grad for p in average.average.parameters())
    assert not torch.equal(average.average[0].weight, net[0].weight)


def test_half_life_means_half_the_weight_after_that_many_steps():
    average = WeightAverage(nn.Linear(1, 1), half_life=8.0)
    assert average.decay(1) ** 8 == pytest.approx(0.5)
    assert WeightAverage(nn.Linear(1, 1), half_life=8.0, rampup=0.1).decay(1) == pytest.approx(
        0.5**10
    )


def test_reset_copies_the_network():
    net = nn.Linear(3, 2)
    average = WeightAverage(net, half_life=4.0)
    with torch.no_grad():
        net.weight.fill_(2.0)
    average.reset(net)
    assert torch.equal(average.average.weight, net.weight)


@pytest.mark.parametrize("half_life, rampup", [(0.0, 0.0), (-1.0, 0.0), (4.0, -0.1)])
def test_bad_settings_are_refused(half_life, rampup):
    with pytest.raises(ValueError):
        WeightAverage(nn.Linear(1, 1), half_life, rampup)
