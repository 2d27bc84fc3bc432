"""``cyclediff demo``: everything on the shipped digits models, offline, in about a minute on two CPU cores.

1. Sampling: the class-conditional model draws digits of each class; an SVC trained on the real digits judges them.
2. Translation: held-out real 3s → the 8s model (unconditional models trained separately), with CycleDiffusion,
   SDEdit, DDIB and the edit-friendly inversion.
3. Class editing: held-out real digits of every class → class (c + 5) mod 10 with the class-conditional model,
   and with the rectified-flow one (there FlowEdit too): the family that differs in where each step's noise
   comes from, at equal steps and strength.
4. Clips: held-out 3s bouncing over 8 frames → 8s with the moving-digits video flow model (CycleDiffusion, FlowEdit,
   SDEdit at equal steps): per-frame accuracy and the distance between input and output trajectories (:mod:`.video`).

Writes OUT/demo.png (inputs and outputs side by side), OUT/demo-video.png (one clip before and after), OUT/demo.json
and OUT/demo.md, and returns the results.
Per method: target-class accuracy (SVC), SSIM and PSNR of output against input, FID and KID (raw 8×8 pixel
features) of outputs against the real target-domain digits, and the model evaluations one edit takes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._files import atomic_write
from ..api.translate import translate
from ..errors import CycleDiffError
from ..metrics import distribution_scores, pair_scores, pixel_features
from ..options import METHODS, OPTIONS, options_of
from .data import SOURCE_DIGIT, TARGET_DIGIT, classify, split
from .guidance import guided_digits
from .models import load_demo
from .video import VIDEO_FILE, VIDEO_METHODS, VIDEO_MODEL, video_edits, write_strip
from .video import markdown as video_markdown


@dataclass(frozen=True)
class DemoSettings:
    steps: int = 100
    strength: float = 0.8
    eta: float = 0.1
    sample_steps: int = 50
    samples_per_class: int = 20
    guidance_scale: float = 2.0
    edit_per_class: int = 6
    edit_guidance_scale: float = 1.0
    max_translate: int | None = None  # all held-out source digits
    guide_per_class: int = 5
    guide_langevin_steps: int = 30
    video_clips: int = 20  # 3 → 8 clip edits with demo:moving-digits, at ``steps``; the same settings for each method:
    video_strength: float = 0.9  # docs/guide.md "The video rows": 68% of frames turned into 8s, the motion kept
    video_eta: float = 1.0
    video_guidance_scale: float = 3.0
    seed: int = 0


def _gens(n: int, seed: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed + i) for i in range(n)]


def _to01(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(-1, 1) + 1) / 2


def _scores(inputs01, outputs01, target_labels, reference01) -> dict[str, float]:
    """The evaluation harness's scores (PSNR / SSIM against the inputs, FID / KID against the reference on raw
    8×8 pixels), plus the SVC's target-class accuracy."""
    predicted = classify(outputs01 * 2 - 1)
    pairs = pair_scores(inputs01, outputs01)
    return {
        "target_accuracy": float(np.mean(predicted == np.asarray(target_labels))),
        "ssim": float(np.mean(pairs["ssim"])),
        "psnr": float(np.mean(pairs["psnr"])),
        **distribution_scores(outputs01, reference01, pixel_features(8)),
    }


def applicable(model: Any) -> list[str]:
    """The methods that run on ``model``: FlowEdit needs a rectified-flow model."""
    flow = model.schedule.path == "rectified_flow"
    return [m for m in METHODS if flow or not OPTIONS[m].flow_only]


def _counted(models: list[Any], run: Any) -> tuple[Any, int]:
    """``run()``'s result and the rows the models' UNets evaluated (each image at each call counts once)."""
    rows = [0]

    def count(module: Any, args: Any, output: Any) -> None:
        rows[0] += len(args[0])

    handles = [m.unet.register_forward_hook(count) for m in {id(m): m for m in models}.values()]
    try:
        return run(), rows[0]
    finally:
        for handle in handles:
            handle.remove()


def sample_accuracy(model, settings: DemoSettings, guidance_scale: float) -> tuple[float, torch.Tensor]:
    """Accuracy of the SVC on class-conditional samples (all classes × samples_per_class)."""
    from ..sampler import decode, sample_latent

    n = settings.samples_per_class
    labels = torch.arange(10).repeat_interleave(n)
    with torch.no_grad():
        z = sample_latent(model, len(labels), steps=settings.sample_steps, eta=1.0, class_labels=labels,
                          guidance_scale=guidance_scale, generator=_gens(len(labels), settings.seed))
        x = decode(z, model)
    return float(np.mean(classify(x) == labels.numpy())), _to01(x)


DEMO_FILES = ("demo.png", "demo.json", "demo.md", VIDEO_FILE)
STAGES = 7


def check_demo_out(out: Path, *, overwrite: bool = False) -> Path:
    """The demo's output folder: missing, empty, or holding only a previous demo's files (which it rewrites);
    any other folder with files is refused in one line unless ``overwrite``."""
    if out.is_dir() and not overwrite:
        others = sorted(p.name for p in out.iterdir() if p.name not in DEMO_FILES)
        if others:
            raise CycleDiffError(f"--out {out} already holds other files ({', '.join(others[:3])}"
                                 f"{', …' if len(others) > 3 else ''}); choose an empty folder or pass --overwrite")
    return out


def run_demo(out: Path, *, settings: DemoSettings | None = None, root: Path | None = None,
             quiet: bool = False) -> dict[str, Any]:
    """Every stage on the demo models; unless ``quiet``, one line as each stage starts, progress bars for the
    edits, and the table at the end."""
    s = settings or DemoSettings()
    start = time.perf_counter()
    stage = iter(range(1, STAGES + 1))

    def say(text: str) -> None:
        if not quiet:
            print(f"[{next(stage)}/{STAGES}] {text} ({time.perf_counter() - start:.0f} s)", flush=True)

    torch.manual_seed(s.seed)
    say("loading the demo models and the digits")
    digits, source, target = (load_demo(n, root=root) for n in ("digits", f"digit-{SOURCE_DIGIT}",
                                                                  f"digit-{TARGET_DIGIT}"))
    x_tr, y_tr, x_te, y_te = split()
    real_all, labels_all = torch.cat([x_tr, x_te]), torch.cat([y_tr, y_te])
    results: dict[str, Any] = {"settings": s.__dict__, "svc_accuracy_on_held_out_real": float(
        np.mean(classify(x_te) == y_te.numpy()))}

    # 1. class-conditional sampling
    say(f"sampling: {10 * s.samples_per_class} class-conditional digits, guided and unguided, {s.sample_steps} steps")
    acc_guided, samples = sample_accuracy(digits, s, s.guidance_scale)
    acc_plain, _ = sample_accuracy(digits, s, 1.0)
    results["sampling"] = {"accuracy_guided": acc_guided, "guidance_scale": s.guidance_scale,
                           "accuracy_unguided": acc_plain, "samples": len(samples)}

    # 2. translation between the two single-digit models
    inputs = _to01(x_te[y_te == SOURCE_DIGIT][: s.max_translate])
    reference = _to01(real_all[labels_all == TARGET_DIGIT])
    results["translation"] = {}
    shown = {"input": inputs[:10]}
    say(f"translation {SOURCE_DIGIT} → {TARGET_DIGIT}: {len(applicable(source))} methods × {len(inputs)} images, "
        f"{s.steps} steps at strength {s.strength:g}")
    for method in applicable(source):
        result, rows = _counted([source, target], partial(
            translate, inputs, source, target, strength=s.strength, steps=s.steps,
            method=options_of(method, strict=False, eta=s.eta),
            generator=_gens(len(inputs), s.seed), progress=not quiet))
        out_imgs = result.images
        results["translation"][method] = {**_scores(inputs, out_imgs, [TARGET_DIGIT] * len(inputs), reference),
                                          "evaluations_per_edit": rows / len(inputs)}
        shown[method] = out_imgs[:10]

    # 3. class edits with the class-conditional model: c → (c + 5) mod 10
    pick = torch.cat([torch.nonzero(y_te == c).flatten()[: s.edit_per_class] for c in range(10)])
    edit_in, edit_src = _to01(x_te[pick]), y_te[pick]
    edit_tgt = (edit_src + 5) % 10
    reference_edit = _to01(real_all[torch.isin(labels_all, edit_tgt)])

    def class_edits(model: Any) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        scores, shown_edit = {}, {"input": edit_in[:: s.edit_per_class]}
        for method in applicable(model):
            result, rows = _counted([model], partial(
                translate, edit_in, model, model, strength=s.strength, steps=s.steps,
                method=options_of(method, strict=False, eta=s.eta),
                generator=_gens(len(edit_in), s.seed), source_condition={"class_labels": edit_src},
                target_condition={"class_labels": edit_tgt, "guidance_scale": s.edit_guidance_scale},
                progress=not quiet))
            out_imgs = result.images
            scores[method] = {**_scores(edit_in, out_imgs, edit_tgt.tolist(), reference_edit),
                              "evaluations_per_edit": rows / len(edit_in)}
            shown_edit[method] = out_imgs[:: s.edit_per_class]
        return scores, shown_edit

    say(f"class edits c → c + 5: {len(applicable(digits))} methods × {len(edit_in)} digits (class-conditional model)")
    results["class_edit"], shown_edit = class_edits(digits)
    # 3b. the same edits with the rectified-flow model: its stochastic latent, SDEdit, and the plain ODE inversion
    #     (DDIB's analogue), on the same grid and settings
    flow = load_demo("digits-flow", root=root)
    say(f"class edits c → c + 5: {len(applicable(flow))} methods × {len(edit_in)} digits (rectified-flow model)")
    results["class_edit_flow"] = class_edits(flow)[0]
    # 3c. clips: 3s bouncing over 8 frames edited into 8s by the video flow model, keeping the motion?
    video = load_demo(VIDEO_MODEL, root=root if root is not None and (root / VIDEO_MODEL).is_dir() else None)
    say(f"clip edits {SOURCE_DIGIT} → {TARGET_DIGIT}: {len(VIDEO_METHODS)} methods × {s.video_clips} clips of "
        f"{video.frames} frames (moving-digits model)")
    results["video"], shown_video = video_edits(
        video, n=s.video_clips, steps=s.steps, strength=s.video_strength, eta=s.video_eta,
        guidance_scale=s.video_guidance_scale, seed=s.seed, counted=_counted, progress=not quiet)
    # 4. plug-and-play guidance: a classifier energy steers the unconditional (null-label) model to each class
    say(f"classifier guidance: {10 * s.guide_per_class} digits, {s.guide_langevin_steps} Langevin steps each")
    guided = guided_digits(digits, per_class=s.guide_per_class, langevin_steps=s.guide_langevin_steps,
                           seed=s.seed)
    guided_images = guided.pop("images")
    results["guidance"] = guided
    results["seconds"] = round(time.perf_counter() - start, 1)

    out.mkdir(parents=True, exist_ok=True)
    _write_grid(out / "demo.png", shown, shown_edit, samples, guided_images)
    write_strip(out / VIDEO_FILE, shown_video)
    atomic_write(out / "demo.json", lambda tmp: Path(tmp).write_text(json.dumps(results, indent=2) + "\n"))
    table = markdown(results)
    atomic_write(out / "demo.md", lambda tmp: Path(tmp).write_text(table))
    if not quiet:
        print(table)
        print(f"wrote {', '.join(str(out / name) for name in DEMO_FILES)} in {results['seconds']} s")
    return results


def markdown(results: dict[str, Any]) -> str:
    s, g = results["sampling"], results["guidance"]
    lines = [
        f"Class-conditional samples classified as the requested class: {s['accuracy_guided']:.1%} at guidance "
        f"{s['guidance_scale']:g}, {s['accuracy_unguided']:.1%} unguided ({s['samples']} samples; the SVC scores "
        f"{results['svc_accuracy_on_held_out_real']:.1%} on held-out real digits).",
        "",
        f"Guidance (a {g['energy_classifier_accuracy']:.1%}-accurate MLP's −log p(class) as the energy, weight "
        f"{g['settings']['weight']:g}, {g['settings']['langevin_steps']} Langevin steps through a "
        f"{g['settings']['steps']}-step sampler, null label): {g['accuracy_guided']:.1%} of guided samples are the "
        f"requested class by the SVC, against {g['accuracy_unguided']:.1%} unguided (classes "
        f"{g['unguided_class_histogram']}).",
        "",
        "| task | method | target accuracy | SSIM vs input | PSNR vs input (dB) | FID vs real target | KID vs real "
        "target | model evaluations per edit |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task, name in (("translation", f"{SOURCE_DIGIT} → {TARGET_DIGIT} (two models)"),
                       ("class_edit", "class c → c + 5 (one model)"),
                       ("class_edit_flow", "class c → c + 5 (rectified flow)")):
        for method, r in results.get(task, {}).items():
            evaluations = f"{r['evaluations_per_edit']:g}"
            lines.append(f"| {name} | {method} | {r['target_accuracy']:.1%} | {r['ssim']:.3f} | {r['psnr']:.2f} | "
                         f"{r['fid']:.3f} | {r['kid']:.4f} ± {r['kid_std']:.4f} | {evaluations} |")
    if "video" in results:
        lines += ["", video_markdown(results["video"])]
    return "\n".join(lines).rstrip("\n") + "\n"


def _write_grid(path: Path, translation: dict, edit: dict, samples: torch.Tensor, guided: torch.Tensor,
                scale: int = 4) -> None:
    """Rows: translation inputs and each method's outputs; class-edit inputs and outputs; class samples 0–9;
    guided samples 0–9."""
    from PIL import Image

    def row(images: torch.Tensor, width: int) -> np.ndarray:
        tiles = [img[0].numpy() for img in images] + [np.zeros((8, 8))] * (width - len(images))
        return np.concatenate([np.pad(t, 1, constant_values=0.25) for t in tiles], axis=1)

    width = 10
    rows = [row(v, width) for v in translation.values()] + [np.zeros((2, width * 10))]
    rows += [row(v, width) for v in edit.values()] + [np.zeros((2, width * 10))]
    rows.append(row(samples[:: len(samples) // 10][:10], width))
    rows.append(row(guided[:: len(guided) // 10][:10], width))
    grid = (1 - np.concatenate(rows, axis=0)) * 255  # dark digits on white, as written
    img = Image.fromarray(grid.astype(np.uint8)).resize((grid.shape[1] * scale, grid.shape[0] * scale),
                                                         Image.Resampling.NEAREST)
    atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))
