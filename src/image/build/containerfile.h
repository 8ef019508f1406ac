#pragma once
// Containerfile (Dockerfile) parsing for `vireo image build`: the text → typed instructions, and
// the shell-like word processing (quotes, escapes, $VAR / ${VAR} / ${VAR:-default} substitution)
// Docker applies to the arguments of FROM, COPY, ADD, ENV, ARG, WORKDIR, USER, EXPOSE and LABEL.
// RUN, CMD and ENTRYPOINT are not substituted: their shell does it.
//
// The file is untrusted input: every problem is one line naming the line number and what is
// wrong ("line 4: unknown instruction 'RUNN'"). parse_containerfile() also checks every
// instruction's arguments with no variables set, so a malformed one fails before the build does
// any work. Also here: the .containerignore / .dockerignore matcher of the build context.
// Pure functions, no I/O; thread-safe.
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace vireo::image::build {

enum class Keyword {
  kFrom,
  kArg,
  kRun,
  kCmd,
  kEntrypoint,
  kCopy,
  kAdd,
  kEnv,
  kWorkdir,
  kUser,
  kExpose,
  kLabel,
};
std::string_view keyword_name(Keyword k);

struct Instruction {
  Keyword keyword = Keyword::kRun;
  int line = 0;                              // where it starts (1-based)
  std::string text;                          // "RUN make all": continuations joined, for messages
  std::string rest;                          // the arguments after the flags, as written
  std::map<std::string, std::string> flags;  // COPY/ADD: "chown", "chmod"
  bool json = false;                         // exec / JSON form: json_args holds the array
  std::vector<std::string> json_args;
};

struct Containerfile {
  std::vector<Instruction> instructions;  // leading ARGs, then FROM, then the rest
};

inline constexpr size_t kMaxContainerfileSize = 1 << 20;

[[nodiscard]] Result<Containerfile> parse_containerfile(std::string_view text);

// The value of a variable, nullopt when unset.
using Lookup = std::function<std::optional<std::string>(std::string_view name)>;

// One word: quotes removed ('...' literal; "..." with \" \\ \$ escapes and substitution),
// backslash escapes outside quotes, $VAR / ${VAR} / ${VAR:-w} / ${VAR-w} / ${VAR:+w} / ${VAR+w}
// / ${VAR:?msg} substituted. Whitespace is kept.
[[nodiscard]] Result<std::string> expand_word(std::string_view text, const Lookup& vars);
// Splits at unquoted whitespace, then expands each word.
[[nodiscard]] Result<std::vector<std::string>> expand_words(std::string_view text,
                                                            const Lookup& vars);

// The typed arguments of an instruction, evaluated with the variables in effect.
struct From {
  std::string image;  // "scratch" or a reference
};
[[nodiscard]] Result<From> from_args(const Instruction& in, const Lookup& vars);

struct ArgDecl {
  std::string name;
  std::optional<std::string> default_value;
};
[[nodiscard]] Result<std::vector<ArgDecl>> arg_decls(const Instruction& in, const Lookup& vars);

// ENV and LABEL: "K=V K2=V2", or the older "K V with spaces".
[[nodiscard]] Result<std::vector<std::pair<std::string, std::string>>> key_values(
    const Instruction& in, const Lookup& vars);

// WORKDIR and USER: the whole argument as one word.
[[nodiscard]] Result<std::string> single_word(const Instruction& in, const Lookup& vars);

// EXPOSE: "80/tcp", "53/udp", "8000-8010/tcp" (the protocol defaults to tcp).
[[nodiscard]] Result<std::vector<std::string>> ports(const Instruction& in, const Lookup& vars);

struct CopyArgs {
  std::vector<std::string> sources;  // relative to the context, as written (after substitution)
  std::string dest;
  std::string chown;              // "" or USER[:GROUP]
  std::optional<unsigned> chmod;  // --chmod=0755
};
[[nodiscard]] Result<CopyArgs> copy_args(const Instruction& in, const Lookup& vars);

// RUN, CMD, ENTRYPOINT: the exec form's array, or {"/bin/sh", "-c", text}.
std::vector<std::string> command_args(const Instruction& in);

// A .containerignore / .dockerignore: one pattern per line, '#' comments, '!' re-includes,
// fnmatch(3) wildcards per path component, "**" for any number of components. A pattern
// matching a directory excludes everything under it (unless a later '!' pattern re-includes).
class IgnoreRules {
 public:
  static IgnoreRules parse(std::string_view text);
  // path: relative to the context, '/'-separated, no leading "./".
  bool excluded(std::string_view path) const;
  bool empty() const { return rules_.empty(); }

 private:
  struct Rule {
    std::string pattern;
    bool negate = false;
  };
  std::vector<Rule> rules_;
};

}  // namespace vireo::image::build
