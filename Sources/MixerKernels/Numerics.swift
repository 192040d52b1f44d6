// MixerKernels re-exports MixerNumerics (bf16 rounding, the counter RNG, FloatVector): the
// kernels and every module above them see one set of numbers.
@_exported import MixerNumerics
