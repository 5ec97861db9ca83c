"""PyTorch side of bench/imagereward.sh: ImageReward at its real size (BLIP ViT-L/16 + BERT-base with
cross-attention, random weights), built by image-reward 1.5's own classes, timed with the package's `score`.

    python bench/torch_imagereward.py setup WORK N   # WORK/imagereward (converted), N images, the attribute CSVs
    python bench/torch_imagereward.py time WORK THREADS

The vocabulary is a synthetic 30522-token WordPiece list (bert-base-uncased's size: specials, characters, `##`
characters, then filler), so the embedding table has the real shape; prompts tokenise into characters, which costs
the same per token. Run with the venv of tools/fixtures/imagereward/requirements.txt.
"""
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools" / "fixtures" / "imagereward"))
from make_imagereward import import_package  # noqa: E402
from image_set import write_image_set  # noqa: E402  (this folder is the script's, so on the path)

MED_CONFIG = {
    "architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072,
    "layer_norm_eps": 1e-12, "max_position_embeddings": 512, "model_type": "bert", "num_attention_heads": 12,
    "num_hidden_layers": 12, "pad_token_id": 0, "type_vocab_size": 2, "vocab_size": 30524, "encoder_width": 768,
    "add_cross_attention": True,
}


def build(work):
    image_reward, blip_pretrain, _ = import_package()
    from transformers import BertTokenizer

    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,!?'-")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + [f"##{c}" for c in chars]
    vocab += [f"filler{i}" for i in range(30522 - len(vocab))]
    (work / "vocab.txt").write_text("".join(f"{t}\n" for t in vocab))
    (work / "med_config.json").write_text(json.dumps(MED_CONFIG, indent=2))

    def init_tokenizer():
        tokenizer = BertTokenizer(str(work / "vocab.txt"))
        tokenizer.add_special_tokens({"bos_token": "[DEC]"})
        tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
        return tokenizer

    blip_pretrain.init_tokenizer = init_tokenizer
    return image_reward.ImageReward(med_config=str(work / "med_config.json"), device="cpu").eval()


def setup(work, n):
    torch.manual_seed(0)
    model = build(work)
    torch.save(model.state_dict(), work / "ImageReward.pt")
    subprocess.run([sys.executable, str(REPO / "tools/convert_imagereward.py"), str(work / "ImageReward.pt"),
                    str(work / "med_config.json"), str(work / "vocab.txt"), str(work / "imagereward")], check=True)
    write_image_set(work, n)


@torch.no_grad()
def time_score(work, threads):
    torch.set_num_threads(threads)
    model = build(work)
    model.load_state_dict(torch.load(work / "ImageReward.pt", weights_only=True))
    rows = (work / "run" / "attributes" / "set.csv").read_text().splitlines()[1:]
    pairs = [(work / "run" / r.split(",")[0], r.split(",")[1]) for r in rows]
    start = time.perf_counter()
    for file, prompt in pairs:  # the package's `score` takes one image at a time
        model.score(prompt, Image.open(file))
    print(f"torch {threads} threads: imagereward {len(pairs) / (time.perf_counter() - start):.3f} images/s")


if __name__ == "__main__":
    command, work = sys.argv[1], Path(sys.argv[2])
    if command == "setup":
        setup(work, int(sys.argv[3]))
    else:
        time_score(work, int(sys.argv[3]))
