"""A tiny ONNX detector with SCRFD's input/output signature (9 outputs: scores, boxes and
keypoints at strides 8/16/32, two anchors each). It 'detects' bright square regions: the score
of an anchor cell rises with the cell's mean brightness. Used to test the insightface backend
through ``insightface.model_zoo.get_model`` exactly as users load buffalo_l's det_10g.onnx."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

STRIDES = (8, 16, 32)
KPS_OFFSETS = np.array([-0.3, -0.3, 0.3, -0.3, 0.0, 0.0, -0.25, 0.35, 0.25, 0.35], np.float32)


def build_tiny_scrfd(path: Path) -> Path:
    nodes, inits = [], []

    def const(name: str, value) -> str:
        inits.append(
            helper.make_tensor(
                name,
                TensorProto.FLOAT if np.asarray(value).dtype.kind == "f" else TensorProto.INT64,
                np.shape(value),
                np.asarray(value).ravel().tolist(),
            )
        )
        return name

    const("twenty", [20.0])
    const("minus16", [-16.0])
    const("zero", [0.0])
    const("one", [3.0])  # box half-size: 3 strides, so neighbouring boxes overlap for NMS
    const("shape_1", [-1, 1])
    const("shape_4", [-1, 4])
    const("shape_10", [-1, 10])
    const("kps_offsets", KPS_OFFSETS.reshape(1, 10, 1, 1).tolist())
    inits[-1] = helper.make_tensor(
        "kps_offsets", TensorProto.FLOAT, [1, 20, 1, 1], np.tile(KPS_OFFSETS, 2).tolist()
    )
    nodes.append(helper.make_node("ReduceMean", ["input.1"], ["gray"], axes=[1], keepdims=1))
    outputs = {"score": [], "bbox": [], "kps": []}
    for s in STRIDES:
        p = f"s{s}"
        nodes += [
            helper.make_node(
                "AveragePool", ["gray"], [f"{p}_pool"], kernel_shape=[s, s], strides=[s, s]
            ),
            helper.make_node("Mul", [f"{p}_pool", "twenty"], [f"{p}_a"]),
            helper.make_node("Add", [f"{p}_a", "minus16"], [f"{p}_b"]),
            helper.make_node("Sigmoid", [f"{p}_b"], [f"{p}_sig"]),
            helper.make_node("Concat", [f"{p}_sig"] * 2, [f"{p}_sig2"], axis=1),
            helper.make_node("Transpose", [f"{p}_sig2"], [f"{p}_sigT"], perm=[0, 2, 3, 1]),
            helper.make_node("Reshape", [f"{p}_sigT", "shape_1"], [f"score_{s}"]),
            helper.make_node("Mul", [f"{p}_pool", "zero"], [f"{p}_zero"]),
            helper.make_node("Add", [f"{p}_zero", "one"], [f"{p}_one"]),
            helper.make_node("Concat", [f"{p}_one"] * 8, [f"{p}_box8"], axis=1),
            helper.make_node("Transpose", [f"{p}_box8"], [f"{p}_boxT"], perm=[0, 2, 3, 1]),
            helper.make_node("Reshape", [f"{p}_boxT", "shape_4"], [f"bbox_{s}"]),
            helper.make_node("Concat", [f"{p}_zero"] * 20, [f"{p}_z20"], axis=1),
            helper.make_node("Add", [f"{p}_z20", "kps_offsets"], [f"{p}_kps20"]),
            helper.make_node("Transpose", [f"{p}_kps20"], [f"{p}_kpsT"], perm=[0, 2, 3, 1]),
            helper.make_node("Reshape", [f"{p}_kpsT", "shape_10"], [f"kps_{s}"]),
        ]
        outputs["score"].append(
            helper.make_tensor_value_info(f"score_{s}", TensorProto.FLOAT, [None, 1])
        )
        outputs["bbox"].append(
            helper.make_tensor_value_info(f"bbox_{s}", TensorProto.FLOAT, [None, 4])
        )
        outputs["kps"].append(
            helper.make_tensor_value_info(f"kps_{s}", TensorProto.FLOAT, [None, 10])
        )
    graph = helper.make_graph(
        nodes,
        "tiny_scrfd",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "h", "w"])],
        outputs["score"] + outputs["bbox"] + outputs["kps"],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
