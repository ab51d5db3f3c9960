"""Episodic few-shot data sets: episode sampling over a fold's lists (:mod:`icpd.data.fold_lists`).

An *episode* is one query image, ``K`` support images of the same class and the binary masks
of that class, sampled the way the authors do (HSNet-style ``*-5i`` benchmarks):

- **training** (``split="trn"``): a random training class, a random query containing it, and
  ``K`` distinct supports containing it, all different from the query. Item ``i`` of epoch ``e``
  is drawn from a generator seeded with ``(seed, e, i)``, so DataLoader workers never repeat
  each other and a run is reproducible; call ``set_epoch(e)`` at the start of every epoch.
- **validation** (``split="val"``): item ``i`` is line ``i`` of the fold's list (query, class);
  supports and the class-embedding order come from a generator seeded with ``(seed, i)``, so
  the same call gives the same episodes.

Folds: 15 classes, 3 folds of 5; fold ``f``'s novel classes are ids ``5f+1 .. 5f+5``. Training
reads the lists of the other two folds, validation the list of fold ``f``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from icpd.config import Preset, get_preset
from icpd.data.fold_lists import FoldIndex, Sample, Split, check_split
from icpd.data.imageio import DatasetError, read_image, read_label
from icpd.data.transforms import (
    binary_mask,
    random_flip,
    resize_image,
    resize_label,
    scale_weights,
    to_tensor,
)


class FewShotDataset(Dataset):
    """Episodes of one fold and split, as a ``torch.utils.data.Dataset``.

    Each item is a dict that torch's default collate batches into ``(B, ...)``:

    - ``query``: ``(3, S, S)`` float32, normalised with the preset's mean/std
    - ``query_mask``: ``(S, S)`` float32 in {0, 1}, the target class
    - ``support_images``: ``(K, 3, S, S)`` float32
    - ``support_masks``: ``(K, S, S)`` float32 in {0, 1}
    - ``class_embeddings``: ``(15, D)`` float32, target class first, the other 14 shuffled
      (only when ``class_embeddings`` was given)
    - ``class_order``: ``(15,)`` int64, the class id of each embedding row (target first)
    - ``scale_weights``: ``(S, S)`` float32 loss weights of the query mask (see
      :func:`icpd.data.transforms.scale_weights`)
    - ``class_id``: int64 scalar, the target class (1..15)
    - ``query_name``: str

    ``S`` is the preset's ``image_size``; images are resized bilinearly, masks nearest.
    Training episodes flip each image (with its mask) horizontally and vertically at random.

    Args:
        index: the entries of this fold/split (from a reader).
        split: ``"trn"`` or ``"val"``.
        shot: ``K``, supports per episode.
        class_embeddings: ``(15, D)`` float tensor, row ``i`` = class id ``i + 1``; or None.
        preset: preset name or object giving ``image_size``, ``mean``, ``std``.
        seed: base seed of all sampling.
        episodes_per_epoch: training length; default = number of list entries. Ignored for val.
        augment: random flips; default True for training, False for validation.
    """

    def __init__(
        self,
        index: FoldIndex,
        split: Split,
        shot: int = 1,
        class_embeddings: torch.Tensor | None = None,
        preset: str | Preset = "paper",
        seed: int = 0,
        episodes_per_epoch: int | None = None,
        augment: bool | None = None,
    ) -> None:
        check_split(split)
        if not isinstance(shot, int) or shot < 1:
            raise ValueError(f"shot must be a positive integer, got {shot!r}")
        self.index = index
        self.split = split
        self.shot = shot
        self.preset = get_preset(preset)
        self.seed = int(seed)
        self.epoch = 0
        self.augment = (split == "trn") if augment is None else bool(augment)
        self.class_embeddings = _check_embeddings(class_embeddings, self.preset.num_classes)
        self._by_class = index.by_class()
        self._check_counts()
        self.classes = [c for c in index.classes if self._by_class.get(c)]
        if episodes_per_epoch is not None and episodes_per_epoch < 1:
            raise ValueError(f"episodes_per_epoch must be >= 1, got {episodes_per_epoch}")
        self.episodes_per_epoch = episodes_per_epoch or len(index.entries)

    # -- bookkeeping ---------------------------------------------------------------------------
    @property
    def skipped(self) -> int:
        """Number of list entries skipped for missing files (``skip_missing=True``)."""
        return len(self.index.skipped)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.index.class_names

    def set_epoch(self, epoch: int) -> None:
        """Select the training episodes of ``epoch`` (call before each epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.episodes_per_epoch if self.split == "trn" else len(self.index.entries)

    def _check_counts(self) -> None:
        lists = ", ".join(str(p) for p in self.index.list_files)
        for c in self.index.classes:
            n = len(self._by_class.get(c, []))
            if n < self.shot + 1:
                raise DatasetError(
                    f"class {c} ({self.index.class_names[c - 1]}) has {n} image(s) in {lists}, but a {self.shot}-shot "
                    f"episode needs {self.shot + 1} (K={self.shot} supports + 1 query). "
                    "Use a smaller shot or add images"
                )

    # -- episodes ------------------------------------------------------------------------------
    def _rng(self, i: int) -> np.random.Generator:
        key = [self.seed, self.epoch, i] if self.split == "trn" else [self.seed, i]
        return np.random.default_rng(key)

    def episode_plan(self, i: int) -> tuple[int, Sample, list[Sample], np.ndarray, np.random.Generator]:
        """The class, query, supports and class order of item ``i`` (no files read).

        Returns:
            ``(class_id, query, supports, class_order (15,) int64, rng)``; ``rng`` continues the
            item's stream and drives the flips.
        """
        if not 0 <= i < len(self):
            raise IndexError(f"episode {i} out of range for {len(self)} episodes")
        rng = self._rng(i)
        if self.split == "trn":
            class_id = int(self.classes[rng.integers(len(self.classes))])
            pool = self._by_class[class_id]
            query = pool[rng.integers(len(pool))]
        else:
            entry = self.index.entries[i]
            class_id, query = entry.class_id, entry.sample
            pool = self._by_class[class_id]
        candidates = [s for s in pool if s.name != query.name]
        picks = rng.choice(len(candidates), size=self.shot, replace=False)
        supports = [candidates[j] for j in picks]
        others = np.array([c for c in range(1, self.preset.num_classes + 1) if c != class_id], dtype=np.int64)
        order = np.concatenate([[class_id], rng.permutation(others)]).astype(np.int64)
        return class_id, query, supports, order, rng

    def load_sample(self, sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        """Read one sample, checked: ``(H, W, 3)`` uint8 RGB and ``(H, W)`` uint8 class ids."""
        image = read_image(sample.image)
        label = read_label(sample.label, self.index.max_label)
        native = self.index.native_size
        if native is not None:
            image = _to_native(image, native, sample.image, resize_image)
            label = _to_native(label, native, sample.label, resize_label)
        elif image.shape[:2] != label.shape:
            raise DatasetError(
                f"image {sample.image} is {image.shape[1]}x{image.shape[0]} but its label {sample.label} is "
                f"{label.shape[1]}x{label.shape[0]} (width x height); they must match pixel for pixel"
            )
        return image, label

    def _prepare(
        self, sample: Sample, class_id: int, rng: np.random.Generator
    ) -> tuple[torch.Tensor, np.ndarray]:
        image, label = self.load_sample(sample)
        size = self.preset.image_size
        image, label = resize_image(image, size), resize_label(label, size)
        if self.augment:
            image, label = random_flip(image, label, rng)
        return to_tensor(image, self.preset.mean, self.preset.std), binary_mask(label, class_id)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor | str]:
        class_id, query, supports, order, rng = self.episode_plan(i)
        q_img, q_mask = self._prepare(query, class_id, rng)
        s_pairs = [self._prepare(s, class_id, rng) for s in supports]
        item: dict[str, torch.Tensor | str] = {
            "query": q_img,
            "query_mask": torch.from_numpy(q_mask),
            "support_images": torch.stack([p[0] for p in s_pairs]),
            "support_masks": torch.from_numpy(np.stack([p[1] for p in s_pairs])),
            "class_order": torch.from_numpy(order),
            "scale_weights": torch.from_numpy(scale_weights(q_mask)),
            "class_id": torch.tensor(class_id, dtype=torch.int64),
            "query_name": query.name,
        }
        if self.class_embeddings is not None:
            item["class_embeddings"] = self.class_embeddings[torch.from_numpy(order - 1)]
        return item

    def check_files(self, samples: Iterable[Sample] | None = None) -> int:
        """Read every image and label of this split once and report all problems together.

        Returns:
            The number of samples checked.

        Raises:
            DatasetError: listing every bad file (bands, bit depth, label values, sizes).
        """
        todo = samples if samples is not None else {e.sample.name: e.sample for e in self.index.entries}.values()
        problems, n = [], 0
        for sample in todo:
            n += 1
            try:
                self.load_sample(sample)
            except DatasetError as err:
                problems.append(str(err))
        if problems:
            raise DatasetError(f"{len(problems)} of {n} samples are unusable:\n- " + "\n- ".join(problems))
        return n


def _to_native(arr: np.ndarray, native: int, path: Path, resize: Callable[[np.ndarray, int], np.ndarray]) -> np.ndarray:
    h, w = arr.shape[:2]
    # UCMerced holds a few tiles a few pixels off 256 x 256; anything further off is a wrong file.
    if not (0.9 * native <= h <= 1.1 * native and 0.9 * native <= w <= 1.1 * native):
        raise DatasetError(
            f"file {path} is {w}x{h} but this data set's files are {native}x{native} (within 10%); "
            "is it the right file?"
        )
    return resize(arr, native)


def _check_embeddings(emb: torch.Tensor | None, num_classes: int) -> torch.Tensor | None:
    if emb is None:
        return None
    if not isinstance(emb, torch.Tensor):
        emb = torch.as_tensor(emb)
    if emb.ndim != 2 or emb.shape[0] != num_classes or not emb.is_floating_point():
        raise ValueError(
            f"class_embeddings must be a float tensor of shape ({num_classes}, D) in class-id order, "
            f"got {tuple(emb.shape)} {emb.dtype}"
        )
    return emb.detach().to(torch.float32).cpu().contiguous()
