#include "base/strings.h"

#include <cctype>
#include <charconv>
#include <cmath>

namespace vireo {

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t pos = s.find(sep, start);
    out.emplace_back(s.substr(start, pos - start));
    if (pos == std::string_view::npos) break;
    start = pos + 1;
  }
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

Result<uint64_t> parse_size(std::string_view text) {
  std::string_view t = trim(text);
  double value = 0;
  auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), value);
  if (ec != std::errc() || value < 0 || !std::isfinite(value))
    return make_error(ErrorCode::kInvalidArgument,
                      "invalid size '{}': expected a number with an optional unit (K, M, G, T)",
                      text);
  std::string unit(trim(std::string_view(ptr, t.data() + t.size() - ptr)));
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (unit.ends_with("IB"))
    unit.resize(unit.size() - 2);
  else if (unit.size() == 2 && unit.back() == 'B')
    unit.pop_back();
  double mult = 1;
  if (unit.empty() || unit == "B")
    mult = 1;
  else if (unit == "K")
    mult = 1024.0;
  else if (unit == "M")
    mult = 1024.0 * 1024;
  else if (unit == "G")
    mult = 1024.0 * 1024 * 1024;
  else if (unit == "T")
    mult = 1024.0 * 1024 * 1024 * 1024;
  else
    return make_error(ErrorCode::kInvalidArgument,
                      "invalid size '{}': unknown unit '{}' (use K, M, G or T)", text, unit);
  double bytes = value * mult;
  if (bytes > 1.8e19)
    return make_error(ErrorCode::kInvalidArgument, "invalid size '{}': too large", text);
  return static_cast<uint64_t>(std::llround(bytes));
}

std::string format_bytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes);
  size_t u = 0;
  while (v >= 1024 && u + 1 < std::size(kUnits)) {
    v /= 1024;
    ++u;
  }
  if (u == 0) return fmt::format("{} B", bytes);
  return fmt::format("{:.1f} {}", v, kUnits[u]);
}

Result<void> validate_name(std::string_view name, std::string_view what) {
  auto bad = [&](std::string_view why) {
    return make_error(ErrorCode::kInvalidArgument, "invalid {} name '{}': {}", what, name, why);
  };
  if (name.empty()) return bad("must not be empty");
  if (name.size() > 63) return bad("longer than 63 characters");
  if (!std::isalnum(static_cast<unsigned char>(name.front())))
    return bad("must start with a letter or digit");
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
      return bad("only letters, digits, '-', '_' and '.' are allowed");
  }
  return {};
}

std::string percent_encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace vireo
