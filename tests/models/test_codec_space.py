"""Translation between two latent-diffusion models needs one latent space: the same VAE weights and the same
config, whatever folders the VAEs were loaded from (two fine-tunes of one SD were refused as "different VAEs" for
their ``_name_or_path``); a VAE with other weights or another scaling is still refused."""

from __future__ import annotations

import pytest
import torch

from cyclediff import IncompatibleModelError, translate
from cyclediff.models import check_same_space, load
from cyclediff.models.codec import vae_digest
from tiny_sd import photos, sd_pipeline


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """One SD saved three times: as is, with its UNet fine-tuned (other weights), with its VAE changed."""
    tmp = tmp_path_factory.mktemp("codec_space")
    pipe = sd_pipeline(tmp / "parts")
    pipe.save_pretrained(tmp / "base")
    with torch.no_grad():
        for p in pipe.unet.parameters():
            p.add_(0.01 * torch.randn_like(p))
    pipe.save_pretrained(tmp / "tuned")
    with torch.no_grad():
        pipe.vae.decoder.conv_out.bias.add_(0.1)
    pipe.save_pretrained(tmp / "other-vae")
    return tmp


def test_two_fine_tunes_with_one_vae_in_two_folders_translate(folders):
    base, tuned = load(folders / "base"), load(folders / "tuned")
    assert base.vae.config._name_or_path != tuned.vae.config._name_or_path
    check_same_space(base, tuned)
    out = translate(photos(1), base, tuned, steps=3, strength=0.8, source_condition="a cat",
                    target_condition="a dog", generator=torch.Generator().manual_seed(0)).images
    assert out.shape == (1, 3, 16, 16) and torch.isfinite(out).all()


def test_a_vae_with_other_weights_or_scaling_is_refused(folders):
    base = load(folders / "base")
    with pytest.raises(IncompatibleModelError, match="different VAEs"):
        check_same_space(base, load(folders / "other-vae"))
    scaled = load(folders / "tuned")
    scaled.vae.register_to_config(scaling_factor=0.5)
    with pytest.raises(IncompatibleModelError, match="different VAEs"):
        check_same_space(base, scaled)


def test_the_weights_digest_is_computed_once_per_vae(folders, monkeypatch):
    base, tuned = load(folders / "base"), load(folders / "tuned")
    first = vae_digest(base.vae)
    assert first == vae_digest(tuned.vae)
    monkeypatch.setattr(type(base.vae), "state_dict", lambda self, *a, **k: pytest.fail("hashed again"))
    assert vae_digest(base.vae) == first
    check_same_space(base, tuned)
