#pragma once
#include <cstdint>
#include <string_view>

namespace vireo::monitor {

// Which of the container's output streams bytes came from. The values are the stream bytes of
// the attach protocol (attach.h). With --tty everything arrives on the pty, as kStdout.
enum class Stream : uint8_t { kStdout = 1, kStderr = 2 };

inline std::string_view stream_name(Stream s) {
  return s == Stream::kStdout ? "stdout" : "stderr";
}

}  // namespace vireo::monitor
