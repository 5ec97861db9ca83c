"""PyTorch side of bench/scorers.sh: quality-scorer throughput on the models' real architectures (random weights).

    python bench/torch_scorers.py setup WORK N   # writes the models, N images and the attribute CSVs under WORK
    python bench/torch_scorers.py time WORK THREADS

setup writes, under WORK:
  hps/        open_clip ViT-H-14 (HPSv2's architecture) in the layout popalign reads (open_clip_config.json,
              open_clip_model.safetensors, tokenizer/), as tools/convert_open_clip.py writes it
  clip-l14/   a transformers CLIPModel with OpenAI ViT-L/14's config, and its tokenizer
  aesthetic.safetensors   LAION's aesthetic MLP (768 -> 1024 -> 128 -> 64 -> 16 -> 1)
  run/images/set/*.png, run/attributes/{set,one}.csv   N photos (copies of fixtures/mtcnn) and a 1-image set
time prints images/s of HPSv2 (open_clip's transform, encode_image/encode_text, cosine) and of the aesthetic score
(OpenAI CLIP's transform, get_image_features, MLP), batches of 8, preprocessing included, model loading excluded.
"""
import sys
import time
from pathlib import Path

import open_clip
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools" / "fixtures"))
from common import clip_vocab_and_merges, dump_json, write_tokenizer_folder  # noqa: E402
from image_set import write_image_set  # noqa: E402  (this folder is the script's, so on the path)

L14 = dict(
    text_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                     max_position_embeddings=77, vocab_size=49408, hidden_act="quick_gelu"),
    vision_config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                       image_size=224, patch_size=14, hidden_act="quick_gelu"),
    projection_dim=768,
)


def aesthetic_mlp():
    w = [768, 1024, 128, 64, 16, 1]
    return nn.Sequential(nn.Linear(w[0], w[1]), nn.Dropout(0.2), nn.Linear(w[1], w[2]), nn.Dropout(0.2),
                         nn.Linear(w[2], w[3]), nn.Dropout(0.1), nn.Linear(w[3], w[4]), nn.Linear(w[4], w[5]))


def setup(work, n):
    torch.manual_seed(0)
    vocab, merges = clip_vocab_and_merges()
    hps = work / "hps"
    hps.mkdir(parents=True, exist_ok=True)
    model = open_clip.create_model("ViT-H-14", pretrained=None)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(hps / "open_clip_model.safetensors"))
    dump_json(hps / "open_clip_config.json", {"model_cfg": open_clip.get_model_config("ViT-H-14"), "preprocess_cfg": {
        "mean": list(open_clip.OPENAI_DATASET_MEAN), "std": list(open_clip.OPENAI_DATASET_STD),
        "interpolation": "bicubic", "resize_mode": "shortest"}})
    write_tokenizer_folder(hps / "tokenizer", vocab, merges, "!", "ViT-H-14")
    del model
    clip = CLIPModel(CLIPConfig(**L14))
    clip.save_pretrained(str(work / "clip-l14"), safe_serialization=True)
    write_tokenizer_folder(work / "clip-l14" / "tokenizer", vocab, merges, "<|endoftext|>", "clip-l14")
    save_file({f"layers.{k}": v for k, v in aesthetic_mlp().state_dict().items()}, str(work / "aesthetic.safetensors"))
    write_image_set(work, n)


def batches(items, size=8):
    return [items[i:i + size] for i in range(0, len(items), size)]


@torch.no_grad()
def time_scorers(work, threads):
    torch.set_num_threads(threads)
    rows = (work / "run" / "attributes" / "set.csv").read_text().splitlines()[1:]
    files = [work / "run" / r.split(",")[0] for r in rows]
    prompts = [r.split(",")[1] for r in rows]
    model = open_clip.create_model("ViT-H-14", pretrained=None)
    model.load_state_dict(load_file(str(work / "hps" / "open_clip_model.safetensors")))
    model.eval()
    transform = open_clip.image_transform(224, is_train=False)
    tokenizer = open_clip.get_tokenizer("ViT-H-14")
    start = time.perf_counter()
    for chunk in batches(list(zip(files, prompts))):
        x = torch.stack([transform(Image.open(f).convert("RGB")) for f, _ in chunk])
        i = model.encode_image(x, normalize=True)
        t = model.encode_text(tokenizer([p for _, p in chunk]), normalize=True)
        (i * t).sum(-1)
    hps = len(files) / (time.perf_counter() - start)
    del model
    clip = CLIPModel.from_pretrained(str(work / "clip-l14")).eval()
    mlp = aesthetic_mlp()
    mlp.load_state_dict({k.removeprefix("layers."): v for k, v in load_file(str(work / "aesthetic.safetensors")).items()})
    mlp.eval()
    start = time.perf_counter()
    for chunk in batches(files):
        x = torch.stack([transform(Image.open(f).convert("RGB")) for f in chunk])
        e = clip.get_image_features(pixel_values=x).pooler_output
        mlp(e / e.norm(dim=-1, keepdim=True))
    aesthetic = len(files) / (time.perf_counter() - start)
    print(f"torch ({threads} threads): hps {hps:.3f} images/s, aesthetic {aesthetic:.3f} images/s")


if __name__ == "__main__":
    mode, work = sys.argv[1], Path(sys.argv[2])
    if mode == "setup":
        setup(work, int(sys.argv[3]))
    else:
        time_scorers(work, int(sys.argv[3]))
