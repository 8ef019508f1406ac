#include "containers/logs.h"

#include <charconv>
#include <ctime>
#include <deque>
#include <fstream>

#include "base/json.h"

namespace vireo::containers {

namespace {

namespace fs = std::filesystem;

constexpr int kMaxRotatedFiles = 100;

struct Position {
  int64_t ns = 0;
  int64_t k = 0;  // entries with the same time before this one
  bool operator<(const Position& o) const { return ns != o.ns ? ns < o.ns : k < o.k; }
};

std::optional<int64_t> parse_int(std::string_view s) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

Result<std::optional<Position>> parse_cursor(const std::string& c) {
  if (c.empty()) return std::optional<Position>();
  auto dash = c.find('-', 1);
  auto ns =
      dash == std::string::npos ? std::nullopt : parse_int(std::string_view(c).substr(0, dash));
  auto k =
      dash == std::string::npos ? std::nullopt : parse_int(std::string_view(c).substr(dash + 1));
  if (!ns || !k || *k < 0)
    return make_error(ErrorCode::kInvalidArgument, "malformed cursor '{}'", c);
  return std::optional<Position>(Position{*ns, *k});
}

std::string format_cursor(const Position& p) {
  return fmt::format("{}-{}", p.ns, p.k);
}

}  // namespace

std::optional<int64_t> parse_rfc3339_ns(std::string_view t) {
  // YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)
  if (t.size() < 20 || t[4] != '-' || t[7] != '-' || (t[10] != 'T' && t[10] != 't') ||
      t[13] != ':' || t[16] != ':')
    return std::nullopt;
  auto num = [&](size_t pos, size_t len) { return parse_int(t.substr(pos, len)); };
  auto y = num(0, 4), mo = num(5, 2), d = num(8, 2), h = num(11, 2), mi = num(14, 2),
       s = num(17, 2);
  if (!y || !mo || !d || !h || !mi || !s) return std::nullopt;
  size_t i = 19;
  int64_t frac = 0;
  if (i < t.size() && t[i] == '.') {
    ++i;
    int digits = 0;
    while (i < t.size() && std::isdigit(static_cast<unsigned char>(t[i]))) {
      if (digits < 9) {
        frac = frac * 10 + (t[i] - '0');
        ++digits;
      }
      ++i;
    }
    if (digits == 0) return std::nullopt;
    for (; digits < 9; ++digits) frac *= 10;
  }
  int64_t offset = 0;
  if (i < t.size() && (t[i] == 'Z' || t[i] == 'z')) {
    ++i;
  } else if (i + 6 == t.size() && (t[i] == '+' || t[i] == '-') && t[i + 3] == ':') {
    auto oh = num(i + 1, 2), om = num(i + 4, 2);
    if (!oh || !om) return std::nullopt;
    offset = (*oh * 3600 + *om * 60) * (t[i] == '+' ? 1 : -1);
    i += 6;
  } else {
    return std::nullopt;
  }
  if (i != t.size()) return std::nullopt;
  std::tm tm{};
  tm.tm_year = static_cast<int>(*y - 1900);
  tm.tm_mon = static_cast<int>(*mo - 1);
  tm.tm_mday = static_cast<int>(*d);
  tm.tm_hour = static_cast<int>(*h);
  tm.tm_min = static_cast<int>(*mi);
  tm.tm_sec = static_cast<int>(*s);
  int64_t secs = ::timegm(&tm) - offset;
  return secs * 1000000000 + frac;
}

Result<int64_t> parse_since(std::string_view text) {
  if (auto ns = parse_rfc3339_ns(text)) return *ns;
  std::string s(text);
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || errno != 0 || v < 0 || v > 1e11)
    return make_error(ErrorCode::kInvalidArgument, "since '{}': expected RFC 3339 or unix seconds",
                      text);
  return static_cast<int64_t>(v * 1e9);
}

Result<LogPage> read_logs(const fs::path& dir, const LogQuery& q) {
  auto after = TRY(parse_cursor(q.cursor));
  std::vector<fs::path> files;
  for (int i = kMaxRotatedFiles; i >= 1; --i) {
    fs::path p = dir / fmt::format("ctr.log.{}", i);
    std::error_code ec;
    if (fs::exists(p, ec)) files.push_back(p);
  }
  files.push_back(dir / "ctr.log");

  LogPage page;
  std::deque<LogLine> out;
  Position last{};
  bool any = false;
  Position complete{};  // after the last entry read
  bool has_complete = false;
  for (const auto& path : files) {
    std::ifstream in(path);
    if (!in) continue;
    std::string text;
    while (std::getline(in, text)) {
      if (text.empty()) continue;
      auto j = parse_json(text);
      if (!j || !j->is_object()) continue;  // a torn last line while the monitor writes
      std::string time = j->value("time", "");
      std::string stream = j->value("stream", "stdout");
      auto ns = parse_rfc3339_ns(time);
      if (!ns) continue;
      Position pos{*ns, (any && last.ns == *ns) ? last.k + 1 : 0};
      last = pos;
      any = true;
      // A partial entry (a line cut at 16 KiB, or output without a final newline when the
      // container exited) is passed on as it is: printed one after another, the pieces make
      // the line again, and the last piece of an exited container is not held back forever.
      complete = Position{pos.ns, pos.k + 1};
      has_complete = true;
      if (after && pos < *after) continue;
      if (q.since_ns && *ns < *q.since_ns) continue;
      out.push_back(LogLine{time, stream, j->value("log", "")});
      if (q.tail && out.size() > *q.tail) out.pop_front();
    }
  }
  if (q.tail && *q.tail == 0) out.clear();
  page.lines.assign(std::make_move_iterator(out.begin()), std::make_move_iterator(out.end()));
  if (has_complete && !(after && complete < *after))
    page.cursor = format_cursor(complete);
  else
    page.cursor = q.cursor;
  return page;
}

}  // namespace vireo::containers
