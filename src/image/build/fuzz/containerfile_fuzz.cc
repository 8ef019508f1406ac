// Fuzz target: the Containerfile parser, then every parsed instruction's arguments evaluated
// with variables set (substitution, quotes, JSON forms), and the ignore-file matcher.
#include <string_view>

#include "base/log.h"
#include "image/build/containerfile.h"
#include "storage/fuzz/fuzz.h"

using namespace vireo;
using namespace vireo::image::build;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static bool quiet = (spdlog::set_level(spdlog::level::off), true);
  (void)quiet;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  Lookup vars = [](std::string_view name) -> std::optional<std::string> {
    if (name.empty() || name[0] == 'U') return std::nullopt;
    return std::string(name) + " ${x:-y} \"'";
  };
  if (auto file = parse_containerfile(text)) {
    for (const auto& in : file->instructions) {
      (void)from_args(in, vars);
      (void)arg_decls(in, vars);
      (void)key_values(in, vars);
      (void)single_word(in, vars);
      (void)ports(in, vars);
      (void)copy_args(in, vars);
      (void)command_args(in);
    }
  }
  (void)expand_words(text, vars);
  auto rules = IgnoreRules::parse(text);
  (void)rules.excluded("a/b/c.txt");
  (void)rules.excluded(text.substr(0, 64));
  return 0;
}

std::vector<std::string> vireo_fuzz_seeds() {
  return {
      "# syntax=docker/dockerfile:1\nARG BASE=busybox\nFROM ${BASE:-x} AS b\n"
      "ENV A=1 B=\"two words\" C=${A:+set}\nRUN echo $A && \\\n  echo done\n"
      "COPY --chown=1:2 --chmod=0755 [\"a b\", \"/dst/\"]\nWORKDIR /app\nUSER app:staff\n"
      "EXPOSE 80 53/udp 8000-8010\nLABEL k=v \"x y\"=z\nCMD [\"sh\"]\nENTRYPOINT run me\n",
      "FROM scratch\nADD x.tar /\nRUN [\"/bin/sh\", \"-c\", \"ls\"]\n",
      "FROM a\nENV k v w\nRUN [ -f x ]\nCOPY '$X' \"${Y:?no}\" /\n",
      "*.log\n!keep.log\nbuild/**/tmp\n# c\n/abs/\n",
  };
}
