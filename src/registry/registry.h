#pragma once
// Registry: the OCI distribution-spec 1.1 API over a Store. handle() turns one request into one
// response; bodies are streamed through the request's reader. Thread-safe: requests run
// concurrently on the server's connection threads.
#include <memory>

#include "registry/http_types.h"
#include "registry/routes.h"
#include "registry/store.h"
#include "registry/uploads.h"

namespace vireo::registry {

class Registry {
 public:
  explicit Registry(Store& store) : store_(store), uploads_(store) {}

  Response handle(Request& req);
  UploadManager& uploads() { return uploads_; }

 private:
  RegResult<Response> dispatch(Request& req, const Route& route);
  RegResult<Response> list(Request& req, const Route& route);
  RegResult<Response> referrers(Request& req, const Route& route);

  // blob_handlers.cc
  RegResult<Response> get_blob(Request& req, const Route& route);
  RegResult<Response> delete_blob(const Route& route);
  RegResult<Response> start_upload(Request& req, const Route& route);
  RegResult<Response> upload_status(const Route& route);
  RegResult<Response> patch_upload(Request& req, const Route& route);
  RegResult<Response> put_upload(Request& req, const Route& route);
  RegResult<Response> cancel_upload(const Route& route);
  RegResult<Response> mount(const Route& route, const Digest& d);
  RegResult<void> write_chunk(Request& req, Upload& up);

  // manifest_handlers.cc
  RegResult<Response> get_manifest(Request& req, const Route& route);
  RegResult<Response> put_manifest(Request& req, const Route& route);
  RegResult<Response> delete_manifest(const Route& route);

  Store& store_;
  UploadManager uploads_;
};

// Serves a whole open file (or a HEAD of it) with the given content type and digest.
RegResult<Response> file_response(Fd fd, bool head, const std::string& type,
                                  const std::string& digest);

}  // namespace vireo::registry
