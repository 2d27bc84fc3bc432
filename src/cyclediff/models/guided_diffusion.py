"""guided-diffusion / improved-diffusion checkpoints (OpenAI's ADM, ILVR's and the paper's AFHQ models) as
diffusers ``UNet2DModel`` s, so that they run through everything a :class:`PixelDenoiser` runs through.

No architecture of our own: the flags of guided-diffusion's ``create_model`` become a ``UNet2DModel`` config, the
checkpoint's keys are renamed onto it (its fused ``qkv`` split into ``to_q`` / ``to_k`` / ``to_v`` in either head
order), and the diffusion flags become a DDPM scheduler config. A flag that diffusers cannot represent, or a state
dict that does not fit the flags (a key missing or left over, a shape), is one clear error naming it.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ..checks import json_object
from ..errors import CycleDiffError
from .pixel import PixelDenoiser, set_attention_heads

NUM_CLASSES = 1000  # guided-diffusion's label embedding size (ImageNet)
DEFAULT_MULT = {512: (0.5, 1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4)}
MODEL_FLAGS: dict[str, Any] = {  # create_model's arguments and their defaults
    "image_size": 64, "num_channels": 128, "num_res_blocks": 2, "channel_mult": "", "learn_sigma": False,
    "class_cond": False, "use_checkpoint": False, "attention_resolutions": "16,8", "num_heads": 4,
    "num_head_channels": -1, "num_heads_upsample": -1, "use_scale_shift_norm": True, "dropout": 0.0,
    "resblock_updown": False, "use_fp16": False, "use_new_attention_order": False,
}
DIFFUSION_FLAGS: dict[str, Any] = {  # create_gaussian_diffusion's arguments that change sampling
    "diffusion_steps": 1000, "noise_schedule": "linear", "sigma_small": False, "predict_xstart": False,
    "rescale_timesteps": False, "timestep_respacing": "",
}
IGNORED = {"use_kl", "rescale_learned_sigmas", "batch_size", "lr", "microbatch", "ema_rate", "log_interval",
           "save_interval", "resume_checkpoint", "weight_decay", "lr_anneal_steps", "fp16_scale_growth",
           "schedule_sampler", "data_dir", "clip_denoised", "num_samples", "use_ddim", "model_path",
           "classifier_path", "classifier_scale"}  # training / sampling-script flags: no effect on the model


# ---------------------------------------------------------------------------------------------------- flags
def read_flags(flags: dict[str, Any] | str | Path) -> dict[str, Any]:
    """Flags from a dict, a JSON file or text, or guided-diffusion's command line ("--image_size 256 --learn_sigma
    True ..."), with every flag checked and defaults filled in."""
    if isinstance(flags, str) and flags.lstrip().startswith("{"):
        flags = json_object(flags, "the flags (JSON text)")
    if isinstance(flags, dict):
        raw = dict(flags)
    elif isinstance(flags, Path) or (isinstance(flags, str) and not flags.lstrip().startswith("--")):
        path = Path(flags)
        try:
            text = path.read_text()
        except OSError as err:
            raise CycleDiffError(f"cannot read the flags file {path}: {err}") from err
        raw = json_object(text, f"the flags file {path}")
    else:
        raw = _parse_command_line(flags)
    unknown = set(raw) - set(MODEL_FLAGS) - set(DIFFUSION_FLAGS) - IGNORED
    if unknown:
        raise CycleDiffError(f"unknown guided-diffusion flags {sorted(unknown)}; known: "
                             f"{sorted(set(MODEL_FLAGS) | set(DIFFUSION_FLAGS))}")
    out = {**MODEL_FLAGS, **DIFFUSION_FLAGS}
    for key, value in raw.items():
        if key in out:
            out[key] = _typed(key, value, out[key])
    return out


def _parse_command_line(text: str) -> dict[str, Any]:
    words = shlex.split(text)
    if len(words) % 2:
        raise CycleDiffError(f"guided-diffusion flags come in pairs (--name value); got {text!r}")
    flags = {}
    for name, value in zip(words[::2], words[1::2]):
        if not name.startswith("--"):
            raise CycleDiffError(f"expected a flag like --image_size, got {name!r}")
        flags[name[2:]] = value
    return flags


def _typed(key: str, value: Any, default: Any) -> Any:
    """A flag's value in its default's type (strings from a command line: "True", "256", "0.1")."""
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if isinstance(default, float):
            return float(value)
        return "" if value is None else str(value)
    except (TypeError, ValueError) as err:
        raise CycleDiffError(f"flag {key} must be like {default!r}; got {value!r}") from err


# ---------------------------------------------------------------------------------------------------- configs
def unet_config(flags: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int] | None]:
    """The ``UNet2DModel`` config of ``create_model(**flags)``, and the head counts per block when one head width
    does not fit every attention layer (None otherwise); refuses what diffusers cannot represent."""
    f = flags
    size, mc = f["image_size"], f["num_channels"]
    if f["channel_mult"]:
        mult = tuple(float(m) for m in str(f["channel_mult"]).split(","))
    elif size in DEFAULT_MULT:
        mult = DEFAULT_MULT[size]
    else:
        raise CycleDiffError(f"image_size {size} has no default channel_mult; pass channel_mult (e.g. 1,2,2)")
    channels = [int(mc * m) for m in mult]
    if channels[0] != mc:
        raise CycleDiffError(f"channel_mult starting at {mult[0]:g} (the first level has {channels[0]} channels, the "
                             f"time embedding {mc}) cannot be represented by diffusers' UNet2DModel")
    attention_ds = {size // int(r) for r in str(f["attention_resolutions"]).split(",") if r}
    attn_levels = [2**level in attention_ds for level in range(len(mult))]
    head_dim = _head_dim(f, [channels[i] for i, a in enumerate(attn_levels) if a] + [channels[-1]])
    heads = None if head_dim else attention_heads(f)
    updown = "resnet" if f["resblock_updown"] else "conv"
    plain_down = "ResnetDownsampleBlock2D" if f["resblock_updown"] else "DownBlock2D"
    plain_up = "ResnetUpsampleBlock2D" if f["resblock_updown"] else "UpBlock2D"
    return {
        "sample_size": size, "in_channels": 3, "out_channels": 6 if f["learn_sigma"] else 3,
        "layers_per_block": f["num_res_blocks"], "block_out_channels": channels,
        "down_block_types": ["AttnDownBlock2D" if a else plain_down for a in attn_levels],
        "up_block_types": ["AttnUpBlock2D" if a else plain_up for a in reversed(attn_levels)],
        "downsample_type": updown, "upsample_type": updown, "attention_head_dim": head_dim,
        "norm_num_groups": 32, "attn_norm_num_groups": 32, "norm_eps": 1e-5, "act_fn": "silu",
        "time_embedding_type": "positional",
        "flip_sin_to_cos": True, "freq_shift": 0, "downsample_padding": 1, "dropout": float(f["dropout"]),
        "resnet_time_scale_shift": "scale_shift" if f["use_scale_shift_norm"] else "default",
        "num_class_embeds": NUM_CLASSES if f["class_cond"] else None,
    }, heads


def _head_dim(f: dict[str, Any], attn_channels: list[int]) -> int | None:
    """The config's one head width: guided-diffusion's num_head_channels, or the width its head counts give
    when it is the same at every attention layer; None when the counts give several widths (ImageNet 128's
    ADM): then :func:`attention_heads` sets each layer's count."""
    if f["num_head_channels"] != -1:
        return f["num_head_channels"]
    up = attention_heads(f)["up"]
    widths = {c // f["num_heads"] for c in attn_channels} | {c // up for c in attn_channels[:-1]}
    return widths.pop() if len(widths) == 1 else None


def attention_heads(f: dict[str, Any]) -> dict[str, int]:
    """Head counts by count: the down and middle blocks' (num_heads) and the up blocks' (num_heads_upsample)."""
    return {"down": f["num_heads"], "up": f["num_heads_upsample"] if f["num_heads_upsample"] != -1 else f["num_heads"]}


def scheduler_config(flags: dict[str, Any]) -> dict[str, Any]:
    """The DDPM scheduler config of ``create_gaussian_diffusion``: β schedule (linear scaled to the number of
    steps, or cosine), variance (learned range; else fixed-large unless sigma_small), prediction, and respacing
    as diffusers' linspace spacing (guided-diffusion's "N" is round(linspace(0, T − 1, N)))."""
    f, steps = flags, flags["diffusion_steps"]
    if f["rescale_timesteps"]:
        raise CycleDiffError("rescale_timesteps=True (timesteps scaled to 0..1000 for the model) is not supported")
    if f["noise_schedule"] == "linear":
        scale = 1000 / steps
        betas = {"beta_schedule": "linear", "beta_start": scale * 0.0001, "beta_end": scale * 0.02}
    elif f["noise_schedule"] == "cosine":
        betas = {"beta_schedule": "squaredcos_cap_v2"}
    else:
        raise CycleDiffError(f"noise_schedule must be linear or cosine; got {f['noise_schedule']!r}")
    variance = "learned_range" if f["learn_sigma"] else ("fixed_small" if f["sigma_small"] else "fixed_large")
    return {"_class_name": "DDPMScheduler", "num_train_timesteps": steps, **betas, "variance_type": variance,
            "prediction_type": "sample" if f["predict_xstart"] else "epsilon", "clip_sample": True,
            "clip_sample_range": 1.0, "timestep_spacing": "linspace", "steps_offset": 0}


# ---------------------------------------------------------------------------------------------------- weights
def _resblock(src: str, dst: str) -> Iterator[tuple[str, str]]:
    for a, b in (("in_layers.0", "norm1"), ("in_layers.2", "conv1"), ("emb_layers.1", "time_emb_proj"),
                 ("out_layers.0", "norm2"), ("out_layers.3", "conv2"), ("skip_connection", "conv_shortcut")):
        yield f"{src}.{a}", f"{dst}.{b}"


def _layout(config: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(guided-diffusion prefix, diffusers prefix, kind) for every module, in create_model's order."""
    yield "time_embed.0", "time_embedding.linear_1", "plain"
    yield "time_embed.2", "time_embedding.linear_2", "plain"
    yield "label_emb", "class_embedding", "plain"
    yield "input_blocks.0.0", "conv_in", "plain"
    levels, n = len(config["block_out_channels"]), config["layers_per_block"]
    idx = 1
    for level, kind in enumerate(config["down_block_types"]):
        for j in range(n):
            yield f"input_blocks.{idx}.0", f"down_blocks.{level}.resnets.{j}", "res"
            if kind.startswith("Attn"):
                yield f"input_blocks.{idx}.1", f"down_blocks.{level}.attentions.{j}", "attn"
            idx += 1
        if level != levels - 1:
            down = "res" if config["downsample_type"] == "resnet" else "plain"
            yield f"input_blocks.{idx}.0" + ("" if down == "res" else ".op"), f"down_blocks.{level}.downsamplers.0" + (
                "" if down == "res" else ".conv"), down
            idx += 1
    yield "middle_block.0", "mid_block.resnets.0", "res"
    yield "middle_block.1", "mid_block.attentions.0", "attn"
    yield "middle_block.2", "mid_block.resnets.1", "res"
    idx = 0
    for block, kind in enumerate(config["up_block_types"]):
        for j in range(n + 1):
            yield f"output_blocks.{idx}.0", f"up_blocks.{block}.resnets.{j}", "res"
            pos = 1
            if kind.startswith("Attn"):
                yield f"output_blocks.{idx}.1", f"up_blocks.{block}.attentions.{j}", "attn"
                pos = 2
            if block != levels - 1 and j == n:
                up = "res" if config["upsample_type"] == "resnet" else "plain"
                yield f"output_blocks.{idx}.{pos}" + ("" if up == "res" else ".conv"), \
                    f"up_blocks.{block}.upsamplers.0" + ("" if up == "res" else ".conv"), up
            idx += 1
    yield "out.0", "conv_norm_out", "plain"
    yield "out.2", "conv_out", "plain"


def convert_state_dict(state: dict[str, torch.Tensor], config: dict[str, Any], *, head_dim: int | None,
                       heads: dict[str, int] | None, new_attention_order: bool) -> dict[str, torch.Tensor]:
    """A guided-diffusion ``UNetModel`` state dict renamed (and its qkv split) onto ``UNet2DModel(**config)``."""
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(key: str) -> torch.Tensor | None:
        if key in state:
            used.add(key)
            return state[key]
        return None

    for src, dst, kind in _layout(config):
        if kind == "attn":
            count = None if heads is None else heads["up" if dst.startswith("up_blocks") else "down"]
            _attention(src, dst, take, out, head_dim, count, new_attention_order)
            continue
        pairs = _resblock(src, dst) if kind == "res" else [(src, dst)]
        for a, b in pairs:
            for leaf in ("weight", "bias"):
                value = take(f"{a}.{leaf}")
                if value is not None:
                    out[f"{b}.{leaf}"] = value
    left = sorted(set(state) - used)
    if left:
        raise CycleDiffError(f"the checkpoint has keys the flags do not account for, e.g. {left[:3]} "
                             f"({len(left)} in all); check the flags against the model's README")
    return out


def _attention(src: str, dst: str, take: Any, out: dict[str, torch.Tensor], head_dim: int | None,
               heads: int | None, new_order: bool) -> None:
    """guided-diffusion's AttentionBlock (norm, fused qkv as 1×1 conv1d, proj_out) → diffusers Attention."""
    for a, b in (("norm", "group_norm"), ("proj_out", "to_out.0")):
        for leaf in ("weight", "bias"):
            value = take(f"{src}.{a}.{leaf}")
            if value is not None:
                out[f"{dst}.{b}.{leaf}"] = value.reshape(value.shape[0], -1) if leaf == "weight" and a == "proj_out" \
                    else value
    for leaf in ("weight", "bias"):
        qkv = take(f"{src}.qkv.{leaf}")
        if qkv is None:
            continue
        channels = qkv.shape[0] // 3
        width = head_dim or channels // heads
        rows = qkv.reshape(3 * channels, -1)
        if new_order:  # q, k, v each then split into heads
            q, k, v = rows.split(channels)
        else:  # legacy: heads first, each head's rows holding its q, k, v
            per_head = rows.reshape(channels // width, 3, width, -1)
            q, k, v = (per_head[:, i].reshape(channels, -1) for i in range(3))
        for name, value in (("to_q", q), ("to_k", k), ("to_v", v)):
            out[f"{dst}.{name}.{leaf}"] = value if leaf == "weight" else value.reshape(-1)


# ---------------------------------------------------------------------------------------------------- loading
def load_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A guided-diffusion ``.pt`` state dict, loaded with ``weights_only=True`` (never running code from the file),
    or a ``.safetensors`` file of the same keys."""
    path = Path(path)
    if not path.is_file():
        raise CycleDiffError(f"no such checkpoint file: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - pickle, zip and safetensors errors all mean "not a state dict"
        raise CycleDiffError(f"cannot load {path} as a weights-only state dict (a checkpoint that needs code to "
                             f"unpickle is refused): {str(err).splitlines()[0]}") from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CycleDiffError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return state


def build_unet(state: dict[str, torch.Tensor], flags: dict[str, Any]) -> Any:
    """The ``UNet2DModel`` of ``flags`` holding ``state``'s weights; every key and shape checked."""
    from diffusers import UNet2DModel

    config, heads = unet_config(flags)
    unet = UNet2DModel(**config)
    if heads is not None:
        set_attention_heads(unet, heads)
    converted = convert_state_dict(state, config, head_dim=config["attention_head_dim"], heads=heads,
                                   new_attention_order=flags["use_new_attention_order"])
    expected = unet.state_dict()
    extra = [k for k in converted if k not in expected]
    if extra:  # e.g. a norm diffusers has no place for: the flags describe another architecture
        raise CycleDiffError(f"the checkpoint has weights this UNet2DModel has no place for, e.g. {extra[:3]} "
                             "(diffusers names); check the flags against the model's README")
    missing = [k for k in expected if k not in converted]
    if missing:
        raise CycleDiffError(f"the checkpoint lacks weights the flags call for, e.g. {missing[:3]} (diffusers names; "
                             f"{len(missing)} in all); check the flags against the model's README")
    for key, value in converted.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise CycleDiffError(f"{key}: the checkpoint's shape {tuple(value.shape)} does not fit the flags' "
                                 f"{tuple(expected[key].shape)}; check num_channels / channel_mult / heads")
    unet.load_state_dict({k: v.float() for k, v in converted.items()}, strict=True)
    return (unet.to(torch.float16) if flags["use_fp16"] else unet), heads


def from_guided_diffusion(checkpoint: str | Path, flags: dict[str, Any] | str | Path, *,
                          dtype: torch.dtype | None = None, device: str | torch.device | None = None) -> Any:
    """A :class:`PixelDenoiser` from a guided-diffusion / improved-diffusion checkpoint and its flags (a dict, a
    JSON file, or the command line from the model's README). ``use_fp16`` gives float16 weights unless ``dtype``
    says otherwise; the scheduler follows the diffusion flags (see :func:`scheduler_config`)."""

    parsed = read_flags(flags)
    unet, _ = build_unet(load_checkpoint(checkpoint), parsed)
    if dtype is not None:
        unet = unet.to(dtype)
    if device is not None:
        unet = unet.to(device)
    return PixelDenoiser(unet, scheduler_config(parsed), model_id=str(checkpoint))


def convert(checkpoint: str | Path, flags: dict[str, Any] | str | Path, out: str | Path) -> Path:
    """Write a diffusers pipeline folder (``unet/``, ``scheduler/``, ``model_index.json``) that ``--model DIR`` and
    ``PixelDenoiser.from_pretrained(DIR)`` load; a folder ``out`` is replaced whole, atomically (written beside it,
    then swapped in: never merged with the model it held)."""
    from diffusers import DDPMPipeline, DDPMScheduler

    from .._files import readable_as_umask
    from .._folders import atomic_folder

    parsed = read_flags(flags)
    unet, heads = build_unet(load_checkpoint(checkpoint), parsed)
    pipe = DDPMPipeline(unet=unet, scheduler=DDPMScheduler.from_config(scheduler_config(parsed)))

    def write(folder: Path) -> None:
        pipe.save_pretrained(folder)
        if heads is not None:  # what UNet2DModel's config cannot say; PixelDenoiser.from_pretrained applies it
            (folder / "unet" / "cyclediff.json").write_text(json.dumps({"attention_heads": heads}, indent=1) + "\n")
        for path in folder.rglob("*"):  # safetensors writes 0600: as readable as any file the user writes
            if path.is_file():
                readable_as_umask(path)

    return atomic_folder(out, write)
