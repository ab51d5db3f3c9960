/*
 * TensorRT 10.x IPluginV3 "NdcgPrior" / "1" / "icpd"; see NdcgPriorPlugin.h and ndcg_prior.h.
 * Exports getCreators/setLoggerFinder, the entry points IPluginRegistry::loadLibrary and
 * trtexec --dynamicPlugins look for.
 */
#include "NdcgPriorPlugin.h"

#include "ndcg_prior.h"

#include <cstdint>
#include <exception>
#include <new>
#include <string>

#if defined(_WIN32)
#define ICPD_PLUGIN_EXPORT __declspec(dllexport)
#else
#define ICPD_PLUGIN_EXPORT __attribute__((visibility("default")))
#endif

namespace
{

constexpr char const* kPLUGIN_NAME = "NdcgPrior";
constexpr char const* kPLUGIN_VERSION = "1";
constexpr char const* kPLUGIN_NAMESPACE = "icpd";
constexpr int32_t kNB_INPUTS = 3;
constexpr int32_t kNB_OUTPUTS = 1;

nvinfer1::ILoggerFinder* gLoggerFinder{nullptr};

void logError(std::string const& message) noexcept
{
    nvinfer1::ILogger* logger = gLoggerFinder != nullptr ? gLoggerFinder->findLogger() : nullptr;
    if (logger != nullptr)
    {
        std::string const text = std::string("icpd::NdcgPrior: ") + message;
        logger->log(nvinfer1::ILogger::Severity::kERROR, text.c_str());
    }
}

bool isFloatType(nvinfer1::DataType type)
{
    return type == nvinfer1::DataType::kFLOAT || type == nvinfer1::DataType::kHALF;
}

// Whether the kernel takes Ns support pixels with C channels; `why` says what is wrong if not.
bool fitsKernel(int64_t ns, int64_t c, std::string& why)
{
    if (ns > ICPD_NDCG_MAX_SUPPORT)
    {
        why = "Ns = " + std::to_string(ns) + " support pixels exceeds the kernel limit of "
            + std::to_string(ICPD_NDCG_MAX_SUPPORT) + "; downsample the support features.";
        return false;
    }
    if (c > INT32_MAX || icpd_ndcg_prior_shared_bytes(static_cast<int>(ns < 0 ? 0 : ns), static_cast<int>(c)) < 0)
    {
        why = "C = " + std::to_string(c) + " channels do not fit the kernel's 48 KiB of shared memory at Ns = "
            + std::to_string(ns) + ".";
        return false;
    }
    return true;
}

} // namespace

namespace icpd
{

nvinfer1::IPluginCapability* NdcgPriorPlugin::getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
    case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
    case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
    }
    return nullptr;
}

nvinfer1::IPluginV3* NdcgPriorPlugin::clone() noexcept
{
    return new (std::nothrow) NdcgPriorPlugin(*this);
}

char const* NdcgPriorPlugin::getPluginName() const noexcept
{
    return kPLUGIN_NAME;
}

char const* NdcgPriorPlugin::getPluginVersion() const noexcept
{
    return kPLUGIN_VERSION;
}

char const* NdcgPriorPlugin::getPluginNamespace() const noexcept
{
    return kPLUGIN_NAMESPACE;
}

int32_t NdcgPriorPlugin::getNbOutputs() const noexcept
{
    return kNB_OUTPUTS;
}

int32_t NdcgPriorPlugin::getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
    nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (nbOutputs != kNB_OUTPUTS || nbInputs != kNB_INPUTS || !isFloatType(inputTypes[0]))
    {
        logError("expects 3 float32/float16 inputs (query, support, relevance) and 1 output.");
        return -1;
    }
    outputTypes[0] = nvinfer1::DataType::kFLOAT;
    return 0;
}

int32_t NdcgPriorPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
    nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/, nvinfer1::DimsExprs* outputs,
    int32_t nbOutputs, nvinfer1::IExprBuilder& /*exprBuilder*/) noexcept
{
    if (nbInputs != kNB_INPUTS || nbOutputs != kNB_OUTPUTS || inputs[0].nbDims != 3 || inputs[1].nbDims != 3
        || inputs[2].nbDims != 2)
    {
        logError("query must be (N, Nq, C), support (N, Ns, C) and relevance (N, Ns).");
        return -1;
    }
    outputs[0].nbDims = 2;
    outputs[0].d[0] = inputs[0].d[0];
    outputs[0].d[1] = inputs[0].d[1];
    return 0;
}

bool NdcgPriorPlugin::supportsFormatCombination(
    int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (nbInputs != kNB_INPUTS || nbOutputs != kNB_OUTPUTS || pos < 0 || pos >= kNB_INPUTS + kNB_OUTPUTS)
    {
        return false;
    }
    nvinfer1::PluginTensorDesc const& desc = inOut[pos].desc;
    if (desc.format != nvinfer1::TensorFormat::kLINEAR)
    {
        return false;
    }
    if (pos == 0)
    {
        return isFloatType(desc.type);
    }
    if (pos < kNB_INPUTS)
    {
        return desc.type == inOut[0].desc.type; // query, support and relevance share one dtype
    }
    return desc.type == nvinfer1::DataType::kFLOAT;
}

int32_t NdcgPriorPlugin::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    if (nbInputs != kNB_INPUTS || nbOutputs != kNB_OUTPUTS)
    {
        return -1;
    }
    std::string why;
    if (!fitsKernel(in[1].max.d[1], in[0].max.d[2], why)) // largest Ns and C the profile allows
    {
        logError(why);
        return -1;
    }
    return 0;
}

size_t NdcgPriorPlugin::getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* /*inputs*/, int32_t /*nbInputs*/,
    nvinfer1::DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    return 0;
}

int32_t NdcgPriorPlugin::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::PluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    if (nbInputs != kNB_INPUTS || nbOutputs != kNB_OUTPUTS)
    {
        return -1;
    }
    std::string why;
    if (!fitsKernel(in[1].dims.d[1], in[0].dims.d[2], why))
    {
        logError(why);
        return -1;
    }
    return 0;
}

int32_t NdcgPriorPlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
    nvinfer1::PluginTensorDesc const* /*outputDesc*/, void const* const* inputs, void* const* outputs,
    void* /*workspace*/, cudaStream_t stream) noexcept
{
    int64_t const n = inputDesc[0].dims.d[0];
    int64_t const nq = inputDesc[0].dims.d[1];
    int64_t const c = inputDesc[0].dims.d[2];
    int64_t const ns = inputDesc[1].dims.d[1];
    if (n > INT32_MAX || nq > INT32_MAX || ns > INT32_MAX || c > INT32_MAX)
    {
        logError("a dimension exceeds int32.");
        return -1;
    }
    auto* out = static_cast<float*>(outputs[0]);
    int status = 0;
    if (inputDesc[0].type == nvinfer1::DataType::kHALF)
    {
        status = icpd_ndcg_prior_f16(static_cast<__half const*>(inputs[0]), static_cast<__half const*>(inputs[1]),
            static_cast<__half const*>(inputs[2]), out, static_cast<int>(n), static_cast<int>(nq),
            static_cast<int>(ns), static_cast<int>(c), stream);
    }
    else
    {
        status = icpd_ndcg_prior_f32(static_cast<float const*>(inputs[0]), static_cast<float const*>(inputs[1]),
            static_cast<float const*>(inputs[2]), out, static_cast<int>(n), static_cast<int>(nq),
            static_cast<int>(ns), static_cast<int>(c), stream);
    }
    if (status != 0)
    {
        logError(std::string("kernel launch failed: ") + cudaGetErrorString(static_cast<cudaError_t>(status)));
        return -1;
    }
    return 0;
}

nvinfer1::IPluginV3* NdcgPriorPlugin::attachToContext(nvinfer1::IPluginResourceContext* /*context*/) noexcept
{
    return clone();
}

nvinfer1::PluginFieldCollection const* NdcgPriorPlugin::getFieldsToSerialize() noexcept
{
    return &mFieldsToSerialize;
}

char const* NdcgPriorPluginCreator::getPluginName() const noexcept
{
    return kPLUGIN_NAME;
}

char const* NdcgPriorPluginCreator::getPluginVersion() const noexcept
{
    return kPLUGIN_VERSION;
}

char const* NdcgPriorPluginCreator::getPluginNamespace() const noexcept
{
    return kPLUGIN_NAMESPACE;
}

nvinfer1::PluginFieldCollection const* NdcgPriorPluginCreator::getFieldNames() noexcept
{
    return &mFieldNames;
}

nvinfer1::IPluginV3* NdcgPriorPluginCreator::createPlugin(
    char const* /*name*/, nvinfer1::PluginFieldCollection const* /*fc*/, nvinfer1::TensorRTPhase /*phase*/) noexcept
{
    // No fields: whatever the ONNX parser passes (e.g. nothing, or unknown attributes) is ignored.
    try
    {
        return new NdcgPriorPlugin();
    }
    catch (std::exception const& e)
    {
        logError(e.what());
    }
    return nullptr;
}

} // namespace icpd

extern "C" ICPD_PLUGIN_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    gLoggerFinder = finder;
}

extern "C" ICPD_PLUGIN_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    static icpd::NdcgPriorPluginCreator creator;
    static nvinfer1::IPluginCreatorInterface* const creators[] = {&creator};
    nbCreators = 1;
    return creators;
}
