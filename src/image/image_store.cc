#include "image/image_store.h"

#include <fcntl.h>
#include <sys/file.h>

#include <optional>
#include <set>

#include "base/file.h"
#include "base/time.h"
#include "image/media_types.h"
#include "image/tree.h"

namespace vireo::image {

namespace fs = std::filesystem;

namespace {

ReadFn reader_fn(BlobReader& reader) {
  return [&reader](void* buf, size_t len) { return reader.read(buf, len); };
}

}  // namespace

Result<std::unique_ptr<ImageStore>> ImageStore::create(const fs::path& root, StoreOptions options) {
  TRY(make_dirs(root, 0755));
  // One owner per root: two processes would each prune what the other is writing.
  Fd lock(::open((root / "lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!lock) return errno_error("open " + (root / "lock").string());
  if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0)
    return make_error(ErrorCode::kConflict,
                      "image store {} is in use by another process (one vireod per state root)",
                      root.string());
  TRY(make_dirs(root / "tmp", 0700));
  auto blobs = TRY(BlobStore::create(root));
  auto layers = TRY(LayerStore::create(root, options.privileged));
  auto tags = TRY(TagStore::load(root));
  auto store = std::unique_ptr<ImageStore>(new ImageStore(root, std::move(blobs), std::move(layers),
                                                          std::move(tags), options.privileged));
  store->lock_ = std::move(lock);
  return store;
}

Result<fs::path> ImageStore::make_scratch_dir() {
  std::string tmp = (root_ / "tmp" / "import-XXXXXX").string();
  if (!::mkdtemp(tmp.data())) return errno_error("create scratch directory");
  return fs::path(tmp);
}

std::vector<std::string> ImageStore::tags_of(const Digest& manifest) const {
  std::vector<std::string> out;
  for (const auto& [tag, digest] : tags_.all())
    if (digest == manifest) out.push_back(tag);
  return out;
}

Result<Digest> ImageStore::resolve(std::string_view text) {
  Reference ref = TRY(Reference::parse(text));
  if (!ref.tag.empty()) {
    auto digest = tags_.get(ref.tagged());
    if (!digest) return make_error(ErrorCode::kNotFound, "image {} not found", ref.tagged());
    if (ref.digest && *ref.digest != *digest)
      return make_error(ErrorCode::kNotFound, "image {} is {}, not {}", ref.tagged(), digest->str(),
                        ref.digest->str());
    return *digest;
  }
  for (const auto& [tag, digest] : tags_.all())
    if (tag.starts_with(ref.name + ":") && digest == *ref.digest) return digest;
  return make_error(ErrorCode::kNotFound, "image {} not found", ref.str());
}

Result<ImageInfo> ImageStore::load_image(const Digest& manifest_digest) {
  ImageInfo info;
  info.manifest_digest = manifest_digest;
  std::string text = TRY_CTX(blobs_->read(manifest_digest), "manifest {}", manifest_digest.str());
  info.manifest = TRY_CTX(parse_manifest(text), "manifest {}", manifest_digest.str());
  std::string config = TRY_CTX(blobs_->read(info.manifest.config.digest), "config {}",
                               info.manifest.config.digest.str());
  if (info.manifest.is_vm()) {
    info.kind = ImageKind::kVm;
    info.vm = TRY_CTX(parse_vm_config(config), "config {}", info.manifest.config.digest.str());
    info.config.architecture = info.vm->architecture;
    info.config.raw = info.vm->to_json();
  } else {
    info.config = TRY_CTX(parse_config(config), "config {}", info.manifest.config.digest.str());
  }
  for (const auto& l : info.manifest.layers) info.size += l.size;
  info.tags = tags_of(manifest_digest);
  return info;
}

Result<ImageInfo> ImageStore::commit(const std::string& manifest_json, std::string_view ref) {
  Reference parsed = TRY(Reference::parse(ref));
  std::lock_guard lock(mu_);
  return commit_image(manifest_json, parsed);
}

Result<ImageInfo> ImageStore::commit_image(const std::string& manifest_json, const Reference& ref) {
  if (ref.tag.empty() || ref.digest)
    return make_error(ErrorCode::kInvalidArgument,
                      "import needs a NAME[:TAG] reference without a digest, not '{}'", ref.str());
  Manifest m = TRY(parse_manifest(manifest_json));
  if (!blobs_->has(m.config.digest))
    return make_error(ErrorCode::kNotFound, "config blob {} is missing", m.config.digest.str());
  std::string config_json = TRY_CTX(blobs_->read(m.config.digest), "config");
  if (m.is_vm()) {
    TRY(check_vm_image(m, config_json));
    BlobInfo stored = TRY_CTX(blobs_->put(manifest_json), "store manifest");
    TRY(tags_.set(ref.tagged(), stored.digest));
    return load_image(stored.digest);
  }
  ImageConfig config = TRY(parse_config(config_json));
  if (config.diff_ids.size() != m.layers.size())
    return make_error(ErrorCode::kInvalidArgument,
                      "invalid image: config has {} diff_ids for {} layers", config.diff_ids.size(),
                      m.layers.size());
  for (size_t i = 0; i < m.layers.size(); ++i) {
    if (layers_->has(config.diff_ids[i])) continue;
    auto reader = TRY_CTX(blobs_->open(m.layers[i].digest), "layer {}", i);
    TRY_CTX(layers_->unpack(reader_fn(reader), config.diff_ids[i]), "layer {} ({})", i,
            m.layers[i].digest.str());
  }
  BlobInfo stored = TRY_CTX(blobs_->put(manifest_json), "store manifest");
  TRY(tags_.set(ref.tagged(), stored.digest));
  return load_image(stored.digest);
}

Result<void> ImageStore::check_vm_image(const Manifest& m, const std::string& config_json) {
  VmDiskConfig config = TRY(parse_vm_config(config_json));
  const Descriptor& disk = m.layers.at(0);
  DiskFormat format = TRY(disk_format_of_media_type(disk.media_type));
  if (format != config.format)
    return make_error(ErrorCode::kInvalidArgument,
                      "invalid VM disk image: the config says {} but the disk layer is {}",
                      to_string(config.format), to_string(format));
  if (!blobs_->has(disk.digest))
    return make_error(ErrorCode::kNotFound, "disk blob {} is missing", disk.digest.str());
  if (TRY(blobs_->size_of(disk.digest)) != disk.size)
    return make_error(ErrorCode::kInvalidArgument, "disk blob {}: size is not {}",
                      disk.digest.str(), disk.size);
  uint64_t virtual_size =
      TRY_CTX(inspect_disk(blobs_->path_of(disk.digest), format), "disk {}", disk.digest.str());
  if (virtual_size != config.virtual_size)
    return make_error(ErrorCode::kInvalidArgument,
                      "invalid VM disk image: the config says a virtual size of {} but the disk "
                      "has {}",
                      config.virtual_size, virtual_size);
  return {};
}

Result<ImageInfo> ImageStore::import_vm_disk(const fs::path& file, std::string_view ref_text,
                                             std::optional<DiskFormat> format) {
  std::lock_guard lock(mu_);
  Reference ref = TRY(Reference::parse(ref_text));
  if (!format) {
    format = TRY(detect_disk_format(file));
    if (!format)
      return make_error(ErrorCode::kInvalidArgument,
                        "{}: not a disk image (no qcow2 magic, MBR/GPT boot signature or ext "
                        "superblock)",
                        file.string());
  }
  VmDiskConfig config{.format = *format,
                      .virtual_size = TRY(inspect_disk(file, *format)),
                      .created = now_timestamp()};
  BlobInfo disk = TRY_CTX(blobs_->put_file(file, std::nullopt), "{}", file.string());
  BlobInfo config_blob = TRY(blobs_->put(config.to_json().dump()));
  Manifest m;
  m.media_type = media::kOciManifest;
  m.config = {std::string(media::kVmConfig), config_blob.digest, config_blob.size, {}, {}};
  m.layers.push_back({std::string(disk_media_type(*format)), disk.digest, disk.size, {}, {}});
  return with_context(commit_image(m.to_json().dump(), ref), file.string());
}

Result<VmDiskBlob> ImageStore::vm_disk(std::string_view ref) {
  VmDiskBlob out;
  {
    std::lock_guard lock(mu_);
    ImageInfo image = TRY(load_image(TRY(resolve(ref))));
    if (image.kind != ImageKind::kVm)
      return make_error(ErrorCode::kInvalidArgument, "image {} is not a VM disk image", ref);
    out = {blobs_->path_of(image.manifest.layers[0].digest), image.vm->format,
           image.vm->virtual_size, image.manifest.layers[0].digest};
  }
  TRY_CTX(blobs_->verify(out.digest), "image {}", ref);  // outside the lock: it reads it all
  return out;
}

Result<std::vector<ImageInfo>> ImageStore::list() {
  std::lock_guard lock(mu_);
  std::set<Digest> seen;
  std::vector<ImageInfo> out;
  for (const auto& [tag, digest] : tags_.all()) {
    if (!seen.insert(digest).second) continue;
    out.push_back(TRY_CTX(load_image(digest), "image {}", tag));
  }
  return out;
}

Result<ImageInfo> ImageStore::show(std::string_view ref) {
  std::lock_guard lock(mu_);
  return load_image(TRY(resolve(ref)));
}

Result<void> ImageStore::tag(std::string_view source_ref, std::string_view new_ref) {
  std::lock_guard lock(mu_);
  Digest digest = TRY(resolve(source_ref));
  Reference ref = TRY(Reference::parse(new_ref));
  if (ref.tag.empty() || ref.digest)
    return make_error(ErrorCode::kInvalidArgument, "tag '{}' must be NAME[:TAG]", new_ref);
  return tags_.set(ref.tagged(), digest);
}

Result<void> ImageStore::remove(std::string_view text) {
  std::lock_guard lock(mu_);
  Reference ref = TRY(Reference::parse(text));
  if (ref.tag.empty()) {  // NAME@DIGEST: every tag of that name on that manifest
    Digest digest = TRY(resolve(text));
    for (const auto& tag : tags_of(digest))
      if (tag.starts_with(ref.name + ":")) TRY(tags_.remove(tag));
    return {};
  }
  TRY(resolve(text));
  return tags_.remove(ref.tagged());
}

Result<std::vector<Layer>> ImageStore::unpack_layers(const ImageInfo& image) {
  if (image.kind == ImageKind::kVm)
    return make_error(ErrorCode::kInvalidArgument,
                      "image {} is a VM disk image, not a container image",
                      image.tags.empty() ? image.manifest_digest.str() : image.tags.front());
  std::vector<Layer> out;
  for (size_t i = 0; i < image.config.diff_ids.size(); ++i) {
    const Digest& diff_id = image.config.diff_ids[i];
    if (layers_->has(diff_id)) {
      out.push_back(TRY(layers_->get(diff_id)));
      continue;
    }
    auto reader = TRY_CTX(blobs_->open(image.manifest.layers.at(i).digest), "layer {}", i);
    out.push_back(TRY_CTX(layers_->unpack(reader_fn(reader), diff_id), "layer {}", i));
  }
  return out;
}

Result<std::vector<Layer>> ImageStore::unpack(std::string_view ref) {
  std::lock_guard lock(mu_);
  ImageInfo image = TRY(load_image(TRY(resolve(ref))));
  return unpack_layers(image);
}

Result<PruneReport> ImageStore::prune(const std::vector<Digest>& in_use) {
  std::lock_guard lock(mu_);
  if (work_ > 0)
    return make_error(ErrorCode::kConflict,
                      "a pull, push or build is in progress: prune when it has finished");
  std::set<Digest> blobs, layers;
  std::vector<std::pair<std::string, Digest>> roots(tags_.all().begin(), tags_.all().end());
  for (const auto& d : in_use) roots.emplace_back(d.str(), d);
  for (const auto& [name, digest] : roots) {
    // An unreadable image stops the prune: deleting what it may reach would lose data.
    ImageInfo image = TRY_CTX(load_image(digest), "prune: image {}", name);
    blobs.insert(digest);
    blobs.insert(image.manifest.config.digest);
    for (const auto& l : image.manifest.layers) blobs.insert(l.digest);
    layers.insert(image.config.diff_ids.begin(), image.config.diff_ids.end());
  }
  PruneReport report;
  for (const auto& d : TRY(blobs_->list())) {
    if (blobs.contains(d)) continue;
    report.bytes_freed += TRY(blobs_->remove(d));
    ++report.blobs_removed;
  }
  for (const auto& d : TRY(layers_->list())) {
    if (layers.contains(d)) continue;
    report.bytes_freed += TRY(layers_->remove(d));
    ++report.layers_removed;
  }
  report.bytes_freed += blobs_->remove_temporaries() + layers_->remove_temporaries();
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root_ / "tmp", ec)) {
    report.bytes_freed += tree_size(e.path());
    (void)remove_tree(e.path());
  }
  return report;
}

}  // namespace vireo::image
