/*
 * TensorRT 10.x IPluginV3 "NdcgPrior" (version "1", namespace "icpd"): the ICPD-Net rank prior.
 *
 * Inputs  query (N, Nq, C), support (N, Ns, C), relevance (N, Ns): all FP32 or all FP16, linear.
 * Output  prior (N, Nq): FP32, linear.  Rule and limits: ndcg_prior.h.  No plugin fields.
 *
 * Written against the documented TensorRT 10 plugin API (IPluginV3OneCore/OneBuild/OneRuntime,
 * IPluginCreatorV3One), the one JetPack 6 (TensorRT 10.3) has. CI compiles it (-fsyntax-only,
 * -Wall -Wextra -Werror) against TensorRT's 10.3 and 11.1 headers: scripts/compile_checks.sh.
 */
#ifndef ICPD_NDCG_PRIOR_PLUGIN_H
#define ICPD_NDCG_PRIOR_PLUGIN_H

#include <NvInferRuntime.h>

#include <cstdint>

namespace icpd
{

class NdcgPriorPlugin : public nvinfer1::IPluginV3,
                        public nvinfer1::IPluginV3OneCore,
                        public nvinfer1::IPluginV3OneBuild,
                        public nvinfer1::IPluginV3OneRuntime
{
public:
    NdcgPriorPlugin() = default;
    NdcgPriorPlugin(NdcgPriorPlugin const&) = default;
    ~NdcgPriorPlugin() override = default;

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild
    int32_t getNbOutputs() const noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
        nvinfer1::DimsExprs const* shapeInputs, int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs,
        int32_t nbOutputs, nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    nvinfer1::PluginFieldCollection mFieldsToSerialize{0, nullptr};
};

class NdcgPriorPluginCreator : public nvinfer1::IPluginCreatorV3One
{
public:
    NdcgPriorPluginCreator() = default;
    ~NdcgPriorPluginCreator() override = default;

    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;

private:
    nvinfer1::PluginFieldCollection mFieldNames{0, nullptr};
};

} // namespace icpd

#endif // ICPD_NDCG_PRIOR_PLUGIN_H
