"""The rank (NDCG) prior as custom kernels beside its PyTorch op ``icpd::ndcg_prior``
(:mod:`icpd.model.rank_prior`, the reference): the CUDA kernel and its nvcc build (:mod:`.build`)
registered for the op's CUDA dispatch key (:mod:`.cuda_op`), the ONNX Runtime CPU node for
plugin-form graphs (:mod:`.ort_custom_op`), and the TensorRT plugins (:mod:`.trt_plugin`, the C++
one in ``plugin/``; :mod:`.tensorrt` imports TensorRT). Nothing is built or loaded at import.
"""
