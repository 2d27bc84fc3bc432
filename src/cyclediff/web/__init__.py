"""The local web app (``cyclediff serve``): :class:`~cyclediff.web.service.Studio` does the work through the runner,
:mod:`cyclediff.web.app` shows it with Gradio (imported only when the app is built)."""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a local tool: nothing is sent (set before gradio loads)

from .service import DEMO_MODELS, Cancelled, Studio, seeds_of  # noqa: E402

__all__ = ["DEMO_MODELS", "Cancelled", "Studio", "seeds_of"]
