"""The viewer's local web server: the page (static/), its JSON (:class:`~features_store.viewer.data.ViewerData`) and
frame images, from the standard library's ``ThreadingHTTPServer``, bound to 127.0.0.1 only (a store may hold faces
of people: nothing is served to the network).

Routes (GET): ``/`` the page; ``/static/<file>``; ``/api/index``; ``/api/video?id=``; ``/api/range?id=&start=&stop=
&bins=&feature=&series=a,b``; ``/api/frame?id=&i=``; ``/api/image?id=&i=&kind=source|crop``. Errors are JSON
``{"error": "<cause>"}`` with status 400 (a request the store cannot answer), 404 (no such route or file), 403 (a
request addressed to another host name than 127.0.0.1 or localhost: DNS rebinding) or 500 (anything else, e.g. a
source video that went away; the server goes on).
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from features_store.errors import AffectsyncError
from features_store.viewer.data import ViewerData, ViewerError
from features_store.viewer.images import encode_rgb

HOST = "127.0.0.1"
LOCAL_NAMES = ("127.0.0.1", "localhost")
"""The host names a request may be addressed to (its ``Host`` header)."""
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".png": "image/png", ".txt": "text/plain; charset=utf-8"}
LOG = logging.getLogger("affectsync.viewer")


def static_file(name: str) -> bytes:
    """The packaged static file ``name`` (``index.html``, ``app.js``, ``style.css``)."""
    return (resources.files("features_store.viewer") / "static" / name).read_bytes()


class ViewerServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that holds the :class:`ViewerData` its handlers answer from."""

    daemon_threads = True

    def __init__(self, data: ViewerData, port: int = 0):
        self.data = data
        super().__init__((HOST, port), ViewerHandler)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"


class ViewerHandler(BaseHTTPRequestHandler):
    server: ViewerServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (BaseHTTPRequestHandler's signature)
        LOG.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:  # noqa: N802  (http.server's hook)
        url = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        if urlsplit("//" + self.headers.get("Host", "")).hostname not in LOCAL_NAMES:
            # another site's page whose name was made to resolve to 127.0.0.1 (DNS rebinding) reads nothing
            self._error(HTTPStatus.FORBIDDEN, "the viewer answers requests for 127.0.0.1 or localhost only")
            return
        try:
            if url.path in ("/", "/index.html"):
                self._send(static_file("index.html"), STATIC_TYPES[".html"])
            elif url.path.startswith("/static/"):
                self._static(url.path[len("/static/"):])
            elif url.path.startswith("/api/"):
                self._api(url.path[len("/api/"):], query)
            else:
                self._error(HTTPStatus.NOT_FOUND, f"no such page: {url.path}")
        except (AffectsyncError, ValueError, KeyError) as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc) if not isinstance(exc, KeyError) else f"missing {exc}")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the page moved on (a newer request replaced this one)
        except Exception as exc:  # noqa: BLE001  (a source video gone, a chunk unreadable: the page says why)
            LOG.debug("%s failed", self.path, exc_info=True)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: {exc}")

    def _static(self, name: str) -> None:
        suffix = "." + name.rpartition(".")[2]
        if "/" in name or name.startswith(".") or suffix not in STATIC_TYPES:
            self._error(HTTPStatus.NOT_FOUND, f"no such file: {name}")
            return
        try:
            body = static_file(name)
        except FileNotFoundError:
            self._error(HTTPStatus.NOT_FOUND, f"no such file: {name}")
            return
        self._send(body, STATIC_TYPES[suffix])

    def _api(self, route: str, query: dict[str, str]) -> None:
        data = self.server.data
        if route == "index":
            self._json(data.index())
        elif route == "video":
            self._json(data.video(query["id"]))
        elif route == "range":
            series = query.get("series")
            self._json(data.range(query["id"], int(query["start"]), int(query["stop"]), int(query.get("bins", 1000)),
                                  query.get("feature") or None, series.split(",") if series else None))
        elif route == "frame":
            self._json(data.frame(query["id"], int(query["i"])))
        elif route == "image":
            self._image(data, query["id"], int(query["i"]), query.get("kind", "crop"))
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no such route: /api/{route}")

    def _image(self, data: ViewerData, video_id: str, index: int, kind: str) -> None:
        if not 0 <= index < data.n_frames(video_id):
            raise ViewerError(f"{video_id}: no frame {index}")
        rgb = data.source_rgb(video_id, index) if kind == "source" else data.crop_rgb(video_id, index)
        if rgb is None:
            self._error(HTTPStatus.NOT_FOUND, f"{video_id}: no {kind} image for frame {index}")
            return
        body, mime = encode_rgb(rgb)
        self._send(body, mime, cache=True)

    def _json(self, payload: Any) -> None:
        self._send(json.dumps(payload, allow_nan=False).encode(), "application/json")

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._send(json.dumps({"error": message}).encode(), "application/json", status=status)

    def _send(self, body: bytes, content_type: str, status: HTTPStatus = HTTPStatus.OK, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
        self.end_headers()
        self.wfile.write(body)


def start_server(data: ViewerData, port: int = 0) -> tuple[ViewerServer, threading.Thread]:
    """A server on 127.0.0.1:``port`` (0: any free port) answering in a background thread; stop it with
    ``server.shutdown()`` then ``server.server_close()``."""
    server = ViewerServer(data, port)
    thread = threading.Thread(target=server.serve_forever, name="affectsync-viewer", daemon=True)
    thread.start()
    return server, thread
