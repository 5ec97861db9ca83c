"""Builds a random SDXL-shaped U-Net of modest size and a fixed input for the CPU benchmark (bench/run.sh).

Same block structure as SDXL base (DownBlock2D + 2× CrossAttn down, mirrored up, uneven transformer depth,
64-dim heads, linear projections, text_time embedding with 2048-dim context and 1280-dim pooled embeds),
only narrower, so one training step fits a 2-core CPU.

usage: python bench/make_unet.py [OUT_DIR]   (default bench/.cache/unet-modest)
writes OUT_DIR/unet/{config.json, diffusion_pytorch_model.safetensors} and OUT_DIR/inputs.safetensors
"""
import sys
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file

CONTEXT_DIM = 2048  # SDXL: CLIP-L (768) ‖ OpenCLIP-bigG (1280) hidden states
POOLED_DIM = 1280  # SDXL: pooled bigG projection
TIME_EMBED_DIM = 256  # SDXL's addition_time_embed_dim
LATENT = 64  # 64×64 latents = 512 px images


def build():
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=LATENT,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(64, 128, 256),  # SDXL: (320, 640, 1280)
        layers_per_block=2,
        transformer_layers_per_block=(1, 1, 2),  # SDXL: (1, 2, 10)
        attention_head_dim=(1, 2, 4),  # diffusers' misnomer: head *counts*, giving 64-dim heads as in SDXL
        cross_attention_dim=CONTEXT_DIM,
        addition_embed_type="text_time",
        addition_time_embed_dim=TIME_EMBED_DIM,
        projection_class_embeddings_input_dim=POOLED_DIM + 6 * TIME_EMBED_DIM,
        use_linear_projection=True,
        norm_num_groups=32,
    )


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / ".cache" / "unet-modest")
    unet = build()
    unet.save_pretrained(out / "unet", safe_serialization=True)
    g = torch.Generator().manual_seed(1)
    inputs = {
        "sample": torch.randn(1, 4, LATENT, LATENT, generator=g),
        "timestep": torch.tensor([500.0]),
        "encoder_hidden_states": torch.randn(1, 77, CONTEXT_DIM, generator=g),
        "text_embeds": torch.randn(1, POOLED_DIM, generator=g),
        "time_ids": torch.tensor([[1024.0, 1024.0, 0.0, 0.0, 1024.0, 1024.0]]),
        # Fixed regression target of the training step (same values on both sides).
        "target": torch.randn(1, 4, LATENT, LATENT, generator=g),
    }
    save_file(inputs, out / "inputs.safetensors")
    n = sum(p.numel() for p in unet.parameters())
    print(f"{out}: {n / 1e6:.1f}M parameters")


if __name__ == "__main__":
    main()
