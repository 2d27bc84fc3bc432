"""What the web app does, without the web: each action turns a form's values into runner units and runs them with
the tasks the CLI runs (:mod:`cyclediff.batch.tasks`), so a batch fails per item, records its settings in every file
and skips nothing it should not, exactly as on the command line. Work runs in a background thread that reports
each result (and each Langevin step) as it comes and stops when cancelled; :mod:`cyclediff.web.app` only lays out
the forms and shows the events.

The browser names no file on the server: images and latent files come as uploads, models are chosen from those
the server was started with, and energies from those its command line allows.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from .._progress import each_step
from .._seeds import check_seed_count, seed_limit, seed_range
from ..batch.outputs import decoded_suffix
from ..batch.runner import Result, Unit, run
from ..batch.sheets import sweep_units, write_sheets
from ..batch.stores import FileStore
from ..batch.tasks import DecodeTask, EditTask, EncodeTask, GuideTask, TranslateTask
from ..errors import CycleDiffError
from ..guidance.energies import DIGITS_CLASSIFIER
from ..models.loading import demo_names
from ..settings import (
    EDIT,
    ENCODE,
    GUIDE,
    METHODS,
    RUN,
    TRANSLATE,
    DecodeSettings,
    EditSettings,
    EncodeSettings,
    GuideSettings,
    RunOptions,
    TranslateSettings,
)
from .forms import family_keywords, form_settings, label_of, strengths_of, whole
from .streams import Stopped, first_then, only_file, stream
from .uploads import Folders, painted_mask, prepare, public, upload

DEMO_MODELS = tuple(f"demo:{name}" for name in sorted(demo_names(), key=lambda n: n != "digits"))  # examples: digits
MAX_SEEDS = 64  # results per request


class Cancelled(CycleDiffError):
    """The user stopped the work."""


def seeds_of(text: Any, count: Any = 1) -> list[int]:
    """'0-3' or '1,5,9' as listed; one seed s with ``count`` N > 1 gives s, s+1, …, s+N−1 (at most MAX_SEEDS, counted
    before anything is expanded)."""
    try:
        seeds = seed_range(str(text).strip() or "0", limit=MAX_SEEDS)
        count = int(count or 1)
        if len(seeds) == 1 and count > 1:
            check_seed_count(count, MAX_SEEDS)
            seeds = [seed_limit(seeds[0] + i) for i in range(count)]
    except (CycleDiffError, ValueError, OverflowError) as err:
        raise CycleDiffError(f"seeds: {public(str(err), 200)}") from err
    return list(dict.fromkeys(seeds))


class Studio:
    """The models, energies and limits a server was started with, and the actions on them."""

    def __init__(self, models: list[str] | dict[str, Any] | None = None, *, device: str | torch.device = "cpu",
                 dtype: torch.dtype | None = None, max_pixels: int = RUN.max_pixels, clip: Any = None,
                 classifier: str | None = None, energies: list[str] | tuple[str, ...] = (),
                 batch_size: int = RUN.batch_size, workdir: Path | None = None,
                 loading: dict[str, Any] | None = None) -> None:
        specs = models or list(DEMO_MODELS)
        self.models: dict[str, Any] = dict(specs) if isinstance(specs, dict) else {str(s): str(s) for s in specs}
        self.device, self.dtype, self.max_pixels, self.batch_size = device, dtype, max_pixels, batch_size
        self.clip_spec, self.energies = clip, list(energies)
        self.loading = dict(loading or {})  # load()'s keywords for the served models (RunOptions.loading)
        demo = self.serves_demo()
        self.classifier_spec = classifier or (DIGITS_CLASSIFIER if demo else None)
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="cyclediff-serve-"))
        if workdir is None:  # our own temp folder: gone with the server
            weakref.finalize(self, shutil.rmtree, self.workdir, ignore_errors=True)
        self.folders = Folders(self.workdir / "requests")
        self._lock, self._scorer, self._classifier = threading.Lock(), None, None
        self._device = threading.Lock()  # one computation at a time, held until its worker has really ended
        self.tick: float | None = None  # a served studio's heartbeat (web.app.launch sets it)

    # ------------------------------------------------------------------------------------------------ resources
    @property
    def names(self) -> list[str]:
        return list(self.models)

    def serves_demo(self) -> bool:
        """Whether a demo model is among the served ones (by its name, or by the id of a model loaded already)."""
        return any(name.startswith("demo:") or str((m if isinstance(m, str) else m.model_id) or "").startswith("demo:")
                   for name, m in self.models.items())

    def model(self, name: str) -> Any:
        """A served model by name (loaded once, on first use)."""
        if name not in self.models:
            raise CycleDiffError(f"unknown model {name!r}; this server serves {', '.join(self.models)}")
        with self._lock:
            if isinstance(self.models[name], str):
                from ..models import load

                self.models[name] = load(self.models[name], dtype=self.dtype, device=self.device, **self.loading)
            return self.models[name]

    def defaults(self, name: str, settings: Any = EDIT) -> Any:
        """``settings`` (a form's defaults) with the served model's recommended values (its family's preset and
        ``model.defaults``, e.g. the demo digits' guidance scale 1) where they name one of its fields."""
        from ..models.presets import recommended

        own = recommended(self.model(name))
        fields = {f.name for f in dataclasses.fields(settings)}
        return settings.replace(**{key: value for key, value in own.items() if key in fields})

    def scorer(self) -> Any:
        """CLIP for ranking edits (the server's ``--clip``), or None."""
        if self.clip_spec is None:
            return None
        with self._lock:
            if self._scorer is None:
                from ..metrics import ClipScorer

                self._scorer = ClipScorer(self.clip_spec, device=self.device)
            return self._scorer

    def energy_choices(self) -> list[str]:
        return ["classifier"] * (self.classifier_spec is not None) + ["clip"] * (self.clip_spec is not None) + [
            *self.energies]

    def energy(self, choice: str, *, text: str = "", target: Any = None) -> Any:
        """An energy the server allows: ``clip`` (text), ``classifier`` (a class), or a ``--energy`` spec."""
        from ..guidance import ClassifierEnergy, energy_from_spec
        from ..guidance.energies import load_classifier

        if choice not in self.energy_choices():
            raise CycleDiffError(f"energy {choice!r} is not offered; this server offers "
                                 f"{', '.join(self.energy_choices()) or 'none'}")
        if choice == "clip":
            backbone = self.scorer().backbone
            return energy_from_spec("clip", text=text.strip(), clip_model=backbone)
        if choice == "classifier":
            with self._lock:
                if self._classifier is None:
                    self._classifier = load_classifier(self.classifier_spec)
            label = label_of(target, "the classifier's class")
            return ClassifierEnergy(self._classifier, label)
        return energy_from_spec(choice)

    def condition(self, model: Any, text: Any, *, guidance_scale: float | None = None,
                  negative: str | None = None) -> dict[str, Any]:
        """A form's condition field as the model takes it: a prompt for text models, a class label for
        class-conditional pixel models, nothing (an empty field) for unconditional ones."""
        from ..models.conditions import condition_for

        text = str(text if text is not None else "").strip()
        if "prompt" in model.condition_keys:
            return condition_for(model, prompt=text, negative_prompt=(negative or "").strip() or None,
                                 guidance_scale=guidance_scale)
        label = label_of(text, "a class label (this model has no text encoder)") if text else None
        scale = None if guidance_scale in (None, 1, 1.0) else guidance_scale
        return condition_for(model, class_labels=label, guidance_scale=scale)

    def options(self) -> RunOptions:
        """How this server reads uploads (``--max-pixels``) and loaded its models (LoRA, quantization, …)."""
        return RunOptions(max_pixels=self.max_pixels, **self.loading)

    def stamp(self, task: str, **models: str) -> dict[str, Any]:
        """What every output records beside its settings, as the CLI's: the task, the model (when its settings
        have no field for it) and how the models were loaded."""
        return {"task": task, **models, **self.options().model_record()}

    def _units(self, path: Path, seeds: list[int], settings: Any, action: str, tag: str = "") -> list[Unit]:
        middle = ("" if settings.method == "cyclediffusion" else f"_{settings.method}") + tag
        return [Unit(i, f"{path.stem}/seed{s}", s, name=f"{path.stem}_{action}{middle}_seed{s}.png", settings=settings,
                     input=path, stamp=self.stamp(action)) for i, s in enumerate(seeds)]

    def folder(self) -> Path:
        """A new folder for one request's outputs (the server keeps the newest few)."""
        return self.folders.new()

    def _stream(self, work: Callable[[Callable[[str, Any], None], threading.Event], Any]) -> Iterator[tuple[str, Any]]:
        """:func:`stream` of ``work`` holding the device: one computation at a time, however often requests are
        stopped (the queue slot a stopped request frees is not the device: its worker still runs until its next
        step). Every step of the core's loops reports ("progress", (stage, k, n)) and ends stopped work there."""

        def held(emit: Callable[[str, Any], None], stop: threading.Event) -> Any:
            while not self._device.acquire(timeout=0.05):
                if stop.is_set():  # stopped while waiting: never starts
                    raise Stopped
            try:
                def step(stage: str, k: int, n: int) -> None:
                    if stop.is_set():
                        raise Stopped
                    emit("progress", (stage, k, n))

                with each_step(step):
                    return work(emit, stop)
            finally:
                self._device.release()

        return stream(held, self.tick)

    def _run(self, task: Any, units: list[Unit], *, batch_size: int | None = None, folder: Path | None = None,
             sheets: bool = False) -> Iterator[tuple[str, Any]]:
        """The units through the runner in a background thread: ("progress", …) per step, ("result", Result) per
        unit, with ``sheets`` (a strength sweep) ("sheet", batch.sheets.Sheet) per contact sheet, then
        ("done", [Result])."""
        folder = folder or self.folder()

        def work(emit: Callable[[str, Any], None], stop: threading.Event) -> list[Result]:
            def seen(result: Result) -> None:
                emit("result", result)
                if stop.is_set():
                    raise Stopped

            results = run(task, units, FileStore(lambda u: folder / u.name),
                          batch_size=batch_size or self.batch_size, progress=False, on_result=seen)
            for sheet in write_sheets(units, folder) if sheets else []:
                emit("sheet", sheet)
            return results

        return self._stream(work)

    # ------------------------------------------------------------------------------------------------ actions
    def edit(self, image: Any, model: str, source: Any, target: Any, *, strength: float, steps: int, eta: float,
             guidance_scale: float, source_guidance_scale: float = EDIT.source_guidance_scale,
             negative_prompt: str | None = None, seeds: Any = "0", count: Any = 1,
             method: str = EDIT.method, mask: Any = None, mask_mode: str = "painted",
             mask_threshold: float = EDIT.mask_threshold, strengths: Any = "",
             own: Any = "") -> Iterator[tuple[str, Any]]:
        """Edit one image from ``source`` to ``target`` (prompts, or class labels for class-conditional models):
        first ("input", {"image", "note", "mask", "total", "strengths"}) (what the model sees, the mask used, how
        many results will come), then the results. ``mask``: the image editor's value (paint where the edit may
        change the image; nothing painted: all of it); ``mask_mode="automatic"``: where source and target
        disagree, at ``mask_threshold``. ``strengths``: a comma list ("0.5,0.6,0.7") runs one edit per strength
        (instead of ``strength``) and adds a contact sheet per seed (the CLI's sweep). ``own``: the target's own
        condition keywords (``KEY=VALUE`` per line: the CLI's --condition)."""
        sweep, seed_list = strengths_of(strengths), seeds_of(seeds, count)
        if len(sweep or ()) * len(seed_list) > MAX_SEEDS:
            raise CycleDiffError(f"{len(sweep)} strengths × {len(seed_list)} seeds is over {MAX_SEEDS} results: "
                                 f"ask for fewer")
        strength = sweep[0] if sweep else strength
        m, path, folder = self.model(model), upload(image, "an image", self.model(model)), self.folder()
        seen, note = prepare(m, path, folder, self.max_pixels)
        if mask_mode not in ("painted", "automatic"):
            raise CycleDiffError(f"mask must be painted or automatic; got {public(repr(mask_mode), 60)}")
        drawn = painted_mask(mask, m, folder, self.max_pixels, path) if mask_mode == "painted" else None
        region = "auto" if mask_mode == "automatic" else None if drawn is None else str(drawn)
        shared = {"strength": strength, "steps": whole(steps), "eta": eta, "method": method, "mask": region,
                  "mask_threshold": mask_threshold}
        settings, task = self.edit_task(m, model, source, target, shared, guidance_scale, source_guidance_scale,
                                        negative_prompt, own=own)
        units = sweep_units(sweep or (strength,), lambda s: self._units(
            path, seed_list, settings.replace(strength=s), "edit", f"_s{s:g}" if sweep else ""))
        shown = {"image": seen, "note": note, "mask": drawn, "total": len(units), "strengths": sweep}
        return first_then(("input", shown), self._run(task, units, folder=folder, sheets=len(sweep or ()) > 1))

    def edit_task(self, m: Any, model: str, source: Any, target: Any, shared: dict[str, Any], guidance_scale: float,
                  source_guidance_scale: float, negative_prompt: str | None = None, policy: Any = None,
                  own: Any = "") -> tuple:
        """A form's (settings, task), inputs read as ``policy``: text models edit, class-conditional ones translate;
        ``own``: the target's own condition keywords (``KEY=VALUE`` per line)."""
        policy, own = policy or self.options(), family_keywords(m, own)
        if "prompt" in m.condition_keys:
            settings: Any = form_settings(EditSettings, {
                "model": model, "source_prompt": str(source or ""), "prompt": str(target or ""),
                "negative_prompt": (negative_prompt or "").strip() or None, "guidance_scale": guidance_scale,
                "source_guidance_scale": source_guidance_scale, "condition": own, **shared})
            task: Any = EditTask(m, policy, scorer=self.scorer())
        else:  # class-conditional: an edit is a translation between two conditions of one model
            # the form's edit settings are refused as for text models (the translation takes no source scale)
            form_settings(EditSettings, {"guidance_scale": guidance_scale,
                                         "source_guidance_scale": source_guidance_scale, **shared})
            self.condition(m, source), self.condition(m, target, guidance_scale=guidance_scale)
            settings = form_settings(TranslateSettings, {
                "source_model": model, "target_model": model, "source_class": label_of(source, "the source class"),
                "target_class": label_of(target, "the target class"), "guidance_scale": guidance_scale, **shared})
            task = TranslateTask(m, m, policy)
        return settings, task

    def translate(self, image: Any, source_model: str, target_model: str, *, source: Any = "", target: Any = "",
                  method: str = TRANSLATE.method, strength: float, steps: int, eta: float,
                  refine_steps: int = TRANSLATE.refine_steps,
                  guidance_scale: float | None = None, seeds: Any = "0", count: Any = 1) -> Iterator[tuple[str, Any]]:
        """Translate one image from the source model's domain to the target's (or between two conditions)."""
        src, dst, seed_list = self.model(source_model), self.model(target_model), seeds_of(seeds, count)
        path, folder = upload(image, "an image", src, dst), self.folder()
        seen, note = prepare(src, path, folder, self.max_pixels)
        sides = {}
        for side, m, text, scale in (("source", src, source, None), ("target", dst, target, guidance_scale)):
            cond = self.condition(m, text, guidance_scale=scale)
            sides.update({f"{side}_prompt": cond.get("prompt"), f"{side}_class": cond.get("class_labels")})
        settings = form_settings(TranslateSettings, {
            "source_model": source_model, "target_model": target_model, "method": method, "strength": strength,
            "steps": whole(steps), "eta": eta, "refine_steps": whole(refine_steps), **sides,
            "guidance_scale": guidance_scale if guidance_scale not in (None, 1, 1.0) else None})
        task = TranslateTask(src, dst, self.options())
        units = self._units(path, seed_list, settings, "translate")
        return first_then(("input", {"image": seen, "note": note, "mask": None}), self._run(task, units, folder=folder))

    def guide(self, model: str, energy: str, *, text: str = "", target: Any = None, condition: Any = "",
              weight: float, langevin_steps: int, step_size: float, steps: int, eta: float = GUIDE.eta,
              seeds: Any = "0", count: Any = 1) -> Iterator[tuple[str, Any]]:
        """Langevin chains (one per seed, all in one batch): ("step", (n, images01, energies)) as they run, then the
        results: each chain's lowest-energy state (``energy_end`` its energy)."""
        m = self.model(model)
        fn = self.energy(energy, text=text, target=target)
        numbers = {"weight": weight, "langevin_steps": whole(langevin_steps), "step_size": step_size,
                   "steps": whole(steps), "eta": eta}
        cond = self.condition(m, condition)
        # each chain's lowest-energy state, not its last (a chain's energy can jump at its last steps)
        settings = GuideSettings(**numbers, model=model, prompt=cond.get("prompt"),
                                 class_label=cond.get("class_labels"), energy=energy, text=text, keep_best=True)
        seed_list = seeds_of(seeds, count)
        units = [Unit(i, f"seed{s}", s, name=f"guided_seed{s}.png", settings=settings, stamp=self.stamp("guide"))
                 for i, s in enumerate(seed_list)]
        folder = self.folder()

        def work(emit: Callable[[str, Any], None], stop: threading.Event) -> list[Result]:
            def step(n: int, images: torch.Tensor, energies: torch.Tensor) -> None:
                emit("step", (n, images.detach().float().cpu(), energies.detach().float().cpu()))

            task = GuideTask(m, lambda _: fn, on_step=step)
            return run(task, units, FileStore(lambda u: folder / u.name), batch_size=len(units), progress=False)

        return self._stream(work)

    def encode(self, image: Any, model: str, source: Any, *, strength: float = ENCODE.strength,
               steps: int = ENCODE.steps, eta: float = ENCODE.eta, guidance_scale: float | None = None,
               seed: int = 0) -> Path:
        """The latent file of one image (the stochastic code an edit starts from)."""
        m, path = self.model(model), upload(image, "an image", self.model(model))
        settings = EncodeSettings(strength=strength, steps=whole(steps), eta=eta,
                                  condition=self.condition(m, source, guidance_scale=guidance_scale))
        unit = Unit(0, path.stem, seed_limit(whole(seed)), name=f"{path.stem}.latent.safetensors", settings=settings,
                    input=path, stamp=self.stamp("encode", model=model))
        return only_file(self._run(EncodeTask(m, self.options()), [unit]))

    def decode(self, latent: Any, model: str, target: Any = "", *, guidance_scale: float | None = None,
               negative_prompt: str | None = None) -> Path:
        """A latent file decoded by a model: under a new condition when one is given, else the recorded one (a clip's
        latent: a clip in the container it was encoded from)."""
        m, path = self.model(model), upload(latent, "a latent file")
        new = self.condition(m, target, guidance_scale=guidance_scale, negative=negative_prompt) if str(
            target or "").strip() else {}
        stem = path.name.removesuffix(".safetensors").removesuffix(".latent")
        unit = Unit(0, stem, 0, name=f"{stem}_decoded{decoded_suffix(path)}", settings=DecodeSettings(condition=new),
                    input=path,
                    stamp=self.stamp("decode", model=model))
        return only_file(self._run(DecodeTask(m, self.options()), [unit]))

    @staticmethod
    def methods() -> list[str]:
        return list(METHODS)
