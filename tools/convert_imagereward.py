"""Convert ImageReward (`THUDM/ImageReward`: `ImageReward.pt` and `med_config.json`) to a popalign folder, once.

    python tools/convert_imagereward.py ImageReward.pt med_config.json vocab.txt OUT_DIR [--vision-heads 16]

`vocab.txt` is bert-base-uncased's WordPiece vocabulary (30522 lines), the tokenizer BLIP builds ImageReward's on;
BLIP appends `[DEC]` and `[ENC]`, so the text encoder has two more embedding rows than the vocabulary has lines.
The checkpoint is a torch.save'd state_dict of the package's `ImageReward` module. popalign never reads pickle;
this script does, with `weights_only=True`, and writes to OUT_DIR:

- `model.safetensors`: the tensors the score reads, under the checkpoint's own names (`blip.visual_encoder.*`,
  `blip.text_encoder.*`, `mlp.layers.*`); the contrastive projections and the `position_ids` buffer are dropped;
- `med_config.json` (copied) and `vocab.txt` (copied);
- `vision_config.json`: the BLIP ViT's shape, read from the tensors, except its head count, which the checkpoint
  does not record (`--vision-heads`; BLIP's ViT-L has 16).

Needs torch and safetensors.
"""
import argparse
import json
import re
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

REQUIRED = [
    "blip.visual_encoder.patch_embed.proj.weight",
    "blip.visual_encoder.cls_token",
    "blip.visual_encoder.pos_embed",
    "blip.visual_encoder.norm.weight",
    "blip.text_encoder.embeddings.word_embeddings.weight",
    "blip.text_encoder.embeddings.position_embeddings.weight",
    "blip.text_encoder.encoder.layer.0.crossattention.self.key.weight",
    "mlp.layers.0.weight",
    "mlp.layers.7.weight",
]
KEPT = re.compile(r"^(blip\.visual_encoder\.|blip\.text_encoder\.(embeddings\.(word|position)_embeddings|"
                  r"embeddings\.LayerNorm|encoder\.)|mlp\.layers\.)")


def fail(message):
    sys.exit(f"convert_imagereward: {message}")


def vision_config(state, heads):
    patch = state["blip.visual_encoder.patch_embed.proj.weight"]
    positions = state["blip.visual_encoder.pos_embed"].shape[1] - 1
    side = round(positions ** 0.5)
    if side * side != positions:
        fail(f"blip.visual_encoder.pos_embed has {positions} patch positions, not a square grid")
    hidden = patch.shape[0]
    if hidden % heads:
        fail(f"the ViT width {hidden} does not split into {heads} heads (--vision-heads)")
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"blip\.visual_encoder\.blocks\.(\d+)\.", k))}
    return {
        "image_size": side * patch.shape[-1],
        "patch_size": patch.shape[-1],
        "hidden_size": hidden,
        "num_hidden_layers": len(blocks),
        "num_attention_heads": heads,
        "intermediate_size": state["blip.visual_encoder.blocks.0.mlp.fc1.weight"].shape[0],
        "layer_norm_eps": 1e-6,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("med_config")
    parser.add_argument("vocab")
    parser.add_argument("out_dir")
    parser.add_argument("--vision-heads", type=int, default=16)
    args = parser.parse_args()
    try:
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    except Exception as e:  # a pickle of something else, or not a torch file at all
        fail(f"{args.checkpoint}: not a torch state_dict ({e})")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        fail(f"{args.checkpoint}: not an ImageReward checkpoint, missing {', '.join(missing)}")
    vocab_lines = sum(1 for _ in open(args.vocab, encoding="utf-8"))
    rows = state["blip.text_encoder.embeddings.word_embeddings.weight"].shape[0]
    if vocab_lines + 2 != rows:
        fail(f"{args.vocab} has {vocab_lines} tokens; the text encoder has {rows} embedding rows, "
             f"which is the vocabulary plus [DEC] and [ENC] only for a {rows - 2}-line vocab.txt")
    med = json.loads(Path(args.med_config).read_text())
    if med.get("hidden_size") != state["blip.text_encoder.embeddings.word_embeddings.weight"].shape[1]:
        fail(f"{args.med_config}: hidden_size {med.get('hidden_size')} does not match the checkpoint's text encoder")
    vision = vision_config(state, args.vision_heads)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kept = {k: v.contiguous() for k, v in state.items() if KEPT.match(k)}
    save_file(kept, str(out / "model.safetensors"), metadata={"format": "pt"})
    shutil.copyfile(args.med_config, out / "med_config.json")
    shutil.copyfile(args.vocab, out / "vocab.txt")
    (out / "vision_config.json").write_text(json.dumps(vision, indent=2) + "\n")
    print(f"wrote {out}: {len(kept)} tensors of {len(state)}, vision {vision}")


if __name__ == "__main__":
    main()
