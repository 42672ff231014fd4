"""The ``meshnode`` command: a thin shell over the node and its local API.

Each client verb makes one API call, prints a small table by default or one
JSON document with ``--json``, and exits non-zero with a one-line reason on
failure. Built on click (well kept, composable groups, typed options and
choices with clear usage errors).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import random
import signal
import socket
import sys
from pathlib import Path
from typing import Any, Callable

import click

from crdt.errors import MeshError

from .config import (
    IDENTITY_FILE,
    MESH_KEY_FILE,
    NODE_FILE,
    TIERS,
    Config,
    ConfigError,
    read_identity,
    read_mesh_key,
    write_secret,
)


def default_home() -> str:
    """``$MESHNODE_HOME``, else ``~/.meshnode``."""
    return os.environ.get("MESHNODE_HOME") or str(Path.home() / ".meshnode")


def fail(message: str) -> None:
    """Print one line to stderr and exit 1."""
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def reports_errors(fn: Callable) -> Callable:
    """Turn our errors into a one-line message and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MeshError as exc:
            fail(str(exc))
        except BaseExceptionGroup as group:  # an error raised inside the node's task nursery
            found = group.subgroup(lambda e: isinstance(e, MeshError))
            if found is None:
                raise
            while isinstance(found, BaseExceptionGroup):
                found = found.exceptions[0]
            fail(str(found))

    return wrapper


def data_dir_option(fn: Callable) -> Callable:
    """``-d/--data-dir`` and ``--json`` for every client verb."""
    fn = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")(fn)
    return click.option(
        "-d", "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=default_home,
        show_default="$MESHNODE_HOME or ~/.meshnode", help="The node's data directory.",
    )(fn)


def client_for(data_dir: Path):
    """A client for the node running in ``data_dir``."""
    from .client import Client

    return Client(data_dir)


def emit(doc: Any, as_json: bool, render: Callable[[Any], str]) -> None:
    """JSON or the human rendering."""
    click.echo(json.dumps(doc, indent=2, default=str) if as_json else render(doc))


def table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """A plain text table of ``rows`` with (key, title) columns."""
    if not rows:
        return "(none)"
    cells = [[str(r.get(k, "")) if r.get(k) is not None else "-" for k, _ in columns] for r in rows]
    widths = [max(len(t), *(len(c[i]) for c in cells)) for i, (_, t) in enumerate(columns)]
    lines = ["  ".join(t.ljust(w) for (_, t), w in zip(columns, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def parse_value(text: str) -> Any:
    """JSON when ``text`` is valid JSON, else the string itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="meshnode")
def main() -> None:
    """meshnode: a self-organizing peer-to-peer mesh for edge AI."""


# -- init / run -------------------------------------------------------------------


PORT_RANGE = (20000, 32000)  # below Linux's ephemeral range (32768-60999): see _free_port


def _free_port(host: str) -> int:
    """A port free now on ``host``, for a node to keep across restarts.

    Not one the kernel hands out for outgoing connections (port 0 picks from the ephemeral
    range): while the node is down, any outgoing connection on the machine could take such a
    port, and the node could not start again ("is the port taken?"; seen in CI).
    """
    rng = random.SystemRandom()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(200):
        port = rng.randrange(*PORT_RANGE)
        with socket.socket(family) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(family) as s:  # a crowded range: take whatever the kernel gives
        s.bind((host, 0))
        return s.getsockname()[1]


@main.command()
@click.argument("data_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", help="Node name (default: the directory name).")
@click.option("--tier", type=click.Choice(TIERS), default="edge", show_default=True)
@click.option("--capability", "capabilities", multiple=True, help="A capability tag; repeatable.")
@click.option("--location", default="", help="Where the node is (room, site, region).")
@click.option("--listen", default="/ip4/127.0.0.1/tcp/0", show_default=True, help="libp2p listen multiaddr; port 0 picks one.")
@click.option("--api", default="127.0.0.1:0", show_default=True, help="HOST:PORT of the local HTTP API.")
@click.option("--join", "joins", multiple=True, help="Address of a mesh member to join; repeatable.")
@click.option("--mesh-key", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Copy this mesh's key (its mesh.key file); without it a new mesh is created.")
@click.option("--raft-port", type=int, default=0, show_default=True, help="Raft TCP port; 0 picks one.")
@click.option("--token", help="A join token from `meshnode invite` (mesh key and addresses to join).")
@reports_errors
def init(data_dir: Path, name, tier, capabilities, location, listen, api, joins, mesh_key, raft_port, token) -> None:
    """Create a node's data directory: node.yaml, identity key and mesh key."""
    from .host import new_identity_seed, peer_id_from_seed
    from .invite import JoinToken

    if (data_dir / NODE_FILE).exists():
        raise ConfigError(f"init: {data_dir} already holds a node ({NODE_FILE} exists)")
    if token and mesh_key:
        raise ConfigError("init: give either --token or --mesh-key, not both")
    invite = JoinToken.decode(token) if token else None
    if invite:
        joins = tuple(dict.fromkeys([*joins, *invite.join]))
    psk = invite.mesh_key if invite else read_mesh_key(mesh_key) if mesh_key else os.urandom(32).hex()
    raw = {
        "name": name or data_dir.resolve().name, "tier": tier, "capabilities": list(capabilities),
        "location": location, "listen": listen, "api": api, "join": list(joins),
        "raft": {"port": raft_port},
    }
    cfg = Config.from_dict(raw, data_dir=data_dir, source="init options")
    host = cfg.listen_host
    parts = cfg.listen.split("/")
    if parts[4] == "0":
        parts[4] = str(_free_port(host))
    lport = int(parts[4])
    rport = raft_port or _free_port(host)
    while rport == lport:
        rport = _free_port(host)
    cfg = Config.from_dict({**raw, "listen": "/".join(parts), "raft": {"port": rport}}, data_dir=data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    seed = new_identity_seed()
    write_secret(data_dir / IDENTITY_FILE, seed)
    if not (data_dir / MESH_KEY_FILE).exists():
        write_secret(data_dir / MESH_KEY_FILE, (psk + "\n").encode())
    cfg.save()
    peer_id = peer_id_from_seed(seed)
    click.echo(f"initialised {data_dir} ({'joined mesh' if mesh_key or invite else 'new mesh'})")
    click.echo(f"peer id: {peer_id}")
    click.echo(f"join address: {cfg.listen}/p2p/{peer_id}")
    click.echo(f"mesh key: {data_dir / MESH_KEY_FILE} (give it to nodes that join with --mesh-key)")


@main.command()
@click.argument("data_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@reports_errors
def run(data_dir: Path, verbose: bool) -> None:
    """Run the node in the foreground until SIGINT or SIGTERM."""
    import trio

    cfg = Config.load(data_dir)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format=f"%(asctime)s {cfg.name} %(levelname)s %(name)s: %(message)s",
    )
    # py-libp2p logs every failed redial at ERROR; the node reports what matters itself.
    logging.getLogger("libp2p").setLevel(logging.INFO if verbose else logging.CRITICAL)
    for noisy in ("hypercorn", "pysyncobj"):
        logging.getLogger(noisy).setLevel(logging.INFO if verbose else logging.WARNING)

    async def _main() -> None:
        from .node import Node

        fatal = ""
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with Node.start(cfg) as node, trio.open_nursery() as waits:
                click.echo(f"meshnode {cfg.name} running: peer {node.peer_id}, api http://{node.api_addr}", err=True)

                async def on_fatal() -> None:
                    nonlocal fatal
                    fatal = await node.wait_fatal()
                    waits.cancel_scope.cancel()

                waits.start_soon(on_fatal)
                async for signum in signals:
                    logging.getLogger("meshnode").info("received %s; shutting down", signal.Signals(signum).name)
                    break
                waits.cancel_scope.cancel()
        if fatal:
            raise MeshError(fatal)

    trio.run(_main)
    click.echo(f"meshnode {cfg.name} stopped", err=True)


@main.command()
@data_dir_option
@reports_errors
def invite(data_dir: Path, as_json: bool) -> None:
    """Print a join token: `meshnode init DIR --token TOKEN` joins this mesh."""
    from .host import peer_id_from_seed
    from .invite import JoinToken

    cfg = Config.load(data_dir)
    join = [f"{cfg.listen}/p2p/{peer_id_from_seed(read_identity(data_dir))}"]
    try:  # a running node also knows the members it is connected to
        join += [p["addr"] for p in client_for(data_dir).get("/peers") if p["state"] == "alive" and p["addr"]]
    except MeshError:
        pass
    token = JoinToken(mesh_key=read_mesh_key(data_dir / MESH_KEY_FILE), join=tuple(dict.fromkeys(join))).encode()
    emit({"token": token, "join": join}, as_json,
         lambda d: f"{d['token']}\n(it holds the mesh key: whoever has it can join; share it like a password)")


# -- status / peers ---------------------------------------------------------------


@main.command()
@data_dir_option
@reports_errors
def status(data_dir: Path, as_json: bool) -> None:
    """Show this node and its Raft view."""
    doc = client_for(data_dir).get("/status")

    def render(d: dict) -> str:
        r = d["raft"]
        return "\n".join([
            f"peer id   {d['peer_id']}",
            f"name      {d['name']} ({d['tier']})",
            f"raft      {r['role']}, term {r['term']}, leader {r.get('leader_name') or r.get('leader') or '-'}",
            f"api       {d['api']}",
            f"models    {', '.join(d['models']) or '-'}",
            f"sensors   {d['sensors']['keys']} keys",
        ])

    emit(doc, as_json, render)


@main.command()
@data_dir_option
@reports_errors
def peers(data_dir: Path, as_json: bool) -> None:
    """List the peers this node knows."""
    doc = client_for(data_dir).get("/peers")
    emit(doc, as_json, lambda rows: table(rows, [("name", "NAME"), ("tier", "TIER"), ("state", "STATE"),
                                                 ("peer_id", "PEER ID"), ("addr", "ADDRESS")]))


# -- config ------------------------------------------------------------------------


@main.group()
def config() -> None:
    """Mesh-wide settings, agreed through Raft."""


@config.command("set")
@click.argument("key")
@click.argument("value")
@data_dir_option
@reports_errors
def config_set(key: str, value: str, data_dir: Path, as_json: bool) -> None:
    """Commit KEY = VALUE (JSON if valid JSON, else a string)."""
    doc = client_for(data_dir).post("/config/set", {"key": key, "value": parse_value(value)})
    emit(doc, as_json, lambda d: f"{d['key']} = {json.dumps(d['value'])} (revision {d['revision']})")


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _stale_note(doc: dict, as_json: bool) -> None:
    """For a stale read, say on stderr where it was read and how old it may be (stdout stays the data)."""
    if as_json or not doc.get("stale"):
        return
    age = doc.get("age_s")
    how_old = "its age is unknown (it never heard a leader)" if age is None else f"{age:.3f} s old"
    click.echo(f"(stale read on {doc.get('read_on')}: {how_old})", err=True)


def _stale_flag(fn: Callable) -> Callable:
    return click.option("--stale", is_flag=True,
                        help="Read this node's applied state: works without a majority, may be old (age shown).")(fn)


def _unless(ok: bool, doc: dict, as_json: bool, message: str) -> None:
    """Exit 1 when a compare failed: the JSON document still goes to stdout, the reason to stderr."""
    if ok:
        return
    if as_json:
        click.echo(json.dumps(doc, indent=2, default=str))
    fail(message)


@config.command("get")
@click.argument("key")
@_stale_flag
@data_dir_option
@reports_errors
def config_get(key: str, stale: bool, data_dir: Path, as_json: bool) -> None:
    """Read KEY (linearizable: through the Raft log; --stale: this node's applied state)."""
    doc = client_for(data_dir).get("/config/get", key=key, stale=int(stale))
    emit(doc, as_json, lambda d: _shown(d["value"]))
    _stale_note(doc, as_json)


@config.command("cas")
@click.argument("key")
@click.argument("value")
@click.option("--expect", "expected", type=click.IntRange(min=0), required=True,
              help="The revision KEY's entry must be at (see `config get --json`); 0: KEY must not exist.")
@data_dir_option
@reports_errors
def config_cas(key: str, value: str, expected: int, data_dir: Path, as_json: bool) -> None:
    """Set KEY = VALUE only if KEY is at revision --expect (compare-and-set); exit 1 if it is not."""
    doc = client_for(data_dir).post("/config/cas", {"key": key, "value": parse_value(value),
                                                    "expected_revision": expected})
    now = "does not exist" if not doc["exists"] else (
        f"is at revision {doc['entry_revision']} = {json.dumps(doc['value'])}")
    _unless(doc["swapped"], doc, as_json,
            f"config: compare-and-set of {key!r} did not swap: it {now}, not at revision {expected}; "
            "read it again and retry")
    emit(doc, as_json, lambda d: f"{d['key']} = {json.dumps(d['value'])} (revision {d['entry_revision']})")


@config.command("delete")
@click.argument("key")
@data_dir_option
@reports_errors
def config_delete(key: str, data_dir: Path, as_json: bool) -> None:
    """Remove KEY (through Raft); not an error if it was not set."""
    doc = client_for(data_dir).post("/config/delete", {"key": key})
    emit(doc, as_json, lambda d: f"{'deleted' if d['deleted'] else 'was not set:'} {d['key']} "
                                 f"(revision {d['revision']})")


@config.command("list")
@click.argument("prefix", default="")
@_stale_flag
@data_dir_option
@reports_errors
def config_list(prefix: str, stale: bool, data_dir: Path, as_json: bool) -> None:
    """List the settings whose key starts with PREFIX (all without one)."""
    doc = client_for(data_dir).get("/config/list", prefix=prefix, stale=int(stale))
    rows = [dict(e, value=json.dumps(e["value"])) for e in doc["entries"]]
    emit(doc, as_json, lambda _: table(rows, [("key", "KEY"), ("value", "VALUE"), ("revision", "REVISION")]))
    _stale_note(doc, as_json)


@config.command("watch")
@click.argument("key", required=False)
@click.option("--prefix", help="Watch every key starting with this prefix instead of one KEY.")
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many changes.")
@click.option("--timeout", type=click.FloatRange(min=0), help="Stop after this many seconds.")
@data_dir_option
@reports_errors
def config_watch(key: str | None, prefix: str | None, count: int | None, timeout: float | None,
                 data_dir: Path, as_json: bool) -> None:
    """Print changes to KEY (or under --prefix) as this node applies them, until Ctrl-C, --count or --timeout.

    Each change is one line: KEY = VALUE (revision R), or KEY deleted. With
    --json, one JSON object per line. Writes closer together than the node's
    look at its state (50 ms on a voter) may show as one change.
    """
    if (key is None) == (prefix is None):
        raise click.UsageError("give a KEY or --prefix P (not both)")
    params: dict[str, Any] = {"key": key} if key is not None else {"prefix": prefix}
    if count:
        params["count"] = count
    if timeout is not None:
        params["timeout"] = timeout
    try:
        for event in client_for(data_dir).stream("/config/watch", **params):
            if as_json:
                click.echo(json.dumps(event))
            elif event["deleted"]:
                click.echo(f"{event['key']} deleted (revision {event['revision']})")
            else:
                click.echo(f"{event['key']} = {json.dumps(event['value'])} (revision {event['revision']})")
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a watch ends


# -- tasks -------------------------------------------------------------------------


def _left(d: dict) -> str:
    left = d.get("lease_left_s")
    return "-" if left is None else ("expired" if left <= 0 else f"{left:.1f} s")


@main.command()
@_stale_flag
@data_dir_option
@reports_errors
def tasks(stale: bool, data_dir: Path, as_json: bool) -> None:
    """List task assignments: holder, fencing token and lease left."""
    doc = client_for(data_dir).get("/tasks", stale=int(stale))
    rows = [dict(t, left=_left(t)) for t in doc["tasks"]]
    emit(doc, as_json, lambda _: table(rows, [("task", "TASK"), ("holder", "HOLDER"), ("token", "TOKEN"),
                                              ("left", "LEASE LEFT")]))
    _stale_note(doc, as_json)


@main.group()
def task() -> None:
    """Take, keep and give back tasks: leases with fencing tokens, agreed through Raft."""


def _holder_option(fn: Callable) -> Callable:
    return click.option("--holder", help="Who holds the task (default: this node's peer id).")(fn)


def _lease_option(fn: Callable) -> Callable:
    return click.option("--lease", type=click.FloatRange(min=0, min_open=True, max=86400), default=30.0,
                        show_default=True, help="Lease length in seconds.")(fn)


def _held(d: dict) -> str:
    return f"{d['task']} held by {d['holder']} with token {d['token']}, lease left {_left(d)}"


@task.command("acquire")
@click.argument("name")
@_lease_option
@_holder_option
@data_dir_option
@reports_errors
def task_acquire(name: str, lease: float, holder: str | None, data_dir: Path, as_json: bool) -> None:
    """Take task NAME for --lease seconds; prints the fencing token. Exit 1 if someone else holds it."""
    doc = client_for(data_dir).post("/tasks/acquire", {"task": name, "lease": lease, "holder": holder})
    _unless(doc["acquired"], doc, as_json, f"tasks: {_held(doc)}; retry once it is released or expires")
    emit(doc, as_json, lambda d: f"acquired {_held(d)}")


@task.command("renew")
@click.argument("name")
@click.argument("token", type=click.IntRange(min=0))
@_lease_option
@_holder_option
@data_dir_option
@reports_errors
def task_renew(name: str, token: int, lease: float, holder: str | None, data_dir: Path, as_json: bool) -> None:
    """Extend the lease on NAME held under TOKEN. Exit 1 if it was lost (expired or taken)."""
    doc = client_for(data_dir).post("/tasks/renew", {"task": name, "token": token, "lease": lease,
                                                     "holder": holder})
    now = _held(doc) if doc["holder"] else f"{name} is free"
    _unless(doc["renewed"], doc, as_json, f"tasks: lease with token {token} is lost ({now}); acquire it again")
    emit(doc, as_json, lambda d: f"renewed {_held(d)}")


@task.command("release")
@click.argument("name")
@click.argument("token", type=click.IntRange(min=0))
@_holder_option
@data_dir_option
@reports_errors
def task_release(name: str, token: int, holder: str | None, data_dir: Path, as_json: bool) -> None:
    """Give NAME back if it is still held under TOKEN. Exit 1 if it was not."""
    doc = client_for(data_dir).post("/tasks/release", {"task": name, "token": token, "holder": holder})
    now = _held(doc) if doc["holder"] else f"{name} is free"
    _unless(doc["released"], doc, as_json, f"tasks: nothing released: token {token} does not hold it ({now})")
    emit(doc, as_json, lambda d: f"released {name} (revision {d['revision']})")


@task.command("check")
@click.argument("name")
@click.argument("token", type=click.IntRange(min=0))
@_stale_flag
@data_dir_option
@reports_errors
def task_check(name: str, token: int, stale: bool, data_dir: Path, as_json: bool) -> None:
    """Whether TOKEN is NAME's live fencing token. Exit 1 if not (a holder that lost its lease)."""
    doc = client_for(data_dir).get("/tasks/check", task=name, token=token, stale=int(stale))
    now = _held(doc) if doc["holder"] else f"{name} is free"
    _unless(doc["valid"], doc, as_json, f"tasks: token {token} is not live ({now})")
    emit(doc, as_json, lambda d: f"valid: {_held(d)}")
    _stale_note(doc, as_json)


# -- placement ---------------------------------------------------------------------


@main.command()
@click.argument("model", required=False)
@_stale_flag
@data_dir_option
@reports_errors
def placement(model: str | None, stale: bool, data_dir: Path, as_json: bool) -> None:
    """Which peers serve each partition of MODEL (every placed model without one), most preferred first."""
    params = {"stale": int(stale)} if model is None else {"model": model, "stale": int(stale)}
    doc = client_for(data_dir).get("/placement", **params)
    placed = doc["placements"] if model is None else [doc]
    rows = [
        {"model": p["model"], "partition": part["partition"], "peers": ", ".join(part["peers"]) or "(none)",
         "revision": p["placement_revision"]}
        for p in placed for part in p["partitions"]
    ]
    emit(doc, as_json, lambda _: table(rows, [("model", "MODEL"), ("partition", "PARTITION"), ("peers", "PEERS"),
                                              ("revision", "REVISION")]))
    _stale_note(doc, as_json)


# -- admitted peers ----------------------------------------------------------------


def _also(d: dict) -> str:
    also = d.get("also_admitted") or []
    if not also:
        return ""
    return (f"\nthe list is on now; the {len(also)} current member(s) were admitted too: " + ", ".join(also)
            + "\n(check with `meshnode admitted`)")


@main.command()
@click.argument("peer")
@click.option("--name", default="", help="A human name for the peer (default: the name it gives itself).")
@data_dir_option
@reports_errors
def admit(peer: str, name: str, data_dir: Path, as_json: bool) -> None:
    """Put PEER (a peer id) on the admitted-peer list; re-admits a revoked peer.

    The first admit turns the list on: from then on only listed peers may join.
    It also admits every member this node sees, so the mesh does not lock itself out.
    """
    doc = client_for(data_dir).post("/admit", {"peer_id": peer, "name": name})
    emit(doc, as_json, lambda d: f"admitted {d['name'] or d['peer_id']} ({d['peer_id']}), "
                                 f"revision {d['revision']}{_also(d)}")


@main.command()
@click.argument("peer")
@data_dir_option
@reports_errors
def revoke(peer: str, data_dir: Path, as_json: bool) -> None:
    """Revoke PEER: every node disconnects it within seconds and refuses it until it is admitted again."""
    doc = client_for(data_dir).post("/revoke", {"peer_id": peer})
    emit(doc, as_json, lambda d: f"revoked {d['name'] or d['peer_id']} ({d['peer_id']}), "
                                 f"revision {d['revision']}{_also(d)}")


@main.group()
def raft() -> None:
    """Raft maintenance."""


@raft.command("rotate-key")
@data_dir_option
@reports_errors
def raft_rotate_key(data_dir: Path, as_json: bool) -> None:
    """On the Raft leader: give Raft a new key only the voters know (done by itself after a revoke)."""
    doc = client_for(data_dir).post("/raft/rotate-key", {})
    emit(doc, as_json, lambda d: f"Raft key rotated: epoch {d['key_epoch']}, key {d['key_id']}")


@main.command()
@data_dir_option
@reports_errors
def admitted(data_dir: Path, as_json: bool) -> None:
    """List the admitted-peer list (empty: an open mesh, anyone with the mesh key may join)."""
    doc = client_for(data_dir).get("/admitted")

    def render(d: dict) -> str:
        if not d["enforced"]:
            return "open mesh: no admitted-peer list; anyone holding the mesh key may join"
        return table(d["peers"], [("name", "NAME"), ("status", "STATUS"), ("connected", "CONNECTED"),
                                  ("peer_id", "PEER ID"), ("revision", "REVISION")])

    emit(doc, as_json, render)


# -- sensor state ------------------------------------------------------------------


@main.group()
def state() -> None:
    """Sensor state: CRDT entries that sync between nodes and work offline."""


def consistency_options(fn: Callable) -> Callable:
    """``--consistency`` and ``--timeout`` for state reads and writes (mesh/sensor_quorum.py)."""
    fn = click.option("--timeout", type=float, default=5.0, show_default=True,
                      help="Seconds a majority read or write waits for the other members.")(fn)
    return click.option("--consistency", default="local", show_default=True, metavar="local|majority",
                        help="local: this node only; majority: wait for a majority of the mesh's members.")(fn)


def _acked(d: dict) -> str:
    return f" (acknowledged by {d['acks']} of {d['members']} members)" if "acks" in d else ""


@state.command("put")
@click.argument("key")
@click.argument("value")
@consistency_options
@click.option("--scope", type=click.Choice(["local", "zone", "shared"]), default=None,
              help="Refuse the write unless KEY has this scope under the node's privacy config "
                   "(a check against typos; the config decides where a key lives).")
@data_dir_option
@reports_errors
def state_put(key: str, value: str, consistency: str, timeout: float, scope: str | None, data_dir: Path,
              as_json: bool) -> None:
    """Write KEY = VALUE; durable on this node (or a majority of members) when the command returns."""
    doc = client_for(data_dir).state_put(key, parse_value(value), consistency=consistency, timeout=timeout,
                                         scope=scope)
    emit(doc, as_json, lambda d: f"{d['key']} = {json.dumps(d['value'])}{_acked(d)}{_scope_note(d)}")


def _scope_note(d: dict) -> str:
    return {"local": " (local-only: never leaves this node)",
            "zone": " (zone-only: synced with this location only)"}.get(d.get("scope", ""), "")


@state.command("get")
@click.argument("key")
@consistency_options
@data_dir_option
@reports_errors
def state_get(key: str, consistency: str, timeout: float, data_dir: Path, as_json: bool) -> None:
    """Read KEY on this node (--consistency majority: the newest value among a majority of members)."""
    doc = client_for(data_dir).state_get(key, consistency=consistency, timeout=timeout)
    emit(doc, as_json, lambda d: json.dumps(d["value"]) if not isinstance(d["value"], str) else d["value"])


@state.command("delete")
@click.argument("key")
@data_dir_option
@reports_errors
def state_delete(key: str, data_dir: Path, as_json: bool) -> None:
    """Delete KEY on every node (a tombstone that syncs like a write; an older write cannot bring it back)."""
    doc = client_for(data_dir).state_delete(key)
    emit(doc, as_json, lambda d: f"deleted {d['key']}" + ("" if d["existed"] else " (it was not set on this node)"))


@state.command("incr", context_settings={"ignore_unknown_options": True})  # so `incr KEY -2` subtracts
@click.argument("key")
@click.argument("by", type=int, default=1)
@data_dir_option
@reports_errors
def state_incr(key: str, by: int, data_dir: Path, as_json: bool) -> None:
    """Add BY (default 1; negative subtracts) to counter KEY; increments on every node, offline too, all count."""
    doc = client_for(data_dir).state_incr(key, by)
    emit(doc, as_json, lambda d: f"{d['key']} = {d['value']}")


@state.command("list")
@click.argument("prefix", default="")
@data_dir_option
@reports_errors
def state_list(prefix: str, data_dir: Path, as_json: bool) -> None:
    """List entries whose key starts with PREFIX (SCOPE local: never leaves this node; zone: its location only)."""
    doc = client_for(data_dir).get("/state/list", prefix=prefix)
    rows = [dict(r, value=json.dumps(r["value"]), scope=r.get("scope", "shared")) for r in doc]
    emit(doc, as_json, lambda _: table(rows, [("key", "KEY"), ("value", "VALUE"), ("scope", "SCOPE"),
                                              ("writer", "WRITER")]))


# -- models and inference ----------------------------------------------------------


@main.group()
def model() -> None:
    """The model registry."""


@model.command("add")
@click.argument("name")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@data_dir_option
@reports_errors
def model_add(name: str, file: Path, data_dir: Path, as_json: bool) -> None:
    """Register FILE.onnx as NAME; every node gets a copy over the mesh."""
    doc = client_for(data_dir).post("/models/add", {"name": name, "path": str(file.resolve())})
    emit(doc, as_json, lambda d: f"registered {d['name']} ({d['size']} bytes, sha256 {d['sha256'][:16]}…)")


EXPORTABLE = ("ppocr-det", "ppocr-rec", "ppocr-cls", "silero-vad", "ppocr-cls-exit", "resnet18", "mobilenet_v2")


@model.command("export")
@click.argument("name", type=click.Choice(EXPORTABLE))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--size", type=int, default=64, show_default=True, help="Input size of a generated CNN (a multiple of 32).")
@click.option("--width", type=float, default=1.0, show_default=True, help="Channel width multiplier of a generated CNN.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@reports_errors
def model_export(name: str, out: Path, size: int, width: float, as_json: bool) -> None:
    """Write a model that ships with meshnode to OUT, ready for `model add`.

    The shipped pretrained models (docs/models.md), ppocr-cls-exit (ppocr-cls with an early-exit head,
    built here, the same bytes every time), or a generated ResNet-18- or MobileNetV2-shaped CNN
    (seed 0) for benchmarks.
    """
    import hashlib

    if name == "ppocr-cls-exit":
        from inference.early_exit import early_exit_bytes

        data = early_exit_bytes()
    elif name in ("resnet18", "mobilenet_v2"):
        from inference.cnn import cnn_bytes

        data = cnn_bytes(name, 0, size=size, width=width)
    else:
        from inference.catalog import shipped_model

        data = shipped_model(name).path().read_bytes()
    try:
        out.write_bytes(data)
    except OSError as exc:
        raise MeshError(f"model: cannot write {out}: {exc.strerror or exc}") from exc
    doc = {"name": name, "file": str(out), "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    emit(doc, as_json, lambda d: f"wrote {d['name']} to {d['file']} ({d['size']} bytes, sha256 {d['sha256'][:16]}…)")


@model.command("list")
@data_dir_option
@reports_errors
def model_list(data_dir: Path, as_json: bool) -> None:
    """List registered models."""
    doc = client_for(data_dir).get("/models")
    emit(doc, as_json, lambda rows: table(rows, [("name", "NAME"), ("size", "BYTES"),
                                                 ("loaded_here", "LOADED HERE"), ("sha256", "SHA256")]))


@main.command()
@click.argument("name")
@click.option("--input", "input_file", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="An .npz file with one array per model input.")
@click.option("--output", "output_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the outputs to this .npz file.")
@click.option("--timeout", type=float, default=30.0, show_default=True)
@click.option("--exit-threshold", type=click.FloatRange(0, 1), default=None,
              help="For a model with an early-exit head: answer from the head when its confidence is above "
              "this (default: the node's inference.exit_threshold).")
@data_dir_option
@reports_errors
def infer(name: str, input_file: Path, output_file: Path | None, timeout: float, exit_threshold: float | None,
          data_dir: Path, as_json: bool) -> None:
    """Run model NAME here or on a peer with spare capacity."""
    import numpy as np

    from inference import decode_tensors, encode_tensors

    try:
        with np.load(input_file, allow_pickle=False) as npz:
            inputs = {k: npz[k] for k in npz.files}
    except Exception as exc:
        raise MeshError(f"infer: {input_file} is not a readable .npz file ({exc})") from exc
    body = {"model": name, "inputs": encode_tensors(inputs), "timeout": timeout}
    if exit_threshold is not None:
        body["exit_threshold"] = exit_threshold
    reply = client_for(data_dir).post_msgpack("/infer", body)
    outputs = decode_tensors(reply["outputs"])
    if output_file:
        np.savez(output_file, **outputs)
    doc = {
        "model": name, "ran_on": reply["ran_on"], "ran_on_name": reply["ran_on_name"],
        "offloaded": reply["offloaded"], "elapsed_ms": round(reply["elapsed_ms"], 3),
        "route": reply.get("route", "local"), "degraded": reply.get("degraded", False),
        "early_exit": reply.get("early_exit", False), "attempts": reply.get("attempts", 1),
        "outputs": {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in outputs.items()},
        "output_file": str(output_file) if output_file else None,
    }

    def render(d: dict) -> str:
        where = f"{d['ran_on_name']} ({d['route']}{', DEGRADED' if d['degraded'] else ''})"
        if d["attempts"] > 1:
            where += f" after {d['attempts']} attempts"
        shapes = ", ".join(f"{k} {v['dtype']}{v['shape']}" for k, v in d["outputs"].items())
        return f"ran on {where} in {d['elapsed_ms']:.2f} ms: {shapes}"

    emit(doc, as_json, render)


# -- chaos -------------------------------------------------------------------------


@main.group()
def chaos() -> None:
    """Fault-injection runs against a real local cluster, with checkers and a report."""


@chaos.command("run")
@click.option("--nodes", type=click.IntRange(3, 9), default=5, show_default=True)
@click.option("--duration", type=click.FloatRange(10, 86_400), default=60.0, show_default=True,
              help="Seconds of faults and load (then heal, a quiet period and the checks).")
@click.option("--seed", type=int, default=0, show_default=True, help="The same seed gives the same faults and load.")
@click.option("--nemesis", "nemeses", default="partition-halves,partition-leader,kill,pause", show_default=True,
              help="Comma-separated fault kinds, or 'all' (see `meshnode chaos list`).")
@click.option("--workload", "workloads", default="register,sensor,inference,tasks", show_default=True,
              help="Comma-separated workloads (see `meshnode chaos list`).")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write report.json into this directory.")
@click.option("--backend", type=click.Choice(["auto", "netns", "local"]), default="auto", show_default=True,
              help="netns: each node in its own network namespace (root); local: 127.0.0.1, partitions cut by the "
                   "nodes' test-only fault filter (both ways), no netem.")
@click.option("--quiet", "quiet_s", type=click.FloatRange(1, 600), default=15.0, show_default=True,
              help="Seconds after the heal for replicas to agree (the convergence bound checked).")
@click.option("--logs", "logs_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Copy every node's log into this directory when the run ends (the run's own directory is "
                   "removed).")
@click.option("--json", "as_json", is_flag=True, help="Print the verdicts as one JSON document.")
@reports_errors
def chaos_run(nodes: int, duration: float, seed: int, nemeses: str, workloads: str, report_dir: Path | None,
              backend: str, quiet_s: float, logs_dir: Path | None, as_json: bool) -> None:
    """Start NODES real nodes, inject faults on a seeded schedule under load, heal, check; exit 0 only if all pass."""
    from .chaos.nemesis import parse_nemeses
    from .chaos.runner import RunOptions, run

    chosen = tuple(parse_nemeses(nemeses))  # an unknown name is a one-line error
    options = RunOptions(nodes=nodes, duration=duration, seed=seed, nemeses=chosen,
                         workloads=tuple(w.strip() for w in workloads.split(",") if w.strip()),
                         report=report_dir, backend=backend, quiet=quiet_s, logs=logs_dir)
    report = run(options, progress=(lambda line: None) if as_json else (lambda line: click.echo(line, err=True)))
    if as_json:
        click.echo(json.dumps({"ok": report["ok"], "seed": report["seed"], "backend": report["backend"],
                               "verdicts": report["verdicts"]}, indent=2, default=str))
    else:
        click.echo(("PASS" if report["ok"] else "FAIL") + f": {sum(v['ok'] for v in report['verdicts'])}/"
                   f"{len(report['verdicts'])} checkers passed (seed {report['seed']}, {report['backend']} backend)"
                   + (f"; report in {report_dir}/report.json" if report_dir else ""))
    if not report["ok"]:
        raise SystemExit(1)


@chaos.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def chaos_list(as_json: bool) -> None:
    """The nemeses, workloads and checkers a run can use."""
    from .chaos.nemesis import NEMESES
    from .chaos.runner import CHECKERS, WORKLOADS

    doc = {"nemeses": NEMESES, "workloads": WORKLOADS, "checkers": CHECKERS}
    emit(doc, as_json, lambda d: "\n".join(
        f"{title}:\n" + "\n".join(f"  {name:<20} {text}" for name, text in d[key].items())
        for key, title in (("nemeses", "nemeses"), ("workloads", "workloads"), ("checkers", "checkers"))))


@chaos.command("clean")
@reports_errors
def chaos_clean() -> None:
    """Remove what a crashed run left behind: its network namespaces and temp dirs."""
    from .chaos.runner import clean

    removed = clean()
    click.echo("\n".join(f"removed {r}" for r in removed) if removed else "nothing to clean")


# -- demo --------------------------------------------------------------------------


@main.command()
@click.option("--nodes", type=click.IntRange(2, 9), default=3, show_default=True)
@click.option("--keep", is_flag=True, help="Keep the temp directories for inspection.")
@reports_errors
def demo(nodes: int, keep: bool) -> None:
    """Start a local mesh, show it working on a bundled model, clean up."""
    from .demo import run_demo

    sys.exit(run_demo(nodes, keep=keep))


# -- backup / restore --------------------------------------------------------------


@main.command("backup")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--with-models", is_flag=True, help="Also keep the model files (else a restored node fetches them).")
@data_dir_option
@reports_errors
def backup_cmd(out: Path, with_models: bool, data_dir: Path, as_json: bool) -> None:
    """Write a backup of this node to OUT (.tar.gz): identity, keys, config and sensor stores; never Raft.

    Safe while the node runs. OUT holds the node's identity and the mesh key: keep it like a password.
    """
    from .backup import backup

    join: list[str] = []
    try:  # a running node knows where its peers are: a restored first node dials them
        join = [p["addr"] for p in client_for(data_dir).get("/peers") if p["state"] == "alive" and p["addr"]]
    except MeshError:
        pass
    manifest = backup(data_dir, out, models=with_models, join=join)
    size = sum(f["bytes"] for f in manifest["files"].values())
    emit({"backup": str(out), **manifest}, as_json,
         lambda d: f"backed up {d['name']} ({d['peer_id']}) to {out}: {len(d['files'])} files, {size} bytes "
                   "(Raft is left out: a restored node rejoins)")


@main.command("restore")
@click.argument("archive", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.argument("target", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@reports_errors
def restore_cmd(archive: Path, target: Path, as_json: bool) -> None:
    """Restore the backup ARCHIVE into TARGET (a new or empty directory); `meshnode run TARGET` then rejoins."""
    from .backup import restore

    manifest = restore(archive, target)
    emit({"restored": str(target), **manifest}, as_json,
         lambda d: f"restored {d['name']} ({d['peer_id']}) into {target}: it rejoins Raft like a new node and its "
                   "sensor stores write under new writer ids; start it with `meshnode run`")


# -- bench -------------------------------------------------------------------------


@main.command()
@click.argument("suites", nargs=-1)
@click.option("--json", "json_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write every suite's rows and the headline to this file.")
@click.option("--duration", type=click.FloatRange(1, 3600), default=None,
              help="Seconds each measured phase lasts, for suites that watch a running mesh (offload, starvation).")
@click.option("--list", "list_only", is_flag=True, help="List the suites and exit.")
@reports_errors
def bench(suites: tuple[str, ...], json_file: Path | None, duration: float | None, list_only: bool) -> None:
    """Run benchmark SUITES (default: all; minutes each) and print each figure beside its baseline and the ratio.

    Baselines are measured in the same run (raw TCP, raw pysyncobj, pycrdt, offload off, brute force), so
    the ratios hold on any machine; the absolute figures are this machine's.
    """
    from bench.__main__ import SUITES, run_suites
    from bench.summary import format_table, headline

    if list_only:
        click.echo("\n".join(SUITES))
        return
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        raise click.UsageError(f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    logging.disable(logging.WARNING)
    results = run_suites(list(suites), duration, progress=lambda line: click.echo(line, err=True))
    top = headline(results)
    click.echo("each figure beside its baseline, measured in the same run:")
    click.echo(format_table(top))
    if json_file is not None:
        json_file.write_text(json.dumps({**results, "headline": top}, indent=2, default=str))
        click.echo(f"figures written to {json_file}")


if __name__ == "__main__":
    main()
