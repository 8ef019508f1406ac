#include "monitor/json_text.h"

#include <charconv>
#include <cstdint>

namespace vireo::monitor {

namespace {

// Length of the valid UTF-8 sequence at the start of s, or 0 when the first byte does not
// begin one (stray continuation byte, overlong form, surrogate, beyond U+10FFFF, truncated).
size_t utf8_sequence_length(std::string_view s) {
  auto b = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  auto cont = [&](size_t i) { return i < s.size() && (b(i) & 0xC0) == 0x80; };
  unsigned char c = b(0);
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xE0 && b(1) < 0xA0) return 0;   // overlong
    if (c == 0xED && b(1) >= 0xA0) return 0;  // UTF-16 surrogate
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xF0 && b(1) < 0x90) return 0;   // overlong
    if (c == 0xF4 && b(1) >= 0x90) return 0;  // beyond U+10FFFF
    return 4;
  }
  return 0;
}

}  // namespace

void append_json_escaped(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  size_t i = 0;
  while (i < text.size()) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80) {
      size_t n = utf8_sequence_length(text.substr(i));
      if (n == 0) {
        out += "\\ufffd";
        ++i;
      } else {
        out.append(text.data() + i, n);
        i += n;
      }
      continue;
    }
    ++i;
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 0xF];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
}

void append_rfc3339_nano(std::string& out, const timespec& t) {
  // Days to civil date (H. Hinnant's algorithm): no gmtime, whose time zone code the static
  // binary would otherwise carry.
  int64_t secs = t.tv_sec, days = secs / 86400, rem = secs % 86400;
  if (rem < 0) {
    rem += 86400;
    --days;
  }
  days += 719468;
  int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  int64_t doe = days - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  int64_t day = doy - (153 * mp + 2) / 5 + 1;
  int64_t month = mp < 10 ? mp + 3 : mp - 9;
  int64_t year = yoe + era * 400 + (month <= 2);
  auto digits = [&out](int64_t v, int width) {
    char buf[20];
    for (int i = width - 1; i >= 0; --i) {
      buf[i] = static_cast<char>('0' + v % 10);
      v /= 10;
    }
    out.append(buf, static_cast<size_t>(width));
  };
  digits(year, 4);
  out += '-';
  digits(month, 2);
  out += '-';
  digits(day, 2);
  out += 'T';
  digits(rem / 3600, 2);
  out += ':';
  digits(rem / 60 % 60, 2);
  out += ':';
  digits(rem % 60, 2);
  out += '.';
  digits(t.tv_nsec, 9);
  out += 'Z';
}

std::string rfc3339_nano(const timespec& t) {
  std::string s;
  append_rfc3339_nano(s, t);
  return s;
}

timespec now_realtime() {
  timespec t{};
  ::clock_gettime(CLOCK_REALTIME, &t);
  return t;
}

std::optional<std::string> find_json_string(std::string_view json, std::string_view key) {
  std::string quoted = "\"";
  quoted.append(key);
  quoted += '"';
  size_t at = json.find(quoted);
  if (at == std::string_view::npos) return std::nullopt;
  size_t i = at + quoted.size();
  while (i < json.size() && (json[i] == ' ' || json[i] == ':' || json[i] == '\t')) ++i;
  if (i >= json.size() || json[i] != '"') return std::nullopt;
  std::string value;
  for (++i; i < json.size(); ++i) {
    char c = json[i];
    if (c == '"') return value;
    if (c != '\\') {
      value += c;
      continue;
    }
    if (++i >= json.size()) break;
    switch (json[i]) {
      case 'n':
        value += '\n';
        break;
      case 't':
        value += '\t';
        break;
      case 'r':
        value += '\r';
        break;
      case 'b':
        value += '\b';
        break;
      case 'f':
        value += '\f';
        break;
      case 'u': {
        std::string_view hex = json.substr(i + 1, 4);
        unsigned v = 0;
        auto [end, ec] = std::from_chars(hex.data(), hex.data() + hex.size(), v, 16);
        if (hex.size() == 4 && ec == std::errc() && end == hex.data() + 4 && v < 0x80) {
          value += static_cast<char>(v);
        } else {
          value += "\\u";
          value.append(hex);
        }
        i += hex.size();
        break;
      }
      default:
        value += json[i];
    }
  }
  return std::nullopt;
}

}  // namespace vireo::monitor
