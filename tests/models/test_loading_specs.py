"""Model specs a newcomer types: a demo name without ``demo:``, a hub id on a machine without network."""

from __future__ import annotations

import time

import pytest

from cyclediff import CycleDiffError
from cyclediff.models import load, loading


def test_a_demo_name_without_its_prefix_suggests_it():
    with pytest.raises(CycleDiffError, match="the demo model is demo:digit-3"):
        load("digit-3")


def test_an_unknown_demo_names_the_shipped_ones_and_nothing_false():
    with pytest.raises(CycleDiffError) as err:
        load("demo:digit-9")
    assert "demo:digit-3" in str(err.value) and "train" not in str(err.value)


@pytest.mark.parametrize("offline", [True, False])
def test_an_uncached_hub_id_without_network_is_one_line_at_once(monkeypatch, tmp_path, offline):
    """No network: one connection attempt (the probe), not the hub client's minute of retries, then one line
    that says the hub is unreachable and the model is not cached, and how to go on."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    monkeypatch.setattr(loading, "_REACHABLE", {})
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr("socket.create_connection", lambda *a, **k: (_ for _ in ()).throw(OSError("no route")))
    start = time.monotonic()
    with pytest.raises(CycleDiffError) as err:
        load("some-org/some-model")
    message = str(err.value)
    assert "unreachable" in message and "not in the local cache" in message and "local folder" in message
    assert ("HF_HUB_OFFLINE" in message) == offline and "\n" not in message
    assert time.monotonic() - start < 10
    with pytest.raises(CycleDiffError) as again:  # a second model of the run: the same reason (the probe's
        load("some-org/other-model")           # HF_HUB_OFFLINE is not the user's)
    assert ("HF_HUB_OFFLINE" in str(again.value)) == offline
