#include "monitor/log_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "monitor/json_text.h"

namespace vireo::monitor {

namespace {

Result<void> write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("write");
    data.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

std::string rotated_name(int i) {
  std::string name = LogWriter::kFileName;
  if (i > 0) name += "." + std::to_string(i);
  return name;
}

}  // namespace

size_t utf8_complete_prefix(std::string_view s) {
  for (size_t back = 1; back <= 3 && back <= s.size(); ++back) {
    auto c = static_cast<unsigned char>(s[s.size() - back]);
    if ((c & 0xC0) == 0x80) continue;  // a continuation byte: look further back
    size_t len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
    // Cutting before the sequence, unless it is all there is (then it is not text anyway).
    return len > back && back < s.size() ? s.size() - back : s.size();
  }
  return s.size();
}

Result<std::unique_ptr<LogWriter>> LogWriter::create(const std::string& dir, LogLimits limits) {
  Fd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd) return errno_error("open " + dir);
  Fd file(::openat(dir_fd.get(), kFileName, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640));
  if (!file) return errno_error("open " + dir + "/" + kFileName);
  struct stat st {};
  if (::fstat(file.get(), &st) != 0) return errno_error("stat " + dir + "/" + kFileName);
  if (limits.max_files < 1) limits.max_files = 1;
  return std::unique_ptr<LogWriter>(
      new LogWriter(std::move(dir_fd), std::move(file), static_cast<uint64_t>(st.st_size), limits));
}

Result<void> LogWriter::write(Stream stream, std::string_view data, const timespec& now) {
  std::string& held = pending_[stream == Stream::kStdout ? 0 : 1];
  while (!data.empty()) {
    size_t nl = data.find('\n');
    if (nl != std::string_view::npos && held.size() + nl + 1 <= kMaxEntry) {
      std::string_view line = data.substr(0, nl + 1);
      data.remove_prefix(nl + 1);
      if (held.empty()) {
        TRY(add_entry(stream, line, false, now));
      } else {
        held.append(line);
        TRY(add_entry(stream, held, false, now));
        held.clear();
      }
      continue;
    }
    size_t take = std::min(kMaxEntry - held.size(), data.size());
    held.append(data.substr(0, take));
    data.remove_prefix(take);
    if (held.size() >= kMaxEntry) {
      size_t cut = utf8_complete_prefix(held);
      // A line of exactly kMaxEntry bytes whose newline follows is not partial.
      bool line_ends = cut == held.size() && !data.empty() && data[0] == '\n';
      if (line_ends) {
        held += '\n';
        data.remove_prefix(1);
        cut = held.size();
      }
      TRY(add_entry(stream, std::string_view(held).substr(0, cut), !line_ends, now));
      held.erase(0, cut);
    }
  }
  return write_batch();
}

Result<void> LogWriter::flush(const timespec& now) {
  for (Stream s : {Stream::kStdout, Stream::kStderr}) {
    std::string& held = pending_[s == Stream::kStdout ? 0 : 1];
    if (held.empty()) continue;
    TRY(add_entry(s, held, true, now));
    held.clear();
  }
  return write_batch();
}

Result<void> LogWriter::add_entry(Stream stream, std::string_view piece, bool partial,
                                  const timespec& now) {
  entry_.clear();
  entry_ += "{\"time\":\"";
  append_rfc3339_nano(entry_, now);
  entry_ += "\",\"stream\":\"";
  entry_ += stream_name(stream);
  entry_ += "\",\"log\":\"";
  append_json_escaped(entry_, piece);
  entry_ += partial ? "\",\"partial\":true}\n" : "\"}\n";
  uint64_t used = size_ + batch_.size();
  if (limits_.max_size > 0 && used > 0 && used + entry_.size() > limits_.max_size) {
    TRY(write_batch());
    TRY(rotate());
  }
  batch_ += entry_;
  // Bounded, so a burst of short lines does not grow a large buffer.
  if (batch_.size() >= kBatchSize) return write_batch();
  return {};
}

Result<void> LogWriter::write_batch() {
  if (batch_.empty()) return {};
  auto written = write_all(file_.get(), batch_);
  // On failure (a full disk) the batch is dropped: the container must not wait on its log.
  size_ += batch_.size();
  batch_.clear();
  if (batch_.capacity() > 2 * kBatchSize + 8 * kMaxEntry) batch_.shrink_to_fit();
  return with_context(std::move(written), kFileName);
}

Result<void> LogWriter::rotate() {
  if (limits_.max_files > 1) {
    for (int i = limits_.max_files - 1; i >= 1; --i) {
      std::string from = rotated_name(i - 1), to = rotated_name(i);
      if (::renameat(dir_.get(), from.c_str(), dir_.get(), to.c_str()) != 0 && errno != ENOENT)
        return errno_error("rotate " + from);
    }
  }
  Fd file(
      ::openat(dir_.get(), kFileName, O_WRONLY | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC, 0640));
  if (!file) return errno_error(std::string("rotate: open ") + kFileName);
  file_ = std::move(file);
  size_ = 0;
  return {};
}

}  // namespace vireo::monitor
