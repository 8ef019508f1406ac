#include "image/build/containerfile.h"

#include <fnmatch.h>

#include <algorithm>
#include <cctype>

#include "base/json.h"
#include "base/strings.h"

namespace vireo::image::build {

namespace {

constexpr int kMaxSubstitutionDepth = 8;

struct KeywordName {
  std::string_view name;
  Keyword keyword;
};
constexpr KeywordName kKeywords[] = {
    {"FROM", Keyword::kFrom},
    {"ARG", Keyword::kArg},
    {"RUN", Keyword::kRun},
    {"CMD", Keyword::kCmd},
    {"ENTRYPOINT", Keyword::kEntrypoint},
    {"COPY", Keyword::kCopy},
    {"ADD", Keyword::kAdd},
    {"ENV", Keyword::kEnv},
    {"WORKDIR", Keyword::kWorkdir},
    {"USER", Keyword::kUser},
    {"EXPOSE", Keyword::kExpose},
    {"LABEL", Keyword::kLabel},
};
// Docker instructions this builder does not implement: named as such, not as unknown.
constexpr std::string_view kUnsupported[] = {"MAINTAINER", "VOLUME",  "HEALTHCHECK",
                                             "SHELL",      "ONBUILD", "STOPSIGNAL"};

std::unexpected<Error> bad(const Instruction& in, std::string_view what) {
  return make_error(ErrorCode::kInvalidArgument, "line {}: {}: {}", in.line,
                    keyword_name(in.keyword), what);
}

bool is_name_start(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_';
}
bool is_name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
}
bool valid_var_name(std::string_view s) {
  return !s.empty() && is_name_start(s[0]) && std::all_of(s.begin(), s.end(), is_name_char);
}
bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

std::string_view trim_ws(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

class Expander {
 public:
  Expander(std::string_view text, const Lookup& vars, int depth)
      : text_(text), vars_(vars), depth_(depth) {}

  Result<std::string> run() {
    std::string out;
    while (pos_ < text_.size()) {
      char c = text_[pos_];
      if (c == '\'') {
        size_t end = text_.find('\'', pos_ + 1);
        if (end == std::string_view::npos)
          return make_error(ErrorCode::kInvalidArgument, "unterminated single quote");
        out.append(text_.substr(pos_ + 1, end - pos_ - 1));
        pos_ = end + 1;
      } else if (c == '"') {
        ++pos_;
        TRY(double_quoted(out));
      } else if (c == '\\') {
        if (pos_ + 1 < text_.size()) out += text_[pos_ + 1];
        pos_ += 2;
      } else if (c == '$') {
        out += TRY(dollar());
      } else {
        out += c;
        ++pos_;
      }
    }
    return out;
  }

 private:
  Result<void> double_quoted(std::string& out) {
    while (pos_ < text_.size()) {
      char c = text_[pos_];
      if (c == '"') {
        ++pos_;
        return {};
      }
      if (c == '\\' && pos_ + 1 < text_.size() &&
          std::string_view("\"\\$").find(text_[pos_ + 1]) != std::string_view::npos) {
        out += text_[pos_ + 1];
        pos_ += 2;
      } else if (c == '$') {
        out += TRY(dollar());
      } else {
        out += c;
        ++pos_;
      }
    }
    return make_error(ErrorCode::kInvalidArgument, "unterminated double quote");
  }

  // At a '$': the substitution, or a literal '$' when no name follows.
  Result<std::string> dollar() {
    ++pos_;
    if (pos_ < text_.size() && text_[pos_] == '{') return braced();
    size_t start = pos_;
    if (pos_ >= text_.size() || !is_name_start(text_[pos_])) return std::string("$");
    while (pos_ < text_.size() && is_name_char(text_[pos_])) ++pos_;
    return vars_(text_.substr(start, pos_ - start)).value_or("");
  }

  Result<std::string> braced() {
    ++pos_;  // '{'
    size_t start = pos_;
    while (pos_ < text_.size() && is_name_char(text_[pos_])) ++pos_;
    std::string_view name = text_.substr(start, pos_ - start);
    if (!valid_var_name(name))
      return make_error(ErrorCode::kInvalidArgument, "bad substitution '${{{}'",
                        text_.substr(start, std::min<size_t>(16, text_.size() - start)));
    // The word after the operator runs to the matching '}' (nested ${...} allowed).
    std::string op;
    if (pos_ < text_.size() && text_[pos_] == ':') op += text_[pos_++];
    if (pos_ < text_.size() && std::string_view("-+?").find(text_[pos_]) != std::string_view::npos)
      op += text_[pos_++];
    if (op == ":")
      return make_error(ErrorCode::kInvalidArgument, "bad substitution '${{{}:'", name);
    size_t word_start = pos_;
    int depth = 1;
    while (pos_ < text_.size()) {
      if (text_[pos_] == '\\') {
        pos_ += 2;
        continue;
      }
      if (text_[pos_] == '{') ++depth;
      if (text_[pos_] == '}' && --depth == 0) break;
      ++pos_;
    }
    if (pos_ >= text_.size())
      return make_error(ErrorCode::kInvalidArgument, "unterminated '${{{}'", name);
    std::string_view word = text_.substr(word_start, pos_ - word_start);
    ++pos_;  // '}'
    if (op.empty() && !word.empty())
      return make_error(ErrorCode::kInvalidArgument, "bad substitution '${{{}{}}}'", name, word);
    auto value = vars_(name);
    bool set = value.has_value() && (op.find(':') == std::string::npos || !value->empty());
    char kind = op.empty() ? 0 : op.back();
    if (kind == 0) return value.value_or("");
    if (depth_ >= kMaxSubstitutionDepth)
      return make_error(ErrorCode::kInvalidArgument, "substitutions nested too deeply");
    auto expand = [&]() { return Expander(word, vars_, depth_ + 1).run(); };
    if (kind == '-') {
      std::string w = TRY(expand());
      return set ? *value : w;
    }
    if (kind == '+') {
      std::string w = TRY(expand());
      return set ? w : std::string();
    }
    std::string w = TRY(expand());  // '?'
    if (!set)
      return make_error(ErrorCode::kInvalidArgument, "{}: {}", name, w.empty() ? "is not set" : w);
    return *value;
  }

  std::string_view text_;
  const Lookup& vars_;
  int depth_;
  size_t pos_ = 0;
};

// Words split at unquoted whitespace, quotes and escapes kept for expand_word.
Result<std::vector<std::string>> split_raw(std::string_view text) {
  std::vector<std::string> words;
  std::string cur;
  bool in_word = false;
  char quote = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (quote) {
      cur += c;
      if (c == '\\' && quote == '"' && i + 1 < text.size()) {
        cur += text[++i];
      } else if (c == quote) {
        quote = 0;
      }
      continue;
    }
    if (is_space(c)) {
      if (in_word) words.push_back(std::move(cur));
      cur.clear();
      in_word = false;
      continue;
    }
    in_word = true;
    cur += c;
    if (c == '$' && i + 1 < text.size() && text[i + 1] == '{') {
      // ${VAR:-a default with spaces} is one word.
      int depth = 0;
      for (++i; i < text.size(); ++i) {
        cur += text[i];
        if (text[i] == '{') ++depth;
        if (text[i] == '}' && --depth == 0) break;
      }
      continue;
    }
    if (c == '\\' && i + 1 < text.size()) {
      cur += text[++i];
    } else if (c == '\'' || c == '"') {
      quote = c;
    }
  }
  if (quote)
    return make_error(ErrorCode::kInvalidArgument, "unterminated {} quote",
                      quote == '"' ? "double" : "single");
  if (in_word) words.push_back(std::move(cur));
  return words;
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

// The JSON form is meant when the arguments start with '[' then '"' or ']' (so a shell test
// such as `[ -f x ] && ...` stays shell form); it must then be a valid JSON array of strings.
bool looks_like_json(std::string_view rest) {
  if (rest.size() < 2 || rest.front() != '[') return false;
  std::string_view inner = trim_ws(rest.substr(1));
  return !inner.empty() && (inner.front() == '"' || inner.front() == ']');
}

Result<std::vector<std::string>> parse_json_form(const Instruction& in, std::string_view rest) {
  auto j = parse_json(rest);
  if (!j) return bad(in, "malformed JSON form: " + j.error().message());
  if (!j->is_array()) return bad(in, "malformed JSON form: not an array");
  std::vector<std::string> out;
  for (size_t i = 0; i < j->size(); ++i) {
    if (!(*j)[i].is_string())
      return bad(in, fmt::format("malformed JSON form: element {} is not a string", i));
    out.push_back((*j)[i].get<std::string>());
  }
  return out;
}

// Leading --name=value flags of the instructions that take them.
Result<std::string_view> take_flags(Instruction& in, std::string_view rest) {
  while (rest.starts_with("--")) {
    size_t end = 0;
    while (end < rest.size() && !is_space(rest[end])) ++end;
    std::string_view flag = rest.substr(2, end - 2);
    rest = trim_ws(rest.substr(end));
    size_t eq = flag.find('=');
    std::string name(flag.substr(0, eq));
    if (in.keyword == Keyword::kCopy && name == "from")
      return bad(in, "--from: multi-stage builds are not supported");
    bool known = (in.keyword == Keyword::kCopy || in.keyword == Keyword::kAdd) &&
                 (name == "chown" || name == "chmod");
    if (!known) return bad(in, fmt::format("flag --{} is not supported", name));
    if (eq == std::string_view::npos || eq + 1 == flag.size())
      return bad(in, fmt::format("flag --{} needs a value (--{}=...)", name, name));
    if (in.flags.contains(name)) return bad(in, fmt::format("flag --{} given twice", name));
    in.flags[name] = std::string(flag.substr(eq + 1));
  }
  return rest;
}

Result<void> set_arguments(Instruction& in, std::string_view rest) {
  bool flags = in.keyword == Keyword::kCopy || in.keyword == Keyword::kAdd ||
               in.keyword == Keyword::kRun || in.keyword == Keyword::kFrom;
  if (flags) rest = TRY(take_flags(in, rest));
  if (rest.empty()) return bad(in, "missing arguments");
  in.rest = std::string(rest);
  bool json_allowed = in.keyword == Keyword::kRun || in.keyword == Keyword::kCmd ||
                      in.keyword == Keyword::kEntrypoint || in.keyword == Keyword::kCopy ||
                      in.keyword == Keyword::kAdd;
  if (json_allowed && looks_like_json(rest)) {
    in.json = true;
    in.json_args = TRY(parse_json_form(in, rest));
    if (in.json_args.empty() && in.keyword == Keyword::kRun) return bad(in, "empty command");
  }
  return {};
}

// Checks the syntax of in's arguments (every variable set to a placeholder), so that a
// malformed one fails before the build does any work.
Result<void> check(const Instruction& in) {
  Lookup none = [](std::string_view) { return std::optional<std::string>("x"); };
  switch (in.keyword) {
    case Keyword::kFrom:
      TRY(from_args(in, none));
      break;
    case Keyword::kArg:
      TRY(arg_decls(in, none));
      break;
    case Keyword::kEnv:
    case Keyword::kLabel:
      TRY(key_values(in, none));
      break;
    case Keyword::kWorkdir:
    case Keyword::kUser:
      TRY(single_word(in, none));
      break;
    case Keyword::kExpose:
      if (in.rest.find('$') == std::string::npos) TRY(ports(in, none));
      break;
    case Keyword::kCopy:
    case Keyword::kAdd:
      TRY(copy_args(in, none));
      break;
    case Keyword::kRun:
    case Keyword::kCmd:
    case Keyword::kEntrypoint:
      break;
  }
  return {};
}

Result<void> check_order(const std::vector<Instruction>& list) {
  if (list.empty())
    return make_error(ErrorCode::kInvalidArgument, "the Containerfile is empty (no instructions)");
  bool from = false;
  for (const auto& in : list) {
    if (in.keyword == Keyword::kFrom) {
      if (from)
        return make_error(ErrorCode::kInvalidArgument,
                          "line {}: a second FROM: multi-stage builds are not supported", in.line);
      from = true;
    } else if (!from && in.keyword != Keyword::kArg) {
      return make_error(ErrorCode::kInvalidArgument,
                        "line {}: {} before FROM: the first instruction must be FROM (only ARG "
                        "may come before it)",
                        in.line, keyword_name(in.keyword));
    }
  }
  if (!from) return make_error(ErrorCode::kInvalidArgument, "no FROM instruction");
  return {};
}

Result<Instruction> parse_instruction(std::string_view text, int line) {
  text = trim_ws(text);
  size_t end = 0;
  while (end < text.size() && !is_space(text[end])) ++end;
  std::string word = upper(text.substr(0, end));
  Instruction in;
  in.line = line;
  auto it = std::find_if(std::begin(kKeywords), std::end(kKeywords),
                         [&](const KeywordName& k) { return k.name == word; });
  if (it == std::end(kKeywords)) {
    bool unsupported =
        std::find(std::begin(kUnsupported), std::end(kUnsupported), word) != std::end(kUnsupported);
    std::string shown(text.substr(0, std::min<size_t>(end, 40)));
    return make_error(ErrorCode::kInvalidArgument, "line {}: {} instruction '{}'", line,
                      unsupported ? "unsupported" : "unknown", shown);
  }
  in.keyword = it->keyword;
  std::string_view rest = trim_ws(text.substr(end));
  in.text = rest.empty() ? word : word + " " + std::string(rest);
  TRY(set_arguments(in, rest));
  TRY(check(in));
  return in;
}

bool comment_line(std::string_view line) {
  line = trim_ws(line);
  return !line.empty() && line.front() == '#';
}

}  // namespace

std::string_view keyword_name(Keyword k) {
  for (const auto& n : kKeywords)
    if (n.keyword == k) return n.name;
  return "?";
}

Result<Containerfile> parse_containerfile(std::string_view text) {
  if (text.size() > kMaxContainerfileSize)
    return make_error(ErrorCode::kTooLarge, "the Containerfile is larger than {} bytes",
                      kMaxContainerfileSize);
  if (text.find('\0') != std::string_view::npos)
    return make_error(ErrorCode::kInvalidArgument, "the Containerfile holds a NUL byte");
  Containerfile out;
  std::string pending;
  int start_line = 0;
  int line_no = 0;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == std::string_view::npos ? nl : nl - pos);
    pos = nl == std::string_view::npos ? text.size() + 1 : nl + 1;
    ++line_no;
    // Comments (also parser directives such as "# syntax=") and blank lines, also inside a
    // continued instruction, are dropped.
    if (comment_line(line) || trim_ws(line).empty()) continue;
    if (pending.empty()) start_line = line_no;
    std::string_view body = line;
    while (!body.empty() && is_space(body.back())) body.remove_suffix(1);
    bool continued = !body.empty() && body.back() == '\\';
    if (continued) body.remove_suffix(1);
    pending.append(body);
    if (continued && pos <= text.size()) continue;
    if (trim_ws(pending).empty()) {
      pending.clear();
      continue;
    }
    out.instructions.push_back(TRY(parse_instruction(pending, start_line)));
    pending.clear();
  }
  TRY(check_order(out.instructions));
  return out;
}

Result<std::string> expand_word(std::string_view text, const Lookup& vars) {
  return Expander(text, vars, 0).run();
}

Result<std::vector<std::string>> expand_words(std::string_view text, const Lookup& vars) {
  std::vector<std::string> out;
  for (const auto& w : TRY(split_raw(text))) out.push_back(TRY(expand_word(w, vars)));
  return out;
}

Result<From> from_args(const Instruction& in, const Lookup& vars) {
  auto words = expand_words(in.rest, vars);
  if (!words) return bad(in, words.error().message());
  if (words->size() == 3 && upper((*words)[1]) == "AS") words->resize(1);
  if (words->size() != 1) return bad(in, "expected FROM IMAGE [AS NAME]");
  if (words->front().empty()) return bad(in, "the image name is empty");
  return From{words->front()};
}

Result<std::vector<ArgDecl>> arg_decls(const Instruction& in, const Lookup& vars) {
  auto raw = split_raw(in.rest);
  if (!raw) return bad(in, raw.error().message());
  std::vector<ArgDecl> out;
  for (const auto& w : *raw) {
    size_t eq = w.find('=');
    ArgDecl d{w.substr(0, eq), std::nullopt};
    if (!valid_var_name(d.name))
      return bad(in, fmt::format("invalid name '{}' (letters, digits and '_')", d.name));
    if (eq != std::string::npos) {
      auto v = expand_word(std::string_view(w).substr(eq + 1), vars);
      if (!v) return bad(in, v.error().message());
      d.default_value = std::move(*v);
    }
    out.push_back(std::move(d));
  }
  return out;
}

Result<std::vector<std::pair<std::string, std::string>>> key_values(const Instruction& in,
                                                                    const Lookup& vars) {
  auto raw = split_raw(in.rest);
  if (!raw) return bad(in, raw.error().message());
  std::vector<std::pair<std::string, std::string>> out;
  if (raw->empty()) return bad(in, "missing arguments");
  if (raw->front().find('=') == std::string::npos) {
    // The older "KEY VALUE WITH SPACES" form: one pair, the value the rest of the line.
    std::string_view rest = in.rest;
    size_t end = 0;
    while (end < rest.size() && !is_space(rest[end])) ++end;
    auto key = expand_word(rest.substr(0, end), vars);
    if (!key) return bad(in, key.error().message());
    std::string_view value_text = trim_ws(rest.substr(end));
    if (value_text.empty()) return bad(in, fmt::format("'{}' needs a value (KEY=VALUE)", *key));
    auto value = expand_word(value_text, vars);
    if (!value) return bad(in, value.error().message());
    if (key->empty()) return bad(in, "empty name");
    out.emplace_back(std::move(*key), std::move(*value));
    return out;
  }
  for (const auto& w : *raw) {
    size_t eq = w.find('=');
    if (eq == std::string::npos) return bad(in, fmt::format("'{}' is not KEY=VALUE", w));
    auto key = expand_word(std::string_view(w).substr(0, eq), vars);
    auto value = expand_word(std::string_view(w).substr(eq + 1), vars);
    if (!key) return bad(in, key.error().message());
    if (!value) return bad(in, value.error().message());
    if (key->empty()) return bad(in, "empty name");
    if (in.keyword == Keyword::kEnv && key->find('=') != std::string::npos)
      return bad(in, fmt::format("invalid name '{}'", *key));
    out.emplace_back(std::move(*key), std::move(*value));
  }
  return out;
}

Result<std::string> single_word(const Instruction& in, const Lookup& vars) {
  auto w = expand_word(in.rest, vars);
  if (!w) return bad(in, w.error().message());
  if (w->empty()) return bad(in, "empty argument");
  return *w;
}

Result<std::vector<std::string>> ports(const Instruction& in, const Lookup& vars) {
  auto words = expand_words(in.rest, vars);
  if (!words) return bad(in, words.error().message());
  std::vector<std::string> out;
  for (const auto& w : *words) {
    auto slash = w.find('/');
    std::string range = w.substr(0, slash);
    std::string proto = slash == std::string::npos ? "tcp" : w.substr(slash + 1);
    for (auto& c : proto) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    auto port_ok = [](std::string_view p) {
      if (p.empty() || p.size() > 5 || !std::all_of(p.begin(), p.end(), ::isdigit)) return false;
      int v = std::stoi(std::string(p));
      return v >= 1 && v <= 65535;
    };
    auto dash = range.find('-');
    bool ok = dash == std::string::npos
                  ? port_ok(range)
                  : port_ok(range.substr(0, dash)) && port_ok(range.substr(dash + 1));
    if (!ok || (proto != "tcp" && proto != "udp" && proto != "sctp"))
      return bad(in, fmt::format("invalid port '{}' (PORT[-PORT][/tcp|udp|sctp])", w));
    out.push_back(range + "/" + proto);
  }
  return out;
}

Result<CopyArgs> copy_args(const Instruction& in, const Lookup& vars) {
  std::vector<std::string> words;
  if (in.json) {
    for (const auto& a : in.json_args) {
      auto w = expand_word(a, vars);
      if (!w) return bad(in, w.error().message());
      words.push_back(std::move(*w));
    }
  } else {
    auto w = expand_words(in.rest, vars);
    if (!w) return bad(in, w.error().message());
    words = std::move(*w);
  }
  if (words.size() < 2) return bad(in, "expected SOURCE... DEST");
  CopyArgs out;
  out.dest = words.back();
  words.pop_back();
  out.sources = std::move(words);
  for (const auto& s : out.sources)
    if (s.empty()) return bad(in, "empty source");
  if (out.dest.empty()) return bad(in, "empty destination");
  if (auto it = in.flags.find("chown"); it != in.flags.end()) {
    auto w = expand_word(it->second, vars);
    if (!w) return bad(in, w.error().message());
    out.chown = *w;
    if (out.chown.empty() || out.chown.front() == ':' || out.chown.back() == ':' ||
        std::count(out.chown.begin(), out.chown.end(), ':') > 1)
      return bad(in, fmt::format("--chown '{}': expected USER[:GROUP]", out.chown));
  }
  if (auto it = in.flags.find("chmod"); it != in.flags.end()) {
    const std::string& m = it->second;
    bool octal = !m.empty() && m.size() <= 4 &&
                 std::all_of(m.begin(), m.end(), [](char c) { return c >= '0' && c <= '7'; });
    if (!octal) return bad(in, fmt::format("--chmod '{}': expected an octal mode", m));
    out.chmod = static_cast<unsigned>(std::stoul(m, nullptr, 8));
  }
  return out;
}

std::vector<std::string> command_args(const Instruction& in) {
  if (in.json) return in.json_args;
  return {"/bin/sh", "-c", in.rest};
}

IgnoreRules IgnoreRules::parse(std::string_view text) {
  IgnoreRules out;
  for (const auto& raw : split(text, '\n')) {
    std::string_view line = trim_ws(raw);
    if (line.empty() || line.front() == '#') continue;
    Rule r;
    if (line.front() == '!') {
      r.negate = true;
      line = trim_ws(line.substr(1));
    }
    while (line.starts_with("./")) line.remove_prefix(2);
    while (line.starts_with('/')) line.remove_prefix(1);
    while (line.ends_with('/')) line.remove_suffix(1);
    if (line.empty()) continue;
    r.pattern = std::string(line);
    out.rules_.push_back(std::move(r));
  }
  return out;
}

namespace {

// Matches pattern against path component by component; "**" matches any number of them.
bool match_components(const std::vector<std::string>& pat, size_t pi,
                      const std::vector<std::string>& path, size_t si) {
  if (pi == pat.size()) return si == path.size();
  if (pat[pi] == "**") {
    for (size_t k = si; k <= path.size(); ++k)
      if (match_components(pat, pi + 1, path, k)) return true;
    return false;
  }
  if (si == path.size()) return false;
  if (::fnmatch(pat[pi].c_str(), path[si].c_str(), 0) != 0) return false;
  return match_components(pat, pi + 1, path, si + 1);
}

bool rule_matches(const std::string& pattern, std::string_view path) {
  auto pat = split(pattern, '/');
  auto parts = split(path, '/');
  // A pattern matching a parent directory matches everything under it.
  for (size_t n = 1; n <= parts.size(); ++n) {
    std::vector<std::string> prefix(parts.begin(), parts.begin() + static_cast<long>(n));
    if (match_components(pat, 0, prefix, 0)) return true;
  }
  return false;
}

}  // namespace

bool IgnoreRules::excluded(std::string_view path) const {
  bool out = false;
  for (const auto& r : rules_)
    if (r.negate == out && rule_matches(r.pattern, path)) out = !r.negate;
  return out;
}

}  // namespace vireo::image::build
