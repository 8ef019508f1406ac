// The manifest endpoints of Registry: pull by tag or digest, push (validated, every reference
// checked), delete.
#include "registry/names.h"
#include "registry/registry.h"

namespace vireo::registry {

namespace {

// A reference is a digest or a tag; each is validated with its own error code.
RegResult<void> validate_reference(const std::string& ref) {
  if (!looks_like_digest(ref)) return validate_tag(ref);
  TRY(parse_digest(ref));
  return {};
}

}  // namespace

RegResult<Response> Registry::get_manifest(Request& req, const Route& route) {
  TRY(validate_reference(route.ref));
  ManifestRef m = TRY(store_.resolve_manifest(route.name, route.ref));
  auto fd = store_.open_blob(m.digest);
  if (!fd) return reg_error(Code::kManifestUnknown, "manifest unknown", route.ref);
  return file_response(std::move(*fd), req.method == "HEAD", m.media_type, m.digest.str());
}

RegResult<Response> Registry::put_manifest(Request& req, const Route& route) {
  TRY(validate_reference(route.ref));
  std::string body = TRY(read_all(req, kMaxManifestSize));
  Manifest m = TRY(parse_manifest(body, req.header("content-type")));
  Digest d = digest_of(body);
  std::string tag;
  if (looks_like_digest(route.ref)) {
    Digest want = TRY(parse_digest(route.ref));
    d = digest_of(body, want.algorithm);
    if (d != want)
      return reg_error(Code::kDigestInvalid, "manifest content does not match the digest",
                       fmt::format("expected {}, content is {}", want.str(), d.str()));
  } else {
    tag = route.ref;
  }
  TRY(store_.put_manifest(route.name, tag, d, body, m));
  Response r;
  r.status = 201;
  r.header("Location", "/v2/" + route.name + "/manifests/" + d.str());
  r.header("Docker-Content-Digest", d.str());
  if (m.subject) r.header("OCI-Subject", m.subject->digest.str());
  return r;
}

RegResult<Response> Registry::delete_manifest(const Route& route) {
  TRY(validate_reference(route.ref));
  TRY(store_.delete_manifest(route.name, route.ref));
  Response r;
  r.status = 202;
  return r;
}

}  // namespace vireo::registry
