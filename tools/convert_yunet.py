"""Convert YuNet (opencv_zoo's `face_detection_yunet_2023mar.onnx`, the detector of DeepFace's `yunet` backend) to
safetensors, once.

    python tools/convert_yunet.py face_detection_yunet_2023mar.onnx yunet.safetensors

The ONNX graph is read structurally, not by initializer names (exporters name folded weights `onnx::Conv_123`): each
of the twelve outputs OpenCV reads (`cls_8` … `kps_32`) is followed back to its two convolutions, those to the level's
shared block and the neck's lateral block; the rest of the convolutions, in graph order, are the backbone's chain.
A BatchNormalization after a convolution is folded into it. Every convolution's shape is checked against YuNet-n's,
and the tensors are written under libfacedetection.train's module names, which popalign's model mirrors
(`backbone.model3.conv2.conv1.weight`, …; BatchNorm already folded). Needs onnx and numpy.
"""
import sys

import numpy as np
import onnx
from onnx import numpy_helper

STRIDES = (8, 16, 32)
HEADS = {"cls": 1, "bbox": 4, "obj": 1, "kps": 10}


def fail(message):
    sys.exit(f"convert_yunet: {message}")


class Graph:
    def __init__(self, path):
        try:
            model = onnx.load(path)
        except Exception as e:
            fail(f"{path}: not an ONNX file ({e})")
        g = model.graph
        self.values = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        for node in g.node:
            if node.op_type == "Constant":
                self.values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        self.nodes = [n for n in g.node if n.op_type != "Constant"]
        self.producer = {out: n for n in self.nodes for out in n.output}
        self.consumers = {}
        for n in self.nodes:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.outputs = {o.name for o in g.output}
        missing = [f"{k}_{s}" for k in HEADS for s in STRIDES if f"{k}_{s}" not in self.outputs]
        if missing:
            fail(f"{path}: not a YuNet file, no output {', '.join(missing)} (OpenCV's FaceDetectorYN reads them)")

    def conv_before(self, name, what):
        """The convolution that produced `name`, through reshapes, transposes, activations and BatchNorm."""
        node = self.producer.get(name)
        while node is not None and node.op_type != "Conv":
            if node.op_type not in ("Relu", "Sigmoid", "Reshape", "Transpose", "Flatten", "BatchNormalization"):
                fail(f"{what}: expected a convolution, found {node.op_type} ({node.name})")
            node = self.producer.get(node.input[0])
        if node is None:
            fail(f"{what}: no convolution before {name}")
        return node

    def weights(self, conv):
        w = self.values[conv.input[1]].astype(np.float32)
        b = self.values[conv.input[2]].astype(np.float32) if len(conv.input) > 2 else np.zeros(w.shape[0], np.float32)
        after = self.consumers.get(conv.output[0], [])
        if len(after) == 1 and after[0].op_type == "BatchNormalization":
            bn = after[0]
            eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
            gamma, beta, mean, var = (self.values[i].astype(np.float64) for i in bn.input[1:5])
            scale = gamma / np.sqrt(var + eps)
            w = (w * scale[:, None, None, None]).astype(np.float32)
            b = ((b - mean) * scale + beta).astype(np.float32)
        return w, b


def expect(name, w, shape):
    if tuple(w.shape) != shape:
        fail(f"{name}: weight shape {tuple(w.shape)}, expected {shape} (YuNet-n)")


def dp_pair(graph, tensors, name, dw, cin, cout):
    """A 1x1 + depthwise 3x3 pair ending in the depthwise `dw`; returns the pair's input name."""
    w, b = graph.weights(dw)
    expect(f"{name}.conv2", w, (cout, 1, 3, 3))
    tensors[f"{name}.conv2.weight"], tensors[f"{name}.conv2.bias"] = w, b
    pw = graph.conv_before(dw.input[0], f"{name}.conv1")
    w, b = graph.weights(pw)
    expect(f"{name}.conv1", w, (cout, cin, 1, 1))
    tensors[f"{name}.conv1.weight"], tensors[f"{name}.conv1.bias"] = w, b
    return pw.input[0], {dw.name, pw.name}


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    source, target = sys.argv[1:]
    graph = Graph(source)
    tensors, used = {}, set()
    for level, stride in enumerate(STRIDES):
        shared_out = None
        for kind, channels in HEADS.items():
            dw = graph.conv_before(f"{kind}_{stride}", f"{kind}_{stride}")
            source_name, convs = dp_pair(graph, tensors, f"bbox_head.multi_level_{kind}.{level}", dw, 64, channels)
            used |= convs
            shared_out = shared_out or source_name
        dw = graph.conv_before(shared_out, f"level {stride} shared block")
        neck_out, convs = dp_pair(graph, tensors, f"bbox_head.multi_level_share_convs.{level}.0", dw, 64, 64)
        used |= convs
        dw = graph.conv_before(neck_out, f"level {stride} lateral block")
        _, convs = dp_pair(graph, tensors, f"neck.lateral_convs.{level}", dw, 64, 64)
        used |= convs
    backbone = [n for n in graph.nodes if n.op_type == "Conv" and n.name not in used]
    blocks = [("model0.conv2", 16, 16)] + [
        (f"model{i}.conv{j}", cin, cin if j == 1 else cout)
        for i, (cin, cout) in enumerate([(16, 64), (64, 64), (64, 64), (64, 64), (64, 64)], start=1)
        for j in (1, 2)
    ]
    if len(backbone) != 1 + 2 * len(blocks):
        fail(f"{source}: {len(backbone)} backbone convolutions, YuNet-n has {1 + 2 * len(blocks)}")
    w, b = graph.weights(backbone[0])
    expect("backbone.model0.conv1", w, (16, 3, 3, 3))
    tensors["backbone.model0.conv1.weight"], tensors["backbone.model0.conv1.bias"] = w, b
    for k, (name, cin, cout) in enumerate(blocks):
        pw, dw = backbone[1 + 2 * k], backbone[2 + 2 * k]
        for conv, part, shape in ((pw, "conv1", (cout, cin, 1, 1)), (dw, "conv2", (cout, 1, 3, 3))):
            w, b = graph.weights(conv)
            expect(f"backbone.{name}.{part}", w, shape)
            tensors[f"backbone.{name}.{part}.weight"], tensors[f"backbone.{name}.{part}.bias"] = w, b
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, target, metadata={"format": "pt"})
    print(f"wrote {target}: {len(tensors)} tensors")


if __name__ == "__main__":
    main()
