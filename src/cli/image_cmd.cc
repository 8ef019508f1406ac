// vireo image: the host's OCI image store through vireod (/1.0/images): import files and
// directories on the daemon's host, list, show, tag, remove, prune, export.
#include <filesystem>

#include "api/operation.h"
#include "base/strings.h"
#include "cli/context.h"
#include "cli/image_common.h"

namespace vireo::cli {

namespace {

struct ImageFlags {
  std::string source, tag, type, ref, new_tag, output, export_type = "oci-layout";
  std::string destination, creds, ca_file;
  bool tls_verify = true;
};

template <typename F>
void run(CLI::App* cmd, Context& ctx, F body) {
  cmd->callback([&ctx, body] { ctx.outcome = body(); });
}

void add_import_command(CLI::App* noun, Context& ctx, ImageFlags& f) {
  auto* cmd =
      noun->add_subcommand("import", "Import an image from a file or directory on vireod's host");
  cmd->add_option("source", f.source,
                  "Root file system tar, OCI layout, OCI or docker archive, or a VM disk image "
                  "(qcow2 or raw)")
      ->required();
  cmd->add_option("--tag,-t", f.tag, "NAME[:TAG] to store it under (optional for docker-archive)");
  cmd->add_option("--type", f.type, "Source type (detected when omitted)")
      ->check(CLI::IsMember(
          {"rootfs-tar", "oci-layout", "oci-archive", "docker-archive", "qcow2", "raw"}));
  run(cmd, ctx, [&ctx, &f]() -> Result<void> {
    Json source = {{"path", std::filesystem::absolute(f.source).lexically_normal().string()}};
    if (!f.type.empty()) source["type"] = f.type;
    Json body = {{"source", source}};
    if (!f.tag.empty()) body["tag"] = f.tag;
    print_image(ctx, TRY(run_image_operation(ctx, kImages, body)));
    return {};
  });
}

void add_export_command(CLI::App* noun, Context& ctx, ImageFlags& f) {
  auto* cmd = noun->add_subcommand(
      "export", "Write an image as an OCI layout, an OCI or docker archive, or a rootfs tar");
  cmd->add_option("image", f.ref, "NAME[:TAG] or NAME@DIGEST")->required();
  cmd->add_option("--type", f.export_type,
                  "oci-layout (a directory), oci-archive, docker-archive or rootfs-tar (flattened)")
      ->check(CLI::IsMember({"oci-layout", "oci-archive", "docker-archive", "rootfs-tar"}))
      ->capture_default_str();
  cmd->add_option("--output,-o", f.output, "Directory or file to write (on vireod's host)")
      ->required();
  run(cmd, ctx, [&ctx, &f]() -> Result<void> {
    Json body = {{"type", f.export_type},
                 {"path", std::filesystem::absolute(f.output).lexically_normal().string()}};
    Json result = TRY(run_image_operation(ctx, TRY(image_path(f.ref, "/export")), body));
    print(ctx.format(), result, {{"exported:", plain(result.value("path", Json()))}});
    return {};
  });
}

void add_query_commands(CLI::App* noun, Context& ctx, ImageFlags& f) {
  run(noun->add_subcommand("ls", "List images"), ctx, [&ctx]() -> Result<void> {
    Json images = TRY(image_request(ctx, "GET", kImages));
    std::vector<std::vector<std::string>> rows = {
        {"NAME", "TYPE", "DIGEST", "SIZE", "LAYERS", "CREATED"}};
    for (const auto& img : images)
      for (const auto& tag : img.value("tags", Json::array()))
        rows.push_back({plain(tag), plain(img.value("type", Json("container"))),
                        short_digest(img.value("digest", Json())),
                        bytes_text(img.value("size", Json())), plain(img.value("layers", Json())),
                        plain(img.value("created", Json()))});
    print(ctx.format(), images, rows);
    return {};
  });

  auto* show = noun->add_subcommand("show", "Show an image: digest, layers, process settings");
  show->add_option("image", f.ref)->required();
  run(show, ctx, [&ctx, &f]() -> Result<void> {
    print_image(ctx, TRY(image_request(ctx, "GET", TRY(image_path(f.ref)))));
    return {};
  });
}

void add_change_commands(CLI::App* noun, Context& ctx, ImageFlags& f) {
  auto* tag = noun->add_subcommand("tag", "Give an image another NAME[:TAG]");
  tag->add_option("image", f.ref)->required();
  tag->add_option("tag", f.new_tag)->required();
  run(tag, ctx, [&ctx, &f]() -> Result<void> {
    Json body = {{"tag", f.new_tag}};
    TRY(image_request(ctx, "POST", TRY(image_path(f.ref, "/tag")), &body));
    return {};
  });

  auto* rm = noun->add_subcommand("rm", "Remove an image's tag (prune frees its data)");
  rm->add_option("image", f.ref)->required();
  run(rm, ctx, [&ctx, &f]() -> Result<void> {
    TRY(image_request(ctx, "DELETE", TRY(image_path(f.ref))));
    return {};
  });

  run(noun->add_subcommand("prune", "Delete blobs and layers no image uses"), ctx,
      [&ctx]() -> Result<void> {
        Json report = TRY(image_request(ctx, "POST", kImages + "/prune"));
        print(ctx.format(), report,
              {{"freed:", bytes_text(report.value("bytes_freed", Json()))},
               {"blobs removed:", plain(report.value("blobs_removed", Json()))},
               {"layers removed:", plain(report.value("layers_removed", Json()))}});
        return {};
      });
}

void add_registry_flags(CLI::App* cmd, ImageFlags& f) {
  cmd->add_option("--creds", f.creds, "USER[:PASSWORD] for the registry");
  cmd->add_option("--tls-verify", f.tls_verify,
                  "Verify the registry's certificate, and never fall back to plain HTTP")
      ->capture_default_str();
  cmd->add_option("--ca-file", f.ca_file, "PEM file of a CA to trust (on vireod's host)");
}

// The registry part of a pull or push body.
Json registry_body(const ImageFlags& f) {
  Json body = Json::object();
  if (!f.tls_verify) body["insecure"] = true;
  if (!f.ca_file.empty())
    body["ca_file"] = std::filesystem::absolute(f.ca_file).lexically_normal().string();
  if (!f.creds.empty()) {
    auto colon = f.creds.find(':');
    body["credentials"] = {
        {"username", f.creds.substr(0, colon)},
        {"password", colon == std::string::npos ? "" : f.creds.substr(colon + 1)}};
  }
  return body;
}

void add_transfer_commands(CLI::App* noun, Context& ctx, ImageFlags& f) {
  auto* pull = noun->add_subcommand("pull", "Download an image from a registry");
  pull->add_option("reference", f.ref, "REGISTRY/NAME[:TAG|@DIGEST]")->required();
  pull->add_option("--tag,-t", f.tag, "Store it under this NAME[:TAG] (default: the reference)");
  add_registry_flags(pull, f);
  run(pull, ctx, [&ctx, &f]() -> Result<void> {
    Json body = registry_body(f);
    body["ref"] = f.ref;
    if (!f.tag.empty()) body["tag"] = f.tag;
    print_image(ctx, TRY(run_image_operation(ctx, kImages + "/pull", body)));
    return {};
  });
  auto* push = noun->add_subcommand("push", "Upload an image to a registry");
  push->add_option("image", f.ref, "The local image, NAME[:TAG]")->required();
  push->add_option("destination", f.destination,
                   "REGISTRY/NAME[:TAG] (default: the image's own name)");
  add_registry_flags(push, f);
  run(push, ctx, [&ctx, &f]() -> Result<void> {
    Json body = registry_body(f);
    if (!f.destination.empty()) body["destination"] = f.destination;
    Json r = TRY(run_image_operation(ctx, TRY(image_path(f.ref, "/push")), body));
    print(ctx.format(), r,
          {{"pushed:", plain(r.value("destination", Json()))},
           {"digest:", plain(r.value("digest", Json()))},
           {"blobs sent:", plain(r.value("blobs_sent", Json())) + " (" +
                               bytes_text(r.value("bytes_sent", Json())) + "), " +
                               plain(r.value("blobs_present", Json())) + " already there"}});
    return {};
  });
}

}  // namespace

void add_image_commands(CLI::App& app, Context& ctx) {
  static ImageFlags flags;
  auto* noun = app.add_subcommand(
      "image", "Manage OCI images (pull, push, build, import, export, tag, prune)");
  noun->require_subcommand(1);
  add_import_command(noun, ctx, flags);
  add_query_commands(noun, ctx, flags);
  add_change_commands(noun, ctx, flags);
  add_export_command(noun, ctx, flags);
  add_transfer_commands(noun, ctx, flags);
  add_image_build_command(noun, ctx);
}

}  // namespace vireo::cli
