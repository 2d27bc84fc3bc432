"""What the text-to-image adapters (SD 1.x / 2.x / XL, SD3, FLUX) share, as parts they compose rather than members
they override: a pipeline's adoption (parts checked, networks frozen), loading from a folder, hub id or single
file, prompt lists and their truncation warning, and :class:`PromptModel`, which holds the codec (the VAE lives
there), the runner and the grid. Each adapter adds only what is its own: its text encoding, its network's inputs
and its sample shape."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from ..errors import CycleDiffError, IncompatibleModelError
from ..schedule import Schedule
from ._accel import Optimizable, UNetRunner
from ._compat import diffusers_quiet, dtype_kwargs
from .base import Condition, condition_scale
from .checkpoints import check_not_legacy_pickle, checkpoint_keys
from .codec import VaeCodec

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
NETWORKS = ("unet", "transformer", "transformer_2", "vae", "text_encoder", "text_encoder_2", "text_encoder_3")


def as_list(value: Any, batch_size: int, name: str) -> list[str] | None:
    """A prompt (or None) as one string per image."""
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


def is_single_file(source: str) -> bool:
    return Path(source).is_file() or source.endswith(SINGLE_FILE_SUFFIXES)


def load_pipeline(pipe_cls: Any, source: str, dtype: torch.dtype | None, device: Any, what: str,
                  **kwargs: Any) -> Any:
    """``pipe_cls`` from a single checkpoint file (``from_single_file``) or a folder / hub id (``from_pretrained``),
    on ``device``; a failure is one error naming ``what`` and the fix."""
    path = Path(source)
    try:
        if is_single_file(source):
            if not path.is_file():
                raise CycleDiffError(f"no such checkpoint file: {source}")
            check_not_legacy_pickle(path)
            with diffusers_quiet():
                pipe = pipe_cls.from_single_file(source, **dtype_kwargs(dtype), **kwargs)
        else:
            with diffusers_quiet():
                pipe = pipe_cls.from_pretrained(source, **dtype_kwargs(dtype), **kwargs)
    except CycleDiffError:
        raise
    except (OSError, ValueError, KeyError) as err:
        where = "a local folder" if path.exists() else "neither a local path nor reachable on the hub"
        raise CycleDiffError(
            f"could not load a {what} model from {source!r} ({where}): {err}. Pass a hub id, a local diffusers "
            "folder or a .safetensors / .ckpt checkpoint; offline, use a local path"
        ) from err
    if dtype == torch.float16 and torch.device(device if device is not None else pipe.device).type == "cpu":
        warnings.warn("float16 on the CPU is slow and less exact (PyTorch computes many float16 CPU ops in "
                      "float32 and rounds); use float32 there (the default) and float16 on a GPU", stacklevel=3)
    with diffusers_quiet():  # its three "cannot run with cpu" warnings: ours above says it once, with the fix
        return pipe.to(device) if device is not None else pipe


def check_latents(x: torch.Tensor, channels: int, patch: int) -> None:
    """(B, channels, h, w) latents with sides multiples of ``patch``, or one error naming the fix."""
    if x.ndim != 4 or x.shape[1] != channels:
        raise IncompatibleModelError(f"this model works on {channels}-channel VAE latents (B, {channels}, h, w); "
                                     f"got shape {tuple(x.shape)}. Encode images with model.codec first")
    if x.shape[2] % patch or x.shape[3] % patch:
        raise IncompatibleModelError(f"latent sides must be multiples of {patch}; got {tuple(x.shape[2:])}")


class PromptModel(Optimizable):
    """The shared parts of a text-to-image adapter over a diffusers pipeline: the pipeline's networks frozen, its
    VAE inside a :class:`~cyclediff.models.codec.VaeCodec`, its network behind a runner, its grid.

    An adapter sets ``network`` (the UNet or transformer), ``runner``, ``schedule`` and ``codec`` in its
    ``__init__`` after :meth:`_adopt`, and implements ``sample_shape``, ``check_sample``, ``prepare_condition``
    and ``predict_batch``."""

    data_range = None  # VAE latents are unbounded
    condition_keys: tuple[str, ...] = ("prompt", "negative_prompt", "guidance_scale")
    family: str  # the adapter's model family (:mod:`cyclediff.models.families`), e.g. "sd3"
    network: torch.nn.Module
    runner: UNetRunner
    schedule: Schedule
    codec: VaeCodec
    execution_device: torch.device | None = None  # where the networks run when offloading keeps them elsewhere
    text_encoders_device: torch.device | None = None  # the text encoders' own device (the CPU), when not ``device``

    def _adopt(self, pipe: Any, parts: tuple[str, ...], needs: str, model_id: str | None) -> None:
        """Check the pipeline's parts, freeze every network in eval mode, silence its progress bars."""
        for part in parts:
            if getattr(pipe, part, None) is None:
                raise CycleDiffError(f"the pipeline has no {part}; {needs}")
        self.pipe = pipe
        for name in NETWORKS:
            module = getattr(pipe, name, None)  # the parts a pipeline kind has
            if module is not None:
                module.eval().requires_grad_(False)
        from diffusers import DiffusionPipeline

        if isinstance(pipe, DiffusionPipeline):
            pipe.set_progress_bar_config(disable=True)
        named = getattr(pipe, "name_or_path", None)  # a Path when the pipeline was loaded from one
        self.model_id = model_id if model_id is not None else (str(named) if named else None)
        self._warned_prompts: set[str] = set()

    @classmethod
    def from_pipe(cls, pipe: Any, *, model_id: str | None = None) -> Any:
        """Wrap an already-built diffusers pipeline of the adapter's family."""
        return cls(pipe, model_id=model_id)

    @property
    def vae(self) -> Any:
        return self.codec.vae

    def cfg_condition(self, batch_size: int, prompt: Any, negative_prompt: Any, guidance_scale: float) -> Any:
        """The condition of a family with plain classifier-free guidance over its own ``_encode``: the prompts'
        embeddings, and at a scale w ≠ 1 the negative prompts' ("" where none is given, as those pipelines do)."""
        prompts = as_list("" if prompt is None else prompt, batch_size, "prompt")
        negatives = as_list(negative_prompt, batch_size, "negative_prompt")
        w = condition_scale(guidance_scale)
        cond = self._encode(prompts)
        uncond = self._encode(negatives or [""] * batch_size) if w != 1 else None
        record: dict[str, Any] = {"prompt": prompts, "guidance_scale": w}
        if negatives is not None:
            record["negative_prompt"] = negatives
        return Condition(inputs={"cond": cond, "uncond": uncond, "scale": w}, record=record)

    def load_lora(self, source: str | Path, scale: float = 1.0, *, name: str | None = None) -> Any:
        """A LoRA adapter on the pipeline through diffusers' ``load_lora_weights`` (its diffusers, kohya and peft
        layouts, a file or a folder), active at ``scale``; several stack (``set_adapters``). A file of another
        model family, or a legacy pickle, is refused in one line before it is applied. ``low-noise=PATH``: into
        the second, low-noise transformer of Wan 2.2 A14B (:data:`~cyclediff.models.lora.STAGES`)."""
        from .lora import STAGES, check_lora_family, check_scale, lora_file, lora_stage, size_mismatch

        stage, source = lora_stage(source)
        into = {} if stage is None else {f"load_into_{STAGES[stage]}": True}
        if into and getattr(self.pipe, STAGES[stage], None) is None:
            raise CycleDiffError(f"{stage}= is for a model with a second, low-noise transformer (Wan 2.2 A14B); "
                                 f"{self.kind} has none here: drop '{stage}='")

        if getattr(self.pipe, "load_lora_weights", None) is None:  # diffusers' LongCatImagePipeline has no loader
            raise CycleDiffError(f"{self.kind} takes no LoRA here: diffusers' {type(self.pipe).__name__} has no LoRA "
                                 "loader; drop --lora")
        scale = check_scale(scale, source)  # a NaN scale made every output black
        file = lora_file(source)
        check_not_legacy_pickle(file)  # refused before anything reads it
        check_lora_family(Path(source), checkpoint_keys(file), self)
        loras = self.__dict__.setdefault("_loras", {})
        taken = self.pipe.__dict__.setdefault("_cyclediff_names", set())  # adapter names in the shared pipeline
        name = name or f"lora{len(taken)}"
        try:
            with diffusers_quiet():
                self.pipe.load_lora_weights(str(source), adapter_name=name, **into)
                self.pipe.set_adapters([*loras, name], [*loras.values(), scale])
            for part in NETWORKS:  # peft makes the new adapter trainable: frozen like the rest (no autograd graphs)
                module = getattr(self.pipe, part, None)
                if module is not None:
                    module.requires_grad_(False)
        except (ValueError, KeyError, OSError, RuntimeError) as err:
            raise size_mismatch(source, file, err, self) or CycleDiffError(
                f"the LoRA {source} does not load into {self.kind}: {str(err).splitlines()[0]}") from err
        loras[name] = scale
        taken.add(name)
        self.pipe._cyclediff_active = tuple(loras.items())
        return self

    def with_lora(self, lora: Any, scale: float = 1.0) -> Any:
        """This model with LoRA adapters on (``lora``: one path at ``scale``, or a list of ``PATH[:scale]``
        strings / (path, scale) pairs), as a second model that shares every weight with this one: one pipeline in
        memory, the adapters switched on for the variant's calls (its prompts and its network) and off for this
        model's. Translation between a
        model and its own style (``translate(x, model, model.with_lora("style.safetensors"))``) loads the base
        weights once and equals translating between two separately loaded models."""
        import copy

        from .lora import parse_lora

        pairs = [(str(lora), float(scale))] if isinstance(lora, (str, Path)) else [
            parse_lora(item) if isinstance(item, str) else item for item in lora]
        twin = copy.copy(self)
        twin._loras = dict(self.__dict__.get("_loras", {}))
        for path, weight in pairs:
            twin.load_lora(path, weight)
        self.use_adapters()  # back to this model's own adapters until the variant runs
        return twin

    def use_adapters(self) -> None:
        """The pipeline's active adapters set to this model's (a LoRA variant shares the pipeline with its base):
        called before each prompt encoding and network call; nothing to do when they are active already."""
        wanted = tuple(self.__dict__.get("_loras", {}).items())
        if self.pipe.__dict__.get("_cyclediff_active", ()) == wanted:
            return
        with diffusers_quiet():
            if wanted:
                self.pipe.enable_lora()
                self.pipe.set_adapters([n for n, _ in wanted], [w for _, w in wanted])
            else:
                self.pipe.disable_lora()
        self.pipe._cyclediff_active = wanted

    @property
    def device(self) -> torch.device:
        """Where the network runs and its inputs are made (under offloading not where its weights are stored)."""
        return self.execution_device or self.network.device

    @property
    def text_device(self) -> torch.device:
        """Where the text encoders run (the prompts' embeddings are made there and moved to ``device``)."""
        return self.text_encoders_device or self.device

    @property
    def dtype(self) -> torch.dtype:
        return self.network.dtype

    def schedule_for(self, shape: tuple[int, ...]) -> Schedule:
        return self.schedule

    def __call__(self, x_t: torch.Tensor, t: float, condition: Condition) -> torch.Tensor:
        return self.predict_batch([(x_t, condition)], t)[0]

    def predict_batch(self, branches: list[tuple[torch.Tensor, Condition]], t: float) -> list[torch.Tensor]:
        raise NotImplementedError

    def _warn_if_truncated(self, prompts: list[str], tokenizers: list[Any]) -> None:
        """One short warning per over-long prompt (per model), however often the prompt is encoded."""
        limit = min(tok.model_max_length for tok in tokenizers)
        for p in dict.fromkeys(prompts):
            if p in self._warned_prompts:
                continue
            n = max(len(tok(p, truncation=False, verbose=False).input_ids) for tok in tokenizers)
            if n > limit:
                self._warned_prompts.add(p)
                shown = p if len(p) <= 40 else p[:40] + "…"
                warnings.warn(f"prompt {shown!r} has {n} tokens; the text encoder reads the first {limit}, the "
                              "rest is ignored", stacklevel=4)


def guided_rows(c: Condition, *names: str) -> tuple[float, list[dict[str, Any]]]:
    """The row groups of one branch for :func:`~cyclediff.models.base.stack_branches`: at guidance scale 1 the
    conditional inputs alone, at 0 the unconditional ones alone, else (unconditional, conditional). ``names`` are
    the condition's inputs to stack; ``cond`` and ``pooled`` have unconditional twins (``uncond``,
    ``uncond_pooled``), the others are the same for both rows."""
    w = c.inputs["scale"]
    parts = ["cond"] if w == 1 else (["uncond"] if w == 0 else ["uncond", "cond"])
    twin = {"cond": "uncond", "pooled": "uncond_pooled"}
    return w, [{n: c.inputs[n if part == "cond" else twin.get(n, n)] for n in names} for part in parts]


__all__ = ["PromptModel", "SINGLE_FILE_SUFFIXES", "as_list", "check_latents", "check_not_legacy_pickle",
           "checkpoint_keys", "diffusers_quiet", "guided_rows", "load_pipeline"]
