"""Pretrained encoder weights: local files always; downloads only when the user asks.

Known sources (fetched only with ``download=True`` / ``--download``):
- ``resnet50``: torchvision ImageNet ResNet-50 (IMAGENET1K_V1, what the authors used)
- ``vgg16``: torchvision ImageNet VGG-16 (IMAGENET1K_V1)
- ``remoteclip-vitl14``: RemoteCLIP ViT-L/14 (Hugging Face ``chendelong/RemoteCLIP``)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from icpd.errors import ParamMessage, arg


class WeightsNotFoundError(ParamMessage, FileNotFoundError):
    """Known weights not in the cache while downloading is off (the message names ``download``)."""


@dataclass(frozen=True)
class Source:
    filename: str
    url: str
    what: str


SOURCES: dict[str, Source] = {
    "resnet50": Source("resnet50-0676ba61.pth", "https://download.pytorch.org/models/resnet50-0676ba61.pth",
                       "backbone"),
    "vgg16": Source("vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth", "backbone"),
    "remoteclip-vitl14": Source(
        "RemoteCLIP-ViT-L-14.pt",
        "https://huggingface.co/chendelong/RemoteCLIP/resolve/main/RemoteCLIP-ViT-L-14.pt",
        "CLIP",
    ),
}


def default_cache_dir() -> Path:
    from icpd.config import cache_root

    return cache_root() / "weights"


def resolve_weights(name_or_path: str | os.PathLike[str], download: bool = False, cache_dir: Path | None = None,
                    on_wait: Callable[[str], None] | None = None) -> Path:
    """A local weight file for ``name_or_path``: the path itself, a cached copy of a known source,
    or (only with ``download``) a fresh download into the cache.

    The cache is shared by design: the cache folder is checked writable before the download, and a
    second run fetching the same file waits for the first (``on_wait`` is told once, with the
    first run's pid) and then returns the file it wrote, instead of downloading it a second time.

    Raises:
        FileNotFoundError: not a file, not a known source, or not cached and ``download`` not given.
        OutputPathError: (an OSError) the cache folder cannot be written.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    key = str(name_or_path)
    if key not in SOURCES:
        raise FileNotFoundError(
            f"weights {key!r}: no such file, and not a known source ({', '.join(SOURCES)}); pass a local file"
        )
    src = SOURCES[key]
    target = (cache_dir or default_cache_dir()) / src.filename
    if target.is_file():
        return target
    if not download:
        raise WeightsNotFoundError(
            f"weights {key!r} are not in {target.parent}; pass {arg('download', True)} to fetch them from "
            f"{src.url}, or give the path of a local copy"
        )
    from torch.hub import download_url_to_file

    from icpd.io.outputs import claim_output

    with claim_output(target, "fetch-weights", wait=True, on_wait=on_wait):
        if not target.is_file():  # fetched by the run this one waited for
            target.parent.mkdir(parents=True, exist_ok=True)
            download_url_to_file(src.url, str(target), progress=True)  # writes to a temp name, then renames
    return target
