#include "image/build/builder.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <linux/openat2.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/ranges.h>

#include <algorithm>
#include <memory>
#include <set>

#include "base/fd.h"
#include "base/file.h"
#include "base/ids.h"
#include "base/json.h"
#include "base/rollback.h"
#include "base/strings.h"
#include "base/subprocess.h"
#include "base/time.h"
#include "container/default_spec.h"
#include "image/build/cache.h"
#include "image/build/containerfile.h"
#include "image/build/context.h"
#include "image/build/layer_diff.h"
#include "image/build/run_step.h"
#include "image/layer_unpack.h"
#include "image/media_types.h"
#include "image/rootfs.h"
#include "image/tree.h"

namespace vireo::image::build {

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr std::string_view kDefaultPath =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
// Build arguments Docker passes to RUN without an ARG declaring them (never stored).
constexpr std::string_view kProxyArgs[] = {"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy",
                                           "FTP_PROXY",  "ftp_proxy",  "NO_PROXY",    "no_proxy",
                                           "ALL_PROXY",  "all_proxy"};
constexpr int kOutputLines = 5;

// ---------------------------------------------------------------------------------------------
// The builder.

std::string layer_media_type(const std::string& t) {
  if (t == media::kDockerLayer) return std::string(media::kOciLayerGzip);
  if (t == media::kDockerForeignLayer)
    return "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
  return t;
}

std::string short_text(std::string_view s, size_t max = 60) {
  std::string out(s.substr(0, max));
  for (auto& c : out)
    if (c == '\n' || c == '\t') c = ' ';
  if (s.size() > max) out += "...";
  return out;
}

class Builder {
 public:
  Builder(ImageStore& store, const BuildOptions& o, BuildProgress& p, Context ctx)
      : store_(store), o_(o), progress_(p), ctx_(std::move(ctx)), cache_(store, !o.no_cache) {}

  Result<BuildResult> run(const Containerfile& file) {
    const auto& list = file.instructions;
    total_ = static_cast<int>(list.size());
    size_t i = 0;
    for (; list[i].keyword == Keyword::kArg; ++i) {
      begin_step(i, list[i]);
      for (const auto& d : TRY(arg_decls(list[i], global_lookup()))) {
        auto given = o_.build_args.find(d.name);
        global_args_[d.name] =
            given != o_.build_args.end() ? std::optional(given->second) : d.default_value;
      }
      end_step(false, {});
    }
    begin_step(i, list[i]);
    TRY(from(list[i]));
    end_step(false, {});
    bool layer_steps = std::any_of(list.begin(), list.end(), [](const Instruction& in) {
      return in.keyword == Keyword::kRun || in.keyword == Keyword::kCopy ||
             in.keyword == Keyword::kAdd;
    });
    if (layer_steps && ::geteuid() != 0)
      return make_error(ErrorCode::kPermissionDenied,
                        "building images with RUN, COPY or ADD needs root (overlay mounts and "
                        "containers); vireod runs as uid {}",
                        ::geteuid());
    if (layer_steps) TRY(make_scratch());
    cache_.sweep();
    for (++i; i < list.size(); ++i) {
      if (progress_.stop_token().stop_requested())
        return make_error(ErrorCode::kCancelled, "build cancelled");
      begin_step(i, list[i]);
      TRY(dispatch(list[i]));
    }
    return commit();
  }

  ~Builder() {
    if (!scratch_.empty()) (void)remove_tree(scratch_);
  }

 private:
  // --- steps ----------------------------------------------------------------------------------

  void begin_step(size_t i, const Instruction& in) {
    index_ = static_cast<int>(i) + 1;
    progress_.step(index_, total_,
                   fmt::format("step {}/{}: {}", index_, total_, short_text(in.text)));
    log_.push_back({index_, in.text, false, {}});
  }
  void end_step(bool cached, std::string output) {
    log_.back().cached = cached;
    log_.back().output = std::move(output);
    if (cached) ++cached_;
  }

  Result<void> dispatch(const Instruction& in) {
    switch (in.keyword) {
      case Keyword::kRun:
        return run_step(in);
      case Keyword::kCopy:
      case Keyword::kAdd:
        return copy_step(in);
      default:
        break;
    }
    TRY(metadata(in));
    history(in, true);
    end_step(false, {});
    return {};
  }

  Result<void> from(const Instruction& in) {
    From f = TRY(from_args(in, global_lookup()));
    chain(fmt::format("FROM {}", f.image));
    config_ = {{"architecture", "amd64"},
               {"os", "linux"},
               {"config", Json::object()},
               {"rootfs", {{"type", "layers"}, {"diff_ids", Json::array()}}},
               {"history", Json::array()}};
    if (f.image == "scratch") return {};
    auto info = store_.show(f.image);
    if (!info)
      return make_error(info.error().code(), "line {}: FROM {}: {}", in.line, f.image,
                        info.error().message());
    key_ = sha256_hex(fmt::format("FROM {}", info->manifest_digest.str()));
    if (info->config.raw.is_object()) config_ = info->config.raw;
    if (!config_.contains("config") || !config_["config"].is_object())
      config_["config"] = Json::object();
    if (!config_.contains("history") || !config_["history"].is_array())
      config_["history"] = Json::array();
    for (const auto& l : info->manifest.layers) {
      Descriptor d = l;
      d.media_type = layer_media_type(l.media_type);
      d.platform.reset();
      descriptors_.push_back(d);
    }
    diff_ids_ = info->config.diff_ids;
    layers_ = TRY_CTX(store_.unpack(f.image), "FROM {}", f.image);
    return {};
  }

  Result<void> metadata(const Instruction& in) {
    Json& c = config_["config"];
    auto vars = lookup();
    switch (in.keyword) {
      case Keyword::kArg:
        for (const auto& d : TRY(arg_decls(in, vars))) {
          auto given = o_.build_args.find(d.name);
          std::optional<std::string> v = d.default_value;
          if (given != o_.build_args.end()) {
            v = given->second;
          } else if (!v && global_args_.contains(d.name)) {
            v = global_args_[d.name];
          }
          args_[d.name] = v;
          // Not the value: like Docker, a changed value misses the cache where it is used (RUN's
          // environment, substituted arguments), not from the declaration on.
          chain(fmt::format("ARG {}", d.name));
        }
        return {};
      case Keyword::kEnv:
        for (const auto& [k, v] : TRY(key_values(in, vars))) set_env(k, v);
        break;
      case Keyword::kLabel:
        if (!c.contains("Labels") || !c["Labels"].is_object()) c["Labels"] = Json::object();
        for (const auto& [k, v] : TRY(key_values(in, vars))) c["Labels"][k] = v;
        break;
      case Keyword::kWorkdir: {
        std::string w = TRY(single_word(in, vars));
        std::string dir =
            (w.starts_with('/') ? fs::path(w) : fs::path(workdir()) / w).lexically_normal();
        while (dir.size() > 1 && dir.ends_with('/')) dir.pop_back();
        c["WorkingDir"] = dir;
        break;
      }
      case Keyword::kUser:
        c["User"] = TRY(single_word(in, vars));
        break;
      case Keyword::kExpose:
        if (!c.contains("ExposedPorts") || !c["ExposedPorts"].is_object())
          c["ExposedPorts"] = Json::object();
        for (const auto& p : TRY(ports(in, vars))) c["ExposedPorts"][p] = Json::object();
        break;
      case Keyword::kCmd:
        c["Cmd"] = command_args(in);
        cmd_set_ = true;
        break;
      case Keyword::kEntrypoint:
        c["Entrypoint"] = command_args(in);
        if (!cmd_set_) c.erase("Cmd");
        break;
      default:
        break;
    }
    chain(fmt::format("{} -> {}", in.text, c.dump()));
    return {};
  }

  Result<void> run_step(const Instruction& in) {
    auto args = command_args(in);
    auto env = run_env();
    std::string user = config_["config"].value("User", "");
    Json key_doc = {{"run", args}, {"env", env}, {"cwd", workdir()}, {"user", user}};
    std::string key = chain_key(key_doc.dump());
    if (TRY(reuse(key, in))) return {};
    if (o_.runtime.empty())
      return make_error(ErrorCode::kUnavailable,
                        "line {}: RUN: vireo-runtime was not found next to vireod or on PATH",
                        in.line);

    ImageConfig pc;
    pc.cmd = args;
    pc.env = env;
    pc.working_dir = workdir();
    pc.user = user;
    ProcessConfig process = TRY_CTX(process_config(pc, layers_), "line {}: RUN", in.line);
    std::string output;
    auto blob = TRY(with_overlay([&](int root_fd, const fs::path& step) -> Result<void> {
      TRY(ensure_dir(root_fd, TRY(image_path_components(workdir())), 0, 0));
      auto mountpoints = missing_mountpoints(root_fd);
      bool resolv = prepare_resolv(root_fd);
      Json spec = container::default_spec();
      spec["process"]["terminal"] = false;
      apply_process_config(process, spec);
      spec["root"] = {{"path", (step / "rootfs").string()}, {"readonly", false}};
      spec["hostname"] = "vireo-build";
      Json namespaces = Json::array();
      for (const auto& ns : spec["linux"]["namespaces"])
        if (ns.value("type", "") != "network") namespaces.push_back(ns);
      spec["linux"]["namespaces"] = namespaces;
      if (resolv)
        spec["mounts"].push_back({{"destination", "/etc/resolv.conf"},
                                  {"type", "bind"},
                                  {"source", "/etc/resolv.conf"},
                                  {"options", {"rbind", "ro", "nosuid", "nodev", "noexec"}}});
      TRY(write_file_atomic(step / "config.json", spec.dump(2) + "\n", 0600));
      auto outcome = TRY(run_runtime(o_.runtime, scratch_ / "runtime", step, step / "output.log",
                                     progress_.stop_token()));
      output = std::move(outcome.output);
      if (outcome.exit_code != 0 || outcome.signal != 0) {
        std::string how = outcome.signal
                              ? fmt::format("was killed by signal {}", outcome.signal)
                              : fmt::format("failed with exit code {}", outcome.exit_code);
        std::string tail = last_lines(output, kOutputLines);
        return make_error(ErrorCode::kInvalidArgument, "RUN step {}/{} '{}' {}{}{}", index_, total_,
                          short_text(in.json ? fmt::format("{}", fmt::join(args, " ")) : in.rest),
                          how, tail.empty() ? "" : ": ", tail);
      }
      return remove_mountpoints(step / "upper", mountpoints);
    }));
    TRY(add_layer(blob, key, in));
    end_step(false, std::move(output));
    return {};
  }

  Result<void> copy_step(const Instruction& in) {
    bool add = in.keyword == Keyword::kAdd;
    const char* what = add ? "ADD" : "COPY";
    CopyArgs a = TRY(copy_args(in, lookup()));
    auto sources = TRY_CTX(ctx_.resolve(a.sources, add, what), "line {}", in.line);
    std::string dest_abs = a.dest.starts_with('/') ? a.dest : workdir() + "/" + a.dest;
    bool dest_is_dir = a.dest.ends_with('/') || a.dest == "." || a.dest.ends_with("/.");
    bool many = sources.size() > 1 || std::any_of(a.sources.begin(), a.sources.end(),
                                                  [](const std::string& s) { return has_glob(s); });
    if (many && !dest_is_dir)
      return make_error(ErrorCode::kInvalidArgument,
                        "line {}: {} with more than one source needs a destination directory "
                        "ending in '/', not '{}'",
                        in.line, what, a.dest);
    std::string content = TRY(content_hash(ctx_, sources));
    Json key_doc = {{"kind", what},       {"sources", a.sources}, {"dest", dest_abs},
                    {"dir", dest_is_dir}, {"chown", a.chown},     {"chmod", a.chmod.value_or(0)},
                    {"content", content}};
    std::string key = chain_key(key_doc.dump());
    if (TRY(reuse(key, in))) return {};
    Owner owner = TRY_CTX(resolve_owner(a.chown), "line {}: {} --chown", in.line, what);
    owner.chmod = a.chmod;
    auto blob = TRY(with_overlay([&](int root_fd, const fs::path&) -> Result<void> {
      return with_context(copy_sources(ctx_, sources, root_fd, dest_abs, dest_is_dir, owner),
                          fmt::format("line {}: {}", in.line, what));
    }));
    TRY(add_layer(blob, key, in));
    end_step(false, {});
    return {};
  }

  // --- layers ---------------------------------------------------------------------------------

  // Mounts the current layers over an empty upper directory, runs body on the mounted root,
  // and turns the upper directory into a layer. Every mount and file is gone afterwards.
  Result<LayerBlob> with_overlay(
      const std::function<Result<void>(int root_fd, const fs::path& step)>& body) {
    fs::path step = scratch_ / fmt::format("step-{}", index_);
    Rollback cleanup;
    cleanup.add([step] { (void)release_rootfs(step); });
    TRY(make_dirs(step / "rootfs", 0755));
    TRY(make_dirs(step / "upper", 0755));
    TRY(make_dirs(step / "work", 0700));
    std::vector<Layer> lower = layers_;
    if (lower.empty()) {  // FROM scratch: overlayfs needs a lower directory
      TRY(make_dirs(scratch_ / "empty", 0755));
      lower.push_back(Layer{Digest{}, scratch_ / "empty", {}, {}});
    }
    TRY(mount_overlay(lower, step / "upper", step / "work", step / "rootfs"));
    {
      Fd root(::open((step / "rootfs").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!root) return errno_error("open " + (step / "rootfs").string());
      TRY(body(root.get(), step));
    }
    if (::umount2((step / "rootfs").c_str(), 0) != 0)
      return errno_error("unmount " + (step / "rootfs").string());
    return write_layer(step / "upper", store_.blobs(), scratch_);
  }

  Result<void> add_layer(const LayerBlob& blob, const std::string& key, const Instruction& in) {
    Descriptor d{std::string(media::kOciLayerGzip), blob.blob.digest, blob.blob.size, {}, {}};
    TRY(push_layer(d, blob.diff_id));
    cache_.put(key, {d, blob.diff_id});
    history(in, false);
    return {};
  }

  Result<void> push_layer(const Descriptor& d, const Digest& diff_id) {
    if (descriptors_.size() >= kMaxLayers)
      return make_error(ErrorCode::kInvalidArgument, "more than {} layers", kMaxLayers);
    auto& layers = store_.layers();
    Result<Layer> layer = layers.has(diff_id) ? layers.get(diff_id) : unpack(d, diff_id);
    if (!layer && layers.has(diff_id)) layer = layers.get(diff_id);  // a concurrent unpack won
    if (!layer) return std::unexpected(std::move(layer.error()));
    descriptors_.push_back(d);
    diff_ids_.push_back(diff_id);
    layers_.push_back(std::move(*layer));
    return {};
  }

  Result<Layer> unpack(const Descriptor& d, const Digest& diff_id) {
    auto reader = TRY(store_.blobs().open(d.digest));
    return store_.layers().unpack([&](void* b, size_t n) { return reader.read(b, n); }, diff_id);
  }

  // A cache hit: the layer of the entry becomes this step's.
  Result<bool> reuse(const std::string& key, const Instruction& in) {
    auto entry = cache_.get(key);
    if (!entry) return false;
    if (!push_layer(entry->layer, entry->diff_id)) return false;
    history(in, false);
    end_step(true, {});
    return true;
  }

  // Mount points the runtime would create in the image (they would end up in the layer).
  std::vector<std::string> missing_mountpoints(int root_fd) {
    std::vector<std::string> out;
    struct stat st;
    for (const char* p : {"proc", "dev", "sys", "etc/resolv.conf"})
      if (::fstatat(root_fd, p, &st, AT_SYMLINK_NOFOLLOW) != 0) out.push_back(p);
    return out;
  }

  // The host's resolv.conf is bind-mounted (read-only) for package installs, onto the image's
  // regular file or onto an empty one made for it (removed again from the layer).
  bool prepare_resolv(int root_fd) {
    struct stat st;
    if (::stat("/etc/resolv.conf", &st) != 0) return false;
    if (::fstatat(root_fd, "etc/resolv.conf", &st, AT_SYMLINK_NOFOLLOW) == 0)
      return S_ISREG(st.st_mode);
    if (::fstatat(root_fd, "etc", &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode))
      return false;
    Fd f(::openat(root_fd, "etc/resolv.conf", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  0644));
    return f.valid();
  }

  Result<void> remove_mountpoints(const fs::path& upper, const std::vector<std::string>& paths) {
    for (const auto& p : paths) {
      struct stat st;
      fs::path full = upper / p;
      if (::lstat(full.c_str(), &st) != 0) continue;
      if (S_ISDIR(st.st_mode))
        ::rmdir(full.c_str());  // only when empty: a RUN may have put something there
      else if (S_ISREG(st.st_mode) && st.st_size == 0)
        ::unlink(full.c_str());
    }
    return {};
  }

  // --- state ----------------------------------------------------------------------------------

  Result<void> make_scratch() {
    fs::path tmp_root = store_.root() / "build-tmp";
    TRY(make_dirs(tmp_root, 0700));
    sweep_stale(tmp_root, o_.runtime);
    fs::path dir = tmp_root / fmt::format("{}-{}", ::getpid(), random_hex(6));
    TRY(make_dirs(dir / "runtime", 0700));
    scratch_ = dir;
    return {};
  }

  void chain(const std::string& text) { key_ = sha256_hex(key_ + "\n" + text); }
  std::string chain_key(const std::string& text) {
    chain(text);
    return key_;
  }

  void history(const Instruction& in, bool empty) {
    Json h = {
        {"created", now_timestamp()}, {"created_by", in.text}, {"comment", "vireo image build"}};
    if (empty) h["empty_layer"] = true;
    config_["history"].push_back(h);
  }

  std::string workdir() const {
    const Json& c = config_["config"];
    std::string w = c.contains("WorkingDir") && c["WorkingDir"].is_string()
                        ? c["WorkingDir"].get<std::string>()
                        : "";
    return w.empty() ? "/" : w;
  }

  std::vector<std::string> env() const {
    const Json& c = config_["config"];
    std::vector<std::string> out;
    if (c.contains("Env") && c["Env"].is_array())
      for (const auto& e : c["Env"])
        if (e.is_string()) out.push_back(e.get<std::string>());
    return out;
  }

  std::optional<std::string> env_value(std::string_view name) const {
    for (const auto& e : env())
      if (e.size() > name.size() && e.starts_with(name) && e[name.size()] == '=')
        return e.substr(name.size() + 1);
    return std::nullopt;
  }

  void set_env(const std::string& k, const std::string& v) {
    std::vector<std::string> out;
    bool replaced = false;
    for (auto& e : env()) {
      if (e.starts_with(k + "=")) {
        out.push_back(k + "=" + v);
        replaced = true;
      } else {
        out.push_back(e);
      }
    }
    if (!replaced) out.push_back(k + "=" + v);
    config_["config"]["Env"] = out;
  }

  // RUN's environment: ENV, then the ARGs ENV does not set, the proxy arguments and PATH.
  std::vector<std::string> run_env() const {
    auto out = env();
    for (const auto& [k, v] : args_)
      if (v && !env_value(k)) out.push_back(k + "=" + *v);
    for (auto name : kProxyArgs) {
      auto it = o_.build_args.find(std::string(name));
      if (it != o_.build_args.end() && !args_.contains(it->first) && !env_value(name))
        out.push_back(it->first + "=" + it->second);
    }
    if (!env_value("PATH")) out.emplace_back(kDefaultPath);
    return out;
  }

  Lookup lookup() const {
    return [this](std::string_view name) -> std::optional<std::string> {
      if (auto v = env_value(name)) return v;
      auto it = args_.find(std::string(name));
      if (it != args_.end()) return it->second;
      return std::nullopt;
    };
  }

  Lookup global_lookup() const {
    return [this](std::string_view name) -> std::optional<std::string> {
      auto it = global_args_.find(std::string(name));
      if (it != global_args_.end()) return it->second;
      return std::nullopt;
    };
  }

  // --chown USER[:GROUP]: names from the image's /etc/passwd and /etc/group; without a group,
  // the gid is the uid's number (as Docker does).
  Result<Owner> resolve_owner(const std::string& chown) {
    Owner o;
    if (chown.empty()) return o;
    ImageConfig c;
    c.cmd = {"chown"};
    c.working_dir = "/";
    c.user = chown;
    ProcessConfig p = TRY(process_config(c, layers_));
    o.uid = p.uid.value_or(0);
    o.gid = chown.find(':') == std::string::npos ? static_cast<gid_t>(o.uid) : p.gid.value_or(0);
    return o;
  }

  Result<BuildResult> commit() {
    config_["created"] = now_timestamp();
    Json diff_ids = Json::array();
    for (const auto& d : diff_ids_) diff_ids.push_back(d.str());
    config_["rootfs"] = {{"type", "layers"}, {"diff_ids", diff_ids}};
    BlobInfo config_blob = TRY(store_.blobs().put(config_.dump()));
    Manifest m;
    m.media_type = media::kOciManifest;
    m.config = {std::string(media::kOciConfig), config_blob.digest, config_blob.size, {}, {}};
    m.layers = descriptors_;
    std::string tag =
        o_.tag.empty() ? "vireo-build:" + config_blob.digest.hex.substr(0, 12) : o_.tag;
    BuildResult r;
    r.image = TRY(store_.commit(m.to_json().dump(), tag));
    r.steps = total_;
    r.cached = cached_;
    r.log = std::move(log_);
    return r;
  }

  ImageStore& store_;
  const BuildOptions& o_;
  BuildProgress& progress_;
  Context ctx_;
  Cache cache_;
  fs::path scratch_;
  std::string key_ = sha256_hex("FROM scratch");
  Json config_;
  std::vector<Descriptor> descriptors_;
  std::vector<Digest> diff_ids_;
  std::vector<Layer> layers_;
  std::map<std::string, std::optional<std::string>> global_args_;
  std::map<std::string, std::optional<std::string>> args_;
  bool cmd_set_ = false;
  int index_ = 0;
  int total_ = 0;
  int cached_ = 0;
  std::vector<StepReport> log_;
};

Result<std::string> read_containerfile(const fs::path& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return errno_error("Containerfile " + path.string());
  if (!S_ISREG(st.st_mode))
    return make_error(ErrorCode::kInvalidArgument, "Containerfile {}: not a regular file",
                      path.string());
  if (static_cast<size_t>(st.st_size) > kMaxContainerfileSize)
    return make_error(ErrorCode::kTooLarge, "Containerfile {}: larger than {} bytes", path.string(),
                      kMaxContainerfileSize);
  return TRY_CTX(read_file(path), "Containerfile {}", path.string());
}

}  // namespace

Result<BuildResult> build(ImageStore& store, const BuildOptions& options, BuildProgress& progress) {
  if (!options.containerfile.is_absolute() || !options.context.is_absolute())
    return make_error(ErrorCode::kInvalidArgument,
                      "the Containerfile and the context must be absolute paths");
  std::string text = TRY(read_containerfile(options.containerfile));
  Containerfile file = TRY_CTX(parse_containerfile(text), "{}", options.containerfile.string());
  if (!options.tag.empty()) {
    auto ref = TRY_CTX(Reference::parse(options.tag), "tag");
    if (ref.digest)
      return make_error(ErrorCode::kInvalidArgument, "tag '{}': must not name a digest",
                        options.tag);
  }
  Context ctx = TRY(Context::open(options.context));
  auto work = store.begin_work();  // no prune while steps are stored but not tagged
  Builder b(store, options, progress, std::move(ctx));
  return b.run(file);
}

}  // namespace vireo::image::build
