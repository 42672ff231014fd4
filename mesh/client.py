"""A blocking client for a running node's local HTTP API (used by the CLI).

It finds the node through ``api.addr`` in the data dir. Every failure is a
``ClientError`` with one line saying what is wrong: no node running there, the
node refused the request (its own error message), or the node did not answer.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from crdt.errors import MeshError

from .config import API_ADDR_FILE, API_TOKEN_FILE, NODE_FILE
from .wire import pack, unpack


class ClientError(MeshError):
    """A client command failed; the message is the one line to show."""


class Client:
    """Talks to the node running in ``data_dir``."""

    def __init__(self, data_dir: str | Path, timeout: float = 30.0) -> None:
        self.data_dir = Path(data_dir)
        self.timeout = timeout
        self.base = self._find()
        token_file = self.data_dir / API_TOKEN_FILE  # the node's API asks for it when exposed (mesh/api.py)
        self.token = token_file.read_text().strip() if token_file.exists() else ""

    def _find(self) -> str:
        if not (self.data_dir / NODE_FILE).exists():
            raise ClientError(f"client: {self.data_dir} is not a meshnode data dir (no {NODE_FILE}); "
                              f"create one with `meshnode init {self.data_dir}`")
        addr_file = self.data_dir / API_ADDR_FILE
        if not addr_file.exists():
            raise ClientError(f"client: no node is running in {self.data_dir} "
                              f"(start it with `meshnode run {self.data_dir}`)")
        text = addr_file.read_text().strip()
        host, _, port = text.rpartition(":")
        if not host or not port.isdigit():
            raise ClientError(f"client: {addr_file} holds {text!r}, not host:port (is the node starting?)")
        return f"http://{text}"

    def _request(self, method: str, path: str, *, body: bytes | None = None,
                 content_type: str = "application/json") -> tuple[bytes, str]:
        with self._open(method, path, body=body, content_type=content_type) as resp:
            try:
                return resp.read(), resp.headers.get("Content-Type", "")
            except (ConnectionError, TimeoutError) as exc:
                raise ClientError(f"client: the node in {self.data_dir} did not answer in full ({exc}); "
                                  "is it overloaded or stopping?") from None

    def _open(self, method: str, path: str, *, body: bytes | None = None, content_type: str = "application/json"):
        """The open HTTP response; failures to connect or error statuses raise ``ClientError``."""
        req = urllib.request.Request(self.base + path, data=body, method=method)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        if body is not None:
            req.add_header("Content-Type", content_type)
        try:
            return urllib.request.urlopen(req, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            try:
                message = json.loads(payload)["error"]
            except Exception:
                message = f"HTTP {exc.code}: {payload[:200]!r}"
            raise ClientError(message) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ClientError(f"client: no node answers in {self.data_dir} at {self.base} ({reason}); "
                              f"is `meshnode run {self.data_dir}` running?") from None

    def get(self, path: str, **params: str) -> Any:
        """GET a JSON document."""
        query = ("?" + urllib.parse.urlencode(params)) if params else ""
        data, _ = self._request("GET", path + query)
        return json.loads(data)

    def stream(self, path: str, **params: str) -> Iterator[Any]:
        """GET a stream of JSON documents, one per line (empty keep-alive lines are skipped)."""
        query = ("?" + urllib.parse.urlencode(params)) if params else ""
        with self._open("GET", path + query) as resp:
            while True:
                try:
                    line = resp.readline()
                except (TimeoutError, ConnectionError, OSError) as exc:
                    raise ClientError(f"client: the node in {self.data_dir} stopped answering ({exc})") from None
                if not line:
                    return
                if not line.strip():
                    continue
                doc = json.loads(line)
                if isinstance(doc, dict) and set(doc) == {"error"}:
                    raise ClientError(doc["error"])
                yield doc

    def post(self, path: str, body: dict) -> Any:
        """POST a JSON object, return the JSON answer."""
        data, _ = self._request("POST", path, body=json.dumps(body).encode())
        return json.loads(data)

    def post_msgpack(self, path: str, body: dict) -> Any:
        """POST msgpack (tensors), return the decoded msgpack answer."""
        data, _ = self._request("POST", path, body=pack(body), content_type="application/msgpack")
        return unpack(data)

    def state_put(self, key: str, value: Any, *, consistency: str = "local", timeout: float = 5.0,
                  scope: str | None = None) -> dict:
        """``/state/put``: write KEY = VALUE, durable here (``local``) or on a majority of members.

        ``scope`` (local, zone, shared), if given, must be the key's scope under the node's privacy config.
        """
        body = {"key": key, "value": value, "consistency": consistency, "timeout": timeout}
        if scope is not None:
            body["scope"] = scope
        return self._waiting(timeout, lambda: self.post("/state/put", body))

    def state_get(self, key: str, *, consistency: str = "local", timeout: float = 5.0) -> dict:
        """``/state/get``: this node's entry (``local``) or the newest among a majority of members."""
        return self._waiting(timeout, lambda: self.get("/state/get", key=key, consistency=consistency,
                                                       timeout=str(timeout)))

    def state_delete(self, key: str) -> dict:
        """``/state/delete``: delete KEY (a tombstone that syncs to every node)."""
        return self.post("/state/delete", {"key": key})

    def state_incr(self, key: str, by: int = 1) -> dict:
        """``/state/incr``: add BY to counter KEY (increments on every node all count)."""
        return self.post("/state/incr", {"key": key, "by": by})

    def _waiting(self, node_timeout: Any, request: Any) -> Any:
        """Run ``request`` with an HTTP timeout that outlasts the node's own wait (so its error arrives)."""
        saved = self.timeout
        if isinstance(node_timeout, (int, float)) and not isinstance(node_timeout, bool):
            self.timeout = max(saved, min(float(node_timeout), 3600.0) + 10.0)
        try:
            return request()
        finally:
            self.timeout = saved
