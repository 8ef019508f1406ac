#include "cli/image_common.h"

#include "api/operation.h"
#include "base/strings.h"

namespace vireo::cli {

const std::string kImages = "/1.0/images";

// The URL of an image. References are checked for characters that would change the URL's
// meaning; one with a '/' goes in ?ref= since it cannot be a single path segment.
Result<std::string> image_path(const std::string& ref, const std::string& suffix) {
  bool ok = !ref.empty() && ref != "-";
  for (char c : ref)
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) ||
                std::string_view("._-/:@").find(c) != std::string_view::npos);
  if (!ok) return make_error(ErrorCode::kInvalidArgument, "invalid image reference '{}'", ref);
  // Names that are also literal routes (/1.0/images/build, /prune, /pull) go in ?ref= too.
  bool route_word = ref == "build" || ref == "prune" || ref == "pull";
  if (ref.find('/') == std::string::npos && !route_word) return kImages + "/" + ref + suffix;
  return kImages + "/-" + suffix + "?ref=" + ref;
}

Result<Json> image_request(Context& ctx, const char* method, const std::string& path,
                           const Json* body) {
  return TRY(TRY(ctx.client())->request(method, path, body)).body;
}

// Starts the operation the daemon answered with and follows it; returns its result.
Result<Json> run_image_operation(Context& ctx, const std::string& path, const Json& body) {
  return run_operation(ctx, "POST", path, &body);
}

std::string short_digest(const Json& digest) {
  std::string d = plain(digest);
  auto colon = d.find(':');
  return colon == std::string::npos ? d : d.substr(colon + 1, 12);
}

std::string bytes_text(const Json& v) {
  return v.is_number_unsigned() ? format_bytes(v.get<uint64_t>()) : plain(v);
}

void print_image(Context& ctx, const Json& img) {
  std::string tags;
  for (const auto& t : img.value("tags", Json::array()))
    tags += (tags.empty() ? "" : ", ") + plain(t);
  const Json disk = img.value("disk", Json());
  std::vector<std::vector<std::string>> rows = {
      {"tags:", tags},
      {"type:", plain(img.value("type", Json("container")))},
      {"digest:", plain(img.value("digest", Json()))},
      {"size:", bytes_text(img.value("size", Json()))},
  };
  if (disk.is_object())
    rows.push_back({"disk:", plain(disk.value("format", Json())) + ", virtual size " +
                                 bytes_text(disk.value("virtual_size", Json()))});
  else
    rows.push_back({"platform:", plain(img.value("os", Json())) + "/" +
                                     plain(img.value("architecture", Json()))});
  if (img.contains("created")) rows.push_back({"created:", plain(img["created"])});
  const Json layers = img.value("layers", Json::array());
  if (layers.is_array()) {
    rows.push_back({"layers:", std::to_string(layers.size())});
    for (const auto& l : layers)
      rows.push_back(
          {"", plain(l.value("digest", Json())) + "  " + bytes_text(l.value("size", Json()))});
  }
  print(ctx.format(), img, rows);
}

}  // namespace vireo::cli
