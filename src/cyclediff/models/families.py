"""Model families as records: one :class:`Family` per kind of model cyclediff loads, holding every fact the loaders
ask about it (its adapter, the pipelines it accepts, the tensor names that tell its files, its denoising network's
folder and class, the LoRA key fragments, a GGUF network's default pipeline, the words messages use). The loaders
(:mod:`~cyclediff.models.loading`, :mod:`~cyclediff.models.quantize`, :mod:`~cyclediff.models.gguf`,
:mod:`~cyclediff.models.lora`) read these records; a new family is its adapter module and one record here.

Tensor names are told in two passes: first every family's *distinctive* fragments (``double_blocks`` is only
FLUX's, ``joint_blocks`` only SD3's), then the *layout* of a whole network in diffusers' names, whose fragments many
families share (most DiTs have ``transformer_blocks``): a file is claimed by a layout only when no family's
distinctive fragments are in it. LoRA files are told by their own fragments (a LoRA holds a few layers, never a
whole layout), so a LoRA of generic DiT layers is claimed by no family and goes to diffusers as it is."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import CycleDiffError


@dataclass(frozen=True)
class Family:
    """What cyclediff knows of one model family (see the module's text)."""

    #: the family's key (``model.family``, ``kind`` in the loaders), e.g. "sd3"
    name: str
    #: how messages name it, e.g. "SD3 / SD3.5"
    title: str
    #: "module:Class" of its adapter in this package, imported on first use
    adapter: str
    #: class-name prefixes of the diffusers pipelines it accepts (model_index.json's ``_class_name``, from_pipe)
    pipelines: tuple[str, ...] = ()
    #: or: the components a pipeline of it has (each one present), for pipelines not named in ``pipelines``
    components: tuple[str, ...] = ()
    #: and (when given) the class-name prefixes its scheduler must have (a rectified-flow UNet's FlowMatch)
    schedulers: tuple[str, ...] = ()
    #: tensor-name fragments only this family's checkpoints carry (single files, GGUF; original or diffusers layout)
    keys: tuple[str, ...] = ()
    #: its network's diffusers layout: each group must have a fragment in the names (asked after every ``keys``)
    layout: tuple[tuple[str, ...], ...] = ()
    #: the pipeline folder of its denoising network and the network's diffusers class (quantize, GGUF)
    network: str | None = None
    network_class: str | None = None
    #: (what a LoRA is for, its key fragments): the LoRAs this family takes, most specific first
    lora: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: families whose LoRA layout this family shares (Chroma's and HunyuanVideo's LoRAs carry FLUX's block names)
    lora_like: tuple[str, ...] = ()
    #: tensor names of a GGUF network -> the hub id of its official pipeline (None: --base must be given)
    gguf_base: Callable[[list[str]], str] | None = None
    #: recommended edit settings for models of this family ({}: the settings' own defaults)
    defaults: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def adapter_class(self) -> Any:
        """The adapter class (its module imported now)."""
        import importlib

        module, name = self.adapter.split(":")
        return getattr(importlib.import_module(f"{__package__}.{module}"), name)

    @property
    def lora_labels(self) -> tuple[str, ...]:
        """What the LoRAs this family takes are said to be for, e.g. ("SDXL", "Stable Diffusion")."""
        return tuple(label for label, _ in self.lora)


def _flux_base(keys: list[str]) -> str:
    """FLUX.1-dev embeds its guidance scale (``guidance_in`` / ``guidance_embedder``); schnell does not."""
    guided = _has(keys, ("guidance_in", "guidance_embedder"))
    return "black-forest-labs/FLUX.1-dev" if guided else "black-forest-labs/FLUX.1-schnell"


def _sd3_base(keys: list[str]) -> str:
    """SD3.5 large has 38 joint blocks, medium 24."""
    blocks = {k.split(".")[1] for k in keys if k.startswith(("joint_blocks.", "transformer_blocks."))}
    return "stabilityai/stable-diffusion-3.5-large" if len(blocks) > 30 else "stabilityai/stable-diffusion-3.5-medium"


def _chroma_base(keys: list[str]) -> str:
    return "lodestones/Chroma1-HD"


def _qwenimage_base(keys: list[str]) -> str:
    return "Qwen/Qwen-Image"


# the order is the order of asking: Chroma before FLUX (a Chroma network has FLUX's blocks and its own modulation
# approximator), FLUX before SD3 (a FLUX network also has SD3's layout: transformer_blocks and a context_embedder),
# the flow pixel UNet before the plain one (both have a UNet and a scheduler)
FAMILIES: tuple[Family, ...] = (
    # HunyuanVideo 1.5 before 1.0: its transformer has 1.0's token refiner (context_embedder.token_refiner) and its
    # own condition-type embedding (cond_type_embed in diffusers' names, cond_type_embedding in Tencent's)
    Family("hunyuan-video-1.5", "HunyuanVideo 1.5 (video)", "hunyuan_video15:HunyuanVideo15",
           pipelines=("HunyuanVideo15Pipeline",), keys=("cond_type_embed",), network="transformer",
           network_class="HunyuanVideo15Transformer3DModel",
           # a checkpoint's guider may say another guidance scale; strength as the other flow families
           # not a default: the pipeline's 50 steps, HunyuanVideo's guidance 6
           defaults={"steps": 50, "strength": 0.8, "guidance_scale": 6.0}),
    # HunyuanVideo first: its original files have FLUX's double_blocks / single_blocks, its diffusers layout FLUX's
    # single_transformer_blocks; the text token refiner is its own (HunyuanVideo's names, diffusers' names)
    Family("hunyuan-video", "HunyuanVideo (video)", "hunyuan_video:HunyuanVideo", pipelines=("HunyuanVideoPipeline",),
           keys=("txt_in.individual_token_refiner.", "context_embedder.token_refiner."), network="transformer",
           network_class="HunyuanVideoTransformer3DModel",
           lora=(("HunyuanVideo", ("img_attn_qkv", "txt_attn_qkv", "individual_token_refiner", "token_refiner")),),
           lora_like=("flux",),
           # not a default: HunyuanVideo's card (50 steps, embedded guidance 6); strength as the other flow families
           defaults={"steps": 50, "strength": 0.8, "guidance_scale": 6.0}),
    # FLUX.2 first: its pipelines' names start with FLUX.1's prefix "Flux", its networks have FLUX.1's
    # single_transformer_blocks; its modulation layers and fused single-block projection are its own
    Family("flux2", "FLUX.2 [dev] / [klein]", "flux2:Flux2", pipelines=("Flux2",),
           keys=("single_stream_modulation.", "double_stream_modulation_img.", "to_qkv_mlp_proj."),
           network="transformer", network_class="Flux2Transformer2DModel",
           lora=(("FLUX.2", ("to_qkv_mlp_proj", "ff.linear_in", "ff_context.linear_in", "stream_modulation")),),
           defaults={"steps": 28, "guidance_scale": 4.0}),  # dev's card; klein Base: 50 steps
    Family("chroma", "Chroma", "chroma:Chroma", pipelines=("Chroma",), keys=("distilled_guidance_layer.",),
           network="transformer", network_class="ChromaTransformer2DModel", gguf_base=_chroma_base, lora_like=("flux",),
           defaults={"steps": 40, "guidance_scale": 4.0}),
    Family("flux", "FLUX.1", "flux:Flux", pipelines=("Flux",),
           keys=("double_blocks.", "single_blocks.", "single_transformer_blocks.", "guidance_in."),
           network="transformer", network_class="FluxTransformer2DModel",
           lora=(("FLUX", ("single_transformer_blocks", "double_blocks", "single_blocks")),), gguf_base=_flux_base),
    # Qwen-Image after FLUX (a FLUX LoRA in BFL's layout also names img_mlp / img_mod, inside double_blocks)
    Family("qwenimage", "Qwen-Image", "qwenimage:QwenImage",
           pipelines=("QwenImagePipeline", "QwenImageImg2ImgPipeline", "QwenImageInpaintPipeline"),
           keys=("img_mod.1.", "txt_mod.1."), network="transformer", network_class="QwenImageTransformer2DModel",
           lora=(("Qwen-Image", ("img_mlp", "txt_mlp", "img_mod", "txt_mod")),), gguf_base=_qwenimage_base,
           # not a default: Qwen-Image's model card (50 steps, true CFG 4), strength as the other flow families
           defaults={"steps": 50, "strength": 0.8, "guidance_scale": 4.0}),
    Family("z-image", "Z-Image", "z_image:ZImage",
           pipelines=("ZImagePipeline", "ZImageImg2ImgPipeline", "ZImageInpaintPipeline"), keys=("cap_pad_token",),
           network="transformer", network_class="ZImageTransformer2DModel",
           gguf_base=lambda keys: "Tongyi-MAI/Z-Image-Turbo",
           # not a default: Z-Image's card (50 steps, the pipeline's g = 4, our w = g + 1); Turbo: 8 steps, w = 1
           defaults={"steps": 50, "guidance_scale": 5.0}),
    # Lumina 2 after Z-Image (whose networks also have a cap_embedder and context / noise refiners)
    Family("lumina2", "Lumina 2", "lumina2:Lumina2", pipelines=("Lumina2",),
           keys=("cap_embedder.0.", "time_caption_embed.caption_embedder."),
           network="transformer", network_class="Lumina2Transformer2DModel",
           gguf_base=lambda keys: "Alpha-VLLM/Lumina-Image-2.0",
           # not a default: Lumina-Image-2.0's card (50 steps, guidance 4, the pipeline's renormalised CFG)
           defaults={"steps": 50, "guidance_scale": 4.0}),
    # HiDream-I1: its double- / single-stream blocks (the same names in HiDream's files and diffusers')
    Family("hidream", "HiDream-I1", "hidream_image:HiDreamImage", pipelines=("HiDreamImagePipeline",),
           keys=("double_stream_blocks.",), network="transformer", network_class="HiDreamImageTransformer2DModel",
           lora=(("HiDream-I1", ("double_stream_blocks", "single_stream_blocks")),),
           # not a default: HiDream-I1-Full's card (50 steps, guidance 5); Dev 28 / Fast 16 steps with guidance 0
           defaults={"steps": 50, "strength": 0.8, "guidance_scale": 5.0}),
    # CogView4 (its control pipeline takes a control image: not this family)
    Family("cogview4", "CogView4", "cogview4:CogView4", pipelines=("CogView4Pipeline",), network="transformer",
           network_class="CogView4Transformer2DModel",
           # not a default: CogView4-6B's card (50 steps, guidance 3.5)
           defaults={"steps": 50, "guidance_scale": 3.5}),
    # Wan's video transformer: its time projection (diffusers' names) or head modulation (Wan's own)
    Family("wan", "Wan 2.1 / 2.2 (video)", "wan:Wan", pipelines=("WanPipeline", "WanVideoToVideoPipeline"),
           keys=("condition_embedder.time_proj.", "head.modulation"), network="transformer",
           network_class="WanTransformer3DModel",
           # not a default: the Wan 2.1 card (50 steps, guidance 5); strength as the other flow families
           defaults={"steps": 50, "strength": 0.8, "guidance_scale": 5.0}),
    # LTX-Video: its patch projection in Lightricks' files; in diffusers' names the layout of proj_in, a caption
    # projection and a time embedding (asked after every family's keys)
    Family("ltx", "LTX-Video (video)", "ltx:LTXVideo", pipelines=("LTXPipeline", "LTXImageToVideoPipeline",
                                                                   "LTXConditionPipeline"),
           keys=("patchify_proj.",), layout=(("proj_in.",), ("caption_projection.",), ("time_embed.emb.",),
                                             ("transformer_blocks.",)),
           network="transformer", network_class="LTXVideoTransformer3DModel",
           gguf_base=lambda keys: "Lightricks/LTX-Video",
           # not a default: LTXPipeline's own (50 steps, guidance 3); strength as the other flow families
           defaults={"steps": 50, "strength": 0.8, "guidance_scale": 3.0}),
    Family("longcat-image", "LongCat-Image", "longcat_image:LongCatImage", pipelines=("LongCatImagePipeline",),
           network="transformer", network_class="LongCatImageTransformer2DModel",
           # not a default: LongCatImagePipeline's own (50 steps, guidance 4.5); strength as the other flow families
           defaults={"steps": 50, "strength": 0.8, "guidance_scale": 4.5}),
    # SANA: its GLUMBConv feed-forward (SANA's names, diffusers' names)
    Family("sana", "SANA", "sana:Sana", pipelines=("SanaPipeline",), keys=("mlp.inverted_conv.", "ff.conv_inverted."),
           network="transformer", network_class="SanaTransformer2DModel",
           # not a default: SanaPipeline's own (20 steps, guidance 4.5); strength as the other flow families
           defaults={"steps": 20, "strength": 0.8, "guidance_scale": 4.5}),
    Family("sd3", "SD3 / SD3.5", "sd3:StableDiffusion3", pipelines=("StableDiffusion3",), keys=("joint_blocks.",),
           layout=(("transformer_blocks.",), ("context_embedder.",), ("pos_embed.",)),
           network="transformer", network_class="SD3Transformer2DModel", lora=(("SD3", ("joint_blocks",)),),
           gguf_base=_sd3_base),
    Family("latent-diffusion", "Stable Diffusion (UNet)", "stable_diffusion:StableDiffusion",
           components=("unet", "vae"), layout=(("input_blocks.", "down_blocks."), ("time_embed", "time_embedding")),
           network="unet", network_class="UNet2DConditionModel",
           lora=(("SDXL", ("text_encoder_2", "lora_te2", "add_embedding")),
                 ("Stable Diffusion", ("unet.", "lora_unet_")))),
    # a video UNet (frames tiled or folded): its cyclediff.json's "frames" is a component (models/pixel_video.py)
    Family("flow-pixel-video", "a rectified-flow pixel video UNet (frames tiled or folded into channels)",
           "pixel_video:FlowPixelVideo", components=("unet", "scheduler", "frames"), schedulers=("FlowMatch",)),
    Family("flow-pixel", "a rectified-flow pixel UNet", "pixel:FlowPixelDenoiser", components=("unet", "scheduler"),
           schedulers=("FlowMatch",)),
    Family("pixel", "a pixel UNet", "pixel:PixelDenoiser", components=("unet",)),
)
_BY_NAME = {f.name: f for f in FAMILIES}


def family(name: str) -> Family:
    """The record of the family ``name`` (a model's ``family`` attribute, a loader's ``kind``)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise CycleDiffError(f"unknown model family {name!r}; the families are {', '.join(_BY_NAME)}") from None


def family_of_pipeline(class_name: str, components: Mapping[str, str]) -> Family | None:
    """The family of a diffusers pipeline: by its class name's prefix, else by its components (name -> class name
    of each part present) and its scheduler's class; None when no family takes it."""
    for fam in FAMILIES:
        if fam.pipelines and class_name.startswith(fam.pipelines):
            return fam
    for fam in FAMILIES:
        if fam.components and all(components.get(c) for c in fam.components) and (
                not fam.schedulers or str(components.get("scheduler", "")).startswith(fam.schedulers)):
            return fam
    return None


def family_of_keys(keys: Iterable[str]) -> Family | None:
    """The family of a network's tensor names (a single file's, a GGUF file's): a family's distinctive fragments
    first, then a whole layout; None when neither says."""
    keys = list(keys)
    for fam in FAMILIES:
        if fam.keys and _has(keys, fam.keys):
            return fam
    for fam in FAMILIES:
        if fam.layout and all(_has(keys, group) for group in fam.layout):
            return fam
    return None


def lora_match(keys: Iterable[str]) -> tuple[Family, str] | None:
    """(family, what it is for) of a LoRA's tensor names, or None when they say nothing clear."""
    found = lora_matches(keys)
    return found[0] if found else None


def lora_matches(keys: Iterable[str]) -> list[tuple[Family, str]]:
    """Every (family, what it is for) whose LoRA fragments a LoRA's tensor names carry, in the records' order."""
    keys = list(keys)
    return [(fam, label) for fam in FAMILIES for label, fragments in fam.lora if _has(keys, fragments)]


def _has(keys: list[str], fragments: Iterable[str]) -> bool:
    return any(f in k for k in keys for f in fragments)


__all__ = ["FAMILIES", "Family", "family", "family_of_keys", "family_of_pipeline", "lora_match"]
