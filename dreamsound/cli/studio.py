"""``dreamsound studio``: serve the studio page on this machine (needs the ``[studio]`` extra)."""

from __future__ import annotations

import os
import signal
from typing import Annotated

import typer

from dreamsound.cli.common import DeviceOpt, ModelOpt, app, out_console
from dreamsound.errors import DreamsoundError

INSTALL_HINT = "pip install 'dreamsound-ml[studio]' (from a checkout: pip install '.[studio]')"


def require_gradio() -> None:
    """Raise a one-line :class:`DreamsoundError` when the studio's extra is not installed."""
    try:
        import gradio  # noqa: F401
    except ImportError as exc:
        raise DreamsoundError(f"the studio needs gradio, which cannot be imported ({exc}): "
                              f"{INSTALL_HINT}") from None


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@app.command()
def studio(
    host: Annotated[str, typer.Option(
        "--host", help="Address to serve on; 0.0.0.0 lets other machines of your network in "
        "(there is no login).")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(
        "--port", min=1, max=65535, help="Port (default: the first free one from 7860).",
        show_default=False)] = None,
    model: ModelOpt = "instrument",
    device: DeviceOpt = "auto",
) -> None:
    """Dream in the browser: a local web page to upload or record a sound, pick a class, dream,
    listen to the original, the dream and the gradient side by side, and download them.

    Works offline (no fonts, analytics or share links from the internet) and never downloads
    model weights (`dreamsound models fetch NAME` does). Outputs go to a temporary folder per
    browser session, removed when the studio stops: download what you keep. Stop it with
    Ctrl-C.
    """
    require_gradio()
    # The page never downloads weights behind the user's back (a request from a web page that
    # hangs on the network): a model whose weights are missing says which command fetches them.
    os.environ.setdefault("DREAMSOUND_OFFLINE", "1")
    from dreamsound.studio.workbench import Studio

    workbench = Studio(model, device=device)
    try:
        workbench.model(model)  # load it now: a bad name or missing weights fail here, not later
        from dreamsound.studio.app import serve

        page, url = serve(workbench, host=host, port=port)
        # A stop from a service manager (SIGTERM) ends like Ctrl-C: server closed, folder gone.
        signal.signal(signal.SIGTERM, _interrupt)
        out_console.print(f"dreamsound studio ({model}): open {url} in a browser; Ctrl-C "
                          f"stops it. Outputs: {workbench.out_dir} (removed on exit).",
                          soft_wrap=True, highlight=False)
        try:
            page.block_thread()
        finally:
            page.close()
    finally:
        workbench.close()
