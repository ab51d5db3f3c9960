"""icpd: deploy ICPD-Net few-shot segmentation of remote-sensing imagery.

``import icpd`` stays light: it imports neither onnxruntime nor tensorrt and touches no GPU.
"""

__version__ = "0.1.0"

from icpd.config import Preset, get_preset, list_presets, register_preset

__all__ = ["Preset", "__version__", "get_preset", "list_presets", "register_preset"]
