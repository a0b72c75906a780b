#pragma once

#include <cstddef>
#include <exception>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/messages.hpp"

// What an executor does when a forward pass fails (issue 3, part 5): a sticky
// CUDA error poisons the process's CUDA context, so the executor must be
// replaced; an out-of-memory error is worth retrying on smaller batches; any
// other error fails the jobs transiently. Nothing of torch or CUDA shows here.
namespace inferq::executor {

enum class FaultClass {
  kSticky,       // the CUDA context is unusable: report Fatal and exit
  kOutOfMemory,  // release cached memory and retry on smaller batches
  kOther,        // a transient failure of the jobs that were running
};

// "sticky", "out of memory" or "other", for logs and messages.
std::string_view fault_class_name(FaultClass c);

// Classifies an error by its message alone: the fallback when no CUDA error
// code says more, because TorchScript rethrows library errors as plain
// runtime errors whose text is all that is left of them.
FaultClass classify_message(std::string_view message);

#ifdef INFERQ_WITH_CUDA
// The class of CUDA runtime error `code` (a cudaError_t); kOther for success
// and for every code that is neither sticky nor out of memory.
FaultClass classify_cuda_error(int code);
#endif

// Classifies an exception thrown by a forward pass: FatalError and a CUDA
// device error (see synchronize_device) that is sticky are kSticky;
// c10::OutOfMemoryError is kOutOfMemory; on a CUDA build with a device in use
// (set_cuda_device) the device's error state, read with cudaDeviceSynchronize
// and cudaGetLastError, decides when it is sticky or out of memory; otherwise
// the message does. Blocks on the device's queued work on a GPU.
FaultClass classify_exception(const std::exception& e);

// The text of an exception for a job's error: c10::Error without its C++
// backtrace, and of a TorchScript interpreter error only the line that names
// the original error, not the TorchScript traceback around it.
std::string error_message(const std::exception& e);

// Tells the fault handling that this executor runs its model on CUDA device
// `index`; before that (and always on a build without CUDA) there is no
// device to synchronize or to ask for its error state, so a CPU model on a
// GPU host never creates a CUDA context. Call once, before the first unit.
void set_cuda_device(int index);

// On a CUDA build with a device in use: waits for the device's queued work
// and throws a std::runtime_error naming the CUDA error if it failed, so an
// asynchronous error is blamed on the batch that caused it (call it at the
// end of each forward pass). Otherwise does nothing. Blocks on the GPU.
void synchronize_device();

// Gives the CUDA caching allocator's unused cached blocks back to the driver
// (c10::cuda::CUDACachingAllocator::emptyCache) when libtorch was built with
// CUDA and a device is in use. A CPU-only libtorch has no caching allocator:
// then this is a no-op.
void release_cached_memory();

// Runs jobs [0, n) through `forward`, which runs the half-open range
// [begin, end) of the unit's (already decoded, valid) jobs as ONE batch and
// returns one JobOutput per job in that range (in order), or throws what the
// model threw. Classifies any exception (classify_exception):
//  - sticky: throws FatalError naming the error (the executor sends Fatal and
//    exits; the supervisor replaces it and charges the unit an attempt);
//  - out of memory: calls release_memory(), splits the range in halves and
//    retries each, down to single jobs; a single job that still runs out of
//    memory gets a kTransient output of its own;
//  - anything else: every job of the range gets a kTransient output with the
//    message.
// A range that succeeded is never run again. Returns n outputs, in order;
// job ids are whatever `forward` set (kTransient outputs have none: the
// caller sets them). Throws std::logic_error when `forward` returns the wrong
// number of outputs (a bug). Blocks in `forward`.
std::vector<protocol::JobOutput> run_with_fault_policy(
    std::size_t n,
    const std::function<std::vector<protocol::JobOutput>(std::size_t begin, std::size_t end)>& forward,
    const std::function<void()>& release_memory);

}  // namespace inferq::executor
