"""Convert FairFace's public checkpoint to safetensors, once, for `popalign classify --classifier fairface`.

    python tools/convert_fairface.py res34_fair_align_multi_7_20190809.pt fairface.safetensors

The checkpoint (github.com/joojs/fairface, "res34_fair_align_multi_7") is a torch.save'd state_dict of
torchvision's resnet34 with an 18-output fc. popalign never reads pickle; this script does, with
`weights_only=True` (plain tensors only, no code runs), and writes the same keys as safetensors.
Needs torch and safetensors (tools/fixtures/requirements.txt has tested versions).
"""
import sys

import torch
from safetensors.torch import save_file


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    source, target = sys.argv[1:]
    state = torch.load(source, map_location="cpu", weights_only=True)
    # Checkpoints saved from nn.DataParallel prefix every key with "module.".
    state = {k.removeprefix("module."): v.contiguous() for k, v in state.items()}
    fc = state.get("fc.weight")
    if fc is None or fc.shape[0] != 18:
        sys.exit(f"{source}: expected FairFace's 18-output fc.weight, found {None if fc is None else list(fc.shape)}")
    save_file(state, target, metadata={"format": "pt", "source": source.rsplit("/", 1)[-1]})
    print(f"wrote {target}: {len(state)} tensors")


if __name__ == "__main__":
    main()
