"""The node's local HTTP API: what the CLI (and scripts) talk to.

Starlette routes served by Hypercorn's trio worker, so the API runs inside the
node's own trio loop. It listens on 127.0.0.1 by default; the actual address
(port 0 picks a free one) is written to ``api.addr`` in the data dir, where the
client commands find it. Bodies are JSON, except ``/infer`` which carries
tensors as msgpack, and ``/metrics`` which is Prometheus's text format.

Errors: a ``MeshError`` becomes ``{"error": "<one line>"}`` with 400 (bad
request), 404 (unknown thing) or 503 (the mesh cannot do it right now); the
node keeps running. ``/config/watch`` streams one JSON object per line
(NDJSON), with an empty line every few seconds so a client can tell a quiet
watch from a dead one; an error after the stream started arrives as a last
``{"error": …}`` line.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import math
import os
import secrets
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from consensus import ConsensusError, ConsensusUnavailable
from crdt.errors import MeshError
from inference import InvalidInput, decode_tensors, encode_tensors

from .config import API_ADDR_FILE, API_TOKEN_FILE
from .dashboard import PAGE, dashboard_data
from .metrics import registry_for
from .sensor_quorum import DEFAULT_TIMEOUT, QuorumNotReached
from .wire import pack, unpack

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger("meshnode.api")

MAX_BODY = 64 * 1024 * 1024


def _error(exc: Exception) -> JSONResponse:
    status = 400
    if isinstance(exc, (ConsensusUnavailable, QuorumNotReached)):
        status = 503
    elif isinstance(exc, ConsensusError):
        status = 409
    elif isinstance(exc, InvalidInput):
        status = 400
    return JSONResponse({"error": str(exc)}, status_code=status)


async def _json(request: Request) -> dict:
    try:
        body = await request.json()
    except Exception as exc:
        raise MeshError(f"api: request body is not JSON ({exc})") from exc
    if not isinstance(body, dict):
        raise MeshError("api: request body must be a JSON object")
    return body


def _field(body: dict, name: str, kind: type = str) -> Any:
    value = body.get(name)
    if not isinstance(value, kind):
        raise MeshError(f"api: field {name!r} must be a {kind.__name__}")
    return value


def _flag(request: Request, name: str) -> bool:
    """A boolean query parameter: 1/true/yes, or absent/0/false/no."""
    raw = request.query_params.get(name, "0").lower()
    if raw not in ("", "0", "1", "true", "false", "yes", "no"):
        raise MeshError(f"api: query parameter {name!r} must be 1 or 0, got {raw!r}")
    return raw in ("1", "true", "yes")


def _number(request: Request, name: str, kind: type, default: Any = None) -> Any:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise MeshError(f"api: query parameter {name!r} must be a {kind.__name__}, got {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise MeshError(f"api: query parameter {name!r} must be a finite number >= 0, got {raw!r}")
    return value


def _int_field(body: dict, name: str) -> int:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MeshError(f"api: field {name!r} must be an int")
    return value


def _seconds_field(body: dict, name: str) -> float:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MeshError(f"api: field {name!r} must be a number of seconds")
    return float(value)


def _holder(body: dict) -> str | None:
    holder = body.get("holder")
    if holder is not None and not isinstance(holder, str):
        raise MeshError("api: field 'holder' must be a str")
    return holder or None


WATCH_HEARTBEAT = 5.0  # seconds between keep-alive lines of a quiet watch


def build_app(node: "Node") -> Starlette:
    """The ASGI app for one node."""

    def guarded(fn):
        async def endpoint(request: Request):
            try:
                return await fn(request)
            except MeshError as exc:
                return _error(exc)

        return endpoint

    async def status(request: Request):
        return JSONResponse(node.status())

    async def peers(request: Request):
        return JSONResponse(node.peer_list())

    async def metrics(request: Request):
        # Prometheus text format; a part of the node that cannot be read is left out (mesh/metrics.py).
        return Response(generate_latest(registry_for(node)), media_type=CONTENT_TYPE_LATEST)

    async def dashboard(request: Request):
        return HTMLResponse(PAGE)

    async def dashboard_json(request: Request):
        return JSONResponse(dashboard_data(node))

    async def config_set(request: Request):
        body = await _json(request)
        return JSONResponse(await node.config.set(_field(body, "key"), body.get("value")))

    async def config_get(request: Request):
        key = request.query_params.get("key", "")
        entry = await node.config.entry(key, stale=_flag(request, "stale"))
        if entry is None:
            return JSONResponse({"error": f"config: key {key!r} is not set"}, status_code=404)
        return JSONResponse({"key": key, **entry})

    async def config_cas(request: Request):
        body = await _json(request)
        if "value" not in body:
            raise MeshError("api: field 'value' is required")
        return JSONResponse(await node.config.cas(
            _field(body, "key"), body["value"], _int_field(body, "expected_revision")
        ))

    async def config_delete(request: Request):
        body = await _json(request)
        return JSONResponse(await node.config.delete(_field(body, "key")))

    async def config_list(request: Request):
        prefix = request.query_params.get("prefix", "")
        return JSONResponse(await node.config.list(prefix, stale=_flag(request, "stale")))

    async def config_watch(request: Request):
        key, prefix = request.query_params.get("key"), request.query_params.get("prefix")
        if (key is None) == (prefix is None):
            raise MeshError("api: /config/watch takes key=K or prefix=P")
        count = _number(request, "count", int, 0)
        timeout = _number(request, "timeout", float, None)
        deadline = trio.current_time() + (math.inf if timeout is None else timeout)

        async def lines():
            sent = 0
            try:
                async for event in node.config._watch(key, prefix, heartbeat=WATCH_HEARTBEAT, deadline=deadline):
                    if event is None:
                        yield b"\n"
                        continue
                    yield json.dumps(event).encode() + b"\n"
                    sent += 1
                    if count and sent >= count:
                        return
            except MeshError as exc:
                yield json.dumps({"error": str(exc)}).encode() + b"\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    async def tasks_list(request: Request):
        return JSONResponse(await node.tasks.list(stale=_flag(request, "stale")))

    async def tasks_acquire(request: Request):
        body = await _json(request)
        return JSONResponse(await node.tasks.acquire(
            _field(body, "task"), _seconds_field(body, "lease"), holder=_holder(body)
        ))

    async def tasks_renew(request: Request):
        body = await _json(request)
        return JSONResponse(await node.tasks.renew(
            _field(body, "task"), _int_field(body, "token"), _seconds_field(body, "lease"), holder=_holder(body)
        ))

    async def tasks_release(request: Request):
        body = await _json(request)
        return JSONResponse(await node.tasks.release(
            _field(body, "task"), _int_field(body, "token"), holder=_holder(body)
        ))

    async def tasks_check(request: Request):
        task = request.query_params.get("task", "")
        token = _number(request, "token", int, None)
        if token is None:
            raise MeshError("api: /tasks/check needs token=N")
        return JSONResponse(await node.tasks.check(task, token, stale=_flag(request, "stale")))

    async def placement(request: Request):
        model, stale = request.query_params.get("model"), _flag(request, "stale")
        if model is None:
            return JSONResponse(await node.placement.list(stale=stale))
        found = await node.placement.get(model, stale=stale)
        if found is None:
            return JSONResponse({"error": f"placement: model {model!r} has no placement"}, status_code=404)
        return JSONResponse(found)

    async def placement_set(request: Request):
        body = await _json(request)
        partitions = body.get("partitions")
        if not isinstance(partitions, dict) or not all(isinstance(k, str) and k.isascii() and k.isdigit() for k in partitions):
            raise MeshError(
                "api: field 'partitions' must be a map of partition index to peer ids, like "
                '{"0": ["12D3KooW…"]}'
            )
        return JSONResponse(await node.placement.set(
            _field(body, "model"), {int(k): v for k, v in partitions.items()}, _int_field(body, "expected_revision")
        ))

    async def placement_clear(request: Request):
        body = await _json(request)
        return JSONResponse(await node.placement.clear(_field(body, "model")))

    async def admit(request: Request):
        body = await _json(request)
        name = body.get("name") or ""
        if not isinstance(name, str):
            raise MeshError("api: field 'name' must be a str")
        return JSONResponse(await node.admit(_field(body, "peer_id"), name))

    async def revoke(request: Request):
        body = await _json(request)
        return JSONResponse(await node.revoke(_field(body, "peer_id")))

    async def admitted(request: Request):
        return JSONResponse(await node.admitted())

    async def raft_rotate_key(request: Request):
        return JSONResponse(await node.rotate_raft_key())

    async def state_put(request: Request):
        body = await _json(request)
        return JSONResponse(await node.state.put(
            _field(body, "key"), body.get("value"),
            consistency=body.get("consistency", "local"), timeout=body.get("timeout", DEFAULT_TIMEOUT),
            scope=body.get("scope")))  # a check against the privacy config, never an override

    async def state_get(request: Request):
        key = request.query_params.get("key", "")
        level = request.query_params.get("consistency", "local")
        entry = await node.state.read(key, consistency=level,
                                      timeout=_number(request, "timeout", float, DEFAULT_TIMEOUT))
        if entry is None:
            where = "on any of a majority of members" if level == "majority" else "on this node"
            return JSONResponse({"error": f"crdt: key {key!r} is not set {where}"}, status_code=404)
        return JSONResponse(entry)

    async def state_delete(request: Request):
        body = await _json(request)
        return JSONResponse(await node.state.delete(_field(body, "key")))

    async def state_incr(request: Request):
        body = await _json(request)
        return JSONResponse(await node.state.incr(_field(body, "key"), body.get("by", 1)))

    async def state_list(request: Request):
        return JSONResponse(node.state.list(request.query_params.get("prefix", "")))

    async def model_add(request: Request):
        body = await _json(request)
        return JSONResponse(await node.add_model(_field(body, "name"), _field(body, "path")))

    async def model_list(request: Request):
        models = await node.cluster_models()
        loaded = set(node.runtime.loaded())
        return JSONResponse([
            {"name": r.name, "sha256": r.sha256, "size": r.size, "origin": r.origin, "loaded_here": r.name in loaded}
            for r in models.values()
        ])

    async def infer(request: Request):
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise MeshError(f"api: request of {len(raw)} bytes is over the {MAX_BODY}-byte limit")
        body = unpack(raw)
        if not isinstance(body, dict):
            raise MeshError("api: infer body must be a map")
        model = _field(body, "model")
        inputs = decode_tensors(body.get("inputs"), max_bytes=MAX_BODY)
        threshold = body.get("exit_threshold")
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                      or not 0 <= threshold <= 1):
            raise MeshError(f"api: exit_threshold must be a number in [0, 1], got {threshold!r}")
        result = await node.infer(model, inputs, timeout=float(body.get("timeout", 30.0)), exit_threshold=threshold)
        reply = {
            "outputs": encode_tensors(result.outputs),
            "ran_on": result.ran_on,
            "ran_on_name": result.ran_on_name,
            "elapsed_ms": result.elapsed_ms,
            "offloaded": result.offloaded,
            "route": result.route,
            "degraded": result.degraded,
            "early_exit": result.early_exit,
            "attempts": result.attempts,
            "failed_peers": list(result.failed_peers),
        }
        return Response(pack(reply), media_type="application/msgpack")

    routes = [
        Route("/status", guarded(status)),
        Route("/peers", guarded(peers)),
        Route("/metrics", guarded(metrics)),
        Route("/dashboard", guarded(dashboard)),
        Route("/dashboard/data", guarded(dashboard_json)),
        Route("/config/set", guarded(config_set), methods=["POST"]),
        Route("/config/get", guarded(config_get)),
        Route("/config/cas", guarded(config_cas), methods=["POST"]),
        Route("/config/delete", guarded(config_delete), methods=["POST"]),
        Route("/config/list", guarded(config_list)),
        Route("/config/watch", guarded(config_watch)),
        Route("/tasks", guarded(tasks_list)),
        Route("/tasks/acquire", guarded(tasks_acquire), methods=["POST"]),
        Route("/tasks/renew", guarded(tasks_renew), methods=["POST"]),
        Route("/tasks/release", guarded(tasks_release), methods=["POST"]),
        Route("/tasks/check", guarded(tasks_check)),
        Route("/placement", guarded(placement)),
        Route("/placement/set", guarded(placement_set), methods=["POST"]),
        Route("/placement/clear", guarded(placement_clear), methods=["POST"]),
        Route("/admit", guarded(admit), methods=["POST"]),
        Route("/revoke", guarded(revoke), methods=["POST"]),
        Route("/admitted", guarded(admitted)),
        Route("/raft/rotate-key", guarded(raft_rotate_key), methods=["POST"]),
        Route("/state/put", guarded(state_put), methods=["POST"]),
        Route("/state/get", guarded(state_get)),
        Route("/state/list", guarded(state_list)),
        Route("/state/delete", guarded(state_delete), methods=["POST"]),
        Route("/state/incr", guarded(state_incr), methods=["POST"]),
        Route("/models/add", guarded(model_add), methods=["POST"]),
        Route("/models", guarded(model_list)),
        Route("/infer", guarded(infer), methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    token = api_token(node)
    if token is None:
        return app

    async def with_token(scope, receive, send):
        # Exposed beyond loopback: every request shows the token (the browser's dashboard as ?token=).
        if scope["type"] == "http":
            request = Request(scope)
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip() \
                or request.query_params.get("token", "")
            if not hmac.compare_digest(given.encode(), token.encode()):
                response = JSONResponse({"error": f"api: this node's API needs its token (the {API_TOKEN_FILE} file "
                                                  "in its data dir) as 'Authorization: Bearer TOKEN' or ?token=TOKEN"},
                                        status_code=401)
                await response(scope, receive, send)
                return
        await app(scope, receive, send)

    return with_token


def api_token(node: "Node") -> str | None:
    """The token this node's API requires, or None when it requires none (see ``api_token`` in node.yaml)."""
    host, _ = node.settings.api_host_port
    wanted = node.settings.api_token
    if wanted is None:
        try:
            wanted = not ipaddress.ip_address(host.strip("[]")).is_loopback
        except ValueError:
            wanted = host != "localhost"
    if not wanted:
        return None
    path = node.data_dir / API_TOKEN_FILE
    if not path.exists():
        fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
        path.with_suffix(".tmp").replace(path)
        log.warning("api: listening on %s needs a token; it is in %s", host, path)
    token = path.read_text().strip()
    if len(token) < 16:
        raise MeshError(f"api: {path} holds no usable token (at least 16 characters); delete it to get a new one")
    return token


async def serve_api(node: "Node", *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve the API until cancelled; ``task_status.started(addr)`` once bound."""
    host, port = node.settings.api_host_port
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise MeshError(f"api: cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(128)
    actual = f"{host}:{sock.getsockname()[1]}"
    cfg = HypercornConfig()
    cfg.bind = [f"fd://{sock.detach()}"]
    cfg.accesslog = None
    cfg.errorlog = logging.getLogger("meshnode.api.server")
    cfg.graceful_timeout = 1.0
    addr_file: Path = node.data_dir / API_ADDR_FILE
    tmp = addr_file.with_name(addr_file.name + ".tmp")
    tmp.write_text(actual + "\n")
    os.replace(tmp, addr_file)  # a client never reads half an address (a chaos run caught one mid-write)
    try:
        shutdown = trio.Event()
        task_status.started(actual)
        await serve(build_app(node), cfg, shutdown_trigger=shutdown.wait)
    finally:
        addr_file.unlink(missing_ok=True)
