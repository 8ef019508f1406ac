#pragma once
// Logging: spdlog with one default logger. Libraries log through spdlog's free functions;
// executables call init_logging once.
#include <string>

#include <spdlog/spdlog.h>

namespace vireo {

enum class LogLevel { kDebug, kInfo, kWarn, kError };

// Logs to stderr, or appends to file when non-empty.
void init_logging(LogLevel level, const std::string& file = {});

}  // namespace vireo
