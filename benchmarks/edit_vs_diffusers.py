"""Time cyclediff's edit() against diffusers' CycleDiffusionPipeline on the same small SD pipeline, in one run.

    .venv/bin/python benchmarks/edit_vs_diffusers.py             # CPU, about 7 minutes
    .venv/bin/python benchmarks/edit_vs_diffusers.py --device cuda --repeats 10

The pipeline is built from configs with random weights (the cost does not depend on the values): a UNet with
64/128 channels on 32×32×4 latents (so that the UNet dominates, as on real models), a small VAE and text
encoder. Both tools run the same settings (source guidance 1, target guidance 3, η 0.1, strength 0.8); repeats
are interleaved and min / median reported. Batch 8: ours in one call against 8 reference calls (the reference's
batch indexing assumes one image under guidance). Prints one JSON line per case and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from diffusers import CycleDiffusionPipeline, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.utils import logging as diffusers_logging
from transformers import CLIPTextModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from cyclediff import edit  # noqa: E402
from cyclediff.models import StableDiffusion  # noqa: E402
from tiny_sd import SD_SCHEDULER, text_config, tokenizer, vae  # noqa: E402

diffusers_logging.set_verbosity_error()


def build(device: str) -> StableDiffusionPipeline:
    tok = tokenizer(Path(tempfile.mkdtemp()) / "tok")
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=32, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(64, 128),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32,
    )
    pipe = StableDiffusionPipeline(
        vae=vae(0), text_encoder=CLIPTextModel(text_config(len(tok), hidden=32)), tokenizer=tok, unet=unet,
        scheduler=DDIMScheduler(**SD_SCHEDULER), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    return pipe.to(device)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--strength", type=float, default=0.8)
    parser.add_argument("--guidance-scale", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    pipe = build(args.device)
    ref = CycleDiffusionPipeline(vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
                                 unet=pipe.unet, scheduler=DDIMScheduler(**SD_SCHEDULER), safety_checker=None,
                                 feature_extractor=None, requires_safety_checker=False)
    ref.set_progress_bar_config(disable=True)
    sd = StableDiffusion.from_pipe(pipe)
    size = 32 * sd.codec.factor
    g = torch.Generator().manual_seed(0)
    images = torch.rand(8, 3, size, size, generator=g).to(args.device)
    settings = dict(strength=args.strength, eta=0.1, guidance_scale=args.guidance_scale, source_guidance_scale=1.0)

    def ours(batch: int):
        return edit(sd, images[:batch], source_prompt="a cat", prompt="a dog", steps=args.steps,
                    generator=[torch.Generator().manual_seed(i) for i in range(batch)], **settings).images

    def reference(batch: int):
        return [ref(prompt="a dog", source_prompt="a cat", image=images[i:i + 1], num_inference_steps=args.steps,
                    generator=torch.Generator().manual_seed(i), output_type="pt", **settings).images
                for i in range(batch)]

    # agreement first (batch 1, same seed)
    diff = (ours(1) - reference(1)[0]).abs().max().item()
    rows = []
    for batch in (1, 8):
        times: dict[str, list[float]] = {"cyclediff": [], "diffusers": []}
        ours(batch), reference(1)  # warm-up
        for _ in range(args.repeats):  # interleaved
            for name, fn in (("cyclediff", ours), ("diffusers", reference)):
                sync(args.device)
                start = time.perf_counter()
                with torch.no_grad():
                    fn(batch)
                sync(args.device)
                times[name].append(time.perf_counter() - start)
        row = {"batch": batch, "device": args.device, "steps_run": int(args.steps * args.strength),
               "guidance": [args.guidance_scale, 1.0],
               **{f"{k}_min_s": round(min(v), 4) for k, v in times.items()},
               **{f"{k}_median_s": round(statistics.median(v), 4) for k, v in times.items()}}
        row["ratio_min"] = round(row["cyclediff_min_s"] / row["diffusers_min_s"], 3)
        row["ratio_median"] = round(row["cyclediff_median_s"] / row["diffusers_median_s"], 3)
        row["max_abs_diff_batch1"] = diff
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| batch | diffusers min / median (s) | cyclediff min / median (s) | ratio (min) | ratio (median) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['batch']} | {r['diffusers_min_s']} / {r['diffusers_median_s']} | {r['cyclediff_min_s']} / "
              f"{r['cyclediff_median_s']} | {r['ratio_min']} | {r['ratio_median']} |")
    print(f"\nmax |ours − reference| at batch 1: {diff:.1e}")


if __name__ == "__main__":
    main()
