"""The core's step loops (samplers, encoder, cycle, inversion, FlowEdit, Langevin) with a progress bar when asked,
and one hook a caller can set around long work: ``hook(stage, k, n)`` runs before step ``k`` of ``n`` of every
loop in its context (its thread, or a thread started in a copy of its context). The web app follows progress and
stops work at the next step with it (the hook raises); nothing is passed through the functions in between."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from tqdm.auto import tqdm

Hook = Callable[[str, int, int], None]
T = TypeVar("T")
_HOOK: ContextVar[Hook | None] = ContextVar("cyclediff_step_hook", default=None)


@contextmanager
def each_step(hook: Hook) -> Iterator[None]:
    """Run ``hook(stage, k, n)`` before every step of the core's loops inside this block (it may raise to stop)."""
    token = _HOOK.set(hook)
    try:
        yield
    finally:
        _HOOK.reset(token)


def at_step(stage: str, k: int, n: int) -> None:
    """Step ``k`` of ``n`` of ``stage`` is about to run: the hook, if one is set, sees it."""
    hook = _HOOK.get()
    if hook is not None:
        hook(stage, k, n)


def stepping(items: Iterable[T], *, desc: str, progress: bool, **bar: Any) -> Iterator[T]:
    """The items one step at a time: a progress bar when ``progress``, and :func:`at_step` before each."""
    items = list(items)
    for k, item in enumerate(tqdm(items, desc=desc, disable=not progress, leave=False, **bar)):
        at_step(desc, k, len(items))
        yield item
