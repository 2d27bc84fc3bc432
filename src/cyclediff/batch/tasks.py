"""The tasks the runner runs: each turns a batch of units (same-shaped inputs, per-unit seeds and settings) into
outputs and metrics with the Python API. The CLI, job files and the evaluation harness configure the same
tasks; settings use the API's names.

Each unit carries its task's settings (:mod:`cyclediff.settings`); those a unit may carry alone (one value per
image inside a batch) are the type's ``batched`` ones (prompts, class labels); every other setting is shared by a
batch (the runner batches only units whose signatures agree).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable
from dataclasses import replace
from typing import Any

import torch

from .._images import as_written
from .._video import FOLDER_FPS, Clip, is_clip, read_clip
from ..api.clips import clip_frames, read_clip_for
from ..api.images import read_for
from ..errors import CycleDiffError
from ..models.base import Model
from ..models.codec import to_images, to_model_space
from ..models.conditions import condition_for
from ..settings import RunOptions, Settings
from .runner import Unit


def generators(units: list[Unit]) -> list[torch.Generator]:
    """One generator per unit, seeded with its seed: a result never depends on how its batch was formed."""
    return [torch.Generator().manual_seed(u.seed) for u in units]


def pair_metrics(inputs01: torch.Tensor, outputs01: torch.Tensor) -> list[dict[str, float]]:
    """PSNR and SSIM of each output against its input (float64, rounded to 5 decimals as recorded); a clip's are
    its frames' means."""
    from ..metrics import pair_scores

    a, b = inputs01.float().cpu(), outputs01.float().cpu()
    frames = a.shape[2] if a.ndim == 5 else 1
    if a.ndim == 5:  # (B, C, F, H, W) → the B·F frames, then each clip's mean
        a, b = (t.transpose(1, 2).flatten(0, 1) for t in (a, b))
    scores = pair_scores(a, b)
    return [{name: round(sum(values[i * frames:(i + 1) * frames]) / frames, 5) for name, values in scores.items()}
            for i in range(len(outputs01))]


# what in RunOptions.model_record changes a model's weights (so a latent decodes to another image without it)
WEIGHTS = ("lora", "quantize", "base")


def weights_record(run: RunOptions) -> dict[str, Any]:
    """How the model's weights were changed at loading (LoRA, quantization, a GGUF's base; empty: not at all):
    recorded in the latents made with it, compared when they are decoded."""
    return {k: v for k, v in run.model_record().items() if k in WEIGHTS}


def _loaded(record: dict[str, Any]) -> str:
    if not record:
        return "the plain weights"
    return ", ".join(f"{k} {' + '.join(v) if isinstance(v, list) else v}" for k, v in record.items())


def settings_signature(unit: Unit) -> str:
    """What a batch must share: every setting but the ``batched`` ones (prompts, labels: one per image)."""
    settings: Settings = unit.settings
    return json.dumps(settings.shared(), sort_keys=True, default=str)


class ImageTask:
    """Shared by the tasks on input images: reading with the model's codec, batch signatures."""

    desc = "task"

    def __init__(self, model: Model, read: RunOptions | None = None, *, score: bool = False,
                 progress: bool = False) -> None:
        self.model, self.policy, self.score, self.progress = model, read or RunOptions(), score, progress
        self.clips: dict[str, tuple[float, list[str]]] = {}  # unit key -> (fps, notes) of a clip input

    def signature(self, unit: Unit) -> Hashable:
        return settings_signature(unit)

    def read(self, unit: Unit) -> Any:
        if unit.input is None:
            return None
        if is_clip(unit.input):  # a video model's (1, C, F, H, W); its fps and notes kept for the output
            clip = read_clip_for(self.model, unit.input, size=self.policy.size, fit=self.policy.fit,
                                 max_pixels=self.policy.max_pixels, max_frames=self.policy.max_frames,
                                 stride=self.policy.stride)
            self.clips[unit.key] = (clip.fps, clip.notes)
            return clip.batch
        return read_for(self.model, unit.input, size=self.policy.size, fit=self.policy.fit,
                        max_pixels=self.policy.max_pixels)

    def _clip(self, unit: Unit, x: torch.Tensor) -> Clip:
        """One output clip (C, F, H, W) at its input's frame rate (24 fps when it had none)."""
        fps, notes = self.clips.get(unit.key, (FOLDER_FPS, []))
        return Clip(clip_frames(x), fps, notes)

    def _notes(self, units: list[Unit], metrics: list[dict]) -> list[dict]:
        """The metrics with each clip's notes (cut, strided, audio dropped, fitted), for the status line."""
        for unit, m in zip(units, metrics):
            if self.clips.get(unit.key, (0, []))[1]:
                m["notes"] = "; ".join(self.clips[unit.key][1])
        return metrics

    def _inputs(self, inputs: list[Any]) -> torch.Tensor:
        return torch.cat(inputs).to(self.model.device)

    def _mask(self, units: list[Unit], x: torch.Tensor) -> Any:
        """The batch's ``mask`` setting: None, "auto", or a mask image (read at the inputs' size, one channel)."""
        from .._images import load_image

        spec = units[0].settings.mask
        if spec is None or spec == "auto":
            return spec
        if x.ndim == 5 and is_clip(spec):  # a mask clip: one mask per frame, (B, 1, F, H, W)
            frames = read_clip(spec, channels=1, size=tuple(x.shape[-2:]), max_frames=x.shape[2],
                               max_pixels=self.policy.max_pixels).frames
            if len(frames) != x.shape[2]:
                raise CycleDiffError(f"the mask clip has {len(frames)} frames, the clip {x.shape[2]}; give one mask "
                                     "frame per frame, or one mask image for all")
            return clip_frames(frames)[None].expand(x.shape[0], -1, -1, -1, -1).to(x.device)
        m = load_image(spec, channels=1, size=tuple(x.shape[-2:]), max_pixels=self.policy.max_pixels)
        return m.expand(x.shape[0], -1, -1, -1).to(x.device)  # for a clip: one mask for all frames

    def _with_mask(self, units: list[Unit], out: torch.Tensor, mask: torch.Tensor | None) -> list[Any]:
        """Outputs, each with its mask preview beside it when the mask was found automatically (clips: none)."""
        if out.ndim == 5:
            return [self._clip(u, o) for u, o in zip(units, out)]
        if units[0].settings.mask != "auto" or mask is None:
            return list(out)
        return [{".png": img, "_mask.png": m} for img, m in zip(out, mask.cpu())]


def per_unit(units: list[Unit], key: str, *, need: bool = False, text: bool = False) -> list[Any] | None:
    """One value per unit of a batched setting, or None when no unit sets it. ``need``: every unit must set it;
    ``text``: an unset one is ""; otherwise some set and some not is an error (a class label)."""
    values = [getattr(u.settings, key) for u in units]
    missing = [v is None for v in values]
    if need and any(missing):
        raise CycleDiffError(f"no {key}: set it in the settings or per item")
    if all(missing):
        return None
    if any(missing) and not text:
        raise CycleDiffError(f"{key} is set for some items of a batch and not others")
    return [v or "" for v in values] if text else values


class EditTask(ImageTask):
    """Text-guided editing (``edit``); with ``scorer`` also CLIP score and directional CLIP."""

    desc = "edit"

    def __init__(self, model: Model, read: RunOptions | None = None, *, score: bool = False,
                 scorer: Any = None) -> None:
        super().__init__(model, read, score=score)
        self.scorer = scorer

    def process(self, units: list[Unit], inputs: list[Any]) -> list[tuple[Any, dict]]:
        from ..api.edit import edit

        x, s = self._inputs(inputs), units[0].settings
        sources, targets = per_unit(units, "source_prompt", need=True), per_unit(units, "prompt", need=True)
        result = edit(self.model, x, **s.api(
            self._mask(units, x), source_prompt=sources, prompt=targets,
            negative_prompt=per_unit(units, "negative_prompt", text=True), generator=generators(units),
            progress=self.progress))
        out = as_written(result.images)  # metrics of the very bytes written: as reproducible as the file
        metrics = self._notes(units, pair_metrics(x, out) if self.score else [{} for _ in units])
        if out.ndim == 5 and (self.score or self.scorer is not None):  # clips: per-frame CLIP, temporal, background
            from ..metrics.video import edit_scores

            for m, scores in zip(metrics, edit_scores(x, out, sources, targets, self.scorer, result.mask)):
                m.update(scores)
        elif self.scorer is not None:
            from ..metrics import clip_score, directional_clip

            scores = clip_score(out, targets, self.scorer).tolist()
            directions = directional_clip(x, out, sources, targets, self.scorer).tolist()
            for m, score, direction in zip(metrics, scores, directions):
                m.update(clip_score=round(score, 5), directional_clip=round(direction, 5))
        return list(zip(self._with_mask(units, out, result.mask), metrics))


class TranslateTask(ImageTask):
    """Translation between two models (``translate``), or between two conditions of one."""

    desc = "translate"

    def __init__(self, source: Model, target: Model, read: RunOptions | None = None, *, score: bool = False):
        super().__init__(source, read, score=score)
        self.target = target

    def condition(self, model: Model, units: list[Unit], side: str) -> dict[str, Any]:
        s = units[0].settings
        return condition_for(model, prompt=per_unit(units, f"{side}_prompt", text=True),
                             class_labels=per_unit(units, f"{side}_class"), side=side,
                             guidance_scale=s.guidance_scale if side == "target" else None,
                             extra=getattr(s, f"{side}_condition"))

    def process(self, units: list[Unit], inputs: list[Any]) -> list[tuple[Any, dict]]:
        from ..api.translate import translate

        x, s = self._inputs(inputs), units[0].settings
        result = translate(x, self.model, self.target, **s.api(
            self._mask(units, x), generator=generators(units),
            source_condition=self.condition(self.model, units, "source"),
            target_condition=self.condition(self.target, units, "target"), progress=self.progress))
        out = as_written(result.images)
        metrics = self._notes(units, pair_metrics(x, out) if self.score else [{} for _ in units])
        return list(zip(self._with_mask(units, out, result.mask), metrics))


class GuideTask(ImageTask):
    """Langevin guidance (``guide``) from the prior, or from an input image's encoding (guided editing).
    ``strip_every`` also returns each chain's frames every N Langevin steps, side by side; ``on_step(n, images01,
    energies)`` sees every step as it happens (the web app's live view; raising there stops the chains)."""

    desc = "guide"

    def __init__(self, model: Model, energy: Callable[[Any], Any], read: RunOptions | None = None, *,
                 strip_every: int | None = None,
                 on_step: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None) -> None:
        super().__init__(model, read)
        self.energy, self.strip_every, self.on_step = energy, strip_every, on_step

    def process(self, units: list[Unit], inputs: list[Any]) -> list[tuple[Any, dict]]:
        from ..encoder import encode
        from ..guidance import guide

        s, gens = units[0].settings, generators(units)
        labels = [u.settings.class_label for u in units]
        labels = None if all(v is None for v in labels) else labels
        cond = condition_for(self.model, prompt=s.prompt, guidance_scale=s.guidance_scale,
                             class_labels=labels if "class_labels" in self.model.condition_keys else None)
        latent = None
        if inputs[0] is not None:
            x0 = to_model_space(self.model, self._inputs(inputs), gens)
            # not a default: guided editing starts from the whole encoding of the input
            latent = encode(x0, self.model, steps=s.steps, strength=1.0, eta=s.eta, generator=gens, **cond)
        frames: list[torch.Tensor] = []

        def keep(n: int, images: torch.Tensor, energies: torch.Tensor) -> None:
            if self.on_step is not None:
                self.on_step(n, images, energies)
            if self.strip_every and (n % self.strip_every == 0 or n == s.langevin_steps):
                frames.append(images.cpu())

        result = guide(self.model, self.energy(s), **s.api(
            condition=cond or None, batch_size=len(units), latent=latent, generator=gens, callback=keep,
            progress=self.progress))
        images = as_written(result.images)
        outputs: list[Any] = list(images)
        if frames:
            outputs = [{".png": img, "_chain.png": torch.cat([f[i] for f in frames], dim=2)}
                       for i, img in enumerate(images)]
        # the energy of the state returned: the lowest one seen with keep_best (the chain's best), else the last
        ends = result.energies.min(dim=0).values if s.keep_best else result.energies[-1]
        metrics = [{"energy_start": float(result.energies[0, i]), "energy_end": float(ends[i])}
                   for i in range(len(units))]
        return list(zip(outputs, metrics))


class EncodeTask(ImageTask):
    """Images → latent files (``encode``), one image per call (each with its own seed)."""

    desc = "encode"

    def signature(self, unit: Unit) -> Hashable:
        return unit.key

    def process(self, units: list[Unit], inputs: list[Any]) -> list[tuple[Any, dict]]:
        from ..encoder import encode

        s, gens = units[0].settings, generators(units)
        x0 = to_model_space(self.model, self._inputs(inputs), gens[0])
        z = replace(encode(x0, self.model, **s.api(generator=gens[0], progress=self.progress)),
                    loading=weights_record(self.policy))
        if x0.ndim == 5:  # a clip's latent: its frame count and fps go into the file's record
            from .stores import ClipLatent

            fps = self.clips.get(units[0].key, (FOLDER_FPS, []))[0]
            z = ClipLatent(z, {"frames": int(inputs[0].shape[2]), "fps": fps, "suffix": units[0].input.suffix.lower()
                               if units[0].input.is_file() else ""})
        return [(z, self._notes(units, [{}])[0])]


class DecodeTask(ImageTask):
    """Latent files → images (``decode``), under the recorded condition or a new one (``settings.condition``);
    with ``settings.weights`` a strip of the decodings of the interpolation towards ``settings.other``."""

    desc = "decode"

    def signature(self, unit: Unit) -> Hashable:
        return unit.key

    def read(self, unit: Unit) -> Any:
        from ..latent import Latent
        from .outputs import latent_clip

        z = Latent.load(unit.input, device=self.model.device)
        if z.x_start.ndim == 5:  # a clip's latent: decoded at the frame rate its encoding recorded
            fps = (latent_clip(unit.input) or {}).get("fps")
            self.clips[unit.key] = (fps, []) if fps else (FOLDER_FPS, [f"{unit.input.name} records no frame rate; "
                                                                        f"{FOLDER_FPS:g} fps assumed"])
        return z

    def process(self, units: list[Unit], inputs: list[Any]) -> list[tuple[Any, dict]]:
        import warnings

        from ..sampler import decode

        s = units[0].settings
        z, new = inputs[0], s.condition
        if z.model_id and self.model.model_id and z.model_id != self.model.model_id:
            warnings.warn(f"{units[0].input} was encoded with {z.model_id}, decoding with {self.model.model_id}",
                          stacklevel=2)
        was, now = {k: v for k, v in (z.loading or {}).items() if k in WEIGHTS}, weights_record(self.policy)
        if z.loading is not None and was != now:  # None: made where the loading was not known (the API)
            warnings.warn(f"{units[0].input} was encoded with {_loaded(was)} but is decoded with {_loaded(now)}: "
                          "it decodes to another image; load the model as it was (--lora, --quantize, --base)",
                          stacklevel=2)
        condition = {**z.condition, **new} if new else {}
        if units[0].settings.weights:
            from ..interpolation import interpolate
            from ..latent import Latent

            other = Latent.load(units[0].settings.other, device=self.model.device)
            frames = [to_images(self.model, decode(interpolate(z, other, w), self.model, progress=self.progress,
                                                   **(condition or new))) for w in units[0].settings.weights]
            x = as_written(torch.cat(frames, dim=-1))  # side by side, as the weights go
        else:
            x = as_written(to_images(self.model, decode(z, self.model, progress=self.progress, **condition)))
        if x.ndim == 5:
            return [(self._clip(units[0], x[0]), self._notes(units, [{}])[0])]
        return [(x[0] if len(x) == 1 else {f"_{i}.png": img for i, img in enumerate(x)}, {})]


class SampleTask(ImageTask):
    """Samples from the prior latent (``sample_latent`` + ``decode``); ``save_latents`` also returns the latent."""

    desc = "sample"

    def __init__(self, model: Model, read: RunOptions | None = None, *, save_latents: bool = False) -> None:
        super().__init__(model, read)
        self.save_latents = save_latents

    def signature(self, unit: Unit) -> Hashable:
        return unit.key

    @torch.no_grad()
    def process(self, units: list[Unit], inputs: list[Any]) -> list[tuple[Any, dict]]:
        from ..sampler import decode, sample_latent

        s = units[0].settings
        z = sample_latent(self.model, 1, **s.api(generator=generators(units)[0]))
        image = as_written(to_images(self.model, decode(z, self.model, progress=self.progress)))[0]
        z = replace(z, loading=weights_record(self.policy))
        return [({".png": image, ".latent.safetensors": z} if self.save_latents else image, {})]
