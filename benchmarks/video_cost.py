"""The cost of a clip edit against its transformer floor, with Wan2.1-1.3B-, LTX-Video- and HunyuanVideo-sized
random transformers, and what encoding once then decoding N prompts saves against N FlowEdit runs.

    OMP_NUM_THREADS=1 PYTHONPATH=src:tests .venv/bin/python benchmarks/video_cost.py --prompts '' \
        --log benchmarks/results/video_cpu_ratios.jsonl        # the three families: about 6 CPU minutes, one thread
    OMP_NUM_THREADS=1 PYTHONPATH=src:tests .venv/bin/python benchmarks/video_cost.py --families wan-1.3b \
        --strength 0.25 --log benchmarks/results/video_cpu_ratios.jsonl     # Wan and N = 1, 4, 10: about 6 more
    PYTHONPATH=src:tests .venv/bin/python benchmarks/video_cost.py --size tiny --prompts 1,2   # smoke, seconds

The models: the test suite's tiny pipelines (tests/tiny_wan.py, tiny_ltx.py, tiny_hunyuan_video.py: their VAEs,
text encoders and schedulers), each with its transformer replaced by one of the published width, heads, FFN and
depth (benchmarks/video_families.py's configs: Wan2.1-T2V-1.3B 30 blocks of 12 × 128, LTX-Video 28 blocks of
32 × 64, HunyuanVideo 24 × 128) whose input and output projections read the tiny VAE's latent channels and the tiny
text encoders' widths (one linear layer each end: the blocks, which make the cost, are the published ones).
HunyuanVideo's 12.8 B do not fit a 24 GiB machine in float32 (CPU bfloat16 here has no native support): it keeps
its width and heads with 2 of its 20 double-stream and 4 of its 40 single-stream blocks. The ratio's meaning is
unchanged by the depth: the floor is the same transformer's calls, so a shallower one only makes the rest weigh
more (the ratio is, if anything, overstated). Text is padded as each pipeline pads it (Wan 512 tokens, LTX 128,
HunyuanVideo 256 after its template). Clips (``--size bench``): Wan and HunyuanVideo 9 frames of 64² (3 latent
frames of 8², 48 tokens), LTX-Video 9 frames of 128² (2 latent frames of 4², 32 tokens); random weights, float32.

Each family: CycleDiffusion (η 0.1) and FlowEdit (n_avg 1, n_min 0) through the public ``edit`` on the same clip,
steps, strength and guidance (Wan: classifier-free 5 on the target, 3.5 on the source, as FlowEdit guides its
source; LTX-Video 3 and 3.5; HunyuanVideo embedded guidance 6 on both: one row per branch), against the floor:
the transformer alone, called as many times with as many rows as ``cyclediff.methods.evaluations`` counts for the
method, on the same shapes (the least any implementation can take; the edit adds the prompts' encoding, the VAE
both ways and the sampler's arithmetic). A forward hook counts the rows each edit really evaluates. One warm-up
(a one-step edit and a floor call), then one run of each, interleaved, in process CPU seconds (``--clock process``:
the machine is shared; run it on one thread).

Encode once + N prompts (Wan only): ``edit`` with one clip and N target prompts (CycleDiffusion: the source pass
shared, every target in the same batched calls) against ``edit`` with FlowEdit and the same N prompts (N runs, no
shared pass), rows counted by the methods' ``cost`` and by the hook, seconds measured (at ``--prompt-strength``,
0.25 of 4 steps: one step run, so that ten FlowEdit runs stay in the time). The ``anchor`` lines are
computed, not measured: FlowEdit on Wan2.1-T2V-1.3B takes about 150 s per 832×480 clip on an A100 (the figure
issue 35 cites); N FlowEdit runs cost N × 150 s, and encoding once then decoding N prompts costs 150 s × its rows /
one FlowEdit run's rows at the same steps and guidance (the transformer is nearly all of that time at 480p).
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from flow_gpu import interleaved
from gpu_edit import Bench
from video_families import TRANSFORMERS

from cyclediff import CycleDiffusion, FlowEdit, edit
from cyclediff.methods import METHODS, evaluations
from cyclediff.models.families import family

FLOWEDIT_A100_S = 150.0  # FlowEdit, Wan2.1-T2V-1.3B, one 832×480 clip, A100 (issue 35)
SOURCE, TARGETS = "a cat walking on grass", [
    "a dog walking on grass", "a fox walking on grass", "a tiger walking on grass", "a robot walking on grass",
    "a cat walking on snow", "a cat walking on sand", "a red cat walking on grass", "a cat walking at night",
    "a watercolor of a cat walking on grass", "a cat walking on grass, oil painting"]
# family → tiny pipeline (module, builder), adapter family, the clip (F, H, W), target and source guidance,
# the blocks kept (None: all)
SETUPS: dict[str, dict[str, Any]] = {
    "wan-1.3b": dict(tiny=("tiny_wan", "wan_pipeline"), adapter="wan", clip=(9, 64, 64), guidance=(5.0, 3.5),
                     depth=None),
    "ltx-video": dict(tiny=("tiny_ltx", "ltx_pipeline"), adapter="ltx", clip=(9, 128, 128), guidance=(3.0, 3.5),
                      depth=None),
    "hunyuan-video": dict(tiny=("tiny_hunyuan_video", "hunyuan_pipeline"), adapter="hunyuan-video", clip=(9, 64, 64),
                          guidance=(6.0, 6.0), depth=dict(num_layers=2, num_single_layers=4)),
}
TINY_TOKENS = 16  # the tiny runs pad prompts as the model tests do


def io_widths(kind: str, pipe: Any) -> dict[str, int]:
    """The transformer's input / output widths that must match the tiny pipeline's VAE and text encoders."""
    vae, text = pipe.vae.config, pipe.text_encoder.config
    if kind.startswith("wan"):
        return dict(in_channels=vae.z_dim, out_channels=vae.z_dim, text_dim=text.d_model)
    if kind == "ltx-video":
        return dict(in_channels=vae.latent_channels, out_channels=vae.latent_channels, caption_channels=text.d_model)
    return dict(in_channels=vae.latent_channels, out_channels=vae.latent_channels, text_embed_dim=text.hidden_size,
                pooled_projection_dim=pipe.text_encoder_2.config.hidden_size)


def tiny_pipeline(kind: str, tmp: Path) -> Any:
    module, builder = SETUPS[kind]["tiny"]
    return getattr(importlib.import_module(module), builder)(tmp / kind)


def bench_transformer(kind: str, pipe: Any) -> Any:
    """The published transformer (HunyuanVideo: the blocks kept), reading ``pipe``'s VAE channels and text widths."""
    import diffusers

    name, config = TRANSFORMERS[kind]
    return getattr(diffusers, name)(**{**config, **(SETUPS[kind]["depth"] or {}), **io_widths(kind, pipe)}).eval()


def build(kind: str, tmp: Path, size: str) -> Any:
    """The family's cyclediff model: the tiny pipeline (``size="tiny"``), or with the published transformer."""
    setup, pipe = SETUPS[kind], tiny_pipeline(kind, tmp)
    tiny = importlib.import_module(setup["tiny"][0])
    frames, height, width = setup["clip"] if size == "bench" else (tiny.FRAMES, tiny.SIZE, tiny.SIZE)
    if size == "bench":
        torch.manual_seed(0)
        pipe.register_modules(transformer=bench_transformer(kind, pipe))
    tokens = {} if size == "bench" else {"max_sequence_length": TINY_TOKENS}
    cls = family(setup["adapter"]).adapter_class()
    return cls(pipe, frames=frames, size=(height, width), **tokens)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class Rows:
    """A forward hook on the transformer counting the rows (batch entries) it evaluates."""

    def __init__(self, transformer: torch.nn.Module) -> None:
        self.n = 0
        transformer.register_forward_hook(self, with_kwargs=True)

    def __call__(self, module: Any, args: tuple, kwargs: dict, output: Any) -> None:
        self.n += len(kwargs["hidden_states"] if "hidden_states" in kwargs else args[0])

    def during(self, fn: Any) -> int:
        self.n = 0
        fn()
        return self.n


class Family:
    """One family's model, clip, grid and guidance, and the edits and floors the benchmark times."""

    def __init__(self, kind: str, args: argparse.Namespace) -> None:
        self.kind, self.args = kind, args
        self.model = build(kind, Path(tempfile.mkdtemp()), args.size)
        self.shape = tuple(self.model.sample_shape)
        f, c = self.model.frames, self.model.codec
        self.clip = torch.rand(1, 3, f, *(n * c.factor for n in self.shape[2:]),
                               generator=torch.Generator().manual_seed(0))
        self.grid = self.grid_at(args.strength)
        self.guidance, self.source_guidance = SETUPS[kind]["guidance"]
        cfg = self.model.prepare_condition(1, prompt=SOURCE, guidance_scale=self.guidance).inputs["uncond"] is not None
        self.src, self.tgt = 1 + (cfg and self.source_guidance != 1), 1 + (cfg and self.guidance != 1)
        self.rows = Rows(self.model.transformer)
        self._floor_inputs: dict[int, tuple] = {}

    def grid_at(self, strength: float) -> Any:
        return self.model.schedule_for(self.shape).plan(self.args.steps, strength)

    def options(self, method: str) -> Any:
        return CycleDiffusion(eta=0.1) if method == "cyclediffusion" else FlowEdit(n_avg=1, n_min=0)

    def count(self, method: str, prompts: int = 1, strength: float | None = None) -> int:
        """Transformer rows of one clip edited under ``prompts`` targets, by the methods' records: CycleDiffusion
        shares its source pass (its ``cost`` with N target rows a step), FlowEdit runs once per prompt."""
        options, grid = self.options(method), self.grid_at(strength or self.args.strength)
        if method == "cyclediffusion":
            return METHODS[method].cost(options, grid, self.src, prompts * self.tgt)
        return prompts * evaluations(options, grid, source_guidance=self.src == 2, target_guidance=self.tgt == 2)

    def edit(self, method: str, prompts: int = 1, steps: int | None = None, strength: float | None = None) -> None:
        targets = TARGETS[0] if prompts == 1 else TARGETS[:prompts]
        edit(self.model, self.clip, source_prompt=SOURCE, prompt=targets, steps=steps or self.args.steps,
             strength=strength or self.args.strength, guidance_scale=self.guidance,
             source_guidance_scale=self.source_guidance, generator=torch.Generator().manual_seed(0),
             method=self.options(method))

    def counted_edit(self, counted: dict[str, int], method: str, prompts: int = 1,
                     strength: float | None = None) -> None:
        """:meth:`edit`, the rows it evaluated stored in ``counted[method]``."""
        counted[method] = self.rows.during(lambda: self.edit(method, prompts, strength=strength))

    @torch.no_grad()
    def floor(self, rows: int, calls: int | None = None) -> None:
        """The transformer alone: ``rows`` rows in calls of (source + target) rows, one per step run."""
        per_call = self.src + self.tgt
        if rows not in self._floor_inputs:
            self._floor_inputs[rows] = (torch.randn(per_call, *self.shape),
                                        self.model.prepare_condition(per_call, prompt=TARGETS[0]))
        x, cond = self._floor_inputs[rows]
        timesteps = self.grid.run[:calls or rows // per_call]
        for t in timesteps:
            self.model.predict_batch([(x, cond)], t)


def bench_family(bench: Bench, args: argparse.Namespace, kind: str) -> Family:
    """One family: setup, a warm-up, then CycleDiffusion, FlowEdit and the floor of each, interleaved."""
    start = time.process_time()
    fam = Family(kind, args)
    net = fam.model.transformer
    bench.emit("setup", family=kind, size=args.size, clip=list(fam.clip.shape[2:]), sample_shape=list(fam.shape),
               transformer_parameters=sum(p.numel() for p in net.parameters()),
               transformer_class=type(net).__name__, blocks={k: v for k, v in net.config.items() if "layers" in k},
               steps=args.steps, strength=args.strength, steps_run=len(fam.grid.run),
               rows_per_step=fam.src + fam.tgt, guidance=fam.guidance, source_guidance=fam.source_guidance,
               dtype="float32", cpu=cpu_model(), threads=torch.get_num_threads(), clock=args.clock,
               build_cpu_s=round(time.process_time() - start, 1))
    methods = ("cyclediffusion", "flowedit")
    counts = {m: fam.count(m) for m in methods}
    fam.edit("cyclediffusion", steps=2, strength=0.5)  # warm-up: one step run
    fam.floor(fam.src + fam.tgt)
    counted: dict[str, int] = {}
    floors = sorted(set(counts.values()))
    fns = [functools.partial(fam.counted_edit, counted, m) for m in methods]
    fns += [lambda r=r: fam.floor(r) for r in floors]
    times = interleaved(fns, "cpu", max(args.repeats, 1), args.clock)
    seconds, floor_s = dict(zip(methods, times)), dict(zip(floors, times[len(methods):]))
    for m in methods:
        bench.emit("edit", family=kind, method=m, rows=counts[m], rows_counted=counted[m],
                   seconds=round(seconds[m], 3), floor_s=round(floor_s[counts[m]], 3),
                   vs_floor=round(seconds[m] / floor_s[counts[m]], 3), clock=args.clock)
    return fam


def bench_prompts(bench: Bench, args: argparse.Namespace, fam: Family) -> None:
    """Encode once + N prompts (CycleDiffusion, one shared source pass) against N FlowEdit runs; the A100 anchor
    computed from the counts."""
    strength = args.prompt_strength
    one_run = fam.count("flowedit", strength=strength)
    for n in (int(p) for p in args.prompts.split(",")):
        counts = {m: fam.count(m, n, strength) for m in ("cyclediffusion", "flowedit")}
        counted: dict[str, int] = {}
        fns = [functools.partial(fam.counted_edit, counted, m, n, strength) for m in counts]
        seconds = dict(zip(counts, interleaved(fns, "cpu", 1, args.clock)))
        bench.emit("prompts", family=fam.kind, prompts=n, steps=args.steps, strength=strength,
                   steps_run=len(fam.grid_at(strength).run), encode_once_rows=counts["cyclediffusion"],
                   encode_once_rows_counted=counted["cyclediffusion"], flowedit_rows=counts["flowedit"],
                   flowedit_rows_counted=counted["flowedit"], encode_once_s=round(seconds["cyclediffusion"], 3),
                   flowedit_s=round(seconds["flowedit"], 3),
                   flowedit_vs_encode_once=round(seconds["flowedit"] / seconds["cyclediffusion"], 3),
                   rows_ratio=round(counts["flowedit"] / counts["cyclediffusion"], 3), clock=args.clock)
        bench.emit("anchor", computed_from="evaluation counts, not measured", family="Wan2.1-T2V-1.3B",
                   clip="832x480", gpu="A100", prompts=n, flowedit_s=round(FLOWEDIT_A100_S * n, 1),
                   encode_once_s=round(FLOWEDIT_A100_S * counts["cyclediffusion"] / one_run, 1),
                   flowedit_one_run_s=FLOWEDIT_A100_S, rows_per_flowedit_run=one_run)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(SETUPS), help=f"comma-separated: {', '.join(SETUPS)}")
    parser.add_argument("--size", choices=["bench", "tiny"], default="bench",
                        help="bench: the published transformers; tiny: the test suite's pipelines (a smoke run)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--strength", type=float, default=0.5)
    parser.add_argument("--prompts", default="1,4,10", help="N target prompts for the Wan encode-once rows ('' none)")
    parser.add_argument("--prompt-strength", type=float, default=0.25,
                        help="the strength of the encode-once rows (0.25 of 4 steps: one step run, to keep N = 10 "
                             "FlowEdit runs in the time)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs of each (the median is reported)")
    parser.add_argument("--clock", choices=["process", "wall"], default="process")
    parser.add_argument("--log", default=None, help="append every JSON line to this file")
    args = parser.parse_args(argv)
    args.deadline = None
    names = args.families.split(",")
    unknown = [n for n in names if n not in SETUPS]
    if unknown:
        parser.error(f"unknown family {', '.join(unknown)}; choose from {', '.join(SETUPS)}")
    bench = Bench(args)
    for kind in names:
        try:
            fam = bench_family(bench, args, kind)
            if kind == "wan-1.3b" and args.prompts:
                bench_prompts(bench, args, fam)
        except Exception as err:  # noqa: BLE001 - one family that cannot run is a line; the others still run
            bench.emit("error", family=kind, error=f"{type(err).__name__}: {str(err).splitlines()[0][:200]}")
        fam = None
        gc.collect()  # one published-size transformer in memory at a time


if __name__ == "__main__":
    main()
