"""Convert DeepFace's gender or race weights (Keras .h5) to safetensors, for `popalign classify --classifier deepface`.

    python tools/convert_deepface.py gender gender_model_weights.h5 deepface_gender.safetensors
    python tools/convert_deepface.py race race_model_single_batch.h5 deepface_race.safetensors

The files are the ones deepface downloads (github.com/serengil/deepface_models, release v1.0); users fetch them
themselves. Each holds a whole VGG-Face trunk (13 3x3 convolutions, fc6 7x7, fc7 1x1, as convolutions) and a 1x1
"predictions" head: 2 classes [Woman, Man] or 6 [asian, indian, black, white, middle eastern, latino hispanic].
Keras names its layers by creation order ("conv2d_14"), so the weighted layers are read in the file's own order, the
order Keras' `load_weights` uses, and named after VGG-Face's layers as deepface's PyTorch port names them
(`backbone.conv1_1`, ..., `backbone.fc7`, `predictions`). Kernels go from Keras' [kh, kw, in, out] to
[out, in, kh, kw]. Needs h5py, numpy and safetensors only (versions in tools/fixtures/deepface/requirements.txt).
"""
import sys

import h5py
import numpy as np
from safetensors.numpy import save_file

CLASSES = {"gender": 2, "race": 6}
TRUNK = [f"backbone.conv{block}_{i}" for block, n in [(1, 2), (2, 2), (3, 3), (4, 3), (5, 3)] for i in range(1, n + 1)]
NAMES = TRUNK + ["backbone.fc6", "backbone.fc7", "predictions"]
KERNEL = {"backbone.fc6": 7, "backbone.fc7": 1, "predictions": 1}
KNOWN_HEADS = {2: "DeepFace's gender model", 6: "DeepFace's race model", 101: "DeepFace's age model", 2622: "VGG-Face's identity classifier (vgg_face_weights.h5)", 7: "DeepFace's emotion model"}


def weighted_layers(path):
    """(layer name, [arrays]) for every layer with weights, in the file's order (legacy Keras h5)."""
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        sys.exit(f"{path}: not an HDF5 file ({e})")
    with f:
        root = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in root.attrs:
            sys.exit(f"{path}: not a Keras .h5 weights file (no `layer_names` attribute)")
        out = []
        for name in root.attrs["layer_names"]:
            name = name.decode() if isinstance(name, bytes) else name
            group = root[name]
            weights = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
            if weights:
                out.append((name, [np.asarray(group[w]) for w in weights]))
        return out


def convert(task, layers, path):
    classes = CLASSES[task]
    if len(layers) != len(NAMES):
        sys.exit(
            f"{path}: {len(layers)} weighted layers, but DeepFace's {task} model has {len(NAMES)} "
            f"(VGG-Face's 15 and the head); is this another DeepFace model?"
        )
    head = layers[-1][1][0].shape[-1]
    if head != classes:
        what = KNOWN_HEADS.get(head, f"a {head}-class head")
        other = next((t for t, c in CLASSES.items() if c == head), None)
        hint = f" (pass `{other}`)" if other else ""
        sys.exit(f"{path}: its head has {head} outputs, {what}{hint}; the {task} model has {classes}")
    tensors = {}
    for name, (layer, weights) in zip(NAMES, layers):
        if len(weights) != 2:
            sys.exit(f"{path}: layer {layer} ({name}) holds {len(weights)} arrays, expected a kernel and a bias")
        kernel, bias = weights
        size = KERNEL.get(name, 3)
        if kernel.ndim != 4 or kernel.shape[:2] != (size, size) or bias.shape != (kernel.shape[3],):
            sys.exit(f"{path}: layer {layer} ({name}) has kernel {kernel.shape} and bias {bias.shape}; expected a "
                     f"{size}x{size} convolution")
        tensors[f"{name}.weight"] = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1), dtype=np.float32)
        tensors[f"{name}.bias"] = np.ascontiguousarray(bias, dtype=np.float32)
    return tensors


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in CLASSES:
        sys.exit(__doc__)
    task, source, target = sys.argv[1:]
    tensors = convert(task, weighted_layers(source), source)
    # One metadata entry: safetensors writes its metadata map in hash order, so more would make the bytes vary.
    save_file(tensors, target, metadata={"format": "pt"})
    print(f"wrote {target}: {len(tensors)} tensors")


if __name__ == "__main__":
    main()
