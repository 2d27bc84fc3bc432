"""Tiny random models and configs shared by the tests. Nothing here reaches a model hub."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in a test may reach a model hub

import cyclediff.models  # noqa: E402, F401, I001 - first: its log filters quiet the optional backends' import notes
import pytest  # noqa: E402
import torch  # noqa: E402
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel  # noqa: E402
from diffusers.utils import logging as diffusers_logging  # noqa: E402

from cyclediff.models import PixelDenoiser  # noqa: E402

diffusers_logging.set_verbosity_error()


def tiny_unet(
    *, channels: int = 3, out_channels: int | None = None, num_classes: int | None = None, seed: int = 0,
    dtype: torch.dtype = torch.float32, size: int = 8,
) -> UNet2DModel:
    """A two-level UNet2DModel with random weights (about 30k parameters)."""
    torch.manual_seed(seed)
    unet = UNet2DModel(
        sample_size=size,
        in_channels=channels,
        out_channels=out_channels or channels,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        attention_head_dim=4,
        num_class_embeds=num_classes,
    )
    return unet.to(dtype).eval()


def gens(*seeds: int) -> list[torch.Generator]:
    """One CPU generator per seed (one per image of a batch)."""
    return [torch.Generator().manual_seed(s) for s in seeds]


def ddim_config(**kw):
    return dict(DDIMScheduler(**kw).config)


def ddpm_config(**kw):
    return dict(DDPMScheduler(**kw).config)


# (name, config, sampler) combinations that every exactness test runs through.
CONFIGS = {
    "ddim-default": ddim_config(),
    "ddim-sd": ddim_config(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                           set_alpha_to_one=False, steps_offset=1, clip_sample=False),
    "ddim-offset0-final-ab0": ddim_config(set_alpha_to_one=False, steps_offset=0),
    "ddim-trailing-cosine": ddim_config(beta_schedule="squaredcos_cap_v2", timestep_spacing="trailing"),
    "ddpm-small": ddpm_config(),
    "ddpm-large-linspace": ddpm_config(variance_type="fixed_large", timestep_spacing="linspace"),
    "ddpm-thresholding": ddpm_config(thresholding=True, sample_max_value=1.5, steps_offset=1),
}


@pytest.fixture
def gen():
    def make(seed: int) -> torch.Generator:
        return torch.Generator().manual_seed(seed)

    return make


def pixel(config=None, **unet_kw) -> PixelDenoiser:
    return PixelDenoiser(tiny_unet(**unet_kw), config if config is not None else ddim_config())


def images(batch: int = 2, channels: int = 3, size: int = 8, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, channels, size, size, generator=g, dtype=torch.float64) * 2 - 1).to(dtype)


class GaussianDataDenoiser:
    """The exact denoiser for data x0 ~ N(mu, s² I): E[x0 | x_t] in closed form, as an x0-prediction.

    With s = 0 the data is the single point mu and the model is perfect: its step mean equals the
    posterior mean of every encoding step.
    """

    model_id = "analytic"
    data_range = None

    def __init__(self, mu: torch.Tensor, s: float, config=None):
        from cyclediff import Schedule

        cfg = dict(config or ddpm_config(clip_sample=False))
        cfg["prediction_type"] = "sample"
        self.schedule = Schedule.from_config(cfg)
        self.mu, self.s = mu, s
        self.sample_shape = tuple(mu.shape)

    def schedule_for(self, shape):
        return self.schedule

    def check_sample(self, x):
        assert tuple(x.shape[1:]) == self.sample_shape

    def prepare_condition(self, batch_size, **condition):
        from cyclediff.models import Condition

        return Condition()

    def __call__(self, x_t, t, condition):
        ab = self.schedule.alpha_bar_at(t)
        mu = self.mu.to(x_t)
        gain = self.s**2 * ab**0.5 / (ab * self.s**2 + 1 - ab)
        return mu + gain * (x_t - ab**0.5 * mu)


def assert_same_draws(a, b, denoiser, *, rtol: float = 1e-5) -> None:
    """Two latents hold the same draws when the samples they make agree: the decoder lands on
    x_s = mean + std_k·ε_k, so ε_a and ε_b are the same code when std_k·(ε_a − ε_b) is within float32 rounding of
    the samples (``rtol`` of their magnitude). Comparing ε itself with a fixed tolerance is machine-dependent: two
    computations of one draw (a batched against a single network call, another CPU) differ by ULPs of x_s − mean,
    which ε divides by std_k — large where std_k is small. A residual step's ε is x_s − mean already."""
    from cyclediff.schedule import step_pairs
    from cyclediff.transitions import transition

    assert a.timesteps == b.timesteps and a.eps.shape == b.eps.shape, "the latents are on different grids"
    scale = max(1.0, float(a.x_start.abs().max()), float(b.x_start.abs().max()))
    torch.testing.assert_close(a.x_start, b.x_start, rtol=0, atol=rtol * scale)
    schedule = denoiser.schedule_for(tuple(a.x_start.shape))
    zero = torch.zeros_like(a.x_start)
    for k, (t, s) in enumerate(step_pairs(list(a.timesteps))):
        std = transition(schedule, zero, zero, t, s, sampler=a.sampler, eta=a.eta).std
        assert not isinstance(std, torch.Tensor), "a learned variance: compare the decoded samples instead"
        weight = 1.0 if a.residual[k] else std
        worst = float((weight * (a.eps[k] - b.eps[k])).abs().max())
        assert worst <= rtol * scale, f"step {k} (t={t} → {s}): std·|Δε| = {worst:.3g} > {rtol * scale:.3g}"


@pytest.fixture(scope="session")
def wan(tmp_path_factory):
    """A tiny Wan pipeline saved as a folder, built once per session (the clip tests only read it). It lives here,
    not in a tests/<room>/conftest.py: the test modules import this file as ``conftest``, and a second conftest.py
    would take that name in whichever order pytest collects them."""
    from tiny_wan import wan_pipeline

    folder = tmp_path_factory.mktemp("wan")
    wan_pipeline(folder / "build").save_pretrained(folder / "model")
    return folder / "model"
