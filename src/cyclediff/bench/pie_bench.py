"""PIE-Bench (Ju et al., ICLR 2024; cure-lab/PnPInversion): its data as the official layout holds it, and its
metrics exactly as ``evaluation/evaluate.py`` and ``evaluation/matrics_calculator.py`` compute them.

The data: ``mapping_file.json`` (per key: ``image_path``, ``original_prompt``, ``editing_prompt``,
``editing_instruction``, ``editing_type_id``, ``blended_word``, ``mask`` as run-length pairs (start, length) over
the 512 × 512 image) beside ``annotation_images/``. Prompts carry ``[brackets]`` around the edited words; they are
removed as the official scripts remove them (every ``[`` and ``]``).

The metrics follow the official code, including where it differs from the usual definitions:

- the mask's border rows and columns count as edited (``decode_mask``), as the official decoder sets them;
- "unedit part" / "edit part" metrics compare the two images **multiplied by the mask** (zeros elsewhere) over the
  whole image — PSNR, MSE and SSIM of the masked images, not of the masked pixels alone; LPIPS sees them in
  [−1, 1] (the zeros become −1); a part that covers nothing (or everything, for the unedited part) is "nan";
- the structure distance feeds 0–255 pixels to DINO (:mod:`cyclediff.metrics.structure`);
- CLIP similarity is torchmetrics' ``CLIPScore`` (100 · cos, floored at 0) with ViT-L/14 of the uint8 image (the
  edit part: ``uint8(image · mask)``) against the prompt.

Units as reported: structure distance ×10³, LPIPS ×10³, MSE ×10⁴, SSIM ×10² (:data:`REPORT_SCALE`).
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CycleDiffError

SIZE = (512, 512)
TYPES = tuple(str(i) for i in range(10))  # 0 random, 1 change object, …, 9 change style
STYLE_TYPE = "9"  # the 620-image split leaves it out
DEFAULT_METRICS = ("structure_distance", "psnr_unedit_part", "lpips_unedit_part", "mse_unedit_part",
                   "ssim_unedit_part", "clip_similarity_source_image", "clip_similarity_target_image",
                   "clip_similarity_target_image_edit_part")
PIXEL = ("psnr", "lpips", "mse", "ssim", "structure_distance")
METRICS = tuple(f"{m}{part}" for m in PIXEL for part in ("", "_unedit_part", "_edit_part")) + (
    "clip_similarity_source_image", "clip_similarity_target_image", "clip_similarity_target_image_edit_part")
REPORT_SCALE = {"structure_distance": 1e3, "lpips": 1e3, "mse": 1e4, "ssim": 1e2}


def decode_mask(rle: Any, shape: tuple[int, int] = SIZE, *, where: str = "mask") -> np.ndarray:
    """The official decoding of a run-length mask: (start, length) pairs over the flattened image set to 1,
    then the border rows and columns set to 1 ("to avoid annotation errors in boundary"). A run that starts or
    ends outside the image is refused (the official decoder would cut it silently)."""
    if not isinstance(rle, list) or len(rle) % 2 or not all(isinstance(v, int) and v >= 0 for v in rle):
        raise CycleDiffError(f"{where}: a mask is a list of (start, length) pairs of whole numbers")
    length = shape[0] * shape[1]
    flat = np.zeros(length)
    for start, run in zip(rle[::2], rle[1::2]):
        if start + run > length:
            raise CycleDiffError(f"{where}: the run (start {start}, length {run}) runs past the {shape[0]}×{shape[1]} "
                                 "image")
        flat[start:start + run] = 1
    mask = flat.reshape(shape)
    mask[0, :] = mask[-1, :] = mask[:, 0] = mask[:, -1] = 1
    return mask


def strip_brackets(prompt: str) -> str:
    """A PIE-Bench prompt as the official scripts use it: every '[' and ']' removed."""
    return prompt.replace("[", "").replace("]", "")


@dataclass(frozen=True)
class PieItem:
    key: str
    image: Path  # absolute
    image_path: str  # relative to annotation_images/ (the output layout keeps it)
    source_prompt: str
    target_prompt: str
    instruction: str
    type_id: str
    blended_word: str
    mask: list[int]


def load_pie(folder: str | Path, *, types: Any = None, split: str = "700", limit: int | None = None,
             refused: list[dict] | None = None) -> list[PieItem]:
    """The benchmark's items from a downloaded PIE-Bench folder (nothing is fetched): all 700, ``split="620"``
    (without the style edits, type 9), those of ``types`` ("0,1" or a list), the first ``limit``. A malformed item
    (bad fields or mask, an ``image_path`` that is absolute, leads outside ``annotation_images/`` or repeats an
    earlier item's) raises; given a ``refused`` list, it is appended there instead ({"key", "error"}) and the
    others are kept."""
    root = Path(folder)
    mapping = root / "mapping_file.json"
    if not mapping.is_file():
        raise CycleDiffError(f"{root} is not PIE-Bench: it has no mapping_file.json (give the folder that holds it "
                             "and annotation_images/)")
    if not (root / "annotation_images").is_dir():
        raise CycleDiffError(f"{root} is not PIE-Bench: it has no annotation_images/ folder")
    if split not in ("700", "620"):
        raise CycleDiffError(f"split must be 700 or 620 (without the style edits); got {split!r}")
    try:
        table = json.loads(mapping.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CycleDiffError(f"{mapping}: not valid JSON ({err})") from err
    if not isinstance(table, dict):
        raise CycleDiffError(f"{mapping}: the file must be a JSON object of items (key: {{image_path, prompts, "
                             f"mask, …}}); it holds a JSON {type(table).__name__}")
    wanted, images = _types(types), (root / "annotation_images").resolve()
    items: list[PieItem] = []
    taken: dict[str, str] = {}  # image_path → the key of the item that has it
    seen = 0  # the items taken or refused: --limit counts both
    for key, rec in table.items():
        if limit is not None and seen >= limit:
            break
        type_id = str(rec.get("editing_type_id")) if isinstance(rec, dict) else None
        skip = (wanted is not None and type_id not in wanted) or (split, type_id) == ("620", STYLE_TYPE)
        if type_id in TYPES and skip:
            continue  # not asked for (an item whose type is unreadable is checked and refused below)
        seen += 1
        try:
            item = _item(images, str(key), rec)
            if item.image_path in taken:
                raise CycleDiffError(f"mapping_file.json, item {key}: image_path {item.image_path} is item "
                                     f"{taken[item.image_path]}'s too (each item's edit is written there)")
        except CycleDiffError as err:
            if refused is None:
                raise
            refused.append({"key": str(key), "error": str(err)})
            continue
        taken[item.image_path] = item.key
        items.append(item)
    return items


def _types(types: Any) -> set[str] | None:
    if types is None or types == "":
        return None
    given = {t.strip() for t in types.split(",")} if isinstance(types, str) else {str(t) for t in types}
    unknown = sorted(given - set(TYPES))
    if unknown:
        raise CycleDiffError(f"edit types are 0 to 9; got {', '.join(unknown)}")
    return given


def _item(images: Path, key: str, rec: Any) -> PieItem:
    where = f"mapping_file.json, item {key}"
    fields = ("image_path", "original_prompt", "editing_prompt", "editing_type_id", "mask")
    if not isinstance(rec, dict) or any(f not in rec for f in fields):
        raise CycleDiffError(f"{where}: an item needs {', '.join(fields)}")
    type_id = str(rec["editing_type_id"])
    if type_id not in TYPES:
        raise CycleDiffError(f"{where}: unknown editing_type_id {type_id!r} (PIE-Bench's are 0 to 9)")
    decode_mask(rec["mask"], where=where)  # a bad mask is refused now, naming its item
    rel, image = _image_path(images, rec["image_path"], where)
    return PieItem(key=key, image=image, image_path=rel, source_prompt=strip_brackets(str(rec["original_prompt"])),
                   target_prompt=strip_brackets(str(rec["editing_prompt"])),
                   instruction=str(rec.get("editing_instruction", "")), type_id=type_id,
                   blended_word=str(rec.get("blended_word", "")), mask=list(rec["mask"]))


def _image_path(images: Path, given: Any, where: str) -> tuple[str, Path]:
    """An item's image_path (normalized) and its image: a relative path that stays inside annotation_images/,
    symbolic links followed (the output layout repeats the path under OUT/<method>/annotation_images/)."""
    if not isinstance(given, str) or not given.strip() or "\0" in given:
        raise CycleDiffError(f"{where}: image_path must be a file name under annotation_images/; got {given!r}")
    rel = posixpath.normpath(given)
    if posixpath.isabs(rel) or rel == ".." or rel.startswith("../") or rel == ".":
        raise CycleDiffError(f"{where}: image_path {given!r} is not a path inside annotation_images/ (absolute, or "
                             "it leads out with ..)")
    try:
        image = (images / rel).resolve()
    except (OSError, RuntimeError) as err:  # a name too long, a loop of links
        raise CycleDiffError(f"{where}: image_path {given!r} cannot be followed ({err.__class__.__name__})") from err
    if not image.is_relative_to(images):
        raise CycleDiffError(f"{where}: image_path {given!r} is a link to outside annotation_images/")
    return rel, image


def read_pie_image(path: Path, where: str) -> np.ndarray:
    """An image as the official scripts read it (PIL → array, RGB uint8), 512 × 512 or refused."""
    from PIL import Image

    if not path.is_file():
        raise CycleDiffError(f"{where}: the image {path.name} is missing")
    try:
        with Image.open(path) as img:
            arr = np.asarray(img.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as err:  # UnidentifiedImageError is an OSError
        raise CycleDiffError(f"{where}: {path.name} is not an image PIL can read") from err
    if arr.shape[:2] != SIZE:
        raise CycleDiffError(f"{where}: {path.name} is {arr.shape[1]}×{arr.shape[0]}; PIE-Bench images are 512×512")
    return arr


__all__ = ["DEFAULT_METRICS", "METRICS", "REPORT_SCALE", "PieItem", "decode_mask", "load_pie", "read_pie_image",
           "strip_brackets"]
