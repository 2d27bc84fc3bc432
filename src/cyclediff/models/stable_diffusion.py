"""Latent diffusion (Stable Diffusion 1.x / 2.x / XL): a UNet on VAE latents, conditioned on CLIP text.

The adapter wraps a diffusers pipeline and uses its components and prompt encoding; the sampling maths is the
same code as for pixel models, run on the scaled VAE latents. Classifier-free guidance is part of the model
call (ε̂ = ε_u + w (ε_c − ε_u)); a scale of 1 needs no unconditional evaluation, a scale of 0 no conditional one.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .._noise import check_generators
from ..errors import CycleDiffError, IncompatibleModelError
from ..schedule import Schedule
from ._accel import Optimizable, UNetRunner
from ._compat import dtype_kwargs
from .base import Condition, DiscreteSteps, condition_scale, refuse_unknown, split_guided
from .codec import VaeCodec

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


def _as_list(value: Any, batch_size: int, name: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, (str, list, tuple)):
        raise IncompatibleModelError(f"{name} must be a string or a list of strings; got {value!r}")
    items = [value] * batch_size if isinstance(value, str) else list(value)
    if len(items) == 1:
        items = items * batch_size
    if len(items) != batch_size or not all(isinstance(p, str) for p in items):
        raise IncompatibleModelError(f"{name} must be a string or a list of {batch_size} strings (one per image)")
    return items


@contextlib.contextmanager
def _diffusers_quiet() -> Iterator[None]:
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(level)


def _check_not_legacy_pickle(path: Path) -> None:
    """Pickle checkpoints load only in PyTorch's zip format with ``weights_only``; a legacy (zip-less) pickle
    cannot be loaded safely, so it is refused with what to do instead."""
    import zipfile

    if path.suffix.lower() == ".safetensors":
        return
    if not zipfile.is_zipfile(path):
        raise CycleDiffError(
            f"{path} is a legacy pickle checkpoint (not PyTorch's zip format), which cannot be loaded without "
            "running code from the file; convert it to .safetensors where you trust it (e.g. torch.load then "
            "safetensors.torch.save_file) and pass that file"
        )


class StableDiffusion(DiscreteSteps, Optimizable):
    """A Stable Diffusion pipeline as a :class:`~cyclediff.models.Denoiser` over its VAE latents.

    >>> sd = StableDiffusion.from_pretrained("stable-diffusion-v1-5/stable-diffusion-v1-5", dtype=torch.float16)
    >>> sd = StableDiffusion.from_pretrained("model.safetensors")   # a single checkpoint file
    >>> sd = StableDiffusion.from_pipe(pipe)                       # an already-built diffusers pipeline

    Conditions: ``prompt`` (str or one per image), ``negative_prompt``, ``guidance_scale`` (1: no guidance).
    """

    data_range = None  # VAE latents are unbounded
    condition_keys = ("prompt", "negative_prompt", "guidance_scale")

    def __init__(self, pipe: Any, *, model_id: str | None = None) -> None:
        self._adopt(pipe, ("unet", "vae", "text_encoder", "tokenizer", "scheduler"),
                    "StableDiffusion needs a Stable Diffusion pipeline", model_id)
        self.unet = pipe.unet
        self.runner = UNetRunner(self.unet)
        self.schedule = Schedule.from_config(pipe.scheduler.config)
        self.is_xl = getattr(pipe, "text_encoder_2", None) is not None

    def _adopt(self, pipe: Any, parts: tuple[str, ...], needs: str, model_id: str | None) -> None:
        """What every text-to-image adapter does with its pipeline: check its parts, freeze every network in eval
        mode, silence its progress bars, start with no attention control and empty caches."""
        for part in parts:
            if getattr(pipe, part, None) is None:
                raise CycleDiffError(f"the pipeline has no {part}; {needs}")
        self.pipe, self.vae = pipe, pipe.vae
        self.attention_control: Any = None  # an AttentionControl while attention_edit(...) is active
        self._time_ids_cache: dict[tuple, torch.Tensor] = {}
        self._vae_float32: Any = None
        for name in ("unet", "transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3"):
            module = getattr(pipe, name, None)  # the parts a pipeline kind has
            if module is not None:
                module.eval().requires_grad_(False)
        from diffusers import DiffusionPipeline

        if isinstance(pipe, DiffusionPipeline):
            pipe.set_progress_bar_config(disable=True)
        self.model_id = model_id if model_id is not None else (getattr(pipe, "name_or_path", None) or None)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pipe(cls, pipe: Any, *, model_id: str | None = None) -> StableDiffusion:
        """Wrap an existing diffusers ``StableDiffusionPipeline`` / ``StableDiffusionXLPipeline`` (or any
        pipeline with unet, vae, text_encoder, tokenizer and scheduler)."""
        return cls(pipe, model_id=model_id)

    @classmethod
    def from_pretrained(
        cls,
        source: str | Path,
        *,
        dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
        **kwargs: Any,
    ) -> StableDiffusion:
        """Load a hub id, a local diffusers folder, or a single checkpoint file (.safetensors / .ckpt).

        SD 1.x / 2.x / XL are told apart from the folder's ``model_index.json`` or the checkpoint's keys. Extra
        keyword arguments go to diffusers' ``from_pretrained`` / ``from_single_file`` (e.g. ``config=`` a local
        folder with the model's configs, for a single file offline; ``variant="fp16"``).
        """
        from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

        source = str(source)
        path = Path(source)
        try:
            if path.is_file() or source.endswith(SINGLE_FILE_SUFFIXES):
                if not path.is_file():
                    raise CycleDiffError(f"no such checkpoint file: {source}")
                _check_not_legacy_pickle(path)
                pipe_cls = StableDiffusionXLPipeline if _is_xl_checkpoint(path) else StableDiffusionPipeline
                pipe = pipe_cls.from_single_file(source, **dtype_kwargs(dtype), **kwargs)
            else:
                pipe_cls = StableDiffusionXLPipeline if _is_xl_folder(source) else StableDiffusionPipeline
                if pipe_cls is StableDiffusionPipeline:
                    kwargs.setdefault("safety_checker", None)
                pipe = pipe_cls.from_pretrained(source, **dtype_kwargs(dtype), **kwargs)
        except CycleDiffError:
            raise
        except (OSError, ValueError, KeyError) as err:
            where = "a local folder" if path.exists() else "neither a local path nor reachable on the hub"
            raise CycleDiffError(
                f"could not load a Stable Diffusion model from {source!r} ({where}): {err}. Pass a hub id, a local "
                "diffusers folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/), or a "
                ".safetensors / .ckpt checkpoint; offline, use a local path"
            ) from err
        if device is not None:
            pipe = pipe.to(device)
        return cls(pipe, model_id=source)

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @property
    def codec(self) -> VaeCodec:
        """Images ↔ scaled VAE latents (:meth:`encode_images`, :meth:`decode_latents`)."""
        return VaeCodec(self)

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def image_multiple(self) -> int:
        """Image sides must be multiples of this (VAE downsampling × UNet downsampling)."""
        return self.vae_scale_factor * 2 ** (len(self.unet.config.down_block_types) - 1)

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        size = self.unet.config.sample_size
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        return (int(self.unet.config.in_channels), int(h), int(w))

    # ------------------------------------------------------------------ the VAE (images ↔ model space)
    def encode_images(self, images: torch.Tensor, generator: Any = None, *, sample: bool = True) -> torch.Tensor:
        """Images (B, 3, H, W) in [-1, 1] → scaled VAE latents (B, 4, H/f, W/f).

        ``sample=True`` draws from the VAE posterior with ``generator`` (one, or one per image), as diffusers'
        img2img pipelines do; ``sample=False`` takes its mean.
        """
        m = self.image_multiple
        if images.ndim != 4 or images.shape[1] != self.vae.config.in_channels:
            raise IncompatibleModelError(
                f"images must be (B, {self.vae.config.in_channels}, H, W); got shape {tuple(images.shape)}"
            )
        if images.shape[2] % m or images.shape[3] % m:
            raise IncompatibleModelError(
                f"image sides must be multiples of {m} for this model; got {tuple(images.shape[2:])} "
                "(resize or center-crop first; the CLI's --size does it)"
            )
        gens = check_generators(generator, images.shape[0])
        with torch.no_grad():
            vae = self._vae()
            dist = vae.encode(images.to(vae.device, vae.dtype)).latent_dist
            latents = dist.sample(gens) if sample else dist.mode()
        shift = self.vae.config.get("shift_factor") or 0.0
        return ((latents - shift) * self.vae.config.scaling_factor).to(images.dtype)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled VAE latents → images in [-1, 1] (not clamped), in the latents' dtype."""
        shift = self.vae.config.get("shift_factor") or 0.0
        z = latents / self.vae.config.scaling_factor + shift
        vae = self._vae()
        return vae.decode(z.to(vae.dtype)).sample.to(latents.dtype)

    def _vae(self) -> Any:
        """The VAE to run: a float16 VAE whose config says ``force_upcast`` (SDXL's overflows to NaN in float16)
        runs as a float32 copy, as diffusers' SDXL pipeline does, without changing the pipeline's own VAE.
        bfloat16 has float32's range and stays."""
        if self.vae.dtype != torch.float16 or not self.vae.config.get("force_upcast", False):
            return self.vae
        if self._vae_float32 is None:
            self._vae_float32 = copy.deepcopy(self.vae).to(torch.float32)
        return self._vae_float32

    # ------------------------------------------------------------------ Denoiser
    def check_sample(self, x: torch.Tensor) -> None:
        channels = int(self.unet.config.in_channels)
        if x.ndim != 4 or x.shape[1] != channels:
            raise IncompatibleModelError(
                f"this model works on {channels}-channel VAE latents (B, {channels}, h, w); got shape "
                f"{tuple(x.shape)}. Encode images with model.encode_images first"
            )
        factor = 2 ** (len(self.unet.config.down_block_types) - 1)
        if x.shape[2] % factor or x.shape[3] % factor:
            raise IncompatibleModelError(f"latent sides must be multiples of {factor}; got {tuple(x.shape[2:])}")

    def prepare_condition(
        self,
        batch_size: int,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        guidance_scale: float = 1.0,
        **unknown: Any,
    ) -> Condition:
        refuse_unknown(unknown, self.condition_keys, "a Stable Diffusion model")
        prompts = _as_list("" if prompt is None else prompt, batch_size, "prompt")
        negatives = _as_list(negative_prompt, batch_size, "negative_prompt")
        w = condition_scale(guidance_scale)
        self._warn_if_truncated(prompts + (negatives or []))
        cond, uncond, pooled, uncond_pooled = self._encode_prompts(prompts, negatives, w != 1)
        inputs = {"cond": cond, "uncond": uncond if w != 1 else None, "scale": w,
                  "pooled": pooled, "uncond_pooled": uncond_pooled if w != 1 else None}
        record: dict[str, Any] = {"prompt": prompts, "guidance_scale": w}
        if negatives is not None:
            record["negative_prompt"] = negatives
        return Condition(inputs=inputs, record=record)

    def _encode_prompts(self, prompts: list[str], negatives: list[str] | None, guided: bool) -> tuple[Any, ...]:
        """(prompt embeddings, negative ones or None, pooled, negative pooled) through the pipeline's encoder."""
        with torch.no_grad(), _diffusers_quiet():  # its own truncation log repeats the whole cut text
            if self.is_xl:
                return tuple(self.pipe.encode_prompt(prompts, device=self.device, num_images_per_prompt=1,
                                                     do_classifier_free_guidance=guided, negative_prompt=negatives))
            cond, uncond = self.pipe.encode_prompt(prompts, self.device, 1, guided, negative_prompt=negatives)
        return cond, uncond, None, None

    def _warn_if_truncated(self, prompts: list[str]) -> None:
        """One short warning per over-long prompt (per model), however often the prompt is encoded."""
        warned = self.__dict__.setdefault("_warned_prompts", set())
        limit = min(tok.model_max_length for tok in self._tokenizers())
        for p in dict.fromkeys(prompts):
            if p in warned:
                continue
            n = max(len(tok(p, truncation=False, verbose=False).input_ids) for tok in self._tokenizers())
            if n > limit:
                warned.add(p)
                shown = p if len(p) <= 40 else p[:40] + "…"
                warnings.warn(f"prompt {shown!r} has {n} tokens; the text encoder reads the first {limit}, the "
                              "rest is ignored", stacklevel=4)

    def _tokenizers(self) -> list[Any]:
        return [self.pipe.tokenizer] + ([self.pipe.tokenizer_2] if self.is_xl else [])

    def __call__(self, x_t: torch.Tensor, t: int, condition: Condition) -> torch.Tensor:
        return self.predict_batch([(x_t, condition)], t)[0]

    def predict_batch(self, branches: list[tuple[torch.Tensor, Condition]], t: int) -> list[torch.Tensor]:
        """Guided ε̂ (or v / x0) for several (x_t, condition) branches with one UNet call.

        A branch at guidance scale 1 adds B rows (conditional only), at 0 B rows (unconditional only), otherwise
        2·B rows.
        """
        xs, embeds, pooled, plan = [], [], [], []
        for x, c in branches:
            w = c.inputs["scale"]
            parts = ["cond"] if w == 1 else (["uncond"] if w == 0 else ["uncond", "cond"])
            for part in parts:
                xs.append(x)
                embeds.append(c.inputs[part])
                pooled.append(c.inputs["pooled" if part == "cond" else "uncond_pooled"])
            plan.append((len(parts), w, x.shape[0]))
        x_all = torch.cat(xs)
        kwargs: dict[str, Any] = {"encoder_hidden_states": torch.cat(embeds).to(self.device, self.dtype),
                                  **self._pooled_inputs(x_all, pooled)}
        if self.attention_control is not None:
            self.attention_control.route(plan, t)
        out = self.runner(self.model_input(x_all, t).to(self.dtype), self.model_timesteps(t, x_all), x_all.dtype,
                          eager=self.attention_control is not None, **kwargs)
        return split_guided(self.model_output(out, x_all, t), plan)

    def _pooled_inputs(self, x_all: torch.Tensor, pooled: list[Any]) -> dict[str, Any]:
        """SDXL's added conditioning (pooled text and size ids); nothing for SD 1.x / 2.x."""
        if not self.is_xl:
            return {}
        return {"added_cond_kwargs": {"text_embeds": torch.cat(pooled).to(self.device, self.dtype),
                                      "time_ids": self._time_ids(x_all)}}

    @contextlib.contextmanager
    def attention_edit(self, edit: Any, sources: list[str], targets: list[str], timesteps: list[int], *,
                       trace: bool = False) -> Iterator[Any]:
        """While the block runs, batched source / target calls edit the target's attention maps
        (:mod:`cyclediff.models.attention`); yields the control (its ``trace`` when asked for)."""
        from .attention import AttentionEdit, build_control, controlled

        control = build_control(self.pipe.tokenizer, AttentionEdit.of(edit), sources, targets, timesteps, trace=trace)
        with controlled(self.unet, control, compiled=self.runner.compiled is not None):
            self.attention_control = control
            try:
                yield control
            finally:
                self.attention_control = None

    def _time_ids(self, x: torch.Tensor) -> torch.Tensor:
        """SDXL's size conditioning: original size, crop (0, 0), target size, all the image's own size.
        Built once per shape: a fresh host tensor at every step would be a host→device copy that waits."""
        h, w = x.shape[2] * self.vae_scale_factor, x.shape[3] * self.vae_scale_factor
        key = (h, w, x.shape[0], self.dtype, self.device)
        if key not in self._time_ids_cache:
            ids = torch.tensor([h, w, 0, 0, h, w], dtype=self.dtype).to(self.device)
            self._time_ids_cache[key] = ids.expand(x.shape[0], 6).contiguous()
        return self._time_ids_cache[key]


def _is_xl_folder(source: str) -> bool:
    """Whether a diffusers folder or hub repo holds an SDXL pipeline (model_index.json's class name)."""
    from diffusers import DiffusionPipeline

    config = DiffusionPipeline.load_config(source)
    return "XL" in str(config.get("_class_name", "")) or "text_encoder_2" in config


def _is_xl_checkpoint(path: Path) -> bool:
    """Whether a single checkpoint file is SDXL: it has a second (OpenCLIP) text encoder under
    ``conditioner.embedders.1``."""
    return any(k.startswith("conditioner.embedders.1.") for k in checkpoint_keys(path))


def checkpoint_keys(path: Path) -> list[str]:
    """The tensor names of a checkpoint file: read from the safetensors header, or a memory-mapped .ckpt."""
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                keys = list(f.keys())
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
            keys = list(state.get("state_dict", state))
    except Exception as err:  # noqa: BLE001 - torch and safetensors raise many kinds for a bad file
        raise CycleDiffError(f"{path} is not a readable checkpoint: {err}") from err
    return keys
