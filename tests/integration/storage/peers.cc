#include "peers.h"

#include "base/ids.h"
#include "base/strings.h"

extern char** environ;

namespace vireo::storage::testing {

NbdProcess::NbdProcess(const std::vector<std::string>& args, const std::string& program)
    : ReadyProcess(program, args) {
  if (!ready()) return;
  auto words = split(ready_line(), ' ');
  addresses_.assign(words.begin() + 1, words.end());
}

}  // namespace vireo::storage::testing
