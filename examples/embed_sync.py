"""Use a node from a plain script (or, through asyncio.to_thread, from asyncio): no event loop needed.

    meshnode init /tmp/mesh/b --name b
    python examples/embed_sync.py /tmp/mesh/b
"""

import sys

from mesh import BackgroundNode, Config

with BackgroundNode(Config.load(sys.argv[1]), serve_api=False) as node:
    node.state.put("hall/door", "closed")
    node.config.set("alarm", {"armed": True})
    print("state:", node.state.get("hall/door")["value"])
    print("config:", node.config.get("alarm"))
    print("peer id:", node.peer_id)
