"""An experiment, not a recipe: ``cnn_train`` with a texture randomisation after its usual augmentation.

    python benchmarks/cnn_texture_variant.py CNN_TRAIN_ARGS...   (the same arguments as cnn_train)

Half the images of each batch are filtered by the identity plus a zero-mean random 3, 5 or 7 pixel kernel
(norm 1, scaled by U(0, 0.6)): edges and texture change, the local mean intensity (the tissue ordering a
class implies) stays. A test of whether the CNN leans on the generator's textures (random-convolution
augmentation, Xu et al., ICLR 2021, restricted to keep contrast). Session 17, with the bundle's recipe:
34/76 real series (docs/REAL_DATA.md), not shipped, so the engine's augmentation does not carry it.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

from SeriesClassifierLib.training import cnn_train

_usual = cnn_train.augment
RATE = 0.5
MAX_AMOUNT = 0.6


def textured(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """``x`` (B,1,S,S) with RATE of its images filtered by identity + a random zero-mean kernel each."""
    pick = torch.rand(x.shape[0], generator=gen) < RATE
    n = int(pick.sum())
    if n == 0:
        return x
    k = (3, 5, 7)[int(torch.randint(0, 3, (1,), generator=gen))]
    noise = torch.randn(n, 1, k, k, generator=gen)
    noise = noise - noise.mean(dim=(2, 3), keepdim=True)
    noise = noise / noise.flatten(1).norm(dim=1).view(n, 1, 1, 1)
    kernel = torch.rand(n, generator=gen).view(n, 1, 1, 1) * MAX_AMOUNT * noise
    kernel[:, :, k // 2, k // 2] += 1.0
    # one kernel per image: the picked images as channels of one grouped convolution
    out = F.conv2d(F.pad(x[pick].transpose(0, 1), (k // 2,) * 4, mode="replicate"), kernel, groups=n)
    x = x.clone()
    x[pick] = out.transpose(0, 1).clamp(0, 1)
    return x


def augment(x, flippable, gen, strength=1.0, sharpen=0.0):
    return textured(_usual(x, flippable, gen, strength, sharpen), gen)


if __name__ == "__main__":
    cnn_train.augment = augment  # augmented_batch looks the name up at each call
    sys.exit(cnn_train.main(sys.argv[1:]))
