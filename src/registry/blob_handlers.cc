// The blob endpoints of Registry: pull, delete, uploads (monolithic, single-request, chunked
// and streamed) and cross-repository mounts.
#include <charconv>

#include "registry/names.h"
#include "registry/registry.h"

namespace vireo::registry {

namespace {

// How long a request waits for another request writing the same upload.
constexpr std::chrono::seconds kBusyWait{30};

std::string upload_location(const Route& route, const std::string& id) {
  return "/v2/" + route.name + "/blobs/uploads/" + id;
}

std::string range_header(uint64_t size) {
  return fmt::format("0-{}", size ? size - 1 : 0);
}

Response upload_accepted(const Route& route, const Upload& up, int status) {
  Response r;
  r.status = status;
  r.header("Location", upload_location(route, up.id)).header("Range", range_header(up.size));
  r.header("Docker-Upload-UUID", up.id);
  return r;
}

Response blob_created(const Route& route, const Digest& d) {
  Response r;
  r.status = 201;
  r.header("Location", "/v2/" + route.name + "/blobs/" + d.str());
  r.header("Docker-Content-Digest", d.str());
  return r;
}

bool parse_u64(std::string_view s, uint64_t& v) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

// "<start>-<end>" (an optional "bytes " or "bytes=" prefix is tolerated).
RegResult<std::pair<uint64_t, uint64_t>> parse_content_range(std::string_view s) {
  if (s.starts_with("bytes ") || s.starts_with("bytes=")) s.remove_prefix(6);
  auto dash = s.find('-');
  uint64_t a = 0, b = 0;
  if (dash == std::string_view::npos || !parse_u64(s.substr(0, dash), a) ||
      !parse_u64(s.substr(dash + 1), b) || b < a)
    return reg_error(Code::kRangeInvalid, "invalid Content-Range", std::string(s.substr(0, 100)));
  return std::pair{a, b};
}

// A single "bytes=a-b" or "bytes=a-" range of a blob of size bytes; nullopt means whole blob.
RegResult<std::optional<std::pair<uint64_t, uint64_t>>> parse_range(std::string_view s,
                                                                    uint64_t size) {
  if (s.empty() || !s.starts_with("bytes=")) return std::nullopt;
  s.remove_prefix(6);
  auto dash = s.find('-');
  uint64_t a = 0, b = size ? size - 1 : 0;
  if (dash == std::string_view::npos || !parse_u64(s.substr(0, dash), a) ||
      (dash + 1 < s.size() && !parse_u64(s.substr(dash + 1), b)) || a > b || a >= size)
    return reg_error(Code::kRangeInvalid, "range not satisfiable", std::string(s.substr(0, 100)));
  return std::pair{a, std::min(b, size - 1)};
}

}  // namespace

RegResult<Response> Registry::get_blob(Request& req, const Route& route) {
  Digest d = TRY(parse_digest(route.ref));
  if (!store_.has_blob(route.name, d))
    return reg_error(Code::kBlobUnknown, "blob unknown to registry", d.str());
  bool head = req.method == "HEAD";
  Fd fd = TRY(store_.open_blob(d));
  Response r = TRY(file_response(std::move(fd), head, "application/octet-stream", d.str()));
  r.header("Accept-Ranges", "bytes");
  if (head) return r;
  auto range = TRY(parse_range(req.header("range"), r.file_length));
  if (range) {
    r.status = 206;
    r.header("Content-Range",
             fmt::format("bytes {}-{}/{}", range->first, range->second, r.file_length));
    r.file_offset = range->first;
    r.file_length = range->second - range->first + 1;
  }
  return r;
}

RegResult<Response> Registry::delete_blob(const Route& route) {
  Digest d = TRY(parse_digest(route.ref));
  TRY(store_.unlink_blob(route.name, d));
  Response r;
  r.status = 202;
  return r;
}

RegResult<Response> Registry::mount(const Route& route, const Digest& d) {
  TRY(store_.link_blob(route.name, d));
  return blob_created(route, d);
}

RegResult<Response> Registry::start_upload(Request& req, const Route& route) {
  std::string mount_param = req.param("mount");
  if (!mount_param.empty()) {
    auto d = parse_digest(mount_param);
    std::string from = req.param("from");
    bool ok = d && (from.empty() ? store_.blob_known(*d)
                                 : validate_name(from).has_value() && store_.has_blob(from, *d));
    if (ok) return mount(route, *d);
  }
  std::string digest_param = req.param("digest");
  auto up = TRY(uploads_.start(route.name));
  std::unique_lock lock(up->mu);
  if (digest_param.empty()) return upload_accepted(route, *up, 202);
  auto d = parse_digest(digest_param);
  if (!d) {
    uploads_.cancel(up->id);
    return std::unexpected(d.error());
  }
  if (auto w = uploads_.append(*up, req.read_body, std::nullopt); !w) {
    uploads_.cancel(up->id);
    return std::unexpected(w.error());
  }
  TRY(uploads_.finish(up, *d));
  return blob_created(route, *d);
}

RegResult<Response> Registry::upload_status(const Route& route) {
  auto up = TRY(uploads_.find(route.name, route.ref));
  std::unique_lock lock(up->mu, kBusyWait);
  return upload_accepted(route, *up, 204);
}

// Appends the request body, checking Content-Range (416 when it does not continue the upload).
RegResult<void> Registry::write_chunk(Request& req, Upload& up) {
  std::string cr = req.header("content-range");
  std::optional<uint64_t> length;
  if (!cr.empty()) {
    auto [start, end] = TRY(parse_content_range(cr));
    if (start != up.size)
      return reg_error(Code::kRangeInvalid, "chunk does not continue the upload",
                       fmt::format("upload has {} bytes, chunk starts at {}", up.size, start));
    length = end - start + 1;
    if (req.content_length && *req.content_length != *length)
      return reg_error(Code::kBlobUploadInvalid, "Content-Length does not match Content-Range");
  }
  if (!req.has_body) return {};
  return uploads_.append(up, req.read_body, length);
}

RegResult<Response> Registry::patch_upload(Request& req, const Route& route) {
  auto up = TRY(uploads_.find(route.name, route.ref));
  std::unique_lock lock(up->mu, kBusyWait);
  if (!lock)
    return reg_error(Code::kBlobUploadInvalid, "another request is writing this upload", up->id);
  if (auto w = write_chunk(req, *up); !w) {
    if (w.error().code() != Code::kRangeInvalid) return std::unexpected(w.error());
    Response r = Response::error(w.error());
    r.header("Location", upload_location(route, up->id)).header("Range", range_header(up->size));
    return r;
  }
  return upload_accepted(route, *up, 202);
}

RegResult<Response> Registry::put_upload(Request& req, const Route& route) {
  auto up = TRY(uploads_.find(route.name, route.ref));
  std::unique_lock lock(up->mu, kBusyWait);
  if (!lock)
    return reg_error(Code::kBlobUploadInvalid, "another request is writing this upload", up->id);
  std::string digest_param = req.param("digest");
  if (digest_param.empty())
    return reg_error(Code::kDigestInvalid, "the digest query parameter is required");
  Digest d = TRY(parse_digest(digest_param));
  TRY(write_chunk(req, *up));
  TRY(uploads_.finish(up, d));
  return blob_created(route, d);
}

RegResult<Response> Registry::cancel_upload(const Route& route) {
  auto up = TRY(uploads_.find(route.name, route.ref));
  uploads_.cancel(up->id);
  Response r;
  r.status = 204;
  return r;
}

}  // namespace vireo::registry
