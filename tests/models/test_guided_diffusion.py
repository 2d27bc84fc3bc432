"""guided-diffusion / improved-diffusion checkpoints: the converted UNet2DModel against outputs computed by
openai/guided-diffusion's own code (tests/fixtures/guided_diffusion), our ancestral step against its
p_mean_variance, the flags it cannot represent, and damaged checkpoints."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from cyclediff.cli import main
from cyclediff.errors import CycleDiffError
from cyclediff.models import PixelDenoiser, from_guided_diffusion, load
from cyclediff.models.guided_diffusion import read_flags, scheduler_config
from cyclediff.schedule import Schedule
from cyclediff.transitions import transition

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "guided_diffusion"  # its README says how they were made
KINDS = ["adm_afhq_like", "iddpm_cosine_like"]


def fixture(kind: str) -> tuple[Path, Path, dict[str, torch.Tensor]]:
    folder = FIXTURES / kind
    return folder / "model.pt", folder / "flags.json", load_file(str(folder / "expected.safetensors"))


def output(den: PixelDenoiser, x: torch.Tensor, t: torch.Tensor, **kw) -> torch.Tensor:
    with torch.no_grad():
        return den.unet(x.to(den.dtype), t, **kw).sample.float()


@pytest.mark.parametrize("kind", KINDS)
def test_converted_models_reproduce_guided_diffusion_outputs(kind, tmp_path):
    ckpt, flags, expected = fixture(kind)
    den = from_guided_diffusion(ckpt, flags)
    assert (output(den, expected["x"], expected["t"]) - expected["out"]).abs().max() < 1e-4
    # the CLI's folder loads through --model / load() and gives the same outputs
    res = CliRunner().invoke(main, ["convert", "guided-diffusion", str(ckpt), "--flags", str(flags),
                                    "--out", str(tmp_path / "conv")])
    assert res.exit_code == 0, res.output
    umask = os.umask(0o022)
    os.umask(umask)
    for path in (tmp_path / "conv").rglob("*.safetensors"):  # as readable as any file the user writes, not 0600
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path
    folder = load(tmp_path / "conv")
    assert isinstance(folder, PixelDenoiser)
    assert (output(folder, expected["x"], expected["t"]) - expected["out"]).abs().max() < 1e-4


@pytest.mark.parametrize("kind", KINDS)
def test_our_ancestral_step_is_guided_diffusions_respaced_step(kind):
    """p_mean_variance of the 100-step respaced diffusion (clip_denoised=False): mean and log-variance."""
    ckpt, flags, expected = fixture(kind)
    den = from_guided_diffusion(ckpt, flags)
    schedule = Schedule.from_config({**scheduler_config(read_flags(flags)), "clip_sample": False})
    grid = schedule.grid(100)[::-1]  # ascending, as guided-diffusion indexes it
    x = expected["x"].double()
    for j, index in enumerate(expected["respaced_index"].tolist()):
        t, s = grid[index], (grid[index - 1] if index > 0 else -1)
        assert t == int(expected["respaced_timestep"][j])
        out = output(den, x[j:j + 1], torch.tensor([t])).double()
        step = transition(schedule, out, x[j:j + 1], t, s, sampler="ddpm", eta=1.0)
        log_var = 2 * torch.log(step.std) if isinstance(step.std, torch.Tensor) else 2 * math.log(step.std)
        assert (step.mean - expected["mean"][j:j + 1].double()).abs().max() < 1e-5
        assert (log_var - expected["log_variance"][j:j + 1].double()).abs().max() < 1e-5
        assert (step.x0 - expected["pred_xstart"][j:j + 1].double()).abs().max() < 1e-5


def test_heads_given_by_count_are_the_same_model():
    """num_heads=4 at 64 channels is num_head_channels=16: the same converted model, the same outputs."""
    ckpt, flags, expected = fixture("adm_afhq_like")
    by_count = {**json.loads(flags.read_text()), "num_heads": 4, "num_head_channels": -1}
    den = from_guided_diffusion(ckpt, by_count)
    assert (output(den, expected["x"], expected["t"]) - expected["out"]).abs().max() < 1e-4


def test_head_counts_that_give_several_widths_are_set_per_layer(tmp_path):
    """num_heads=4 but num_heads_upsample=2 (widths 16 and 32, as ImageNet-128's ADM has 128 / 192 / 256): no one
    config width fits, so each attention layer gets its count, recorded in cyclediff.json beside the converted
    UNet; a patched layer computes 2-head attention exactly."""
    ckpt, flags, expected = fixture("adm_afhq_like")
    f = {**json.loads(flags.read_text()), "num_head_channels": -1, "num_heads": 4, "num_heads_upsample": 2}
    den = from_guided_diffusion(ckpt, f)
    attn = dict(den.unet.named_modules())
    assert attn["mid_block.attentions.0"].heads == 4 and attn["down_blocks.1.attentions.0"].heads == 4
    up = attn["up_blocks.0.attentions.0"]
    assert up.heads == 2 and up.scale == 32**-0.5
    x = torch.randn(1, 64, 4, 4, generator=torch.Generator().manual_seed(0))
    tokens = up.group_norm(x).flatten(2).transpose(1, 2)  # (1, 16, 64)
    q, k, v = (lin(tokens).reshape(1, 16, 2, 32).transpose(1, 2) for lin in (up.to_q, up.to_k, up.to_v))
    mixed = torch.softmax(q @ k.transpose(-1, -2) / 32**0.5, dim=-1) @ v  # (1, 2, 16, 32)
    reference = up.to_out[0](mixed.transpose(1, 2).reshape(1, 16, 64)).transpose(1, 2).reshape(x.shape) + x
    with torch.no_grad():
        torch.testing.assert_close(up(x), reference, rtol=1e-5, atol=1e-5)
    other = from_guided_diffusion(ckpt, {**f, "num_heads_upsample": 4})
    assert (output(den, expected["x"], expected["t"]) - output(other, expected["x"], expected["t"])).abs().max() > 1e-6
    res = CliRunner().invoke(main, ["convert", "guided-diffusion", str(ckpt), "--flags", json.dumps(f),
                                    "--out", str(tmp_path / "conv")])  # JSON text works as well as a file
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "conv" / "unet" / "cyclediff.json").read_text())["attention_heads"] == {
        "down": 4, "up": 2}
    reloaded = load(tmp_path / "conv")
    assert torch.equal(output(reloaded, expected["x"], expected["t"]), output(den, expected["x"], expected["t"]))


def test_the_new_attention_order_splits_qkv_its_own_way(tmp_path):
    """The same weights with each qkv laid out in the new order (q, k, v first, then heads) instead of the legacy
    one (heads first): with use_new_attention_order the outputs must not change."""
    ckpt, flags, expected = fixture("adm_afhq_like")
    state = torch.load(ckpt, weights_only=True)
    heads, width = 4, 16
    for key in [k for k in state if k.endswith("qkv.weight") or k.endswith("qkv.bias")]:
        legacy = state[key]
        rows = legacy.reshape(heads, 3, width, *legacy.shape[1:])  # (head, q/k/v, width, …)
        state[key] = rows.transpose(0, 1).reshape(legacy.shape)  # (q/k/v, head, width, …)
    torch.save(state, tmp_path / "new.pt")
    den = from_guided_diffusion(tmp_path / "new.pt", {**json.loads(flags.read_text()), "use_new_attention_order": True})
    # read right: float32 rounding (1e-7 measured); read in the legacy order: the attention is wrong (6e-4 with
    # these random weights, in which attention contributes little)
    assert (output(den, expected["x"], expected["t"]) - expected["out"]).abs().max() < 1e-6
    legacy_read = from_guided_diffusion(tmp_path / "new.pt", flags)
    assert (output(legacy_read, expected["x"], expected["t"]) - expected["out"]).abs().max() > 1e-5


def test_class_labels_add_the_label_embedding_to_the_time_embedding(tmp_path):
    """class_cond: emb = time_embed(t) + label_emb[y]. A label whose embedding is v gives the outputs of the
    unconditional model whose last time-embedding bias is shifted by v."""
    ckpt, flags, expected = fixture("adm_afhq_like")
    state = torch.load(ckpt, weights_only=True)
    g = torch.Generator().manual_seed(0)
    state["label_emb.weight"] = 0.1 * torch.randn(1000, 128, generator=g)
    torch.save(state, tmp_path / "cond.pt")
    den = from_guided_diffusion(tmp_path / "cond.pt", {**json.loads(flags.read_text()), "class_cond": True})
    assert den.num_classes == 1000
    y = torch.tensor([3, 977])
    got = output(den, expected["x"], expected["t"], class_labels=y)
    for j in range(2):
        shifted = torch.load(ckpt, weights_only=True)
        shifted["time_embed.2.bias"] = shifted["time_embed.2.bias"] + state["label_emb.weight"][y[j]]
        torch.save(shifted, tmp_path / "shifted.pt")
        ref = output(from_guided_diffusion(tmp_path / "shifted.pt", flags), expected["x"][j:j + 1],
                     expected["t"][j:j + 1])
        assert (got[j:j + 1] - ref).abs().max() < 1e-5
    assert (got - expected["out"]).abs().max() > 1e-3  # the labels did change the outputs


def test_flags_from_the_command_line_and_fp16():
    ckpt, flags, expected = fixture("iddpm_cosine_like")
    f = json.loads(flags.read_text())
    line = " ".join(f"--{k} {v}" for k, v in f.items()) + " --use_fp16 True"
    den = from_guided_diffusion(ckpt, line)
    assert den.dtype == torch.float16
    assert (output(den, expected["x"], expected["t"]) - expected["out"]).abs().max() < 2e-2
    config = scheduler_config(read_flags(line))
    assert config["beta_schedule"] == "squaredcos_cap_v2" and config["variance_type"] == "fixed_large"
    assert config["timestep_spacing"] == "linspace"


def _flags(**update) -> dict:
    return {**json.loads((FIXTURES / "adm_afhq_like" / "flags.json").read_text()), **update}


@pytest.mark.parametrize("damage, flags, message", [
    (lambda s: s.pop("out.2.weight"), {}, "lacks weights"),
    (lambda s: s.update({"input_blocks.99.0.in_layers.0.weight": torch.zeros(3)}), {}, "do not account for"),
    (lambda s: None, {"num_channels": 64}, "does not fit the flags"),
    (lambda s: None, {"num_res_blocks": 2}, "do not account for|lacks weights"),
    (lambda s: None, {"learn_sigma": False}, "does not fit the flags"),
    (lambda s: None, {"image_size": 512, "channel_mult": ""}, "cannot be represented"),
    (lambda s: None, {"image_size": 48, "channel_mult": ""}, "no default channel_mult"),
    (lambda s: None, {"resblock_updwn": True}, "unknown guided-diffusion flags"),
    (lambda s: None, {"learn_sigma": "maybe"}, "flag learn_sigma"),
])
def test_checkpoints_that_do_not_fit_their_flags_get_one_clear_error(tmp_path, damage, flags, message):
    state = torch.load(FIXTURES / "adm_afhq_like" / "model.pt", weights_only=True)
    damage(state)
    torch.save(state, tmp_path / "m.pt")
    with pytest.raises(CycleDiffError, match=message):
        from_guided_diffusion(tmp_path / "m.pt", _flags(**flags))


def test_a_checkpoint_that_needs_code_to_unpickle_is_refused_and_never_run(tmp_path):
    class Bomb:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    torch.save({"time_embed.0.weight": Bomb()}, tmp_path / "evil.pt")
    with pytest.raises(CycleDiffError, match="weights-only"):
        from_guided_diffusion(tmp_path / "evil.pt", _flags())
    assert not (tmp_path / "pwned").exists()


def test_the_afhq_recipe_runs_end_to_end_on_converted_models(tmp_path):
    """examples/afhq: convert (here the fixture checkpoint stands in for the AFHQ models), then the job file with
    its settings (fewer steps, pixel features: the tiny models are 16x16), FID / KID / PSNR / SSIM recorded."""
    from cyclediff._images import save_image
    from cyclediff.jobs.run import load_job, run_job

    ckpt, flags, _ = fixture("adm_afhq_like")
    for name in ("afhq-cat", "afhq-dog"):
        res = CliRunner().invoke(main, ["convert", "guided-diffusion", str(ckpt), "--flags", str(flags),
                                        "--out", str(tmp_path / name)])
        assert res.exit_code == 0, res.output
    g = torch.Generator().manual_seed(0)
    for split in ("cat", "dog"):
        for i in range(2):
            save_image(torch.rand(3, 40, 40, generator=g), tmp_path / "afhq" / "val" / split / f"{split}{i}.png")
    recipe = (Path(__file__).resolve().parents[2] / "examples" / "afhq" / "cat2dog.toml").read_text()
    job_text = (recipe.replace('features = "inception"', 'features = "pixels"').replace('"256x256"', '"16x16"')
                .replace("steps = 1000", "steps = 20").replace("refine_steps = 100", "refine_steps = 2"))
    assert job_text.count("pixels") == 1 and "steps = 20" in job_text and "refine_steps = 2" in job_text
    (tmp_path / "cat2dog.toml").write_text(job_text)
    job = load_job(tmp_path / "cat2dog.toml")
    assert job.settings.strength == 0.85 and job.settings.eta == 0.1
    assert job.settings.source_model == str((tmp_path / "afhq-cat").resolve())
    report = run_job(job, progress=False)
    assert report.ok == 2 and report.failed == 0
    summary = json.loads((job.out / "summary.json").read_text())
    assert {"psnr", "ssim"} <= set(summary["mean_metrics"]) and {"fid", "kid"} <= set(summary["distribution"])
