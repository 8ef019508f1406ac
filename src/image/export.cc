// ImageStore's exports: an image as an OCI image layout, as a directory or as one tar file.
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "base/fd.h"
#include "base/file.h"
#include "image/image_store.h"
#include "image/media_types.h"

namespace vireo::image {

namespace fs = std::filesystem;

namespace {

// One file of a layout: inline content, or a blob copied from the store.
struct LayoutFile {
  std::string path;
  std::string content;
  fs::path blob;
};

std::vector<LayoutFile> layout_files(BlobStore& blobs, const ImageInfo& image,
                                     const std::string& tag) {
  Descriptor d{image.manifest.media_type, image.manifest_digest, 0, {}, {}};
  d.size = blobs.size_of(image.manifest_digest).value_or(0);
  d.annotations["org.opencontainers.image.ref.name"] = tag;
  Json index = {{"schemaVersion", 2},
                {"mediaType", media::kOciIndex},
                {"manifests", Json::array({d.to_json()})}};
  std::vector<LayoutFile> files = {
      {"oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}", {}},
      {"index.json", index.dump(), {}},
  };
  std::vector<Digest> digests = {image.manifest_digest, image.manifest.config.digest};
  for (const auto& l : image.manifest.layers) digests.push_back(l.digest);
  for (const auto& digest : digests)
    files.push_back({fmt::format("blobs/{}/{}", digest.algorithm_name(), digest.hex), "",
                     blobs.path_of(digest)});
  return files;
}

la_ssize_t write_fd(archive*, void* fd, const void* buf, size_t n) {
  ssize_t w = ::write(*static_cast<int*>(fd), buf, n);
  return w < 0 ? -1 : static_cast<la_ssize_t>(w);
}

Result<void> write_entry(archive* a, const std::string& path, int type, uint64_t size) {
  archive_entry* e = archive_entry_new();
  archive_entry_copy_pathname(e, path.c_str());
  archive_entry_set_filetype(e, static_cast<unsigned>(type));
  archive_entry_set_perm(e, type == AE_IFDIR ? 0755 : 0644);
  archive_entry_set_size(e, static_cast<la_int64_t>(size));
  int r = archive_write_header(a, e);
  archive_entry_free(e);
  if (r != ARCHIVE_OK)
    return make_error(ErrorCode::kIo, "write {}: {}", path, archive_error_string(a));
  return {};
}

Result<void> write_blob_data(archive* a, const LayoutFile& f) {
  if (f.blob.empty()) {
    if (archive_write_data(a, f.content.data(), f.content.size()) < 0)
      return make_error(ErrorCode::kIo, "write {}: {}", f.path, archive_error_string(a));
    return {};
  }
  Fd fd(::open(f.blob.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return errno_error(fmt::format("open {}", f.blob.string()));
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) return errno_error(fmt::format("read {}", f.blob.string()));
    if (n == 0) return {};
    if (archive_write_data(a, buf, static_cast<size_t>(n)) < 0)
      return make_error(ErrorCode::kIo, "write {}: {}", f.path, archive_error_string(a));
  }
}

Result<void> write_archive(int fd, const std::vector<LayoutFile>& files) {
  archive* a = archive_write_new();
  std::unique_ptr<archive, int (*)(archive*)> guard(a, archive_write_free);
  archive_write_set_format_pax_restricted(a);
  if (archive_write_open(a, &fd, nullptr, write_fd, nullptr) != ARCHIVE_OK)
    return make_error(ErrorCode::kIo, "open archive: {}", archive_error_string(a));
  for (const char* dir : {"blobs/", "blobs/sha256/", "blobs/sha512/"})
    TRY(write_entry(a, dir, AE_IFDIR, 0));
  for (const auto& f : files) {
    uint64_t size = f.content.size();
    std::error_code ec;
    if (!f.blob.empty()) size = fs::file_size(f.blob, ec);
    if (ec) return make_error(ErrorCode::kIo, "{}: {}", f.blob.string(), ec.message());
    TRY(write_entry(a, f.path, AE_IFREG, size));
    TRY(write_blob_data(a, f));
  }
  if (archive_write_close(a) != ARCHIVE_OK)
    return make_error(ErrorCode::kIo, "close archive: {}", archive_error_string(a));
  return {};
}

std::string tag_for(const ImageInfo& image, std::string_view ref_text) {
  auto ref = Reference::parse(ref_text);
  if (ref && !ref->tag.empty()) return ref->tag;
  if (!image.tags.empty()) return image.tags[0].substr(image.tags[0].rfind(':') + 1);
  return "latest";
}

}  // namespace

Result<void> ImageStore::export_oci_layout(std::string_view ref, const fs::path& dir) {
  std::lock_guard lock(mu_);
  ImageInfo image = TRY(load_image(TRY(resolve(ref))));
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_empty(dir, ec))
    return make_error(ErrorCode::kAlreadyExists, "{} exists and is not empty", dir.string());
  for (const char* sub : {"blobs/sha256", "blobs/sha512"}) TRY(make_dirs(dir / sub));
  for (const auto& f : layout_files(*blobs_, image, tag_for(image, ref))) {
    if (f.blob.empty()) {
      TRY(write_file_atomic(dir / f.path, f.content, 0644));
      continue;
    }
    fs::copy_file(f.blob, dir / f.path, ec);
    if (ec) return make_error(ErrorCode::kIo, "copy {}: {}", f.path, ec.message());
    fs::permissions(dir / f.path, fs::perms(0644), ec);
  }
  return {};
}

Result<void> ImageStore::export_oci_archive(std::string_view ref, const fs::path& tar) {
  std::lock_guard lock(mu_);
  ImageInfo image = TRY(load_image(TRY(resolve(ref))));
  std::string tmp = tar.string() + ".tmp-XXXXXX";
  Fd fd(::mkostemp(tmp.data(), O_CLOEXEC));
  if (!fd) return errno_error(fmt::format("create {}", tmp));
  auto r = write_archive(fd.get(), layout_files(*blobs_, image, tag_for(image, ref)));
  if (r && (::fchmod(fd.get(), 0644) != 0 || ::fsync(fd.get()) != 0))
    r = errno_error(fmt::format("fsync {}", tmp));
  if (r && ::rename(tmp.c_str(), tar.c_str()) != 0)
    r = errno_error(fmt::format("rename to {}", tar.string()));
  if (!r) ::unlink(tmp.c_str());
  return r;
}

}  // namespace vireo::image
