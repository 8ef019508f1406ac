// vireo image: the host's OCI image store through vireod (/1.0/images): import files and
// directories on the daemon's host, list, show, tag, remove, prune, export.
#include <filesystem>

#include "api/operation.h"
#include "base/strings.h"
#include "cli/context.h"

namespace vireo::cli {

namespace {

const std::string kImages = "/1.0/images";

struct ImageFlags {
  std::string source, tag, type, ref, new_tag, output, export_type = "oci-layout";
};

// The URL of an image. References are checked for characters that would change the URL's
// meaning; one with a '/' goes in ?ref= since it cannot be a single path segment.
Result<std::string> image_path(const std::string& ref, const std::string& suffix = "") {
  bool ok = !ref.empty() && ref != "-";
  for (char c : ref)
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) ||
                std::string_view("._-/:@").find(c) != std::string_view::npos);
  if (!ok) return make_error(ErrorCode::kInvalidArgument, "invalid image reference '{}'", ref);
  if (ref.find('/') == std::string::npos) return kImages + "/" + ref + suffix;
  return kImages + "/-" + suffix + "?ref=" + ref;
}

Result<Json> request(Context& ctx, const char* method, const std::string& path,
                     const Json* body = nullptr) {
  return TRY(TRY(ctx.client())->request(method, path, body)).body;
}

// Starts the operation the daemon answered with and follows it; returns its result.
Result<Json> run_operation(Context& ctx, const std::string& path, const Json& body) {
  Json reply = TRY(request(ctx, "POST", path, &body));
  auto op = TRY(api::operation_from_json(reply));
  auto done = TRY(follow_with_progress(ctx, op.id));
  return done.result;
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
  std::vector<std::vector<std::string>> rows = {
      {"tags:", tags},
      {"digest:", plain(img.value("digest", Json()))},
      {"size:", bytes_text(img.value("size", Json()))},
      {"platform:",
       plain(img.value("os", Json())) + "/" + plain(img.value("architecture", Json()))},
  };
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

template <typename F>
void run(CLI::App* cmd, Context& ctx, F body) {
  cmd->callback([&ctx, body] { ctx.outcome = body(); });
}

void add_import_command(CLI::App* noun, Context& ctx, ImageFlags& f) {
  auto* cmd =
      noun->add_subcommand("import", "Import an image from a file or directory on vireod's host");
  cmd->add_option("source", f.source, "Root file system tar, OCI layout, OCI or docker archive")
      ->required();
  cmd->add_option("--tag,-t", f.tag, "NAME[:TAG] to store it under (optional for docker-archive)");
  cmd->add_option("--type", f.type, "Source type (detected when omitted)")
      ->check(CLI::IsMember({"rootfs-tar", "oci-layout", "oci-archive", "docker-archive"}));
  run(cmd, ctx, [&ctx, &f]() -> Result<void> {
    Json source = {{"path", std::filesystem::absolute(f.source).lexically_normal().string()}};
    if (!f.type.empty()) source["type"] = f.type;
    Json body = {{"source", source}};
    if (!f.tag.empty()) body["tag"] = f.tag;
    print_image(ctx, TRY(run_operation(ctx, kImages, body)));
    return {};
  });
}

void add_export_command(CLI::App* noun, Context& ctx, ImageFlags& f) {
  auto* cmd = noun->add_subcommand("export", "Write an image as an OCI layout or archive");
  cmd->add_option("image", f.ref, "NAME[:TAG] or NAME@DIGEST")->required();
  cmd->add_option("--type", f.export_type, "oci-layout (a directory) or oci-archive (a tar)")
      ->check(CLI::IsMember({"oci-layout", "oci-archive"}))
      ->capture_default_str();
  cmd->add_option("--output,-o", f.output, "Directory or file to write (on vireod's host)")
      ->required();
  run(cmd, ctx, [&ctx, &f]() -> Result<void> {
    Json body = {{"type", f.export_type},
                 {"path", std::filesystem::absolute(f.output).lexically_normal().string()}};
    Json result = TRY(run_operation(ctx, TRY(image_path(f.ref, "/export")), body));
    print(ctx.format(), result, {{"exported:", plain(result.value("path", Json()))}});
    return {};
  });
}

void add_query_commands(CLI::App* noun, Context& ctx, ImageFlags& f) {
  run(noun->add_subcommand("ls", "List images"), ctx, [&ctx]() -> Result<void> {
    Json images = TRY(request(ctx, "GET", kImages));
    std::vector<std::vector<std::string>> rows = {{"NAME", "DIGEST", "SIZE", "LAYERS", "CREATED"}};
    for (const auto& img : images)
      for (const auto& tag : img.value("tags", Json::array()))
        rows.push_back({plain(tag), short_digest(img.value("digest", Json())),
                        bytes_text(img.value("size", Json())), plain(img.value("layers", Json())),
                        plain(img.value("created", Json()))});
    print(ctx.format(), images, rows);
    return {};
  });

  auto* show = noun->add_subcommand("show", "Show an image: digest, layers, process settings");
  show->add_option("image", f.ref)->required();
  run(show, ctx, [&ctx, &f]() -> Result<void> {
    print_image(ctx, TRY(request(ctx, "GET", TRY(image_path(f.ref)))));
    return {};
  });
}

void add_change_commands(CLI::App* noun, Context& ctx, ImageFlags& f) {
  auto* tag = noun->add_subcommand("tag", "Give an image another NAME[:TAG]");
  tag->add_option("image", f.ref)->required();
  tag->add_option("tag", f.new_tag)->required();
  run(tag, ctx, [&ctx, &f]() -> Result<void> {
    Json body = {{"tag", f.new_tag}};
    TRY(request(ctx, "POST", TRY(image_path(f.ref, "/tag")), &body));
    return {};
  });

  auto* rm = noun->add_subcommand("rm", "Remove an image's tag (prune frees its data)");
  rm->add_option("image", f.ref)->required();
  run(rm, ctx, [&ctx, &f]() -> Result<void> {
    TRY(request(ctx, "DELETE", TRY(image_path(f.ref))));
    return {};
  });

  run(noun->add_subcommand("prune", "Delete blobs and layers no image uses"), ctx,
      [&ctx]() -> Result<void> {
        Json report = TRY(request(ctx, "POST", kImages + "/prune"));
        print(ctx.format(), report,
              {{"freed:", bytes_text(report.value("bytes_freed", Json()))},
               {"blobs removed:", plain(report.value("blobs_removed", Json()))},
               {"layers removed:", plain(report.value("layers_removed", Json()))}});
        return {};
      });
}

}  // namespace

void add_image_commands(CLI::App& app, Context& ctx) {
  static ImageFlags flags;
  auto* noun = app.add_subcommand("image", "Manage OCI images (import, export, tag, prune)");
  noun->require_subcommand(1);
  add_import_command(noun, ctx, flags);
  add_query_commands(noun, ctx, flags);
  add_change_commands(noun, ctx, flags);
  add_export_command(noun, ctx, flags);
}

}  // namespace vireo::cli
