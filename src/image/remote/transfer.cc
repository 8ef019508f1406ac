#include "image/remote/transfer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <mutex>
#include <thread>

#include "base/fd.h"
#include "image/media_types.h"

namespace vireo::image::remote {

namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxManifest = 4 << 20;
constexpr size_t kMaxConfig = 16 << 20;
constexpr int kAttempts = 5;
constexpr auto kReportEvery = std::chrono::milliseconds(100);
constexpr std::string_view kAccept =
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.docker.distribution.manifest.v2+json";

// Serializes and throttles the progress reports of the workers.
class ProgressTracker {
 public:
  explicit ProgressTracker(const ProgressFn& fn) : fn_(fn) {}

  void start(std::string stage, uint64_t bytes_total, int blobs_total) {
    std::lock_guard lock(mu_);
    p_ = {.bytes_done = 0,
          .bytes_total = bytes_total,
          .blobs_done = 0,
          .blobs_total = blobs_total,
          .stage = std::move(stage)};
    report_locked(true);
  }
  void stage(std::string stage) {
    std::lock_guard lock(mu_);
    p_.stage = std::move(stage);
    report_locked(true);
  }
  void add(uint64_t bytes) {
    std::lock_guard lock(mu_);
    p_.bytes_done += bytes;
    report_locked(false);
  }
  void blob_done() {
    std::lock_guard lock(mu_);
    ++p_.blobs_done;
    report_locked(true);
  }

 private:
  void report_locked(bool force) {
    if (!fn_) return;
    auto now = std::chrono::steady_clock::now();
    if (!force && now - last_ < kReportEvery) return;
    last_ = now;
    fn_(p_);
  }

  const ProgressFn& fn_;
  std::mutex mu_;
  TransferProgress p_;
  std::chrono::steady_clock::time_point last_{};
};

// Runs job(i) for i in [0, n) on `parallel` threads, each with its own HttpClient. The first
// error stops the others (failed() turns true) and is returned.
class WorkerPool {
 public:
  using Job = std::function<Result<void>(size_t, HttpClient&)>;

  Result<void> run(size_t n, int parallel, const TlsOptions& tls, const Job& job) {
    std::atomic<size_t> next{0};
    {
      std::vector<std::jthread> threads;
      int count = std::max(1, std::min<int>(parallel, static_cast<int>(n)));
      for (int t = 0; t < count; ++t)
        threads.emplace_back([&] {
          HttpClient client(tls);
          for (size_t i = next++; i < n && !failed_; i = next++) {
            auto r = job(i, client);
            if (!r) fail(r.error());
          }
        });
    }
    if (error_) return std::unexpected(*error_);
    return {};
  }
  bool failed() const { return failed_; }

 private:
  void fail(Error e) {
    std::lock_guard lock(mu_);
    if (!error_ || error_->code() == ErrorCode::kCancelled) error_ = std::move(e);
    failed_ = true;
  }
  std::atomic<bool> failed_{false};
  std::mutex mu_;
  std::optional<Error> error_;
};

ErrorCode code_of_status(int status) {
  if (status == 401) return ErrorCode::kUnauthorized;
  if (status == 403) return ErrorCode::kPermissionDenied;
  if (status == 404) return ErrorCode::kNotFound;
  if (status == 400) return ErrorCode::kInvalidArgument;
  return ErrorCode::kUnavailable;
}

Error status_error(const RegistrySession& s, const HttpResponse& resp, std::string_view what) {
  return Error(code_of_status(resp.status), s.describe(resp, what));
}

std::string media_type_of(const HttpResponse& resp) {
  std::string t = resp.header("content-type");
  auto semi = t.find(';');
  if (semi != std::string::npos) t.resize(semi);
  while (!t.empty() && t.back() == ' ') t.pop_back();
  return t;
}

struct Document {
  std::string body;
  std::string media_type;
  Digest digest;
};

Result<Document> fetch_manifest(RegistrySession& s, HttpClient& c, const std::string& reference,
                                const std::optional<Digest>& expected) {
  HttpRequest req{.method = "GET",
                  .url = {.target = s.repo_path() + "/manifests/" + reference},
                  .headers = {{"Accept", std::string(kAccept)}}};
  HttpResponse resp = TRY(s.send(c, req, nullptr, kMaxManifest));
  if (resp.status != 200)
    return std::unexpected(
        status_error(s, resp, "manifest " + s.ref().repository + ":" + reference));
  Digest actual = digest_of(resp.body, expected ? expected->algorithm : DigestAlgorithm::kSha256);
  if (expected && actual != *expected)
    return make_error(ErrorCode::kInvalidArgument,
                      "manifest {} from {} does not match its digest (content is {})",
                      expected->str(), s.ref().registry, actual.str());
  if (auto header = resp.header("docker-content-digest"); !expected && !header.empty()) {
    auto claimed = Digest::parse(header);
    if (claimed && claimed->algorithm == actual.algorithm && *claimed != actual)
      return make_error(ErrorCode::kInvalidArgument,
                        "manifest {} from {}: Docker-Content-Digest {} does not match the content "
                        "({})",
                        reference, s.ref().registry, header, actual.str());
  }
  return Document{std::move(resp.body), media_type_of(resp), actual};
}

Result<std::string> fetch_small_blob(RegistrySession& s, HttpClient& c, const Descriptor& d) {
  if (d.size > kMaxConfig)
    return make_error(ErrorCode::kTooLarge, "config blob {} is {} bytes (limit {})", d.digest.str(),
                      d.size, kMaxConfig);
  HttpRequest req{.method = "GET", .url = {.target = s.repo_path() + "/blobs/" + d.digest.str()}};
  HttpResponse resp = TRY(s.send(c, req, nullptr, kMaxConfig));
  if (resp.status != 200) return std::unexpected(status_error(s, resp, "blob " + d.digest.str()));
  if (resp.body.size() != d.size || digest_of(resp.body, d.digest.algorithm) != d.digest)
    return make_error(ErrorCode::kInvalidArgument, "blob {} from {} does not match its digest",
                      d.digest.str(), s.ref().registry);
  return std::move(resp.body);
}

Result<void> pwrite_all(int fd, const char* data, size_t n, uint64_t offset) {
  while (n > 0) {
    ssize_t w = ::pwrite(fd, data, n, static_cast<off_t>(offset));
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return errno_error("write download");
    data += w;
    n -= static_cast<size_t>(w);
    offset += static_cast<uint64_t>(w);
  }
  return {};
}

// "bytes START-END/TOTAL" → START.
std::optional<uint64_t> content_range_start(const std::string& value) {
  if (!value.starts_with("bytes ")) return std::nullopt;
  uint64_t start = 0;
  size_t i = 6;
  if (i >= value.size() || !std::isdigit(static_cast<unsigned char>(value[i]))) return std::nullopt;
  for (; i < value.size() && std::isdigit(static_cast<unsigned char>(value[i])); ++i)
    start = start * 10 + static_cast<uint64_t>(value[i] - '0');
  return start;
}

// One blob into the store through a partial file that survives interruptions.
class BlobDownload {
 public:
  BlobDownload(RegistrySession& s, BlobStore& blobs, fs::path partial, const Descriptor& d,
               ProgressTracker& progress, const std::function<bool()>& stop)
      : s_(s), blobs_(blobs), path_(std::move(partial)), d_(d), progress_(progress), stop_(stop) {}

  Result<void> run(HttpClient& c) {
    std::optional<Error> last;
    for (int attempt = 0; attempt < kAttempts; ++attempt) {
      if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(200 * attempt));
      auto r = attempt_once(c);
      if (r) return {};
      ErrorCode code = r.error().code();
      if (code != ErrorCode::kUnavailable && code != ErrorCode::kTimeout && code != ErrorCode::kIo)
        return r;
      last = r.error();
    }
    return make_error(last->code(), "blob {}: {} (gave up after {} attempts)", d_.digest.str(),
                      last->message(), kAttempts);
  }

 private:
  Result<void> attempt_once(HttpClient& c) {
    fd_ = Fd(::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd_) return errno_error("open " + path_.string());
    struct stat st {};
    if (::fstat(fd_.get(), &st) != 0) return errno_error("stat " + path_.string());
    written_ = static_cast<uint64_t>(st.st_size);
    if (written_ > d_.size) TRY(restart());
    hasher_ = Hasher(d_.digest.algorithm);
    if (written_ > 0) TRY(hash_prefix());
    count();
    if (written_ < d_.size || d_.size == 0) {
      HttpRequest req{.method = "GET",
                      .url = {.target = s_.repo_path() + "/blobs/" + d_.digest.str()}};
      if (written_ > 0) req.headers.emplace_back("Range", fmt::format("bytes={}-", written_));
      BodySink sink{.on_head = [this](const HttpResponse& r) { return on_head(r); },
                    .on_data = [this](const char* p, size_t n) { return on_data(p, n); }};
      HttpResponse resp = TRY(s_.send(c, req, &sink));
      if (resp.status == 416) {
        TRY(restart());
        return make_error(ErrorCode::kUnavailable, "registry refused to resume the download");
      }
      if (resp.status / 100 != 2)
        return std::unexpected(status_error(s_, resp, "blob " + d_.digest.str()));
      if (written_ != d_.size)
        return make_error(ErrorCode::kUnavailable, "download ended at {} of {} bytes", written_,
                          d_.size);
    }
    if (hasher_.digest() != d_.digest) {
      ::unlink(path_.c_str());
      return make_error(ErrorCode::kInvalidArgument, "blob {} from {} does not match its digest",
                        d_.digest.str(), s_.ref().registry);
    }
    TRY(blobs_.adopt(path_, d_.digest));
    return {};
  }

  Result<void> on_head(const HttpResponse& resp) {
    if (resp.status == 206) {
      auto start = content_range_start(resp.header("content-range"));
      if (start && *start == written_) return {};
      return make_error(ErrorCode::kUnavailable, "registry resumed at the wrong offset");
    }
    if (written_ > 0) TRY(restart());  // a 200: the whole blob again
    return {};
  }

  Result<void> on_data(const char* p, size_t n) {
    if (stop_ && stop_()) return make_error(ErrorCode::kCancelled, "pull cancelled");
    if (written_ + n > d_.size) {
      ::unlink(path_.c_str());
      return make_error(ErrorCode::kInvalidArgument, "blob {} from {} is larger than its {} bytes",
                        d_.digest.str(), s_.ref().registry, d_.size);
    }
    TRY(pwrite_all(fd_.get(), p, n, written_));
    hasher_.update(p, n);
    written_ += n;
    count();
    return {};
  }

  Result<void> restart() {
    if (::ftruncate(fd_.get(), 0) != 0) return errno_error("truncate " + path_.string());
    written_ = 0;
    hasher_ = Hasher(d_.digest.algorithm);
    return {};
  }

  Result<void> hash_prefix() {
    std::vector<char> buf(1 << 20);
    uint64_t off = 0;
    while (off < written_) {
      ssize_t n = ::pread(fd_.get(), buf.data(), std::min<uint64_t>(buf.size(), written_ - off),
                          static_cast<off_t>(off));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return errno_error("read " + path_.string());
      hasher_.update(buf.data(), static_cast<size_t>(n));
      off += static_cast<uint64_t>(n);
    }
    return {};
  }

  // Progress counts each byte once, also when a retry fetches it again.
  void count() {
    if (written_ <= counted_) return;
    progress_.add(written_ - counted_);
    counted_ = written_;
  }

  RegistrySession& s_;
  BlobStore& blobs_;
  fs::path path_;
  const Descriptor& d_;
  ProgressTracker& progress_;
  const std::function<bool()>& stop_;
  Fd fd_;
  Hasher hasher_;
  uint64_t written_ = 0;
  uint64_t counted_ = 0;
};

ReadFn read_blob(BlobReader& reader) {
  return [&reader](void* buf, size_t len) { return reader.read(buf, len); };
}

Result<std::string> local_name(const RemoteRef& r, std::string_view typed,
                               const std::string& local_ref) {
  if (!local_ref.empty()) return local_ref;
  Reference ref = TRY(Reference::parse(typed));
  if (!ref.tag.empty()) return ref.tagged();
  return ref.name + ":digest-" + r.digest->hex.substr(0, 12);
}

// The image manifest for the wanted platform, following an index.
Result<Document> resolve_manifest(RegistrySession& s, HttpClient& c, const PullOptions& o) {
  Document doc = TRY(fetch_manifest(s, c, s.ref().reference(), s.ref().digest));
  auto kind = TRY(detect_kind(doc.body, doc.media_type));
  if (kind == DocumentKind::kManifest) return doc;
  Index index = TRY_CTX(parse_index(doc.body), "index of {}", s.ref().str());
  Descriptor chosen = TRY_CTX(select_platform(index, o.os, o.architecture), "{}", s.ref().str());
  doc = TRY(fetch_manifest(s, c, chosen.digest.str(), chosen.digest));
  if (TRY(detect_kind(doc.body, doc.media_type)) != DocumentKind::kManifest)
    return make_error(ErrorCode::kInvalidArgument,
                      "{}: the index entry for {}/{} is not a manifest", s.ref().str(), o.os,
                      o.architecture);
  return doc;
}

}  // namespace

Result<ImageInfo> pull(ImageStore& store, std::string_view ref_text, const PullOptions& o) {
  RemoteRef remote = TRY(RemoteRef::parse(ref_text));
  std::string local = TRY(local_name(remote, ref_text, o.local_ref));
  auto work = store.begin_work();
  TRY_CTX(Reference::parse(local), "local name");
  RegistrySession session(remote, o.session, "pull");
  ProgressTracker progress(o.progress);
  progress.start("resolving", 0, 0);
  HttpClient client(session.options().tls);
  Document doc = TRY(resolve_manifest(session, client, o));
  Manifest manifest = TRY_CTX(parse_manifest(doc.body), "{}", remote.str());
  std::string config_json = TRY(fetch_small_blob(session, client, manifest.config));
  // A VM disk image's one layer is the disk: downloaded, never unpacked (commit checks it).
  const bool vm = manifest.is_vm();
  ImageConfig config;
  if (vm) {
    TRY_CTX(parse_vm_config(config_json), "config of {}", remote.str());
  } else {
    config = TRY_CTX(parse_config(config_json), "config of {}", remote.str());
    if (config.diff_ids.size() != manifest.layers.size())
      return make_error(ErrorCode::kInvalidArgument, "{}: config has {} diff_ids for {} layers",
                        remote.str(), config.diff_ids.size(), manifest.layers.size());
  }
  TRY(store.blobs().put(config_json, manifest.config.digest));
  auto have = [&](size_t i) {
    return vm ? store.blobs().has(manifest.layers[i].digest)
              : store.layers().has(config.diff_ids[i]);
  };

  fs::path partial_dir = store.root() / "tmp" / "pull";
  std::error_code ec;
  fs::create_directories(partial_dir, ec);
  if (ec) return make_error(ErrorCode::kIo, "create {}: {}", partial_dir.string(), ec.message());
  uint64_t total = 0;
  for (size_t i = 0; i < manifest.layers.size(); ++i)
    if (!have(i)) total += manifest.layers[i].size;
  progress.start("downloading", total, static_cast<int>(manifest.layers.size()));

  WorkerPool pool;
  std::function<bool()> stop = [&] { return pool.failed() || (o.cancelled && o.cancelled()); };
  TRY(pool.run(manifest.layers.size(), o.parallel, session.options().tls,
               [&](size_t i, HttpClient& c) -> Result<void> {
                 const Descriptor& layer = manifest.layers[i];
                 if (have(i)) {
                   progress.blob_done();
                   return {};
                 }
                 if (!store.blobs().has(layer.digest)) {
                   fs::path partial = partial_dir / (std::string(layer.digest.algorithm_name()) +
                                                     "-" + layer.digest.hex);
                   TRY(BlobDownload(session, store.blobs(), partial, layer, progress, stop).run(c));
                 } else {
                   progress.add(layer.size);
                 }
                 if (stop()) return make_error(ErrorCode::kCancelled, "pull cancelled");
                 if (vm) {
                   progress.blob_done();
                   return {};
                 }
                 const Digest& diff_id = config.diff_ids[i];
                 auto reader = TRY(store.blobs().open(layer.digest));
                 TRY_CTX(store.layers().unpack(read_blob(reader), diff_id), "layer {} ({})", i,
                         layer.digest.str());
                 progress.blob_done();
                 return {};
               }));
  progress.stage("committing");
  return store.commit(doc.body, local);
}

namespace {

Result<void> upload_blob(RegistrySession& s, HttpClient& c, BlobStore& blobs, const Descriptor& d,
                         ProgressTracker& progress, PushResult& result, std::mutex& result_mu) {
  HttpRequest head{.method = "HEAD", .url = {.target = s.repo_path() + "/blobs/" + d.digest.str()}};
  HttpResponse exists = TRY(s.send(c, head));
  if (exists.status == 200) {
    progress.add(d.size);
    std::lock_guard lock(result_mu);
    ++result.blobs_present;
    return {};
  }
  HttpRequest start{.method = "POST", .url = {.target = s.repo_path() + "/blobs/uploads/"}};
  HttpResponse started = TRY(s.send(c, start));
  if (started.status != 202 || started.header("location").empty())
    return std::unexpected(status_error(s, started, "start upload of " + d.digest.str()));
  std::string location = started.header("location");
  location += (location.find('?') == std::string::npos ? "?" : "&");
  location += "digest=" + std::string(d.digest.algorithm_name()) + "%3A" + d.digest.hex;
  Fd fd(::open(blobs.path_of(d.digest).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return errno_error("open blob " + d.digest.str());
  uint64_t counted = 0;
  HttpRequest put{.method = "PUT",
                  .url = {.target = location},
                  .headers = {{"Content-Type", "application/octet-stream"}},
                  .body_fd = fd.get(),
                  .body_length = d.size,
                  .on_sent = [&](uint64_t sent) {
                    if (sent > counted) progress.add(sent - counted);
                    counted = std::max(counted, sent);
                  }};
  HttpResponse done = TRY(s.send(c, put));
  if (done.status != 201) return std::unexpected(status_error(s, done, "upload " + d.digest.str()));
  std::lock_guard lock(result_mu);
  ++result.blobs_sent;
  result.bytes_sent += d.size;
  return {};
}

}  // namespace

Result<PushResult> push(ImageStore& store, std::string_view local_ref, std::string_view destination,
                        const TransferOptions& o) {
  auto work = store.begin_work();
  ImageInfo info = TRY(store.show(local_ref));
  RemoteRef remote =
      TRY_CTX(RemoteRef::parse(destination.empty() ? local_ref : destination), "destination");
  if (remote.digest || remote.tag.empty())
    return make_error(ErrorCode::kInvalidArgument,
                      "push destination '{}' must be REGISTRY/NAME[:TAG], not a digest",
                      remote.str());
  std::string manifest_json = TRY(store.blobs().read(info.manifest_digest));
  std::vector<Descriptor> blobs = info.manifest.layers;
  blobs.push_back(info.manifest.config);
  uint64_t total = 0;
  for (const auto& b : blobs) {
    if (!store.blobs().has(b.digest))
      return make_error(ErrorCode::kNotFound, "blob {} of {} is missing from the store",
                        b.digest.str(), local_ref);
    total += b.size;
  }
  RegistrySession session(remote, o.session, "pull,push");
  ProgressTracker progress(o.progress);
  progress.start("uploading", total, static_cast<int>(blobs.size()));
  PushResult result{.destination = remote.str(), .manifest_digest = info.manifest_digest};
  std::mutex result_mu;
  {
    HttpClient first(session.options().tls);  // one request first: scheme and token, once
    HttpRequest ping{
        .method = "HEAD",
        .url = {.target = session.repo_path() + "/blobs/" + blobs.back().digest.str()}};
    TRY(session.send(first, ping));
  }
  WorkerPool pool;
  TRY(pool.run(blobs.size(), o.parallel, session.options().tls,
               [&](size_t i, HttpClient& c) -> Result<void> {
                 if (o.cancelled && o.cancelled())
                   return make_error(ErrorCode::kCancelled, "push cancelled");
                 TRY(upload_blob(session, c, store.blobs(), blobs[i], progress, result, result_mu));
                 progress.blob_done();
                 return {};
               }));
  progress.stage("committing");
  HttpClient client(session.options().tls);
  HttpRequest put{.method = "PUT",
                  .url = {.target = session.repo_path() + "/manifests/" + remote.tag},
                  .headers = {{"Content-Type", info.manifest.media_type}},
                  .body = manifest_json};
  HttpResponse resp = TRY(session.send(client, put));
  if (resp.status != 201)
    return std::unexpected(status_error(session, resp, "push manifest " + remote.str()));
  return result;
}

}  // namespace vireo::image::remote
