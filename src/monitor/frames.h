#pragma once
// The attach protocol's frames, header-only so that vireod, the container engine and the CLI
// speak it without linking the monitor: [type: 1 byte][length: 4 bytes, big-endian][payload].
// The meaning of each type is in monitor/attach.h.
#include <cstdint>
#include <string>
#include <string_view>

namespace vireo::monitor {

enum class FrameType : uint8_t {
  kStdin = 0,
  kStdout = 1,
  kStderr = 2,
  kExit = 3,
  kResize = 4,
  kCloseStdin = 5,
  kPublish = 6,  // client -> monitor: the published ports from now on
  kResult = 7,   // monitor -> that client: "" when done, else the error line
};

inline constexpr size_t kFrameHeader = 5;

inline uint32_t read_be32(const char* p) {
  auto b = [p](int i) { return static_cast<uint32_t>(static_cast<unsigned char>(p[i])); };
  return b(0) << 24 | b(1) << 16 | b(2) << 8 | b(3);
}

inline uint16_t read_be16(const char* p) {
  return static_cast<uint16_t>(static_cast<unsigned char>(p[0]) << 8 |
                               static_cast<unsigned char>(p[1]));
}

// The payload length of the frame that starts at data (kFrameHeader bytes must be there).
inline uint32_t frame_length(std::string_view data) {
  return read_be32(data.data() + 1);
}

// Appends one frame to out.
inline void append_frame(std::string& out, FrameType type, std::string_view payload) {
  const auto n = static_cast<uint32_t>(payload.size());
  const char header[kFrameHeader] = {static_cast<char>(type), static_cast<char>(n >> 24),
                                     static_cast<char>(n >> 16), static_cast<char>(n >> 8),
                                     static_cast<char>(n)};
  out.append(header, sizeof header);
  out.append(payload);
}

inline std::string make_frame(FrameType type, std::string_view payload) {
  std::string out;
  append_frame(out, type, payload);
  return out;
}

}  // namespace vireo::monitor
