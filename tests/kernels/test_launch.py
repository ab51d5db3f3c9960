"""Launch-parameter logic of the rank-prior kernel (pure Python, no GPU)."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from icpd.kernels import launch

HEADER = Path(launch.__file__).parent / "plugin" / "ndcg_prior.h"


def test_constants_match_the_c_header():
    text = HEADER.read_text()
    defines = {m.group(1): int(m.group(2)) for m in re.finditer(r"#define ICPD_NDCG_(\w+) (\d+)", text)}
    assert defines == {
        "MAX_SUPPORT": launch.MAX_SUPPORT,
        "BLOCK_THREADS": launch.BLOCK_THREADS,
        "SCRATCH_BYTES": launch.SCRATCH_BYTES,
        "MAX_SHARED_BYTES": launch.MAX_SHARED_BYTES,
    }


@pytest.mark.parametrize(
    ("ns", "expected"), [(0, 0), (1, 1), (2, 2), (3, 4), (64, 64), (65, 128), (1024, 1024), (4095, 4096)]
)
def test_sort_size_is_next_power_of_two(ns, expected):
    assert launch.sort_size(ns) == expected


@pytest.mark.parametrize(
    ("ns", "c", "expected"),
    [
        (1024, 512, 256 + 8 * 1024 + 4 * 512),  # paper, backbone level 1
        (256, 1024, 256 + 8 * 256 + 4 * 1024),
        (256, 768, 256 + 8 * 256 + 4 * 768),  # CLIP
        (64, 2048, 256 + 8 * 64 + 4 * 2048),
        (4096, 2048, 41216),  # 64x64 support map, widest backbone features
        (4096, launch.MAX_CHANNELS_ANY_SUPPORT, 48 * 1024),  # exactly the 48 KiB limit
        (1000, 3, 256 + 8 * 1024 + 12),  # padded to 1024
    ],
)
def test_shared_bytes(ns, c, expected):
    assert launch.shared_bytes(ns, c) == expected
    assert launch.shared_bytes(ns, c) <= launch.MAX_SHARED_BYTES


def test_paper_and_limit_sizes_fit_without_opt_in():
    assert launch.MAX_CHANNELS_ANY_SUPPORT == 4032
    for ns in (64, 256, 1024, 4096):
        for c in (512, 768, 1024, 2048):
            assert launch.shared_bytes(ns, c) <= 48 * 1024


def test_more_than_4096_support_pixels_is_refused_with_the_value():
    with pytest.raises(ValueError, match=r"Ns = 4097 .*limit of 4096"):
        launch.launch_config(1, 16, 4097, 64, "float32")
    with pytest.raises(ValueError, match="4097"):
        launch.shared_bytes(4097, 8)


def test_too_many_channels_is_refused():
    with pytest.raises(ValueError, match=r"C = 4033 .*4032"):
        launch.check_problem(1, 1, 4096, 4033)
    launch.check_problem(1, 1, 64, 8000)  # small Ns leaves room for more channels


@pytest.mark.parametrize("bad", [(-1, 1, 1, 1), (1, -2, 1, 1), (1, 1, -3, 1), (1, 1, 1, -4)])
def test_negative_sizes_are_refused(bad):
    with pytest.raises(ValueError, match="must be >= 0"):
        launch.check_problem(*bad)


def test_grid_limit():
    with pytest.raises(ValueError, match="grid limit"):
        launch.check_problem(2**16, 2**16, 8, 8)


def test_launch_config_paper_size():
    cfg = launch.launch_config(n=5, nq=1024, ns=1024, c=512, dtype=torch.float16)
    assert cfg.kernel_name == "icpd_ndcg_prior_kernel_f16"
    assert cfg.launcher_name == "icpd_ndcg_prior_f16"
    assert cfg.dtype == "float16"
    assert cfg.grid == (5 * 1024, 1, 1)
    assert cfg.block == (256, 1, 1)
    assert cfg.shared_mem == 256 + 8 * 1024 + 4 * 512
    assert cfg.scalars == (5, 1024, 1024, 512)


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (torch.float32, "float32"),
        (torch.float16, "float16"),
        (torch.half, "float16"),
        (np.float32, "float32"),
        (np.dtype("float16"), "float16"),
        ("fp16", "float16"),
        ("float", "float32"),
        ("DataType.HALF", "float16"),  # str(tensorrt.float16)
        ("DataType.FLOAT", "float32"),  # str(tensorrt.float32)
    ],
)
def test_dtype_dispatch(dtype, expected):
    assert launch.normalize_dtype(dtype) == expected
    assert launch.kernel_name(dtype) == launch.KERNEL_NAMES[expected]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64, torch.int32, "int8"])
def test_unsupported_dtype_is_refused(dtype):
    with pytest.raises(ValueError, match="float32 or float16"):
        launch.normalize_dtype(dtype)


def test_shared_bytes_bound_covers_every_support_size():
    # The symbolic bound TensorRT uses for a run-time Ns must never be below the exact need,
    # and for C <= 4032 must never exceed the 48 KiB a launch may use without opt-in.
    c = launch.MAX_CHANNELS_ANY_SUPPORT
    for ns in range(launch.MAX_SUPPORT + 1):
        bound = launch.shared_bytes_bound(ns, c)
        assert launch.shared_bytes(ns, c) <= bound <= launch.MAX_SHARED_BYTES
    assert launch.shared_bytes_bound(1024, 512) == 256 + 16 * 1024 + 2048
