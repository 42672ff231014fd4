"""A blocking facade over ``Node`` for plain scripts and asyncio programs.

The node runs its own trio loop in a background thread; each method hands one
call to that loop and waits for the answer (from asyncio, wrap calls in
``asyncio.to_thread``)::

    with BackgroundNode(Config.load("~/.meshnode")) as node:
        node.state.put("kitchen/temp", 21.5)
        node.state.put("door/lock", "shut", consistency="majority")   # on a majority of members
        print(node.state.read("door/lock", consistency="majority"))   # the newest among a majority
        print(node.config.get("mode"))
        print(node.config.get("mode", stale=True))      # without a majority too
        token = node.tasks.acquire("nightly-backup", 30.0)["token"]

``config.watch`` is an async iterator and has no blocking twin; use
``config.changes(key, count=..., timeout=...)``, which waits and returns a list.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import trio

from crdt.errors import MeshError

from .config import Config


class _Proxy:
    """Calls ``getattr(node.<part>, name)`` on the node's loop."""

    def __init__(self, owner: "BackgroundNode", part: str) -> None:
        self._owner, self._part = owner, part

    def __getattr__(self, name: str):
        def call(*args: Any, **kwargs: Any) -> Any:
            return self._owner._call(lambda node: getattr(getattr(node, self._part), name)(*args, **kwargs))

        return call


class BackgroundNode:
    """A node running in a background thread; use as a context manager or call ``close()``."""

    def __init__(self, config: Config, *, serve_api: bool = True, start_timeout: float = 30.0) -> None:
        self._config = config
        self._serve_api = serve_api
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._node = None
        self._abandon = False
        self._thread = threading.Thread(target=self._thread_main, name=f"meshnode-{config.name}", daemon=True)
        self._thread.start()
        if not self._ready.wait(start_timeout):
            self._abandon = True  # the thread stops the node as soon as it is up
            raise MeshError(f"embed: node {config.name} did not start within {start_timeout:g} s")
        if self._error is not None:
            raise self._error
        self.peer_id: str = self._node.peer_id
        self.state = _Proxy(self, "state")
        self.config = _Proxy(self, "config")
        self.tasks = _Proxy(self, "tasks")
        self.placement = _Proxy(self, "placement")

    def _thread_main(self) -> None:
        from .node import Node

        async def main() -> None:
            self._stop = trio.Event()
            async with Node.start(self._config, serve_api=self._serve_api) as node:
                self._node = node
                self._token = trio.lowlevel.current_trio_token()
                self._ready.set()
                if not self._abandon:
                    await self._stop.wait()

        try:
            trio.run(main)
        except BaseException as exc:  # reported to the starting thread, or at close()
            self._error = exc
        finally:
            self._ready.set()

    def _call(self, fn) -> Any:
        if self._token is None or not self._thread.is_alive():
            raise MeshError("embed: the node is not running")

        async def run() -> Any:
            result = fn(self._node)
            if hasattr(result, "__await__"):
                result = await result
            return result

        return trio.from_thread.run(run, trio_token=self._token)

    def infer(self, model: str, inputs: dict[str, np.ndarray], timeout: float = 30.0,
              exit_threshold: float | None = None):
        """Run a model (here, on a peer or split); returns an ``InferResult``."""
        return self._call(lambda node: node.infer(model, inputs, timeout=timeout, exit_threshold=exit_threshold))

    def status(self) -> dict:
        """The node's status document."""
        return self._call(lambda node: node.status())

    def peers(self) -> list[dict]:
        """Known peers."""
        return self._call(lambda node: node.peer_list())

    def admit(self, peer_id: str, name: str = "") -> dict:
        """Put a peer on the admitted-peer list (see ``Node.admit``)."""
        return self._call(lambda node: node.admit(peer_id, name))

    def revoke(self, peer_id: str) -> dict:
        """Revoke a peer (see ``Node.revoke``)."""
        return self._call(lambda node: node.revoke(peer_id))

    def admitted(self) -> dict:
        """The admitted-peer list (see ``Node.admitted``)."""
        return self._call(lambda node: node.admitted())

    def close(self) -> None:
        """Stop the node and wait for its thread."""
        if self._token is not None and self._thread.is_alive():
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(30)

    def __enter__(self) -> "BackgroundNode":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
