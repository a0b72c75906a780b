#pragma once

namespace inferq::app {

inline constexpr const char* kVersion = INFERQ_VERSION;

}  // namespace inferq::app
