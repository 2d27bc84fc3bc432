"""Latent files: round trip, float16 storage, atomic writes, and a clear error for every kind of bad file."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import images, pixel
from cyclediff import Latent, LatentFileError, decode, encode
from cyclediff.latent import FORMAT_VERSION, checksum


@pytest.fixture
def latent(gen):
    return encode(images(2), pixel(num_classes=3), steps=10, strength=0.7, eta=0.4, generator=[gen(1), gen(2)],
                  class_labels=[0, 2])


def test_round_trip_keeps_everything(latent, tmp_path):
    path = latent.save(tmp_path / "x.latent.safetensors")
    back = Latent.load(path)
    assert torch.equal(back.x_start, latent.x_start) and torch.equal(back.eps, latent.eps)
    assert back.metadata() == latent.metadata()
    assert (back.timesteps, back.residual, back.seeds) == (latent.timesteps, latent.residual, (1, 2))
    assert back.condition == {"class_labels": [0, 2]}
    den = pixel(num_classes=3)
    torch.testing.assert_close(decode(back, den), decode(latent, den), rtol=0, atol=0)


def test_float64_round_trip(gen, tmp_path):
    den = pixel(dtype=torch.float64)
    x0 = images(1, dtype=torch.float64)
    z = Latent.load(encode(x0, den, steps=8, eta=0.5, generator=gen(0)).save(tmp_path / "d.safetensors"))
    assert z.dtype == torch.float64
    assert (decode(z, den) - x0).abs().max() < 1e-10


def test_float16_storage_is_smaller_and_close(latent, tmp_path):
    full = latent.save(tmp_path / "full.safetensors")
    half = latent.save(tmp_path / "half.safetensors", dtype=torch.float16)
    assert os.path.getsize(half) < 0.6 * os.path.getsize(full)
    back = Latent.load(half)
    assert back.dtype == torch.float32  # restored to the recorded dtype
    assert (back.eps - latent.eps).abs().max() <= 1e-3 * latent.eps.abs().max()


def test_float16_overflow_is_refused(latent, tmp_path):
    big = Latent(**{**_fields(latent), "eps": latent.eps * 1e6})
    with pytest.raises(ValueError, match="full precision"):
        big.save(tmp_path / "big.safetensors", dtype=torch.float16)
    assert not list(tmp_path.iterdir())


def test_write_is_atomic(latent, tmp_path, monkeypatch):
    path = latent.save(tmp_path / "x.latent.safetensors")
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        latent[0].save(path)
    assert path.read_bytes() == before  # the old file is untouched
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # and no temporary file is left


def test_indexing_slices_tensors_condition_and_seeds(latent):
    one = latent[1]
    assert one.batch_size == 1 and one.condition == {"class_labels": [2]} and one.seeds == (2,)
    assert torch.equal(one.eps, latent.eps[:, 1:2])
    assert latent[[1, 0]].seeds == (2, 1)


def _fields(latent):
    return {f: getattr(latent, f) for f in latent.__dataclass_fields__}


def _rewrite(path, *, tensors=None, meta_update=None, raw_meta=None, rehash=True, drop=()):
    """The file rewritten with these changes; ``rehash``: with a matching checksum (as a deliberate writer would),
    so that the checks behind the checksum are reached."""
    stored = load_file(path)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["cyclediff"])
    meta.update(meta_update or {})
    meta = {k: v for k, v in meta.items() if k not in drop}
    stored.update(tensors or {})
    stored = {k: v for k, v in stored.items() if v is not None}
    if rehash and {"x_start", "eps"} <= set(stored):
        meta["sha256"] = checksum(stored, meta)
    save_file(stored, path, metadata={"cyclediff": raw_meta if raw_meta is not None else json.dumps(meta)})


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.write_bytes(b"hello, not a safetensors file"), "not a readable safetensors"),
        (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "truncated or corrupt"),
        (lambda p: save_file({"x": torch.zeros(2)}, p), "not a cyclediff latent"),
        (lambda p: _rewrite(p, raw_meta="{broken"), "not valid JSON"),
        (lambda p: _rewrite(p, meta_update={"format": "something.else"}), "not a cyclediff latent"),
        (lambda p: _rewrite(p, meta_update={"format_version": FORMAT_VERSION + 1}), "upgrade cyclediff"),
        (lambda p: _rewrite(p, meta_update={"format_version": 0}), "versions start at 1"),
        (lambda p: _rewrite(p, meta_update={"eta": 0.5}, rehash=False), "tensor bytes and metadata do not match"),
        (lambda p: _rewrite(p, tensors={"eps": None}), "missing the tensor"),
        (lambda p: _rewrite(p, tensors={"eps": torch.zeros(3, 2, 3, 8, 8)}), "contradict the metadata"),
        (lambda p: _rewrite(p, meta_update={"shape": [2, 3, 8, 9]}), "contradict the metadata"),
        (lambda p: _rewrite(p, tensors={"x_start": torch.zeros(2, 3, 8, 8, dtype=torch.float64)}), "dtypes"),
        (lambda p: _rewrite(p, meta_update={"dtype": "float16"}), "metadata says float16"),
        (lambda p: _rewrite(p, meta_update={"dtype": "int8"}), "unknown dtype"),
        (lambda p: _rewrite(p, tensors={"x_start": torch.full((2, 3, 8, 8), float("nan"))}), "NaN or Inf"),
        (lambda p: _rewrite(p, meta_update={"timesteps": [1, 2, 3]}), "timesteps"),
        (lambda p: _drop(p, "steps"), "lacks steps"),
    ],
)
def test_bad_files_get_clear_errors(latent, tmp_path, damage, message):
    path = latent.save(tmp_path / "x.latent.safetensors")
    damage(path)
    with pytest.raises(LatentFileError, match=message):
        Latent.load(path)


def _drop(path, key):
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["cyclediff"])
    del meta[key]
    meta["sha256"] = checksum(load_file(path), meta)
    _rewrite(path, raw_meta=json.dumps(meta))


def test_missing_file(tmp_path):
    with pytest.raises(LatentFileError, match="no such file"):
        Latent.load(tmp_path / "nope.safetensors")


def test_loading_never_unpickles(latent, tmp_path):
    """A pickle bomb renamed to .safetensors is refused as not-a-safetensors file, never executed."""
    import pickle

    class Bomb:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    path = tmp_path / "bomb.latent.safetensors"
    path.write_bytes(pickle.dumps(Bomb()))
    with pytest.raises(LatentFileError):
        Latent.load(path)
    assert not (tmp_path / "pwned").exists()


def test_one_flipped_bit_in_the_metadata_is_caught(latent, tmp_path):
    """η 0.4 → 0.6 is one bit ('4' = 0x34, '6' = 0x36) of the file's header: the checksum covers the metadata, so
    the file is refused instead of decoding another image."""
    path = latent.save(tmp_path / "x.latent.safetensors")
    data = bytearray(path.read_bytes())
    at = data.index(b'eta\\": 0.4') + len(b'eta\\": 0.')
    data[at] ^= 0x02
    path.write_bytes(bytes(data))
    with pytest.raises(LatentFileError, match="do not match the checksum"):
        Latent.load(path)


def test_a_format_2_file_still_loads(latent, tmp_path):
    """Format 2 hashed the tensors only: such files load, checked as they were written (without the fields of
    format 3: encoder, model_kind)."""
    path = latent.save(tmp_path / "x.latent.safetensors")
    stored = load_file(path)
    _rewrite(path, meta_update={"format_version": 2, "sha256": checksum(stored)}, rehash=False,
             drop=("encoder", "model_kind"))
    back = Latent.load(path)
    assert torch.equal(back.eps, latent.eps)


def test_a_latent_on_the_meta_device_is_refused_in_one_line(latent):
    with pytest.raises(ValueError, match="meta device"):
        Latent(**{**_fields(latent), "x_start": latent.x_start.to("meta"), "eps": latent.eps.to("meta")})


@pytest.mark.parametrize("version, drop, carried", [
    (1, (), "sha256"),  # a format 3 file relabelled 1, its checksum kept: it would load unchecked
    (1, ("sha256",), "encoder"),
    (2, (), "encoder"),
])
def test_an_older_version_cannot_carry_a_newer_versions_fields(latent, tmp_path, version, drop, carried):
    """Relabelling a file's format_version down skipped the checks of its real version: a version that did not
    have a field yet refuses a file that carries it, and then an edit of η is no longer silently taken."""
    path = latent.save(tmp_path / "x.latent.safetensors")
    _rewrite(path, meta_update={"format_version": version, "eta": 0.5}, rehash=False, drop=drop)
    with pytest.raises(LatentFileError, match=f"latent format {version} has no .*{carried}.*header was edited"):
        Latent.load(path)


def test_a_genuine_format_1_file_loads(latent, tmp_path):
    path = latent.save(tmp_path / "x.latent.safetensors")
    _rewrite(path, meta_update={"format_version": 1}, rehash=False, drop=("sha256", "encoder", "model_kind"))
    assert torch.equal(Latent.load(path).eps, latent.eps)
