"""The memory options on a video family (Wan, the cheapest): --quantize int8 (optimum-quanto) on every transformer
of the pipeline, text encoders on the CPU, VAE tiling of clips, --offload (its hooks run with the CPU as the
execution device here; a CPU-only run is a one-line note) and a LoRA file from the CLI."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from test_video_configs import CFG, EXACT, clip, wan_pipe

from conftest import gens
from cyclediff import decode, edit, encode
from cyclediff._video import read_clip, write_clip
from cyclediff.cli import main
from cyclediff.models import load
from cyclediff.models.codec import to_model_space
from cyclediff.models.offload import offload
from cyclediff.sampler import sample_latent

FRAMES, SIZE = 5, (16, 32)
KW = dict(source_prompt="a cat", prompt="a dog", steps=2, guidance_scale=3.0)
# int8 weights (optimum-quanto, one scale per output channel): each weight within half a step, 1/254 of its
# channel's largest; the one-layer transformer's velocity then moves by ~0.4 % (measured) and a 2-step sample's
# latents by ~0.2 %; four whole steps of 1/127 bound the sample's relative change
INT8 = 4 / 127


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wan-memory")
    wan_pipe(tmp / "parts").save_pretrained(tmp / "wan")
    wan_pipe(tmp / "parts2", boundary=0.6).save_pretrained(tmp / "a14b")
    return tmp / "wan", tmp / "a14b"


def quantized(module: torch.nn.Module) -> bool:
    from optimum.quanto import QModuleMixin

    return any(isinstance(m, QModuleMixin) for m in module.modules())


@pytest.mark.parametrize("which", [0, 1], ids=["wan21", "wan22-a14b"])
def test_int8_quantizes_every_wan_transformer_and_samples_close_to_the_full_model(folders, which):
    folder = folders[which]
    full, model = load(str(folder)), load(str(folder), quantize="int8")
    nets = [model.transformer] + ([model.transformer_2] if which else [])
    assert all(quantized(n) for n in nets) and not quantized(model.pipe.vae)
    shape = (16, 2, SIZE[0] // 8, SIZE[1] // 8)
    z = sample_latent(full, 1, steps=2, eta=0, generator=gens(0), prompt="a red cat", sample_shape=shape, **CFG)
    a, b = decode(z, full), decode(z, model)
    change = float((a - b).norm() / a.norm())
    assert 1e-5 < change <= INT8, f"relative change of the int8 sample {change:.3g}"
    x0 = to_model_space(model, clip(FRAMES, SIZE), None)  # the quantized network's latent space is exact too
    code = encode(x0, model, steps=2, eta=1.0, generator=gens(1), prompt="a cat", **CFG)
    torch.testing.assert_close(decode(code, model), x0, rtol=0, atol=EXACT)


def test_text_encoders_on_the_cpu_and_vae_tiling_edit_a_clip_as_without_them(folders):
    x = clip(FRAMES, (32, 64))
    plain = edit(load(str(folders[0])), x, generator=gens(0), **KW).images
    model = load(str(folders[0]), text_encoders_on_cpu=True, vae_tiling=True)
    assert model.text_device == torch.device("cpu") and model.codec.vae.use_tiling
    torch.testing.assert_close(edit(model, x, generator=gens(0), **KW).images, plain, rtol=0, atol=1e-6)
    vae = model.codec.vae  # tiles smaller than the clip: the tiled paths run, the latent space stays exact
    vae.enable_tiling(tile_sample_min_height=16, tile_sample_min_width=16, tile_sample_stride_height=8,
                      tile_sample_stride_width=8)
    x0 = to_model_space(model, x, None)
    assert x0.shape == (1, 16, 2, 4, 8)
    assert float((x0 - to_model_space(load(str(folders[0])), x, None)).abs().max()) > 0  # tiles blended
    code = encode(x0, model, steps=2, eta=1.0, generator=gens(1), prompt="a cat", **CFG)
    torch.testing.assert_close(decode(code, model), x0, rtol=0, atol=EXACT)
    assert model.codec.decode(x0).shape == (1, 3, FRAMES, 32, 64)


@pytest.mark.parametrize("mode", ["model", "group"])
def test_offloaded_wan_runs_every_network_through_its_hooks(folders, mode):
    """With the CPU as the execution device the hooks move nothing: the same edit (the hooks' presence is what
    is checked: diffusers' offload registers them on the transformers, the text encoder and the VAE)."""
    plain = edit(load(str(folders[1])), clip(FRAMES, SIZE), generator=gens(0), **KW).images
    model = offload(load(str(folders[1])), mode, "cpu")
    for net in (model.transformer, model.transformer_2, model.pipe.text_encoder, model.pipe.vae):
        assert any(getattr(m, "_diffusers_hook", None) is not None or hasattr(m, "_hf_hook") for m in net.modules())
    out = edit(model, clip(FRAMES, SIZE), generator=gens(0), **KW).images
    torch.testing.assert_close(out, plain, rtol=0, atol=1e-6)


def cli(folder, clip_path, *extra: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["edit", str(clip_path), "--model", str(folder), "--source-prompt", "a cat",
                                    "--prompt", "a dog", "--steps", "2", "--guidance-scale", "3", *extra])
    return res.exit_code, res.output


def test_the_cli_takes_the_memory_options_and_a_lora_on_a_wan_clip(folders, tmp_path):
    from tiny_sd import make_lora

    write_clip(tmp_path / "cat.mp4", clip(FRAMES, SIZE)[0].transpose(0, 1), 10.0)
    code, out = cli(folders[0], tmp_path / "cat.mp4", "--offload", "model", "--out", str(tmp_path / "off"))
    assert code == 0 and "warning: --offload model moves weights between the CPU and a GPU; this run is on the CPU" \
        in out, out  # a CPU-only run: one line, then the edit without offloading
    code, out = cli(folders[0], tmp_path / "cat.mp4", "--offload", "model", "--text-encoders-on-cpu")
    assert code == 1 and "for runs without --offload" in out and len(out.strip().splitlines()) == 1
    code, out = cli(folders[0], tmp_path / "cat.mp4", "--quantize", "int8", "--text-encoders-on-cpu",
                    "--vae-tiling", "--out", str(tmp_path / "mem"))
    assert code == 0, out
    lora = make_lora(wan_pipe(tmp_path / "donor"), tmp_path / "lora", seed=7, gain=30.0)
    clips = {name: read_clip(next((tmp_path / name).glob("cat_a-dog_*.mp4"))) for name in ("off", "mem")}
    assert all(c.frames.shape == (FRAMES, 3, *SIZE) and c.fps == pytest.approx(10.0) for c in clips.values())
    code, out = cli(folders[0], tmp_path / "cat.mp4", "--lora", f"{lora}:0.8", "--frames", "--out",
                    str(tmp_path / "lora"))
    assert code == 0, out
    (written,) = (tmp_path / "lora").glob("cat_a-dog_*")  # PNG frames: 8-bit, not the codec's losses
    frames = read_clip(written).frames.transpose(0, 1)[None]
    x = read_clip(tmp_path / "cat.mp4").frames.transpose(0, 1)[None]
    styled = edit(load(str(folders[0]), lora=[(lora, 0.8)]), x, generator=gens(0), **KW).images
    assert float((frames - styled).abs().max()) <= 1 / 255 + 1e-6
    assert float((frames - edit(load(str(folders[0])), x, generator=gens(0), **KW).images).abs().max()) > 0.01
