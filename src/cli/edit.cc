// Editing any object as JSON in $EDITOR (profile edit, vm edit).
#include <cstdlib>

#include "base/file.h"
#include "base/ids.h"
#include "cli/context.h"

namespace vireo::cli {

Result<void> edit_in_editor(Context& ctx, const std::string& collection, const std::string& name) {
  auto* c = TRY(ctx.client());
  auto obj = TRY(c->get(collection, name));
  auto path = std::filesystem::temp_directory_path() /
              fmt::format("vireo-{}-{}.json", collection, random_hex(6));
  TRY(write_file_atomic(path, dump_json(obj.data, 2) + "\n", 0600));
  const char* editor = std::getenv("VISUAL") ? std::getenv("VISUAL") : std::getenv("EDITOR");
  std::string cmd = std::string(editor ? editor : "vi") + " " + path.string();
  int rc = std::system(cmd.c_str());
  auto text = read_file(path);
  std::filesystem::remove(path);
  if (rc != 0)
    return make_error(ErrorCode::kCancelled, "editor exited with status {}; nothing changed", rc);
  Json spec = TRY(parse_json(TRY(std::move(text))));
  TRY(c->replace(collection, name, spec, obj.etag));
  return {};
}

}  // namespace vireo::cli
