// ImageStore's imports: root file system tarballs, OCI layouts and archives, docker save
// archives. Archives are unpacked (securely, names taken literally) into a scratch directory
// under <root>/tmp; every file of a layout is opened inside it with openat2, never by a joined
// path, and every blob is verified against its digest as it is stored.
#include <fcntl.h>
#include <sys/stat.h>

#include "base/fd.h"
#include "image/image_store.h"
#include "image/media_types.h"
#include "image/tree.h"

namespace vireo::image {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kRefNameAnnotation = "org.opencontainers.image.ref.name";
constexpr size_t kMaxJson = 16 << 20;
constexpr int kMaxIndexDepth = 4;

struct ScratchDir {
  fs::path path;
  ~ScratchDir() { (void)remove_tree(path); }
};

Result<std::string> read_in_root(int root_fd, const std::string& path) {
  Fd fd = TRY_CTX(open_in_root(root_fd, path, O_RDONLY), "{}", path);
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) return errno_error(fmt::format("read {}", path));
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > kMaxJson)
      return make_error(ErrorCode::kTooLarge, "{} is larger than {} bytes", path, kMaxJson);
  }
  return out;
}

std::string_view layer_media_type(const fs::path& blob) {
  unsigned char magic[4] = {};
  Fd fd(::open(blob.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd || ::read(fd.get(), magic, sizeof magic) != sizeof magic) return media::kOciLayerTar;
  if (magic[0] == 0x1f && magic[1] == 0x8b) return media::kOciLayerGzip;
  if (magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd)
    return media::kOciLayerZstd;
  return media::kOciLayerTar;
}

Result<Fd> open_dir(const fs::path& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return errno_error(fmt::format("open {}", dir.string()));
  return fd;
}

// Copies blobs/<alg>/<hex> of a layout into the store, checking size and digest.
Result<void> copy_blob(BlobStore& blobs, int layout_fd, const Descriptor& d) {
  if (blobs.has(d.digest)) return {};
  std::string path = fmt::format("blobs/{}/{}", d.digest.algorithm_name(), d.digest.hex);
  Fd fd = TRY_CTX(open_in_root(layout_fd, path, O_RDONLY), "blob {}", d.digest.str());
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return errno_error(fmt::format("stat {}", path));
  if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != d.size)
    return make_error(ErrorCode::kInvalidArgument, "blob {}: size {} but descriptor says {}",
                      d.digest.str(), st.st_size, d.size);
  TRY_CTX(blobs.put_fd(fd.get(), d.digest), "blob {}", d.digest.str());
  return {};
}

// The index entry meant by ref: the one annotated with its tag (or whole name), else the only
// one or the linux/amd64 one.
Result<Descriptor> pick_manifest(const Index& index, const Reference& ref) {
  std::vector<Descriptor> named;
  for (const auto& d : index.manifests) {
    auto it = d.annotations.find(std::string(kRefNameAnnotation));
    if (it != d.annotations.end() && (it->second == ref.tag || it->second == ref.tagged()))
      named.push_back(d);
  }
  if (named.size() == 1) return named[0];
  Index candidates{index.media_type, named.empty() ? index.manifests : named};
  if (candidates.manifests.size() == 1) return candidates.manifests[0];
  return select_platform(candidates);
}

}  // namespace

Result<ImageInfo> ImageStore::import_rootfs_tar(const fs::path& tar, std::string_view ref_text) {
  std::lock_guard lock(mu_);
  Reference ref = TRY(Reference::parse(ref_text));
  BlobInfo blob = TRY(blobs_->put_file(tar, std::nullopt));
  auto reader = TRY(blobs_->open(blob.digest));
  Layer layer =
      TRY_CTX(layers_->unpack([&](void* b, size_t n) { return reader.read(b, n); }, std::nullopt),
              "{}", tar.string());
  Json config = {{"architecture", "amd64"},
                 {"os", "linux"},
                 {"config",
                  {{"Env", {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}},
                   {"Cmd", {"/bin/sh"}}}},
                 {"rootfs", {{"type", "layers"}, {"diff_ids", {layer.diff_id.str()}}}},
                 {"history", {{{"created_by", "vireo image import"}}}}};
  BlobInfo config_blob = TRY(blobs_->put(config.dump()));
  Manifest m;
  m.media_type = media::kOciManifest;
  m.config = {std::string(media::kOciConfig), config_blob.digest, config_blob.size, {}, {}};
  m.layers.push_back({std::string(layer_media_type(blobs_->path_of(blob.digest))),
                      blob.digest,
                      blob.size,
                      {},
                      {}});
  return commit_image(m.to_json().dump(), ref);
}

Result<ImageInfo> ImageStore::import_oci_layout(const fs::path& dir, std::string_view ref_text) {
  std::lock_guard lock(mu_);
  Reference ref = TRY(Reference::parse(ref_text));
  return with_context(import_layout_locked(dir, ref), dir.string());
}

Result<ImageInfo> ImageStore::import_layout_locked(const fs::path& dir, const Reference& ref) {
  Fd root = TRY(open_dir(dir));
  Json layout =
      TRY_CTX(parse_untrusted_json(TRY(read_in_root(root.get(), "oci-layout"))), "oci-layout");
  if (!layout.is_object() || !layout.contains("imageLayoutVersion"))
    return make_error(ErrorCode::kInvalidArgument, "oci-layout: missing imageLayoutVersion");
  std::string text = TRY(read_in_root(root.get(), "index.json"));
  Index index = TRY_CTX(parse_index(text), "index.json");
  Descriptor chosen = TRY_CTX(pick_manifest(index, ref), "index.json");
  for (int depth = 0;; ++depth) {
    TRY(copy_blob(*blobs_, root.get(), chosen));
    text = TRY(blobs_->read(chosen.digest));
    if (TRY(detect_kind(text, chosen.media_type)) == DocumentKind::kManifest) break;
    if (depth == kMaxIndexDepth)
      return make_error(ErrorCode::kInvalidArgument, "image indexes nested too deep");
    chosen = TRY(select_platform(TRY(parse_index(text))));
  }
  Manifest m = TRY(parse_manifest(text));
  TRY(copy_blob(*blobs_, root.get(), m.config));
  for (const auto& l : m.layers) TRY(copy_blob(*blobs_, root.get(), l));
  return commit_image(text, ref);
}

Result<ImageInfo> ImageStore::import_oci_archive(const fs::path& tar, std::string_view ref_text) {
  std::lock_guard lock(mu_);
  Reference ref = TRY(Reference::parse(ref_text));
  ScratchDir scratch{TRY(make_scratch_dir())};
  Fd fd = TRY(open_dir(scratch.path));
  TRY(unpack_tar_file(tar, fd.get(), {.mode = UnpackMode::kArchive, .privileged = false}));
  return with_context(import_layout_locked(scratch.path, ref), tar.string());
}

Result<ImageInfo> ImageStore::import_docker_archive(const fs::path& tar,
                                                    std::string_view ref_text) {
  std::lock_guard lock(mu_);
  ScratchDir scratch{TRY(make_scratch_dir())};
  Fd root = TRY(open_dir(scratch.path));
  TRY(unpack_tar_file(tar, root.get(), {.mode = UnpackMode::kArchive, .privileged = false}));
  auto image = docker_manifest(root.get(), ref_text);
  if (!image) return std::unexpected(std::move(image.error()).with_context(tar.string()));
  return with_context(commit_image(image->first.to_json().dump(), image->second), tar.string());
}

Result<std::pair<Manifest, Reference>> ImageStore::docker_manifest(int root_fd,
                                                                   std::string_view ref_text) {
  Json j =
      TRY_CTX(parse_untrusted_json(TRY(read_in_root(root_fd, "manifest.json"))), "manifest.json");
  if (!j.is_array() || j.empty() || !j[0].is_object())
    return make_error(ErrorCode::kInvalidArgument, "manifest.json: expected a non-empty array");
  const Json& entry = j[0];
  std::string ref_str(ref_text);
  auto tags = entry.find("RepoTags");
  if (ref_str.empty() && tags != entry.end() && tags->is_array() && !tags->empty() &&
      (*tags)[0].is_string())
    ref_str = (*tags)[0].get<std::string>();
  if (ref_str.empty())
    return make_error(ErrorCode::kInvalidArgument, "no RepoTags in the archive: name the image");
  Reference ref = TRY(Reference::parse(ref_str));
  Manifest m;
  m.media_type = media::kOciManifest;
  BlobInfo config =
      TRY(put_from_archive(root_fd, TRY_CTX(get_string(entry, "Config"), "manifest.json")));
  m.config = {std::string(media::kOciConfig), config.digest, config.size, {}, {}};
  auto layers = entry.find("Layers");
  if (layers == entry.end() || !layers->is_array() || layers->size() > kMaxLayers)
    return make_error(ErrorCode::kInvalidArgument, "manifest.json: bad 'Layers'");
  for (const auto& l : *layers) {
    if (!l.is_string())
      return make_error(ErrorCode::kInvalidArgument, "manifest.json: bad 'Layers'");
    BlobInfo blob = TRY(put_from_archive(root_fd, l.get<std::string>()));
    m.layers.push_back({std::string(layer_media_type(blobs_->path_of(blob.digest))),
                        blob.digest,
                        blob.size,
                        {},
                        {}});
  }
  return std::make_pair(std::move(m), std::move(ref));
}

Result<BlobInfo> ImageStore::put_from_archive(int root_fd, const std::string& path) {
  Fd fd = TRY(open_in_root(root_fd, path, O_RDONLY));
  return with_context(blobs_->put_fd(fd.get(), std::nullopt), path);
}

}  // namespace vireo::image
