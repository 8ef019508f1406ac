#pragma once
#include <chrono>
#include <string>

namespace vireo {

// RFC 3339 UTC timestamp with milliseconds: 2026-11-27T16:27:29.123Z
std::string format_timestamp(std::chrono::system_clock::time_point t);
inline std::string now_timestamp() {
  return format_timestamp(std::chrono::system_clock::now());
}

}  // namespace vireo
