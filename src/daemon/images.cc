#include "daemon/images.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>

#include "api/event.h"
#include "api/operation.h"
#include "base/fd.h"
#include "base/log.h"
#include "base/strings.h"
#include "daemon/image_build.h"
#include "daemon/image_manager.h"
#include "image/image_store.h"
#include "image/remote/transfer.h"

namespace vireo::daemon {

namespace {

namespace fs = std::filesystem;
using server::Method;
using server::Request;
using server::Response;

constexpr const char* kImages = kImagesPath;
constexpr int kMaxTarEntriesScanned = 100000;

// The image named by the request: ?ref= wins over the path segment (see images.h).
Result<std::string> ref_of(const Request& req) {
  auto q = req.query.find("ref");
  std::string ref = q != req.query.end() ? q->second : "";
  if (ref.empty()) {
    auto p = req.params.find("name");
    if (p != req.params.end() && p->second != "-") ref = p->second;
  }
  if (ref.empty())
    return make_error(ErrorCode::kInvalidArgument, "missing image reference (path or ?ref=)");
  TRY(image::Reference::parse(ref));
  return ref;
}

Result<std::string> string_field(const Json& body, const char* key, const char* where) {
  if (!body.is_object() || !body.contains(key) || !body[key].is_string() ||
      body[key].get<std::string>().empty())
    return make_error(ErrorCode::kInvalidArgument, "field '{}{}' is required (a string)", where,
                      key);
  return body[key].get<std::string>();
}

Result<fs::path> host_path(const std::string& path, const char* what) {
  fs::path p(path);
  if (!p.is_absolute())
    return make_error(ErrorCode::kInvalidArgument, "{} '{}' must be an absolute path", what, path);
  return p.lexically_normal();
}

// The size field of a tar header: octal, or base-256 when its first byte has the high bit.
uint64_t tar_size(const unsigned char* field) {
  uint64_t size = 0;
  if (field[0] & 0x80) {
    for (int i = 1; i < 12; ++i) size = (size << 8) | field[i];
    return size;
  }
  for (int i = 0; i < 12 && field[i] >= '0' && field[i] <= '7'; ++i)
    size = size * 8 + (field[i] - '0');
  return size;
}

// What a tar file holds, from its headers: an OCI layout (oci-layout at the top), a docker
// save (manifest.json at the top), else a root file system. Compressed files are root file
// systems: archives of images are plain tars.
Result<std::string> detect_tar_type(const fs::path& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return errno_error("open " + path.string());
  std::array<unsigned char, 512> h{};
  bool manifest_json = false;
  off_t offset = 0;
  for (int i = 0; i < kMaxTarEntriesScanned; ++i) {
    ssize_t n = ::pread(fd.get(), h.data(), h.size(), offset);
    if (n < 0) return errno_error("read " + path.string());
    if (n < static_cast<ssize_t>(h.size())) break;
    if (i == 0 && ((h[0] == 0x1f && h[1] == 0x8b) ||
                   (h[0] == 0x28 && h[1] == 0xb5 && h[2] == 0x2f && h[3] == 0xfd)))
      return std::string("rootfs-tar");
    if (h[0] == 0) break;  // end-of-archive block
    std::string name(reinterpret_cast<const char*>(h.data()),
                     ::strnlen(reinterpret_cast<const char*>(h.data()), 100));
    if (name.starts_with("./")) name.erase(0, 2);
    if (name == "oci-layout") return std::string("oci-archive");
    if (name == "manifest.json") manifest_json = true;
    uint64_t size = tar_size(h.data() + 124);
    if (size > (uint64_t{1} << 50)) break;
    offset += 512 + static_cast<off_t>((size + 511) / 512 * 512);
  }
  return std::string(manifest_json ? "docker-archive" : "rootfs-tar");
}

// A VM disk (qcow2, or raw with a boot signature or an ext superblock) unless the file is a
// POSIX tar ("ustar" at 257): a tar header can hold anything at 510 or 1080.
Result<std::optional<std::string>> detect_disk_type(const fs::path& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return errno_error("open " + path.string());
  std::string head(2048, '\0');
  ssize_t n = ::pread(fd.get(), head.data(), head.size(), 0);
  if (n < 0) return errno_error("read " + path.string());
  head.resize(static_cast<size_t>(n));
  if (head.size() >= 262 && head.compare(257, 5, "ustar") == 0) return std::nullopt;
  auto format = image::detect_disk_format(std::string_view(head));
  if (!format) return std::nullopt;
  return std::string(image::to_string(*format));
}

bool is_disk_type(const std::string& type) {
  return type == "qcow2" || type == "raw";
}

Result<std::string> detect_type(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return errno_error("import source " + path.string());
  if (S_ISDIR(st.st_mode)) {
    if (::access((path / "oci-layout").c_str(), F_OK) != 0)
      return make_error(ErrorCode::kInvalidArgument,
                        "import source {}: a directory without an oci-layout file is not an OCI "
                        "image layout",
                        path.string());
    return std::string("oci-layout");
  }
  if (!S_ISREG(st.st_mode))
    return make_error(ErrorCode::kInvalidArgument,
                      "import source {}: not a regular file or a directory", path.string());
  if (auto disk = TRY(detect_disk_type(path))) return *disk;
  return detect_tar_type(path);
}

Result<image::ImageInfo> import(image::ImageStore& store, const std::string& type,
                                const fs::path& path, const std::string& ref) {
  if (type == "rootfs-tar") return store.import_rootfs_tar(path, ref);
  if (type == "oci-layout") return store.import_oci_layout(path, ref);
  if (type == "oci-archive") return store.import_oci_archive(path, ref);
  if (is_disk_type(type))
    return store.import_vm_disk(path, ref, TRY(image::parse_disk_format(type)));
  return store.import_docker_archive(path, ref);
}

void add_import_route(server::Router& router, const std::shared_ptr<ImageManager>& m) {
  router.add_sync(Method::kPost, kImages, [m](Request& req) -> Result<Response> {
    Json body = TRY(req.json_body());
    if (!body.is_object() || !body.contains("source") || !body["source"].is_object())
      return make_error(ErrorCode::kInvalidArgument,
                        "body must be {\"source\": {\"type\": ..., \"path\": ...}, \"tag\": ...}");
    const Json& source = body["source"];
    fs::path path = TRY(host_path(TRY(string_field(source, "path", "source.")), "source.path"));
    std::string type = source.value("type", "");
    if (!source.contains("type") || type == "auto") {
      type = TRY(detect_type(path));
    } else if (type != "rootfs-tar" && type != "oci-layout" && type != "oci-archive" &&
               type != "docker-archive" && !is_disk_type(type)) {
      return make_error(ErrorCode::kInvalidArgument,
                        "source.type '{}': expected rootfs-tar, oci-layout, oci-archive, "
                        "docker-archive, qcow2, raw or auto",
                        type);
    } else if (::access(path.c_str(), R_OK) != 0) {
      return errno_error("import source " + path.string());
    }
    std::string tag = body.value("tag", "");
    if (!body.contains("tag") && type != "docker-archive")
      return make_error(ErrorCode::kInvalidArgument, "field 'tag' is required (NAME[:TAG])");
    if (!tag.empty()) {
      auto ref = TRY_CTX(image::Reference::parse(tag), "tag");
      if (ref.digest)
        return make_error(ErrorCode::kInvalidArgument, "tag '{}': must not name a digest", tag);
      tag = ref.tagged();
    }
    // A disk is checked now (header and tables: quick), so a bad one is a 400, not an operation.
    if (is_disk_type(type)) TRY(image::inspect_disk(path, TRY(image::parse_disk_format(type))));
    TRY(m->store());
    auto op = m->operations().start(
        fmt::format("Import image {} ({} {})", tag.empty() ? "from archive" : tag, type,
                    path.string()),
        tag.empty() ? Json::object() : Json{{"images", {std::string(kImages) + "/" + tag}}},
        server::Cancellable::kNo,
        [m, type, path, tag](server::OperationContext& ctx) -> Result<Json> {
          ctx.set_progress(0, "importing");
          auto* store = TRY(m->store());
          auto info = TRY(import(*store, type, path, tag));
          std::string name = tag.empty() && !info.tags.empty() ? info.tags.front() : tag;
          m->lifecycle("image-imported", name);
          return image_json(info, true);
        });
    return server::accepted(op);
  });
}

void add_export_route(server::Router& router, const std::shared_ptr<ImageManager>& m) {
  auto handler = [m](Request& req) -> Result<Response> {
    std::string ref = TRY(ref_of(req));
    Json body = TRY(req.json_body());
    std::string type = TRY(string_field(body, "type", ""));
    if (type != "oci-layout" && type != "oci-archive" && type != "docker-archive" &&
        type != "rootfs-tar")
      return make_error(ErrorCode::kInvalidArgument,
                        "type '{}': expected oci-layout, oci-archive, docker-archive or rootfs-tar",
                        type);
    fs::path path = TRY(host_path(TRY(string_field(body, "path", "")), "path"));
    auto* store = TRY(m->store());
    TRY(store->show(ref));  // an unknown image is a 404 now, not a failed operation
    auto op = m->operations().start(
        fmt::format("Export image {} ({} {})", ref, type, path.string()),
        Json{{"images", {std::string(kImages) + "/" + ref}}}, server::Cancellable::kNo,
        [m, ref, type, path](server::OperationContext&) -> Result<Json> {
          auto* s = TRY(m->store());
          if (type == "oci-layout")
            TRY(s->export_oci_layout(ref, path));
          else if (type == "oci-archive")
            TRY(s->export_oci_archive(ref, path));
          else if (type == "docker-archive")
            TRY(s->export_docker_archive(ref, path));
          else
            TRY(s->export_rootfs_tar(ref, path));
          m->lifecycle("image-exported", ref);
          return Json{{"image", ref}, {"type", type}, {"path", path.string()}};
        });
    return server::accepted(op);
  };
  router.add_sync(Method::kPost, std::string(kImages) + "/{name}/export", handler);
}

// Registry options of a pull or push body: {"credentials": {"username", "password"},
// "insecure": bool, "ca_file": ABS}.
Result<image::remote::SessionOptions> session_options(const Json& body) {
  image::remote::SessionOptions o;
  if (body.contains("insecure")) {
    if (!body["insecure"].is_boolean())
      return make_error(ErrorCode::kInvalidArgument, "field 'insecure' must be a boolean");
    o.insecure = body["insecure"].get<bool>();
  }
  if (body.contains("ca_file"))
    o.tls.ca_file = TRY(host_path(TRY(string_field(body, "ca_file", "")), "ca_file")).string();
  if (body.contains("credentials")) {
    const Json& c = body["credentials"];
    o.credentials = image::remote::Credentials{
        TRY(string_field(c, "username", "credentials.")),
        c.is_object() && c.contains("password") && c["password"].is_string()
            ? c["password"].get<std::string>()
            : std::string()};
  }
  return o;
}

// Transfer progress as the operation's percent and stage line.
image::remote::ProgressFn operation_progress(server::OperationContext& ctx) {
  return [&ctx](const image::remote::TransferProgress& p) {
    int percent = p.bytes_total == 0 ? 0 : static_cast<int>(p.bytes_done * 100 / p.bytes_total);
    std::string stage = p.stage;
    if (p.bytes_total > 0)
      stage += fmt::format(" {} / {} ({}/{} blobs)", format_bytes(p.bytes_done),
                           format_bytes(p.bytes_total), p.blobs_done, p.blobs_total);
    ctx.set_progress(std::min(percent, 99), stage);
  };
}

void add_pull_route(server::Router& router, const std::shared_ptr<ImageManager>& m) {
  router.add_sync(
      Method::kPost, std::string(kImages) + "/pull", [m](Request& req) -> Result<Response> {
        Json body = TRY(req.json_body());
        std::string ref = TRY(string_field(body, "ref", ""));
        auto remote = TRY_CTX(image::remote::RemoteRef::parse(ref), "ref");
        image::remote::PullOptions options;
        options.session = TRY(session_options(body));
        if (body.contains("tag")) {
          auto local = TRY_CTX(image::Reference::parse(TRY(string_field(body, "tag", ""))), "tag");
          if (local.digest)
            return make_error(ErrorCode::kInvalidArgument, "tag '{}' must not name a digest",
                              local.str());
          options.local_ref = local.tagged();
        }
        TRY(m->store());
        auto op = m->operations().start(
            fmt::format("Pull image {}", remote.str()), Json::object(), server::Cancellable::kYes,
            [m, ref, options](server::OperationContext& ctx) mutable -> Result<Json> {
              options.progress = operation_progress(ctx);
              options.cancelled = [&ctx] { return ctx.cancelled(); };
              auto info = TRY(image::remote::pull(*TRY(m->store()), ref, options));
              m->lifecycle("image-pulled", info.tags.empty() ? ref : info.tags.front());
              return image_json(info, true);
            });
        return server::accepted(op);
      });
}

void add_push_route(server::Router& router, const std::shared_ptr<ImageManager>& m) {
  router.add_sync(
      Method::kPost, std::string(kImages) + "/{name}/push", [m](Request& req) -> Result<Response> {
        std::string ref = TRY(ref_of(req));
        Json body = TRY(req.json_body());
        std::string destination =
            body.contains("destination") ? TRY(string_field(body, "destination", "")) : ref;
        TRY_CTX(image::remote::RemoteRef::parse(destination), "destination");
        image::remote::TransferOptions options;
        options.session = TRY(session_options(body));
        TRY(TRY(m->store())->show(ref));  // an unknown image is a 404 now
        auto op = m->operations().start(
            fmt::format("Push image {} to {}", ref, destination),
            Json{{"images", {std::string(kImages) + "/" + ref}}}, server::Cancellable::kYes,
            [m, ref, destination, options](server::OperationContext& ctx) mutable -> Result<Json> {
              options.progress = operation_progress(ctx);
              options.cancelled = [&ctx] { return ctx.cancelled(); };
              auto r = TRY(image::remote::push(*TRY(m->store()), ref, destination, options));
              m->lifecycle("image-pushed", ref);
              return Json{{"image", ref},
                          {"destination", r.destination},
                          {"digest", r.manifest_digest.str()},
                          {"blobs_sent", r.blobs_sent},
                          {"blobs_present", r.blobs_present},
                          {"bytes_sent", r.bytes_sent}};
            });
        return server::accepted(op);
      });
}

}  // namespace

std::shared_ptr<ImageManager> add_image_routes(server::Router& router, server::EventHub& events,
                                               server::OperationManager& operations,
                                               const fs::path& state_root) {
  auto m = std::make_shared<ImageManager>(state_root / "images", events, operations);
  const std::string one = std::string(kImages) + "/{name}";

  router.add_sync(Method::kGet, kImages, [m](Request&) -> Result<Response> {
    Json list = Json::array();
    for (const auto& info : TRY(TRY(m->store())->list())) list.push_back(image_json(info, false));
    return Response::json(std::move(list));
  });
  router.add_sync(Method::kGet, one, [m](Request& req) -> Result<Response> {
    std::string ref = TRY(ref_of(req));
    return Response::json(image_json(TRY(TRY(m->store())->show(ref)), true));
  });
  router.add_sync(Method::kDelete, one, [m](Request& req) -> Result<Response> {
    std::string ref = TRY(ref_of(req));
    TRY(TRY(m->store())->remove(ref));
    m->lifecycle("image-deleted", ref);
    return Response::json(Json::object());
  });
  router.add_sync(Method::kPost, one + "/tag", [m](Request& req) -> Result<Response> {
    std::string ref = TRY(ref_of(req));
    Json body = TRY(req.json_body());
    std::string tag = TRY(string_field(body, "tag", ""));
    auto parsed = TRY_CTX(image::Reference::parse(tag), "tag");
    if (parsed.digest)
      return make_error(ErrorCode::kInvalidArgument, "tag '{}': must not name a digest", tag);
    auto* store = TRY(m->store());
    TRY(store->tag(ref, parsed.tagged()));
    m->lifecycle("image-tagged", parsed.tagged());
    return Response::json(image_json(TRY(store->show(parsed.tagged())), true), 201);
  });
  // A literal segment: wins over /1.0/images/{name}/... routes with a placeholder.
  router.add_sync(
      Method::kPost, std::string(kImages) + "/prune", [m](Request&) -> Result<Response> {
        auto report = TRY(TRY(m->store())->prune(m->in_use()));
        if (report.bytes_freed > 0 || report.blobs_removed > 0 || report.layers_removed > 0)
          m->lifecycle("images-pruned", "prune");
        return Response::json({{"bytes_freed", report.bytes_freed},
                               {"blobs_removed", report.blobs_removed},
                               {"layers_removed", report.layers_removed}});
      });
  add_import_route(router, m);
  add_export_route(router, m);
  add_pull_route(router, m);
  add_push_route(router, m);
  add_image_build_route(router, m);
  return m;
}

}  // namespace vireo::daemon
