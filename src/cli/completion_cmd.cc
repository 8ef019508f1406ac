#include <iostream>

#include "cli/context.h"

namespace vireo::cli {

namespace {

// Collects, for every command path (" operation", " profile create"...), the words that may
// follow: its subcommands and its long options.
void collect(const CLI::App& app, const std::string& path,
             std::vector<std::pair<std::string, std::string>>& out) {
  std::string words;
  for (const auto* sub :
       app.get_subcommands([](const CLI::App* a) { return !a->get_description().empty(); })) {
    words += sub->get_name() + " ";
  }
  for (const auto* opt : app.get_options()) {
    for (const auto& name : opt->get_lnames()) words += "--" + name + " ";
  }
  out.emplace_back(path, words);
  for (const auto* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    collect(*sub, path + " " + sub->get_name(), out);
}

std::string bash_script(const CLI::App& app) {
  std::vector<std::pair<std::string, std::string>> paths;
  collect(app, "", paths);
  std::string table;
  for (const auto& [path, words] : paths) table += fmt::format("  [\"{}\"]=\"{}\"\n", path, words);
  return fmt::format(R"(# bash completion for vireo: source <(vireo completion bash)
declare -A _vireo_words=(
{})
_vireo() {{
  local cur="${{COMP_WORDS[COMP_CWORD]}}" path="" i w
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="${{COMP_WORDS[i]}}"
    [[ "$w" == -* ]] && continue
    [[ -n "${{_vireo_words["$path $w"]+x}}" ]] && path="$path $w"
  done
  COMPREPLY=($(compgen -W "${{_vireo_words["$path"]}}" -- "$cur"))
}}
complete -F _vireo vireo
)",
                     table);
}

}  // namespace

void add_completion_command(CLI::App& app, Context& ctx) {
  static std::string shell;
  auto* cmd = app.add_subcommand("completion", "Print a shell completion script (bash)");
  cmd->add_option("shell", shell, "Shell")->required()->check(CLI::IsMember({"bash"}));
  cmd->callback([&app, &ctx] {
    std::cout << bash_script(app);
    ctx.outcome = {};
  });
}

}  // namespace vireo::cli
