"""The local web app (``cyclediff serve``): :class:`~cyclediff.web.service.Studio` does the work through the runner,
:mod:`cyclediff.web.app` shows it with Gradio (imported only when the app is built)."""

from .service import DEMO_MODELS, Cancelled, Studio, seeds_of

__all__ = ["DEMO_MODELS", "Cancelled", "Studio", "seeds_of"]
