"""Pixel-space diffusion models: a diffusers ``UNet2DModel`` with its scheduler config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import CycleDiffError, IncompatibleModelError
from ..flow import FlowSchedule
from ..schedule import Schedule
from ._accel import Optimizable, UNetRunner
from ._compat import dtype_kwargs
from .base import Condition, condition_scale, guided_call, refuse_unknown, stack_branches
from .codec import PixelCodec
from .steps import DiscreteSteps, FlowCoordinates


class PixelDenoiser(DiscreteSteps, Optimizable):
    """A diffusers ``UNet2DModel`` (unconditional, class-conditional, learned variance) and its schedule.

    >>> den = PixelDenoiser(unet, scheduler.config)              # from objects
    >>> den = PixelDenoiser.from_pretrained("google/ddpm-cat-256")  # hub id or local diffusers folder

    The UNet is put in eval mode and its parameters stop requiring gradients (gradients still flow to the
    latent through it). Inputs are cast to the UNet's dtype for the call and outputs back to the input's dtype,
    so the sampler maths runs in the dtype of the images.
    """

    data_range = (-1.0, 1.0)
    kind = "a pixel-space UNet (no text encoder)"
    family = "pixel"  # its record in models/families.py

    def __init__(
        self, unet: torch.nn.Module, scheduler_config: Any, *, model_id: str | None = None,
        null_class_label: int | None = None, attention_heads: dict[str, int] | None = None,
        foreground: str | None = None, defaults: dict[str, Any] | None = None,
    ) -> None:
        from diffusers import UNet2DModel

        if not isinstance(unet, UNet2DModel):
            raise CycleDiffError(
                f"PixelDenoiser needs a diffusers UNet2DModel; got {type(unet).__name__}"
            )
        if attention_heads is not None:  # head counts per block (converted guided-diffusion models)
            set_attention_heads(unet, attention_heads)
        self.unet = unet.eval().requires_grad_(False)
        self.runner = UNetRunner(self.unet)
        self.schedule = self.schedule_from(scheduler_config)
        self.model_id = model_id if model_id is not None else (unet.config.get("_name_or_path") or None)
        self.null_class_label = null_class_label
        self.foreground = foreground  # "light": trained on light strokes on a dark ground (the demo digits)
        self.defaults = dict(defaults or {})  # recommended settings, e.g. {"guidance_scale": 1.0}; {}: none

    @staticmethod
    def schedule_from(config: Any) -> Schedule:
        """The schedule of a scheduler config (rectified-flow UNets: :class:`~cyclediff.flow.FlowSchedule`)."""
        return Schedule.from_config(config)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
        **kwargs: Any,
    ) -> PixelDenoiser:
        """Load a hub id or a local folder saved by diffusers.

        Two layouts work: a pipeline folder (``unet/`` and ``scheduler/`` subfolders, as ``DDPMPipeline``
        saves) and a UNet folder with ``scheduler_config.json`` beside its ``config.json``
        (as ``google/ddpm-cat-256`` is published). A ``cyclediff.json`` beside the UNet's config may name the
        null class label (``{"null_class_label": 10}``) and the polarity of the training images
        (``"foreground": "light"``: light strokes on a dark ground) and recommended settings (``"defaults":
        {"guidance_scale": 1.0}``, as ``model.defaults``). Extra keyword arguments go to
        ``UNet2DModel.from_pretrained``.
        """
        from diffusers import DDPMScheduler, UNet2DModel

        source = str(name_or_path)
        local = Path(source)
        if local.exists() and not local.is_dir():
            raise CycleDiffError(
                f"{source} is a file; PixelDenoiser.from_pretrained takes a hub id or a diffusers folder"
            )
        errors = []
        for subfolders in (("unet", "scheduler"), (None, None)):
            if local.is_dir() and subfolders[0] and not (local / subfolders[0]).is_dir():
                continue
            try:
                unet = UNet2DModel.from_pretrained(source, subfolder=subfolders[0], **dtype_kwargs(dtype), **kwargs)
                config = DDPMScheduler.load_config(source, subfolder=subfolders[1])
            except (OSError, ValueError) as err:
                errors.append(f"{'/'.join(s for s in subfolders if s) or 'root'}: {err}")
                continue
            if device is not None:
                unet = unet.to(device)
            extra = _extra_settings(source, subfolders[0])
            adapter = _adapter_for(cls, config, source, frames=extra.get("frames"))
            return adapter(unet, config, model_id=source, **extra)
        raise CycleDiffError(
            f"could not load a pixel diffusion model from {source!r}. Pass a hub id or a folder saved by diffusers "
            "(model_index.json with unet/ and scheduler/, or a UNet2DModel folder with scheduler_config.json). "
            "Details: " + " | ".join(errors)
        )

    @classmethod
    def from_pipe(cls, pipe: Any, *, model_id: str | None = None) -> PixelDenoiser:
        """Wrap a built diffusers pixel pipeline (its ``unet`` and ``scheduler``)."""
        return cls(pipe.unet, pipe.scheduler.config, model_id=model_id)

    # ------------------------------------------------------------------ properties
    @property
    def channels(self) -> int:
        return int(self.unet.config.in_channels)

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the UNet's training images."""
        size = self.unet.config.sample_size
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        return (self.channels, int(h), int(w))

    @property
    def codec(self) -> PixelCodec:
        """Images are the samples (in [−1, 1]), at the UNet's training size."""
        c, h, w = self.sample_shape
        return PixelCodec(c, (h, w), foreground=self.foreground)

    @property
    def condition_keys(self) -> tuple[str, ...]:
        """What :meth:`prepare_condition` takes: class labels where the UNet has a class embedding."""
        return ("class_labels", "guidance_scale") if self.num_classes is not None else ("guidance_scale",)

    @property
    def num_classes(self) -> int | None:
        """Number of class labels of a class-conditional UNet; None when unconditional."""
        if getattr(self.unet, "class_embedding", None) is None:
            return None
        return self.unet.config.get("num_class_embeds")

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    # ------------------------------------------------------------------ Denoiser
    def check_sample(self, x: torch.Tensor) -> None:
        if x.ndim != 4:
            raise IncompatibleModelError(f"samples must be (B, C, H, W); got shape {tuple(x.shape)}")
        if x.shape[1] != self.channels:
            raise IncompatibleModelError(
                f"the model takes {self.channels}-channel images; got {x.shape[1]} channels "
                f"(shape {tuple(x.shape)}). Convert the images (e.g. grayscale ↔ RGB) first"
            )
        factor = 2 ** (len(self.unet.config.down_block_types) - 1)
        if x.shape[2] % factor or x.shape[3] % factor:
            size = self.unet.config.sample_size
            raise IncompatibleModelError(
                f"image size {tuple(x.shape[2:])} is not a multiple of {factor}, which this UNet needs; "
                f"resize to its training size {size}"
            )

    def prepare_condition(self, batch_size: int, class_labels: Any = None, guidance_scale: float = 1.0,
                          **unknown: Any) -> Condition:
        """Class labels (an int or one per image) for class-conditional UNets. With a null label (models trained
        for classifier-free guidance), ``class_labels=None`` means unconditional and ``guidance_scale`` w gives
        ε̂ = ε_null + w (ε_label − ε_null)."""
        refuse_unknown(unknown, self.condition_keys, "this pixel model (no text encoder)")
        w = condition_scale(guidance_scale)
        conditional = getattr(self.unet, "class_embedding", None) is not None
        if w != 1 and self.null_class_label is None:
            raise IncompatibleModelError(
                "guidance_scale needs a class-conditional model with a null label (trained for classifier-free "
                "guidance); this one has none, so use guidance_scale=1"
            )
        if not conditional:
            if class_labels is not None:
                raise IncompatibleModelError("this model is unconditional; drop class_labels")
            return Condition(inputs={"class_labels": None, "scale": 1.0})
        record: dict[str, Any] = {"class_labels": None if class_labels is None else class_labels}
        if class_labels is None:
            if self.null_class_label is None:
                raise IncompatibleModelError(
                    "this model is class-conditional; pass class_labels= (an int, or one label per image)"
                )
            class_labels = self.null_class_label
        labels = self._labels(class_labels, batch_size)
        if record["class_labels"] is not None:
            record["class_labels"] = labels.tolist()
        if w != 1:
            record["guidance_scale"] = w
        # on the model's device once, not a host→device copy (and wait) at every step
        return Condition(inputs={"class_labels": labels.to(self.device), "scale": w}, record=record)

    def _labels(self, class_labels: Any, batch_size: int) -> torch.Tensor:
        n = self.num_classes
        try:
            if isinstance(class_labels, (str, bytes, bool)):
                raise TypeError
            labels = torch.as_tensor(class_labels).reshape(-1)
        except (TypeError, ValueError, RuntimeError) as err:
            raise IncompatibleModelError(
                f"class_labels must be an integer or one integer per image; got {class_labels!r}"
            ) from err
        if labels.dtype == torch.bool or (labels.is_floating_point() and n is not None):
            raise IncompatibleModelError(f"class_labels must be integers; got {labels.dtype}")
        if labels.numel() == 1:
            labels = labels.expand(batch_size)
        if labels.numel() != batch_size:
            raise IncompatibleModelError(f"got {labels.numel()} class labels for a batch of {batch_size}")
        if n is not None:
            labels = labels.long()
            if labels.min() < 0 or labels.max() >= n:
                raise IncompatibleModelError(f"class labels must lie in 0..{n - 1}; got {labels.tolist()}")
        return labels

    def __call__(self, x_t: torch.Tensor, t: int, condition: Condition) -> torch.Tensor:
        return self.predict_batch([(x_t, condition)], t)[0]

    def predict_batch(self, branches: list[tuple[torch.Tensor, Condition]], t: int) -> list[torch.Tensor]:
        """Several (x_t, condition) branches in one UNet call (rows are independent); a branch with guidance
        scale w ≠ 1 adds its null-label rows."""
        x_all, inputs, plan = stack_branches(branches, self._rows)
        labels = inputs["class_labels"]
        kwargs = {} if labels[0] is None else {"class_labels": torch.cat(labels).to(x_all.device)}
        return guided_call(self, x_all, t, plan, **kwargs)

    def _rows(self, c: Condition) -> tuple[float, list[dict[str, Any]]]:
        w, y = c.inputs.get("scale", 1.0), c.inputs.get("class_labels")
        if w == 1:
            return w, [{"class_labels": y}]
        return w, [{"class_labels": torch.full_like(y, self.null_class_label)}, {"class_labels": y}]


class FlowPixelDenoiser(FlowCoordinates, PixelDenoiser):
    """A rectified-flow UNet2DModel (velocity v = ε − x0 on x_σ = (1 − σ)·x0 + σ·ε, a FlowMatchEulerDiscreteScheduler
    config) behind the same protocols as :class:`PixelDenoiser` (see :class:`~cyclediff.models.steps.
    FlowCoordinates`)."""

    family = "flow-pixel"

    @staticmethod
    def schedule_from(config: Any) -> FlowSchedule:
        return FlowSchedule.from_flow_config(dict(config))  # a FlowMatchEulerDiscreteScheduler config mapping


def set_attention_heads(unet: Any, heads: dict[str, int]) -> None:
    """Give every attention layer of a UNet2DModel its head count (the width follows from its channels); the
    setting diffusers' config cannot hold, recorded in ``cyclediff.json`` beside a converted model."""
    from diffusers.models.attention_processor import Attention

    for name, module in unet.named_modules():
        if isinstance(module, Attention):
            n = heads["up"] if name.startswith("up_blocks") else heads["down"]
            channels = module.to_q.out_features
            if channels % n:
                raise CycleDiffError(f"{name}: {channels} channels cannot be split into {n} heads")
            module.heads, module.scale = n, (channels // n) ** -0.5


def _adapter_for(cls: type, scheduler_config: Any, source: str, frames: int | None = None) -> type:
    """The adapter of a UNet with this scheduler, as its family record says (a FlowMatch scheduler: the
    rectified-flow UNet's; with ``frames`` from its cyclediff.json, the frames-folded video UNet's); it must be
    ``cls`` or a subclass of it."""
    from .families import family_of_pipeline

    components = {"unet": "UNet2DModel", "scheduler": str(scheduler_config.get("_class_name", "")),
                  "frames": str(frames or "")}
    found = family_of_pipeline("", components)
    if frames is not None and (found is None or "frames" not in found.components):
        raise CycleDiffError(f"{source}: a video UNet (cyclediff.json's frames) needs a FlowMatch scheduler; its "
                             f"scheduler is {scheduler_config.get('_class_name')}")
    adapter = found.adapter_class() if found is not None else cls
    if not issubclass(adapter, cls):
        raise CycleDiffError(f"{source} is {found.title} (its scheduler is "
                             f"{scheduler_config.get('_class_name')}), not a {cls.__name__}; load it with "
                             "cyclediff.models.load")
    return adapter


def _extra_settings(source: str, subfolder: str | None) -> dict[str, Any]:
    """Settings from an optional local ``cyclediff.json`` (the demo models ship one)."""
    import json

    path = Path(source, subfolder or "", "cyclediff.json")
    if not path.is_file():
        return {}
    meta = json.loads(path.read_text())
    video = {k: meta[k] for k in ("frames", "frame_grid") if meta.get(k) is not None}  # a video UNet
    return {"null_class_label": meta.get("null_class_label"), "attention_heads": meta.get("attention_heads"),
            "foreground": meta.get("foreground"), "defaults": meta.get("defaults"), **video}
