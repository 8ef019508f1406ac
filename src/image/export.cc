// ImageStore's exports: an image as an OCI image layout (a directory or one tar file), as a
// `docker save` archive, or flattened into one root file system tar.
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "base/fd.h"
#include "base/file.h"
#include "image/image_store.h"
#include "image/media_types.h"
#include "image/rootfs.h"
#include "image/tree.h"

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

using ArchivePtr = std::unique_ptr<archive, int (*)(archive*)>;

Result<ArchivePtr> open_tar_writer(int& fd) {
  ArchivePtr a(archive_write_new(), archive_write_free);
  archive_write_set_format_pax_restricted(a.get());
  if (archive_write_open(a.get(), &fd, nullptr, write_fd, nullptr) != ARCHIVE_OK)
    return make_error(ErrorCode::kIo, "open archive: {}", archive_error_string(a.get()));
  return a;
}

Result<void> close_tar_writer(archive* a) {
  if (archive_write_close(a) != ARCHIVE_OK)
    return make_error(ErrorCode::kIo, "close archive: {}", archive_error_string(a));
  return {};
}

// The files (and first these directories) as one tar.
Result<void> write_archive(int fd, const std::vector<std::string>& dirs,
                           const std::vector<LayoutFile>& files) {
  ArchivePtr owner = TRY(open_tar_writer(fd));
  archive* a = owner.get();
  for (const auto& dir : dirs) TRY(write_entry(a, dir, AE_IFDIR, 0));
  for (const auto& f : files) {
    uint64_t size = f.content.size();
    std::error_code ec;
    if (!f.blob.empty()) size = fs::file_size(f.blob, ec);
    if (ec) return make_error(ErrorCode::kIo, "{}: {}", f.blob.string(), ec.message());
    TRY(write_entry(a, f.path, AE_IFREG, size));
    TRY(write_blob_data(a, f));
  }
  return close_tar_writer(a);
}

// `docker save`'s layout: manifest.json, the config as <hex>.json, each layer blob (as stored,
// compressed: docker load and skopeo detect it) as <hex>/layer.tar.
std::vector<LayoutFile> docker_archive_files(BlobStore& blobs, const ImageInfo& image,
                                             const std::string& repo_tag) {
  std::vector<LayoutFile> files;
  std::string config_name = image.manifest.config.digest.hex + ".json";
  files.push_back({config_name, "", blobs.path_of(image.manifest.config.digest)});
  Json layers = Json::array();
  for (const auto& l : image.manifest.layers) {
    std::string name = l.digest.hex + "/layer.tar";
    layers.push_back(name);
    files.push_back({name, "", blobs.path_of(l.digest)});
  }
  Json manifest = Json::array(
      {{{"Config", config_name}, {"RepoTags", Json::array({repo_tag})}, {"Layers", layers}}});
  files.insert(files.begin(), {"manifest.json", manifest.dump(), {}});
  return files;
}

Result<void> copy_file_data(archive* a, const char* source, const std::string& name) {
  Fd fd(::open(source, O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return errno_error(fmt::format("open {}", source));
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) return errno_error(fmt::format("read {}", source));
    if (n == 0) return {};
    if (archive_write_data(a, buf, static_cast<size_t>(n)) < 0)
      return make_error(ErrorCode::kIo, "write {}: {}", name, archive_error_string(a));
  }
}

// Every entry under dir (not following symlinks, hard links kept as links, ownership, modes,
// xattrs) into a, named relative to dir.
Result<void> write_tree(archive* a, const fs::path& dir) {
  ArchivePtr disk(archive_read_disk_new(), archive_read_free);
  archive_read_disk_set_standard_lookup(disk.get());
  archive_read_disk_set_symlink_physical(disk.get());
  if (archive_read_disk_open(disk.get(), dir.c_str()) != ARCHIVE_OK)
    return make_error(ErrorCode::kIo, "read {}: {}", dir.string(),
                      archive_error_string(disk.get()));
  std::unique_ptr<archive_entry_linkresolver, void (*)(archive_entry_linkresolver*)> links(
      archive_entry_linkresolver_new(), archive_entry_linkresolver_free);
  archive_entry_linkresolver_set_strategy(links.get(), archive_format(a));
  const std::string prefix = dir.string() + "/";
  for (;;) {
    std::unique_ptr<archive_entry, void (*)(archive_entry*)> e(archive_entry_new(),
                                                               archive_entry_free);
    int r = archive_read_next_header2(disk.get(), e.get());
    if (r == ARCHIVE_EOF) break;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
      return make_error(ErrorCode::kIo, "read {}: {}", dir.string(),
                        archive_error_string(disk.get()));
    archive_read_disk_descend(disk.get());
    std::string source = archive_entry_sourcepath(e.get());
    if (!source.starts_with(prefix)) continue;  // the root itself
    std::string name = source.substr(prefix.size());
    archive_entry_copy_pathname(e.get(), name.c_str());
    archive_entry* entry = e.release();
    archive_entry* sparse = nullptr;
    archive_entry_linkify(links.get(), &entry, &sparse);
    e.reset(entry);
    if (archive_write_header(a, entry) != ARCHIVE_OK)
      return make_error(ErrorCode::kIo, "write {}: {}", name, archive_error_string(a));
    if (archive_entry_filetype(entry) == AE_IFREG && archive_entry_size(entry) > 0)
      TRY(copy_file_data(a, source.c_str(), name));
  }
  return {};
}

// Writes a tar file through fn into a temporary file beside it, renamed when complete.
Result<void> write_tar_file(const fs::path& tar, const std::function<Result<void>(int)>& fn) {
  std::string tmp = tar.string() + ".tmp-XXXXXX";
  Fd fd(::mkostemp(tmp.data(), O_CLOEXEC));
  if (!fd) return errno_error(fmt::format("create {}", tmp));
  auto r = fn(fd.get());
  if (r && (::fchmod(fd.get(), 0644) != 0 || ::fsync(fd.get()) != 0))
    r = errno_error(fmt::format("fsync {}", tmp));
  if (r && ::rename(tmp.c_str(), tar.c_str()) != 0)
    r = errno_error(fmt::format("rename to {}", tar.string()));
  if (!r) ::unlink(tmp.c_str());
  return r;
}

// The layers flattened into dir (created), then dir as the tar file.
Result<void> write_flattened(const std::vector<Layer>& layers, const fs::path& dir,
                             const fs::path& tar, bool privileged) {
  TRY(make_dirs(dir, 0755));
  TRY(flatten_layers(layers, dir, privileged));
  return write_tar_file(tar, [&](int fd) -> Result<void> {
    ArchivePtr a = TRY(open_tar_writer(fd));
    TRY(write_tree(a.get(), dir));
    return close_tar_writer(a.get());
  });
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
  auto files = layout_files(*blobs_, image, tag_for(image, ref));
  return write_tar_file(tar, [&](int fd) {
    return write_archive(fd, {"blobs/", "blobs/sha256/", "blobs/sha512/"}, files);
  });
}

Result<void> ImageStore::export_docker_archive(std::string_view ref, const fs::path& tar) {
  std::lock_guard lock(mu_);
  ImageInfo image = TRY(load_image(TRY(resolve(ref))));
  if (image.kind == ImageKind::kVm)
    return make_error(ErrorCode::kInvalidArgument,
                      "image {} is a VM disk image: export it as an OCI layout or archive", ref);
  auto parsed = Reference::parse(ref);
  std::string repo_tag = parsed && !parsed->tag.empty() ? parsed->tagged()
                         : image.tags.empty()           ? std::string()
                                                        : image.tags.front();
  auto files = docker_archive_files(*blobs_, image, repo_tag);
  std::vector<std::string> dirs;
  for (const auto& l : image.manifest.layers) dirs.push_back(l.digest.hex + "/");
  return write_tar_file(tar, [&](int fd) { return write_archive(fd, dirs, files); });
}

Result<void> ImageStore::export_rootfs_tar(std::string_view ref, const fs::path& tar) {
  std::lock_guard lock(mu_);
  ImageInfo image = TRY(load_image(TRY(resolve(ref))));
  std::vector<Layer> layers = TRY(unpack_layers(image));
  fs::path scratch = TRY(make_scratch_dir());
  auto r = write_flattened(layers, scratch / "rootfs", tar, privileged_);
  (void)remove_tree(scratch);
  return r;
}

}  // namespace vireo::image
