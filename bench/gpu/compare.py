"""Max abs error (and relative to the reference's largest magnitude) between same-named tensors of two
safetensors files: `python bench/gpu/compare.py OURS REFERENCE` prints one line for bench/gpu/run.sh's table."""
import sys

import numpy as np
from safetensors.numpy import load_file

ours, reference = load_file(sys.argv[1]), load_file(sys.argv[2])
worst, scale = 0.0, 0.0
for name, want in reference.items():
    got = ours[name].astype(np.float64)
    worst = max(worst, float(np.abs(got - want.astype(np.float64)).max()))
    scale = max(scale, float(np.abs(want).max()))
print(f"{worst:.2e} ({worst / scale:.1e} of the largest value)")
