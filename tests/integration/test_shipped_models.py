"""Shipped pretrained models (inference/catalog.py) register and run on a real node like any other."""

from __future__ import annotations

import numpy as np
import pytest
import trio

from inference.catalog import SHIPPED_MODELS, shipped_model
from mesh import Config, Node
from mesh.cluster import LocalCluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_every_shipped_model_is_added_from_its_installed_file_and_infers(tmp_path):
    node_dir = LocalCluster(tmp_path).init_node("solo").data_dir
    inputs = {
        "ppocr-det": {"x": np.zeros((1, 3, 64, 96), np.float32)},
        "ppocr-rec": {"x": np.zeros((1, 3, 48, 160), np.float32)},
        "ppocr-cls": {"x": np.zeros((2, 3, 48, 192), np.float32)},
        "silero-vad": {
            "input": np.zeros((1, 512), np.float32),
            "state": np.zeros((2, 1, 128), np.float32),
            "sr": np.array(16000, np.int64),
        },
    }
    assert set(inputs) == set(SHIPPED_MODELS)

    async def main():
        async with Node.start(Config.load(node_dir)) as node:
            results = {}
            for name, arrays in inputs.items():
                doc = await node.add_model(name, shipped_model(name).path())
                assert doc["sha256"] == shipped_model(name).sha256
                results[name] = (await node.infer(name, arrays)).outputs
            return results

    results = trio.run(main)
    assert results["ppocr-det"]["fetch_name_0"].shape == (1, 1, 64, 96)
    assert results["ppocr-rec"]["fetch_name_0"].shape == (1, 20, 18710)
    assert results["ppocr-cls"]["save_infer_model/scale_0.tmp_1"].shape == (2, 2)
    assert 0.0 <= results["silero-vad"]["output"].item() <= 1.0
    assert results["silero-vad"]["stateN"].shape == (2, 1, 128)
