#pragma once
// Reading a container's logs as vireo-monitor writes them (docs/containers.md, "Logs"): ctr.log
// and its rotated files ctr.log.N … ctr.log.1, oldest first, Docker json-file lines. Partial
// entries (a line cut at 16 KiB, or the last output without a newline) come as they are, as
// the Docker API gives them: printed in order they make the line again.
//
// A cursor names a position after an entry: "<unix ns>-<k>", the time of the entry and how many
// entries with that same time came before it, plus one. Times only grow in a log, so a cursor
// survives rotation (unlike a byte offset). An entry rotated away before it was read is lost
// to that reader, as with docker logs --follow.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"

namespace vireo::containers {

struct LogLine {
  std::string time;    // RFC 3339 with nanoseconds, as written
  std::string stream;  // stdout | stderr
  std::string log;
};

struct LogQuery {
  std::optional<size_t> tail;       // the last N lines only
  std::optional<int64_t> since_ns;  // lines at or after this time (unix ns)
  std::string cursor;               // lines after this position ("" = from the start)
};

struct LogPage {
  std::vector<LogLine> lines;
  std::string cursor;  // after the last entry in the log (whether returned or filtered out)
};

// dir: the monitor's state directory. Missing files are an empty log.
[[nodiscard]] Result<LogPage> read_logs(const std::filesystem::path& dir, const LogQuery& q);

// "2026-11-28T01:45:03.632330299Z" (or with an offset) → unix ns; nullopt when malformed.
std::optional<int64_t> parse_rfc3339_ns(std::string_view text);
// A since value as the API takes it: RFC 3339 or unix seconds (fraction allowed).
[[nodiscard]] Result<int64_t> parse_since(std::string_view text);

}  // namespace vireo::containers
