"""``cyclediff serve``: the local web app (:mod:`cyclediff.web`) over the models named here."""

from __future__ import annotations

import signal
import sys

import click

from ..errors import CycleDiffError
from ..latent import DTYPES
from ..settings import RUN, RunOptions
from .main import main
from .options import device_option, dtype_option, loading_options, resolve_device, setting_option


@main.command()
@click.option("--model", "models", multiple=True,
              help="a model to serve (hub id, folder, checkpoint, demo:…); repeat for several "
                   "[default: demo:digits, demo:digit-3, demo:digit-8, demo:digits-flow]")
@click.option("--clip", default=None, help="a CLIP model (hub id or folder): ranks edits (best of N) and offers the "
                                           "clip energy in the Guide tab")
@click.option("--classifier", default=None,
              help="module:function giving a torch classifier (images in [-1, 1] → logits) for the classifier "
                   "energy [default with demo models: the digits classifier]")
@click.option("--energy", "energies", multiple=True,
              help="module:function energies the Guide tab offers (images in [-1, 1] → one value each); the browser "
                   "can choose only these")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="the address to listen on; 0.0.0.0 makes the app reachable from other machines")
@click.option("--port", type=click.IntRange(0, 65535), default=7860, show_default=True,
              help="the port to listen on")
@click.option("--queue-size", type=click.IntRange(1), default=8, show_default=True,
              help="requests waiting beyond the one that runs; more are refused until the queue drains")
@loading_options
@setting_option(RunOptions, "batch_size", help="images per model call")
@click.option("--max-pixels", type=click.IntRange(1), default=RUN.max_pixels, show_default=True,
              help="refuse larger uploads")
@device_option
@dtype_option
def serve(models, clip, classifier, energies, host, port, queue_size, batch_size, max_pixels, device, dtype,
          **loading):
    """Serve the web app: edit, translate, guide and decode latents in the browser (and by API).

    \b
    Examples:
      cyclediff serve                                  # the digits demo models, offline
      cyclediff serve --model stable-diffusion-v1-5/stable-diffusion-v1-5 --dtype float16 \\
          --clip openai/clip-vit-base-patch32
      cyclediff serve --model black-forest-labs/FLUX.1-dev --dtype bfloat16 --quantize torchao-fp8 \\
          --offload model --lora style.safetensors:0.8
    """
    try:
        from ..web.app import build_app, launch
    except ImportError as err:
        raise CycleDiffError(f"the web app needs gradio: pip install 'cyclediff[web]' ({err})") from err
    from ..guidance import load_energy
    from ..web import Studio

    for spec in energies:
        load_energy(spec)  # a bad spec is refused now, not when a browser picks it
    _check_port(host, port)  # before the models load: a busy port is said at once, in one line
    studio = Studio(list(models) or None, device=resolve_device(device), dtype=DTYPES[dtype], max_pixels=max_pixels,
                    clip=clip, classifier=classifier, energies=energies, batch_size=batch_size,
                    loading=RunOptions.from_options(loading).loading())
    for name in studio.names:
        click.echo(f"loading {name}", err=True)
        studio.model(name)
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"note: listening on {host}: anyone who can reach this machine can use the app", err=True)
    # SIGTERM (a service manager's stop) exits as Ctrl-C does: the studio's work folder is removed on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    launch(build_app(studio), studio, host=host, port=port, queue_size=queue_size)


def _check_port(host: str, port: int) -> None:
    """Refuse a port another program listens on (0: any free port)."""
    import socket

    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as err:
        raise CycleDiffError(f"cannot listen on {host}: {err.strerror or err}; give another --host") from err
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds it
        try:
            probe.bind(address)
        except OSError as err:
            raise CycleDiffError(f"port {port} on {host} is in use (or not allowed): choose another with "
                                 f"--port") from err
