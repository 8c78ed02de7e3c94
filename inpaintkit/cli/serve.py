"""``inpaintkit serve``: parse options, bind, build the app of :mod:`inpaintkit.serve`, run it."""

from __future__ import annotations

import os
import sys
import threading
import webbrowser
from pathlib import Path

import click

from inpaintkit.checkpoint import CheckpointError
from inpaintkit.cli.options import (
    checkpoint_option,
    device_option,
    hd_strategy_option,
    memory_budget_option,
)


def _echo(line: str) -> None:
    click.echo(line, err=True)


@click.command(
    "serve", short_help="Paint masks, fill them and explore attention in a local web page."
)
@click.argument(
    "folder", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Anything but a loopback address exposes the page (and FOLDER) to the network.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port to listen on (0 = any free port).",
)
@checkpoint_option
@device_option()
@click.option(
    "--open", "open_browser", is_flag=True, help="Open the page in the default web browser."
)
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    metavar="NAME",
    help="Another name the page may be reached by (its Host header); repeatable. Others are refused.",
)
@memory_budget_option(
    "Memory the server may hold beyond its model, e.g. 8G: images and results, waiting fills, "
    "the running fill and uploads being decoded share it (docs/serve.md)"
)
@hd_strategy_option
@click.option("--quiet", is_flag=True, help="Print only the address, not a line per fill.")
def serve_command(
    folder: Path | None,
    host: str,
    port: int,
    checkpoint: Path | None,
    device: str,
    open_browser: bool,
    allow_hosts: tuple[str, ...],
    memory_budget: int | None,
    hd_strategy: str,
    quiet: bool,
) -> None:
    """Serve a local web page to inpaint images interactively.

    Open an image (or pick one of FOLDER's), brush over what should go, fill it with DeepFill
    or PatchMatch, and see on the attention map where each filled pixel was borrowed from.
    With FOLDER the page also edits and saves FOLDER's masks (<stem>_mask.png, as `fill`
    pairs them). Stop with Ctrl-C.

    \b
    inpaintkit serve --open
    inpaintkit serve photos/ --checkpoint runs/x/generator.safetensors
    """
    try:
        from inpaintkit.serve import create_app
        from inpaintkit.serve.server import (
            ServeError,
            is_loopback,
            open_socket,
            run,
            server_names,
            server_url,
        )
    except ImportError as err:
        raise click.ClickException(
            f'`inpaintkit serve` needs the serve extra ({err.name} is missing): pip install "inpaintkit[serve]"'
        ) from None
    if not is_loopback(host):
        _echo(f"warning: listening on {host}, not only on this machine: anyone who can reach it can use "
              "the page" + (f" and read and change the masks of {folder}" if folder else ""))  # fmt: skip
    sock = None
    try:
        sock = open_socket(host, port)
        app = create_app(
            folder,
            checkpoint,
            device=device,
            hosts=server_names(host, allow_hosts),
            port=sock.getsockname()[1],
            log=None if quiet else _echo,
            memory_budget=memory_budget,
            hd_strategy=hd_strategy,
            calibrate=True,
        )
    except (ServeError, CheckpointError, ValueError, OSError) as err:
        if sock is not None:
            sock.close()
        raise click.ClickException(str(err)) from None
    url = server_url(sock, host)
    click.echo(f"inpaintkit serve: {url}  (Ctrl-C to stop)")
    for reason in app.state.serve.unavailable.values():
        _echo(f"warning: DeepFill is unavailable, PatchMatch only: {reason}")
    if open_browser:
        threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
    queue, unfinished = app.state.serve.queue, []

    def on_stop() -> None:  # Ctrl-C: fail the waiting fills, answer the waiting requests
        unfinished.append(queue.running())
        queue.close(timeout=0)

    try:
        run(app, sock, on_stop=on_stop)
    except KeyboardInterrupt:  # Ctrl-C is how a server is stopped: not an error
        pass
    if unfinished:
        _echo(
            "inpaintkit serve: stopped" + (" (a fill was left unfinished)" if unfinished[0] else "")
        )
        # End now: a running fill is one call into torch that cannot be interrupted (leaving
        # the interpreter under it aborts in native code), and the interpreter's own teardown
        # with torch loaded took 1-2 s on a busy machine. Nothing is left to save.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
