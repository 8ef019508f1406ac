#pragma once
// LogWriter writes a container's output as JSON lines in Docker's json-file format,
//   {"time":"2026-11-28T01:38:12.000123456Z","stream":"stdout","log":"text\n"}
// into <dir>/ctr.log, rotating it by size: ctr.log -> ctr.log.1 -> ... -> ctr.log.(N-1), the
// oldest dropped. One entry is one line of output with its newline. A line longer than
// kMaxEntry bytes is split into pieces; every piece that does not end the line carries
// "partial":true (as does an unterminated tail written by flush()), so a reader joins an entry
// with "partial" to the next one of the same stream.
//
// Output without a newline is held (up to kMaxEntry bytes per stream) until its line ends, the
// limit is reached or flush() is called. Single-threaded: the monitor's loop owns it.
#include <cstdint>
#include <ctime>
#include <memory>
#include <string>
#include <string_view>

#include "base/fd.h"
#include "base/result.h"
#include "monitor/stream.h"

namespace vireo::monitor {

struct LogLimits {
  uint64_t max_size = 10 * 1024 * 1024;  // a file is rotated before it would exceed this; 0: never
  int max_files = 5;                     // files kept, ctr.log included (at least 1)
};

class LogWriter {
 public:
  static constexpr size_t kMaxEntry = 16 * 1024;  // bytes of output per entry, as Docker
  static constexpr const char* kFileName = "ctr.log";
  static constexpr size_t kBatchSize = 16 * 1024;  // encoded bytes written at once

  // Opens (appends to) <dir>/ctr.log.
  [[nodiscard]] static Result<std::unique_ptr<LogWriter>> create(const std::string& dir,
                                                                 LogLimits limits);

  // Logs data read from stream at time now: complete lines and full pieces are written,
  // an unterminated tail is held.
  [[nodiscard]] Result<void> write(Stream stream, std::string_view data, const timespec& now);
  // Writes the held tails as partial entries (at container exit).
  [[nodiscard]] Result<void> flush(const timespec& now);

  uint64_t file_size() const { return size_; }

 private:
  LogWriter(Fd dir, Fd file, uint64_t size, LogLimits limits)
      : dir_(std::move(dir)), file_(std::move(file)), size_(size), limits_(limits) {}

  // Adds one entry to batch_, rotating first if it would not fit in the current file.
  [[nodiscard]] Result<void> add_entry(Stream stream, std::string_view piece, bool partial,
                                       const timespec& now);
  [[nodiscard]] Result<void> write_batch();
  [[nodiscard]] Result<void> rotate();

  Fd dir_;
  Fd file_;
  uint64_t size_ = 0;  // bytes in the current file, batch_ not included
  LogLimits limits_;
  std::string pending_[2];  // unterminated output per stream
  std::string entry_;       // scratch for one encoded entry
  std::string batch_;       // encoded entries not yet written
};

// The length of s without an incomplete UTF-8 sequence at its end, so that a piece cut there
// does not split a character (s itself when it ends complete or is not UTF-8).
size_t utf8_complete_prefix(std::string_view s);

}  // namespace vireo::monitor
