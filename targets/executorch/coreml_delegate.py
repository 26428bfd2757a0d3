"""`--delegate coreml`: ExecuTorch's Core ML partitioner over the IR graph (iOS 18, fp16, caches as states).

elm.attention is lowered as for the Core ML target (targets/coreml/attention.py: index_put_ cache writes +
one SDPA over the whole cache with GQA folded into the sequence axis, because coremltools ignores enable_gqa);
the Core ML delegate takes the KV-cache buffers over as Core ML states (`take_over_mutable_buffer`, iOS 18).
forward has a static T = 1 (decode; runners then prefill token by token: `enable_dynamic_shape` is false):
Core ML states with flexible input shapes are unreliable (coremltools #2537).
elm.rms_norm is decomposed by its fp16-safe reference kernel (the delegate computes in fp16).
"""

from __future__ import annotations

COREML_MAX_SEQ_LEN = 1


def coreml_partitioner():
    import coremltools as ct
    from executorch.backends.apple.coreml.compiler import CoreMLBackend
    from executorch.backends.apple.coreml.partition import CoreMLPartitioner

    specs = CoreMLBackend.generate_compile_specs(minimum_deployment_target=ct.target.iOS18,
                                                 compute_precision=ct.precision.FLOAT16)
    return CoreMLPartitioner(compile_specs=specs, take_over_mutable_buffer=True)


class RMSNormReference:
    """executorch::rms_norm_reference: elm.rms_norm -> its fp16-safe reference kernel (the delegate computes in
    fp16 and has no elm lowering, so the kernel's ATen ops are what it gets)."""

    name = "executorch::rms_norm_reference"

    def __init__(self, options=None):
        pass

    def run(self, program) -> dict[str, int]:
        from ...ir.decompose import decompose_graph_module, decomposition_table

        replaced = decompose_graph_module(program.gm, decomposition_table(["rms_norm"]))
        return {"rms_norm_reference_kernel": sum(replaced.values())}
