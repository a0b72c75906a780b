#pragma once

// libinferq_faultlib registers the TorchScript ops inferq_test::raise_if,
// oom_if, hang_if and abort_if (see faultlib.cpp) when it is loaded.

// A symbol to reference so that a program linking the library really loads
// it (and so registers its ops). Returns 1.
extern "C" int inferq_faultlib_version();

// The trigger values of the fault model written by inferq-make-fault-models:
// an input element equal to one of them makes the model fail that way. The
// warm-up feeds ones and padding is zero, so neither is a trigger.
namespace inferq::test::faults {
inline constexpr int kIllegalAddress = 11;   // "CUDA error: an illegal memory access was encountered"
inline constexpr int kOutOfMemory = 12;      // "CUDA out of memory. Tried to allocate ..." (runtime_error)
inline constexpr int kOutOfMemoryType = 13;  // c10::OutOfMemoryError
inline constexpr int kCublasAlloc = 14;      // "CUBLAS_STATUS_ALLOC_FAILED ..."
inline constexpr int kOther = 15;            // "the model rejects this input (fault injection)"
inline constexpr int kDeviceAssert = 16;     // "CUDA error: device-side assert triggered"
inline constexpr int kHang = 17;             // never returns
inline constexpr int kAbort = 18;            // std::abort()
}  // namespace inferq::test::faults
