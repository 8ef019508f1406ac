#include "daemon/image_build.h"

#include <sys/stat.h>

#include <algorithm>

#include "api/operation.h"
#include "base/file.h"
#include "base/subprocess.h"
#include "image/build/builder.h"
#include "image/build/containerfile.h"

namespace vireo::daemon {

namespace {

namespace fs = std::filesystem;
using server::Method;
using server::Request;
using server::Response;

constexpr const char* kUsage =
    "body must be {\"containerfile\": ABSOLUTE PATH, \"context\": ABSOLUTE PATH, \"tag\": "
    "\"NAME[:TAG]\", \"build_args\": {\"K\": \"V\"}, \"no_cache\": false}";

// The operation's view of a build: steps as progress, cancellation from the operation.
class OperationProgress : public image::build::BuildProgress {
 public:
  explicit OperationProgress(server::OperationContext& ctx) : ctx_(ctx) {}
  void step(int index, int total, const std::string& text) override {
    ctx_.set_progress(total > 0 ? (index - 1) * 100 / total : 0, text);
  }
  std::stop_token stop_token() const override { return ctx_.stop_token(); }

 private:
  server::OperationContext& ctx_;
};

Result<fs::path> absolute_path(const Json& body, const char* key) {
  if (!body.contains(key) || !body[key].is_string() || body[key].get<std::string>().empty())
    return make_error(ErrorCode::kInvalidArgument, "field '{}' is required (an absolute path)",
                      key);
  fs::path p(body[key].get<std::string>());
  if (!p.is_absolute())
    return make_error(ErrorCode::kInvalidArgument, "{} '{}' must be an absolute path", key,
                      p.string());
  return p.lexically_normal();
}

bool valid_arg_name(const std::string& s) {
  return !s.empty() && (std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_') &&
         std::all_of(s.begin(), s.end(), [](char c) {
           return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
         });
}

// The request as build options; everything that can be checked without building is checked
// here, so a bad request is a 400 with one line rather than a failed operation.
Result<image::build::BuildOptions> parse_request(const Json& body) {
  if (!body.is_object()) return make_error(ErrorCode::kInvalidArgument, "{}", kUsage);
  image::build::BuildOptions o;
  o.containerfile = TRY(absolute_path(body, "containerfile"));
  o.context = TRY(absolute_path(body, "context"));
  if (body.contains("tag")) {
    if (!body["tag"].is_string())
      return make_error(ErrorCode::kInvalidArgument, "field 'tag' must be a string (NAME[:TAG])");
    o.tag = body["tag"].get<std::string>();
  }
  if (!o.tag.empty()) {
    auto ref = TRY_CTX(image::Reference::parse(o.tag), "tag");
    if (ref.digest)
      return make_error(ErrorCode::kInvalidArgument, "tag '{}': must not name a digest", o.tag);
    o.tag = ref.tagged();
  }
  if (body.contains("build_args")) {
    const Json& args = body["build_args"];
    if (!args.is_object())
      return make_error(ErrorCode::kInvalidArgument,
                        "field 'build_args' must be an object of strings");
    for (const auto& [k, v] : args.items()) {
      if (!valid_arg_name(k))
        return make_error(ErrorCode::kInvalidArgument,
                          "build_args: invalid name '{}' (letters, digits and '_')", k);
      if (!v.is_string())
        return make_error(ErrorCode::kInvalidArgument, "build_args.{}: must be a string", k);
      o.build_args[k] = v.get<std::string>();
    }
  }
  if (body.contains("no_cache")) {
    if (!body["no_cache"].is_boolean())
      return make_error(ErrorCode::kInvalidArgument, "field 'no_cache' must be a boolean");
    o.no_cache = body["no_cache"].get<bool>();
  }
  struct stat st;
  if (::stat(o.context.c_str(), &st) != 0)
    return errno_error("build context " + o.context.string());
  if (!S_ISDIR(st.st_mode))
    return make_error(ErrorCode::kInvalidArgument, "build context {}: not a directory",
                      o.context.string());
  if (::stat(o.containerfile.c_str(), &st) != 0)
    return errno_error("Containerfile " + o.containerfile.string());
  if (!S_ISREG(st.st_mode) || static_cast<size_t>(st.st_size) > image::build::kMaxContainerfileSize)
    return make_error(ErrorCode::kInvalidArgument,
                      "Containerfile {}: not a regular file of at most {} bytes",
                      o.containerfile.string(), image::build::kMaxContainerfileSize);
  std::string text = TRY_CTX(read_file(o.containerfile), "Containerfile");
  TRY_CTX(image::build::parse_containerfile(text), "{}", o.containerfile.string());
  o.runtime = find_sibling_program("vireo-runtime");
  return o;
}

Json result_json(const image::build::BuildResult& r) {
  Json j = image_json(r.image, true);
  j["steps"] = r.steps;
  j["cached"] = r.cached;
  Json log = Json::array();
  for (const auto& s : r.log)
    log.push_back({{"step", s.index},
                   {"instruction", s.instruction},
                   {"cached", s.cached},
                   {"output", s.output}});
  j["log"] = log;
  return j;
}

}  // namespace

void add_image_build_route(server::Router& router, const std::shared_ptr<ImageManager>& m) {
  // A literal segment: wins over /1.0/images/{name} routes.
  router.add_sync(
      Method::kPost, std::string(kImagesPath) + "/build", [m](Request& req) -> Result<Response> {
        Json body = TRY(req.json_body());
        image::build::BuildOptions options = TRY(parse_request(body));
        TRY(m->store());
        std::string what = options.tag.empty() ? options.containerfile.string() : options.tag;
        Json resources = options.tag.empty()
                             ? Json::object()
                             : Json{{"images", {std::string(kImagesPath) + "/" + options.tag}}};
        auto op = m->operations().start(
            fmt::format("Build image {} from {}", what, options.containerfile.string()), resources,
            server::Cancellable::kYes, [m, options](server::OperationContext& ctx) -> Result<Json> {
              ctx.set_progress(0, "starting");
              auto* store = TRY(m->store());
              OperationProgress progress(ctx);
              auto result = TRY(image::build::build(*store, options, progress));
              ctx.set_progress(100, "done");
              m->lifecycle("image-built",
                           result.image.tags.empty() ? options.tag : result.image.tags.front());
              return result_json(result);
            });
        return server::accepted(op);
      });
}

}  // namespace vireo::daemon
