"""The PyTorch reference of `bench/faces.sh`: facenet-pytorch's MTCNN finds the largest face of every image in a
folder, crops it at 224 with FairFace's margin (a third of the crop), and torchvision's resnet34 with FairFace's
18-output head reads it with predict.py's transform. Weights from `fairface.safetensors` (the same file ours loads).
Prints one JSON line: images, seconds, images/s.

    python bench/torch_faces.py IMAGES_DIR WEIGHTS_DIR [--threads N]
"""
import argparse
import json
import time
from pathlib import Path

import torch
import torchvision
from facenet_pytorch import MTCNN
from PIL import Image
from safetensors.torch import load_file


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("images")
    parser.add_argument("weights")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    net = torchvision.models.resnet34(num_classes=18)
    net.load_state_dict(load_file(str(Path(args.weights) / "fairface.safetensors")))
    net.eval()
    mtcnn = MTCNN(image_size=224, margin=224 // 3, select_largest=True, post_process=False, device="cpu")
    t = torchvision.transforms
    normalize = t.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    files = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    start = time.perf_counter()
    faces = 0
    with torch.no_grad():
        for path in files:
            crop = mtcnn(Image.open(path).convert("RGB"))
            if crop is None:
                continue
            faces += 1
            logits = net(normalize(crop / 255.0).unsqueeze(0))
            logits[:, 0:7].softmax(1), logits[:, 7:9].softmax(1), logits[:, 9:18].softmax(1)
    seconds = time.perf_counter() - start
    print(json.dumps({"images": len(files), "faces": faces, "seconds": seconds, "images_per_s": len(files) / seconds}))


if __name__ == "__main__":
    main()
