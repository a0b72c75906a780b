#pragma once

#include <type_traits>
#include <utility>

namespace inferq::util {

// Runs a callable when the scope ends, unless dismissed: for clean-up that
// has no RAII type of its own.
//
//   ScopeGuard remove_file([&] { std::filesystem::remove(path); });
//   ...
//   remove_file.dismiss();  // keep it after all
//
// The callable runs from a noexcept destructor, so it must not throw.
template <typename F>
class ScopeGuard {
 public:
  explicit ScopeGuard(F f) noexcept(std::is_nothrow_move_constructible_v<F>) : f_(std::move(f)) {}

  // The moved-from guard is dismissed, so the callable runs once.
  ScopeGuard(ScopeGuard&& other) noexcept(std::is_nothrow_move_constructible_v<F>)
      : f_(std::move(other.f_)), active_(std::exchange(other.active_, false)) {}

  ScopeGuard(const ScopeGuard&) = delete;
  ScopeGuard& operator=(const ScopeGuard&) = delete;
  ScopeGuard& operator=(ScopeGuard&&) = delete;

  ~ScopeGuard() noexcept {
    if (active_) f_();
  }

  // The callable will not run.
  void dismiss() noexcept { active_ = false; }

 private:
  F f_;
  bool active_ = true;
};

}  // namespace inferq::util
