"""GPU editing speed: cyclediff's edit (eager and compiled) against diffusers' CycleDiffusionPipeline, same GPU,
same process, same SD-1.5-sized pipeline with random weights (the cost does not depend on the values).

    PYTHONPATH=src:tests python benchmarks/gpu_edit.py --preset sd15            # a GPU, about 5 minutes
    PYTHONPATH=src:tests python benchmarks/gpu_edit.py --preset tiny --device cpu --steps 10   # smoke test

Settings (the issue's): 512×512, 100 steps at strength 0.8 (80 run), η 0.1, target guidance 3, source guidance 1,
float16 weights, the sampler maths in float32. Phases, each printing one JSON line (and appending it to --log):

- ``reference``: CycleDiffusionPipeline at batch 1 (4 UNet rows per step: it guides the source branch too);
- ``ours_eager``: edit() at batch 1, eager UNet (3 rows per step: source scale 1 needs no unconditional row);
- ``ours_compiled``: the same after ``model.optimize(compile=True)`` (inductor kernels replayed as CUDA graphs);
  ``compile_s`` is the first call's time;
- ``floor``: the UNet alone at the edit's shape (eager and compiled), timed with CUDA events; floor = steps run ×
  one call. ``overhead`` = edit time / floor (VAE, text encoder and sampler maths included);
- ``sync_check``: one compiled edit with ``torch.cuda.set_sync_debug_mode("error")`` inside the step loop: any
  host synchronisation there raises;
- ``throughput``: compiled edit at larger batches (one compilation per batch size): images/s and peak memory;
- ``accuracy``: the float16 compiled images against an eager float32 copy of the same weights;
- ``sdxl`` (``--sdxl``): an SDXL-sized pipeline at 1024×1024, ours eager and CUDA-graph captured (diffusers has no
  SDXL CycleDiffusion to compare with).

The last line is the summary with the issue's three ratios. ``--deadline`` (seconds) skips phases that would
start after it, so a lease-limited run still reports what it measured.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    CycleDiffusionPipeline,
    DDIMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from diffusers.utils import logging as diffusers_logging
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from cyclediff import edit
from cyclediff.models import StableDiffusion
from tiny_sd import SD_SCHEDULER, sd_pipeline, tokenizer

diffusers_logging.set_verbosity_error()
START = time.perf_counter()


# ------------------------------------------------------------------------------------------------ pipelines
def text_model(vocab: int, hidden: int, layers: int, heads: int, projection: int | None = None):
    config = CLIPTextConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=4 * hidden,
                            num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=77,
                            projection_dim=projection or hidden, hidden_act="quick_gelu" if hidden == 768 else "gelu",
                            bos_token_id=vocab - 2, eos_token_id=vocab - 1, pad_token_id=vocab - 1)
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def sd_vae() -> AutoencoderKL:
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         layers_per_block=2, sample_size=512, norm_num_groups=32)


def sd15(device: str, dtype: torch.dtype) -> StableDiffusionPipeline:
    """SD 1.5's shapes: UNet 320/640/1280/1280 with 768-wide cross-attention (860M parameters), its VAE, CLIP-L."""
    tok = tokenizer(Path(tempfile.mkdtemp()) / "tok", max_length=77)
    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
        pipe = StableDiffusionPipeline(
            vae=sd_vae(), text_encoder=text_model(len(tok), 768, 12, 12), tokenizer=tok, unet=unet,
            scheduler=DDIMScheduler(**SD_SCHEDULER), safety_checker=None, feature_extractor=None,
            requires_safety_checker=False)
    return pipe.to(device, dtype)


def sdxl(device: str, dtype: torch.dtype) -> StableDiffusionXLPipeline:
    """SDXL's shapes: UNet 320/640/1280 with 1/2/10 transformer layers (2.6B parameters), CLIP-L + bigG."""
    tmp = Path(tempfile.mkdtemp())
    tok, tok2 = tokenizer(tmp / "tok", max_length=77), tokenizer(tmp / "tok2", max_length=77)
    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(
            sample_size=128, block_out_channels=(320, 640, 1280),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
            use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816)
        pipe = StableDiffusionXLPipeline(
            vae=sd_vae(), text_encoder=text_model(len(tok), 768, 12, 12), tokenizer=tok,
            text_encoder_2=text_model(len(tok2), 1280, 32, 20, projection=1280), tokenizer_2=tok2, unet=unet,
            scheduler=DDIMScheduler(**SD_SCHEDULER))
    return pipe.to(device, dtype)


def tiny(device: str, dtype: torch.dtype) -> StableDiffusionPipeline:
    return sd_pipeline(Path(tempfile.mkdtemp())).to(device, dtype)


# ------------------------------------------------------------------------------------------------ timing
def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str, repeats: int) -> tuple[float, list[float]]:
    """(median seconds, all) of ``repeats`` calls after the caller's warm-up."""
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


@torch.no_grad()
def unet_call_seconds(sd: StableDiffusion, rows: int, device: str, repeats: int = 30) -> float:
    """Seconds per UNet call with ``rows`` rows at the model's latent size, through the model's runner (eager or
    compiled as the model is set up): ``repeats`` calls back to back, as in the step loop (the host queues the
    next call while the device runs this one), timed with CUDA events around all of them."""
    c, h, w = sd.sample_shape
    x = torch.randn(rows, c, h, w, device=device)
    cond = sd.prepare_condition(rows, prompt="a photo", guidance_scale=1.0)
    for i in range(3):
        sd.predict_batch([(x, cond)], 500 + i)
    sync(device)
    start = time.perf_counter()
    if device.startswith("cuda"):
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
    for i in range(repeats):
        sd.predict_batch([(x, cond)], 600 + i)
    if device.startswith("cuda"):
        end.record()
        end.synchronize()
        return begin.elapsed_time(end) / 1000 / repeats
    return (time.perf_counter() - start) / repeats


def batch_sizes(text: str) -> list[int]:
    return [int(b) for b in text.split(",") if b.strip()]


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.results = args, {}
        self.log = open(args.log, "a") if args.log else None  # noqa: SIM115 - kept open for the run

    def emit(self, phase: str, **fields) -> None:
        record = {"phase": phase, "t": round(time.perf_counter() - START, 1), **fields}
        self.results[phase] = record
        line = json.dumps(record)
        print(line, flush=True)
        if self.log:
            self.log.write(line + "\n")
            self.log.flush()

    def time_left(self, needed: float) -> bool:
        return self.args.deadline is None or time.perf_counter() - START + needed < self.args.deadline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=["sd15", "tiny"], default="sd15")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], default="float16")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--strength", type=float, default=0.8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", default="8,16,32", help="batch sizes for the throughput phase")
    parser.add_argument("--sdxl", action="store_true", help="also time an SDXL-sized pipeline (eager, CUDA graphs)")
    parser.add_argument("--deadline", type=float, default=None, help="seconds; later phases are skipped")
    parser.add_argument("--log", default=None, help="append every JSON line to this file")
    parser.add_argument("--eager-profile", action="store_true",
                        help="only: eager ours and reference interleaved, and where each spends host time")
    args = parser.parse_args()
    bench = Bench(args)
    device, dtype = args.device, getattr(torch, args.dtype)
    cuda = device.startswith("cuda")
    build = sd15 if args.preset == "sd15" else tiny
    pipe = build(device, dtype)
    sd = StableDiffusion.from_pipe(pipe)
    size = sd.sample_shape[1] * sd.codec.factor
    run_steps = len(sd.schedule.timesteps(args.steps, args.strength))
    bench.emit("setup", gpu=torch.cuda.get_device_name() if cuda else "cpu", torch=torch.__version__,
               preset=args.preset, size=size, dtype=args.dtype, steps=args.steps, steps_run=run_steps,
               unet_params_m=round(sum(p.numel() for p in sd.unet.parameters()) / 1e6, 1),
               attention=sorted({type(p).__name__ for p in sd.unet.attn_processors.values()}))
    g = torch.Generator().manual_seed(0)
    photos = torch.rand(max([1] + batch_sizes(args.batches)), 3, size, size, generator=g).to(device)
    settings = dict(strength=args.strength, eta=0.1, guidance_scale=3.0, source_guidance_scale=1.0)

    ref = CycleDiffusionPipeline(vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
                                 unet=pipe.unet, scheduler=DDIMScheduler(**SD_SCHEDULER), safety_checker=None,
                                 feature_extractor=None, requires_safety_checker=False)
    ref.set_progress_bar_config(disable=True)

    def reference():
        return ref(prompt="a dog", source_prompt="a cat", image=photos[:1], num_inference_steps=args.steps,
                   generator=torch.Generator().manual_seed(0), output_type="pt", **settings).images

    def ours(batch: int = 1):
        return edit(sd, photos[:batch], source_prompt="a cat", prompt="a dog", steps=args.steps,
                    generator=[torch.Generator().manual_seed(i) for i in range(batch)], **settings).images

    if args.eager_profile:
        eager_profile(bench, reference, ours, device, args.repeats)
        return

    # --- batch 1: the reference, ours eager (channels-last off and on), UNet floors
    reference()
    ref_s, ref_all = timed(reference, device, args.repeats)
    bench.emit("reference", seconds_per_edit=round(ref_s, 4), runs=[round(t, 4) for t in ref_all],
               unet_rows_per_step=4)
    sd.optimize(compile=False, channels_last=True)
    ours()
    eager_cl, _ = timed(ours, device, args.repeats)
    sd.optimize(compile=False)  # eager: contiguous by default
    ours()
    eager_s, eager_all = timed(ours, device, args.repeats)
    eager_call = unet_call_seconds(sd, 3, device)
    ref_call = unet_call_seconds(sd, 4, device)
    bench.emit("ours_eager", seconds_per_edit=round(eager_s, 4), runs=[round(t, 4) for t in eager_all],
               seconds_channels_last=round(eager_cl, 4), unet_rows_per_step=3,
               unet_call_ms=round(eager_call * 1e3, 3), floor_s=round(run_steps * eager_call, 4),
               overhead=round(eager_s / (run_steps * eager_call), 3),
               reference_floor_s=round(run_steps * ref_call, 4), reference_unet_call_ms=round(ref_call * 1e3, 3))

    # --- batch 1 compiled (inductor + CUDA graphs on CUDA)
    sd.optimize(compile=True)
    t0 = time.perf_counter()
    ours()
    sync(device)
    compile_s = time.perf_counter() - t0
    ours()
    fast_s, fast_all = timed(ours, device, args.repeats)
    fast_call = unet_call_seconds(sd, 3, device)
    floor = run_steps * fast_call
    bench.emit("ours_compiled", seconds_per_edit=round(fast_s, 4), runs=[round(t, 4) for t in fast_all],
               compile_s=round(compile_s, 1), unet_call_ms=round(fast_call * 1e3, 3), floor_s=round(floor, 4),
               overhead=round(fast_s / floor, 3), settings=sd.runner.settings)

    # --- no host synchronisation inside the step loop
    if cuda:
        cycle_module = importlib.import_module("cyclediff.cycle")  # the name cyclediff.cycle is the function
        original = cycle_module.progress_steps

        def strict(*a, **k):
            torch.cuda.set_sync_debug_mode("error")
            try:
                yield from original(*a, **k)
            finally:
                torch.cuda.set_sync_debug_mode("default")

        cycle_module.progress_steps = strict
        try:
            ours()
            bench.emit("sync_check", host_syncs_in_loop=0)
        except RuntimeError as err:
            bench.emit("sync_check", host_syncs_in_loop="error", error=str(err)[:300])
        finally:
            cycle_module.progress_steps = original

    best = {"batch": 1, "images_per_s": 1 / fast_s, "peak_gb": None}
    try:
        optional_phases(bench, sd, ours, (photos, settings, fast_s, compile_s, run_steps, g), best)
    except Exception as err:  # noqa: BLE001 - report and still print the summary of what was measured
        bench.emit("error", error=f"{type(err).__name__}: {str(err)[:500]}")
    bench.emit("summary", gpu=bench.results["setup"]["gpu"], reference_s=round(ref_s, 4),
               ours_eager_s=round(eager_s, 4), ours_compiled_s=round(fast_s, 4),
               batch1_ratio=round(fast_s / ref_s, 3), target_batch1_ratio="<= 0.5",
               best_batch=best["batch"], images_per_s=round(best["images_per_s"], 3),
               throughput_vs_reference=round(best["images_per_s"] * ref_s, 2), target_throughput=">= 3",
               floor_s=round(floor, 4), overhead=round(fast_s / floor, 3), target_overhead="<= 1.15",
               peak_gb=None if best["peak_gb"] is None else round(best["peak_gb"], 2))


def eager_profile(bench: Bench, reference, ours, device: str, repeats: int) -> None:
    """Eager ours vs the reference, interleaved, and the host-side operators each spends its time in."""
    reference()
    ours()
    pairs = [(timed(reference, device, 1)[0], timed(ours, device, 1)[0]) for _ in range(repeats)]
    bench.emit("eager_interleaved", reference=[round(r, 3) for r, _ in pairs], ours=[round(o, 3) for _, o in pairs])
    from torch.profiler import ProfilerActivity, profile

    for name, fn in (("reference", reference), ("ours", ours)):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
            sync(device)
        rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:14]
        bench.emit(f"profile_{name}", top_self_cpu_ms={e.key: [round(e.self_cpu_time_total / 1e3, 1), e.count]
                                                       for e in rows})


def optional_phases(bench: Bench, sd: StableDiffusion, ours, extra: tuple, best: dict) -> None:
    """Throughput, accuracy and SDXL: each skipped when the deadline is near."""
    photos, settings, fast_s, compile_s, run_steps, g = extra
    args = bench.args
    device, dtype, cuda = args.device, getattr(torch, args.dtype), args.device.startswith("cuda")
    build = sd15 if args.preset == "sd15" else tiny
    # --- throughput at larger batches (compiled; one compilation per batch size)
    for batch in batch_sizes(args.batches):
        if not bench.time_left(needed=compile_s + 3 * batch * fast_s + 30):
            bench.emit("throughput", batch=batch, skipped="deadline")
            continue
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        ours(batch)
        sync(device)
        first = time.perf_counter() - t0
        seconds, _ = timed(lambda b=batch: ours(b), device, 2)
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
        rate = batch / seconds
        bench.emit("throughput", batch=batch, seconds=round(seconds, 3), images_per_s=round(rate, 3),
                   first_call_s=round(first, 1), peak_gb=None if peak is None else round(peak, 2))
        if rate > best["images_per_s"]:
            best.update(batch=batch, images_per_s=rate, peak_gb=peak)

    # --- accuracy: float16 compiled against eager float32 weights
    if args.dtype != "float32" and bench.time_left(needed=60):
        fast_images = ours()
        sd32 = StableDiffusion.from_pipe(build(device, torch.float32))
        exact = edit(sd32, photos[:1], source_prompt="a cat", prompt="a dog", steps=args.steps,
                     generator=[torch.Generator().manual_seed(0)], **settings).images
        diff = (fast_images.float() - exact.float()).abs()
        bench.emit("accuracy", max_abs=round(float(diff.max()), 4), mean_abs=round(float(diff.mean()), 5),
                   note=f"images in [0, 1]; random weights, {run_steps} chained steps")
        del sd32

    # --- SDXL-sized, eager and CUDA-graph captured (no diffusers reference exists)
    if args.sdxl and cuda and bench.time_left(needed=120):
        sd.optimize(compile=False)
        torch.cuda.empty_cache()
        xl = StableDiffusion.from_pipe(sdxl(device, dtype))
        xl_photo = torch.rand(1, 3, 1024, 1024, generator=g).to(device)

        def ours_xl():
            return edit(xl, xl_photo, source_prompt="a cat", prompt="a dog", steps=args.steps,
                        generator=[torch.Generator().manual_seed(0)], **settings).images

        ours_xl()
        xl_eager, _ = timed(ours_xl, device, 2)
        xl_call = unet_call_seconds(xl, 3, device, repeats=10)
        xl.optimize(compile=True, backend="cudagraphs")
        ours_xl()
        xl_graph, _ = timed(ours_xl, device, 2)
        xl_graph_call = unet_call_seconds(xl, 3, device, repeats=10)
        bench.emit("sdxl", seconds_eager=round(xl_eager, 3), floor_eager_s=round(run_steps * xl_call, 3),
                   seconds_cuda_graphs=round(xl_graph, 3), floor_cuda_graphs_s=round(run_steps * xl_graph_call, 3),
                   peak_gb=round(torch.cuda.max_memory_allocated() / 2**30, 2))


if __name__ == "__main__":
    main()
