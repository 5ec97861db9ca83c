"""Convert LAION's aesthetic predictor v2 (`sac+logos+ava1-l14-linearMSE.pth`) to safetensors, once.

    python tools/convert_aesthetic.py sac+logos+ava1-l14-linearMSE.pth aesthetic.safetensors

The checkpoint is a torch.save'd state_dict with keys layers.{0,2,4,6,7}.{weight,bias}. popalign never reads
pickle; this script does, with `weights_only=True`, and writes the same keys. Needs torch and safetensors.
"""
import sys

import torch
from safetensors.torch import save_file


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    source, target = sys.argv[1:]
    state = torch.load(source, map_location="cpu", weights_only=True)
    state = {k.removeprefix("module."): v.contiguous() for k, v in state.items()}
    expected = {f"layers.{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("weight", "bias")}
    if set(state) != expected:
        sys.exit(f"{source}: expected keys {sorted(expected)}, found {sorted(state)}")
    save_file(state, target, metadata={"format": "pt"})
    print(f"wrote {target}: {len(state)} tensors")


if __name__ == "__main__":
    main()
