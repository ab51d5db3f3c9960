"""Episodic few-shot data sets (iSAID-5i, DLRSD-5i, synthetic) and their checked file readers."""

from icpd.data.dlrsd5i import DLRSD5i, index_dlrsd5i
from icpd.data.episodes import FewShotDataset
from icpd.data.fold_lists import FoldIndex, ListEntry, Sample, fold_classes, split_classes
from icpd.data.imageio import DatasetError, read_image, read_label
from icpd.data.isaid5i import ISAID5i, index_isaid5i
from icpd.data.synthetic import SynthSummary, synthesize
from icpd.data.transforms import scale_weights

__all__ = [
    "DLRSD5i",
    "DatasetError",
    "FewShotDataset",
    "FoldIndex",
    "ISAID5i",
    "ListEntry",
    "Sample",
    "SynthSummary",
    "fold_classes",
    "index_dlrsd5i",
    "index_isaid5i",
    "read_image",
    "read_label",
    "scale_weights",
    "split_classes",
    "synthesize",
]
