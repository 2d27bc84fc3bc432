"""How a run reads its inputs and runs its models (:class:`RunOptions`: the CLI's options, a job file's top level),
with its default instance :data:`RUN`; re-exported by :mod:`cyclediff.settings`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .errors import CycleDiffError
from .settings_base import MAX_PIXELS, Settings


@dataclass(frozen=True)
class RunOptions(Settings):
    """How a run reads its inputs and runs its models (the CLI's options, a job file's top level)."""

    device: str = "auto"
    dtype: str = "float32"
    compile: bool = False
    size: str | None = None  # resize first: "N" (shorter side) or "WxH"
    fit: str = "crop"
    max_pixels: int = MAX_PIXELS
    batch_size: int = 1
    features: str = "inception"  # FID / KID features: inception, pixels or module:function
    max_seeds: int = 10_000  # seeds (outputs per input) one command or job may ask for
    lora: tuple[str, ...] = ()  # LoRA adapters on the model: "PATH[:scale]" each
    target_lora: tuple[str, ...] = ()  # translation: LoRA adapters on the target only (one load for one model)
    quantize: str | None = None  # the network's weights quantized: one of QUANTIZE
    vae_tiling: bool = False  # the VAE in overlapping tiles, one image at a time (large images, less memory)
    offload: str | None = None  # weights on the CPU between uses: model, sequential or group (GPU runs)
    text_encoders_on_cpu: bool = False  # the text encoders stay on the CPU and run there, once per prompt
    base: str | None = None  # where a single file's other parts come from (a GGUF network's pipeline)
    max_frames: int | None = None  # clips: at most this many frames (after the stride); None: the model's own length
    stride: int = 1  # clips: every stride-th frame (the frame rate divided by it); images ignore both

    task: ClassVar[str] = "run"

    def loading(self) -> dict[str, Any]:
        """The keywords of :func:`cyclediff.models.load` that change a model at loading (the front ends pass
        these; dtype and device are theirs to resolve)."""
        return {"lora": self.lora, "quantize": self.quantize, "vae_tiling": self.vae_tiling, "offload": self.offload,
                "text_encoders_on_cpu": self.text_encoders_on_cpu, "base": self.base}

    def model_record(self) -> dict[str, Any]:
        """How the model was changed at loading (LoRA, quantization, VAE tiling, offloading, base), for the records
        of its outputs: only what is set, so that outputs made without them keep their records."""
        record = {**self.loading(), "target_lora": self.target_lora}
        return {k: list(v) if k.endswith("lora") else v for k, v in record.items() if v}

    def clip_reading(self) -> dict[str, Any]:
        """How clips are read (--max-frames, --stride), for the records of their outputs: only what differs from
        reading every frame up to the model's own length, so that other outputs keep their records."""
        given = {"max_frames": self.max_frames, "stride": self.stride}
        return {k: v for k, v in given.items() if v != getattr(RunOptions, k)}

    def check(self) -> None:
        for name in ("lora", "target_lora"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value or ()):
                raise CycleDiffError(f"{name} is a list of 'PATH[:scale]' strings; got {value!r}")
            object.__setattr__(self, name, tuple(value or ()))


RUN = RunOptions()
