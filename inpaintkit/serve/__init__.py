"""``inpaintkit serve``: a local web page to paint masks, fill them and explore the attention.

Needs the optional ``serve`` extra (``pip install "inpaintkit[serve]"``: Starlette and
uvicorn). :func:`create_app` builds the ASGI application (:mod:`inpaintkit.serve.app`);
:mod:`inpaintkit.serve.server` binds a socket and runs it with uvicorn. The page itself is
package data in ``static/``: plain HTML, CSS and JavaScript modules, no build step.
"""

from inpaintkit.serve.app import create_app

__all__ = ["create_app"]
