"""Embed a node in a trio program: write a reading, agree on a setting, print what the mesh knows.

    meshnode init /tmp/mesh/a --name a
    python examples/embed_trio.py /tmp/mesh/a
"""

import sys

import trio

from mesh import Config, Node


async def main(data_dir: str) -> None:
    async with Node.start(Config.load(data_dir), serve_api=False) as node:
        await node.state.put("garden/soil_moisture", 0.31)
        await node.config.set("garden.watering", "auto")
        print("state:", node.state.get("garden/soil_moisture")["value"])
        print("config:", await node.config.get("garden.watering"))
        print("raft:", node.raft_status()["role"])


if __name__ == "__main__":
    trio.run(main, sys.argv[1])
