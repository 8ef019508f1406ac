#include "image/remote/www_authenticate.h"

#include <cctype>

namespace vireo::image::remote {

namespace {

constexpr size_t kMaxValue = 8192;

bool is_tchar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

class Scanner {
 public:
  explicit Scanner(std::string_view s) : s_(s) {}
  bool done() const { return pos_ >= s_.size(); }
  char peek() const { return done() ? '\0' : s_[pos_]; }
  void skip_space() {
    while (!done() && (s_[pos_] == ' ' || s_[pos_] == '\t')) ++pos_;
  }
  void skip_space_and_commas() {
    while (!done() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == ',')) ++pos_;
  }
  std::string_view token() {
    size_t start = pos_;
    while (!done() && is_tchar(s_[pos_])) ++pos_;
    return s_.substr(start, pos_ - start);
  }
  // After a token: is the next non-space character '=' (an auth-param rather than a new
  // challenge's scheme)? token68 values end in '=' too, but are followed by the end or a comma.
  bool at_param_equals() const {
    size_t p = pos_;
    while (p < s_.size() && (s_[p] == ' ' || s_[p] == '\t')) ++p;
    if (p >= s_.size() || s_[p] != '=') return false;
    ++p;
    while (p < s_.size() && s_[p] == '=') ++p;  // token68 padding "abc=="
    while (p < s_.size() && (s_[p] == ' ' || s_[p] == '\t')) ++p;
    return p < s_.size() && s_[p] != ',';
  }
  // An unquoted value; servers put URLs here, which are not RFC 7230 tokens.
  std::string_view bare_value() {
    size_t start = pos_;
    while (!done() && s_[pos_] != ',' && s_[pos_] != ' ' && s_[pos_] != '\t' &&
           static_cast<unsigned char>(s_[pos_]) > 0x20 && s_[pos_] != '"')
      ++pos_;
    return s_.substr(start, pos_ - start);
  }
  size_t mark() const { return pos_; }
  void reset(size_t p) { pos_ = p; }
  bool consume(char c) {
    if (peek() != c) return false;
    ++pos_;
    return true;
  }
  Result<std::string> quoted() {
    std::string out;
    ++pos_;  // opening quote
    while (!done()) {
      char c = s_[pos_++];
      if (c == '"') return out;
      if (c == '\\') {
        if (done()) break;
        c = s_[pos_++];
      }
      out += c;
    }
    return make_error(ErrorCode::kInvalidArgument, "WWW-Authenticate: unterminated quoted string");
  }

 private:
  std::string_view s_;
  size_t pos_ = 0;
};

}  // namespace

Result<std::vector<Challenge>> parse_www_authenticate(std::string_view value) {
  if (value.size() > kMaxValue)
    return make_error(ErrorCode::kInvalidArgument, "WWW-Authenticate header too long");
  std::vector<Challenge> out;
  Scanner s(value);
  s.skip_space_and_commas();
  while (!s.done()) {
    auto scheme = s.token();
    if (scheme.empty())
      return make_error(ErrorCode::kInvalidArgument,
                        "WWW-Authenticate: expected an auth scheme at '{}'",
                        value.substr(s.mark()));
    Challenge ch{.scheme = lower(scheme), .params = {}};
    s.skip_space();
    while (!s.done() && s.peek() != ',') {
      size_t before = s.mark();
      auto name = s.token();
      if (name.empty() || !s.at_param_equals()) {
        // token68 (e.g. "Basic dXNlcg=="): kept whole.
        s.reset(before);
        size_t start = s.mark();
        while (!s.done() && s.peek() != ',' && s.peek() != ' ') s.reset(s.mark() + 1);
        ch.params["token68"] = std::string(value.substr(start, s.mark() - start));
        break;
      }
      s.skip_space();
      s.consume('=');
      s.skip_space();
      std::string v = s.peek() == '"' ? TRY(s.quoted()) : std::string(s.bare_value());
      ch.params[lower(name)] = std::move(v);
      s.skip_space();
      if (!s.consume(',')) break;
      s.skip_space_and_commas();
      // The next item is another param of this challenge, or the next challenge's scheme.
      size_t here = s.mark();
      auto next = s.token();
      bool param = !next.empty() && s.at_param_equals();
      s.reset(here);
      if (!param) break;
    }
    out.push_back(std::move(ch));
    s.skip_space_and_commas();
    if (!s.done() && !is_tchar(s.peek()))
      return make_error(ErrorCode::kInvalidArgument, "WWW-Authenticate: unexpected '{}'", s.peek());
  }
  if (out.empty()) return make_error(ErrorCode::kInvalidArgument, "WWW-Authenticate is empty");
  return out;
}

}  // namespace vireo::image::remote
