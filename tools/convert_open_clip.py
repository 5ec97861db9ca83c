"""Convert an open_clip checkpoint published as a pickle (HPSv2's `HPS_v2_compressed.pt`) to the folder popalign reads.

    python tools/convert_open_clip.py HPS_v2_compressed.pt hps-v2/ --model ViT-H-14

Writes, in the output folder:
  open_clip_config.json        open_clip's own config of --model (`model_cfg`) and its evaluation preprocessing
  open_clip_model.safetensors  the state dict (a checkpoint's `state_dict` entry when it has one; `module.` prefixes
                               of DataParallel checkpoints removed)
  tokenizer/                   CLIP's BPE vocabulary from the open_clip wheel, as vocab.json + merges.txt
popalign never reads pickle; this script does, with `weights_only=True` (plain tensors only, no code runs).
Needs torch, safetensors and open_clip_torch (tools/fixtures/requirements.txt has tested versions).
"""
import argparse
import sys
from pathlib import Path

import open_clip
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
from common import clip_vocab_and_merges, dump_json, write_tokenizer_folder  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--model", default="ViT-H-14", help="open_clip model name whose config the weights fit")
    args = parser.parse_args()
    model_cfg = open_clip.get_model_config(args.model)
    if model_cfg is None:
        sys.exit(f"unknown open_clip model {args.model!r}")
    state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    state = {k.removeprefix("module."): v.contiguous() for k, v in state.items()}
    # Check the weights fit the named architecture before writing anything.
    model = open_clip.create_model(args.model, pretrained=None)
    model.load_state_dict(state, strict=True)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    preprocess = {
        "mean": list(open_clip.OPENAI_DATASET_MEAN),
        "std": list(open_clip.OPENAI_DATASET_STD),
        "interpolation": "bicubic",
        "resize_mode": "shortest",
    }
    dump_json(args.out_dir / "open_clip_config.json", {"model_cfg": model_cfg, "preprocess_cfg": preprocess})
    save_file(state, str(args.out_dir / "open_clip_model.safetensors"), metadata={"format": "pt"})
    vocab, merges = clip_vocab_and_merges()
    write_tokenizer_folder(args.out_dir / "tokenizer", vocab, merges, "!", args.model)
    print(f"wrote {args.out_dir}: {len(state)} tensors")


if __name__ == "__main__":
    main()
