#include "image/tar_builder.h"

#include <archive.h>
#include <archive_entry.h>
#include <sys/sysmacros.h>

#include <cstdlib>
#include <cstring>
#include <fstream>

#include "image/layer_unpack.h"
#include "image/media_types.h"

namespace vireo::image::testing {

TarBuilder::Entry& TarBuilder::add(std::string path, int type, int mode) {
  Entry& e = entries_.emplace_back();
  e.path = std::move(path);
  e.type = type;
  e.mode = mode;
  e.mtime = mtime_;
  e.xattrs = std::move(pending_xattrs_);
  pending_xattrs_.clear();
  return e;
}

TarBuilder& TarBuilder::file(std::string path, std::string content, int mode) {
  add(std::move(path), S_IFREG, mode).content = std::move(content);
  return *this;
}

TarBuilder& TarBuilder::dir(std::string path, int mode) {
  add(std::move(path), S_IFDIR, mode);
  return *this;
}

TarBuilder& TarBuilder::symlink(std::string path, std::string target) {
  add(std::move(path), S_IFLNK, 0777).link = std::move(target);
  return *this;
}

TarBuilder& TarBuilder::hardlink(std::string path, std::string target) {
  Entry& e = add(std::move(path), S_IFREG, 0644);
  e.link = std::move(target);
  e.hard = true;
  return *this;
}

TarBuilder& TarBuilder::device(std::string path, int type, unsigned major, unsigned minor) {
  Entry& e = add(std::move(path), type, 0600);
  e.major = major;
  e.minor = minor;
  return *this;
}

TarBuilder& TarBuilder::xattr(std::string name, std::string value) {
  pending_xattrs_.emplace_back(std::move(name), std::move(value));
  return *this;
}

TarBuilder& TarBuilder::mtime(long seconds) {
  mtime_ = seconds;
  return *this;
}

namespace {

la_ssize_t append(archive*, void* out, const void* buf, size_t n) {
  static_cast<std::string*>(out)->append(static_cast<const char*>(buf), n);
  return static_cast<la_ssize_t>(n);
}

}  // namespace

std::string TarBuilder::build(Compression c) const {
  std::string out;
  archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  if (c == Compression::kGzip) archive_write_add_filter_gzip(a);
  if (c == Compression::kZstd) archive_write_add_filter_zstd(a);
  archive_write_set_bytes_in_last_block(a, 1);
  if (archive_write_open(a, &out, nullptr, append, nullptr) != ARCHIVE_OK) std::abort();
  for (const auto& e : entries_) {
    archive_entry* ae = archive_entry_new();
    archive_entry_copy_pathname(ae, e.path.c_str());
    archive_entry_set_filetype(ae, static_cast<unsigned>(e.type));
    archive_entry_set_perm(ae, static_cast<mode_t>(e.mode));
    archive_entry_set_mtime(ae, e.mtime, 0);
    if (e.hard) archive_entry_copy_hardlink(ae, e.link.c_str());
    if (e.type == S_IFLNK) archive_entry_copy_symlink(ae, e.link.c_str());
    if (e.type == S_IFCHR || e.type == S_IFBLK)
      archive_entry_set_rdev(ae, makedev(e.major, e.minor));
    for (const auto& [k, v] : e.xattrs)
      archive_entry_xattr_add_entry(ae, k.c_str(), v.data(), v.size());
    archive_entry_set_size(
        ae, e.type == S_IFREG && !e.hard ? static_cast<la_int64_t>(e.content.size()) : 0);
    if (archive_write_header(a, ae) != ARCHIVE_OK) std::abort();
    if (!e.content.empty()) archive_write_data(a, e.content.data(), e.content.size());
    archive_entry_free(ae);
  }
  archive_write_close(a);
  archive_write_free(a);
  return out;
}

void write_test_file(const std::filesystem::path& p, const std::string& content) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << content;
}

Digest write_layout(const std::filesystem::path& dir, const std::vector<std::string>& layers,
                    Json image_config, const std::string& tag) {
  auto blob = [&](const std::string& data) {
    Digest d = digest_of(data);
    write_test_file(dir / "blobs/sha256" / d.hex, data);
    return d;
  };
  Json diff_ids = Json::array(), layer_descs = Json::array();
  for (const auto& l : layers) {
    auto pos = std::make_shared<size_t>(0);
    auto id = tar_diff_id([&](void* b, size_t n) -> Result<size_t> {
      size_t k = std::min(n, l.size() - *pos);
      std::memcpy(b, l.data() + *pos, k);
      *pos += k;
      return k;
    });
    diff_ids.push_back(id->str());
    layer_descs.push_back(
        {{"mediaType", media::kOciLayerGzip}, {"digest", blob(l).str()}, {"size", l.size()}});
  }
  Json config = {{"architecture", "amd64"},
                 {"os", "linux"},
                 {"config", image_config},
                 {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}};
  std::string config_text = config.dump();
  Json manifest = {{"schemaVersion", 2},
                   {"mediaType", media::kOciManifest},
                   {"config",
                    {{"mediaType", media::kOciConfig},
                     {"digest", blob(config_text).str()},
                     {"size", config_text.size()}}},
                   {"layers", layer_descs}};
  std::string manifest_text = manifest.dump();
  Digest md = blob(manifest_text);
  Json index = {{"schemaVersion", 2},
                {"manifests",
                 {{{"mediaType", media::kOciManifest},
                   {"digest", md.str()},
                   {"size", manifest_text.size()},
                   {"annotations", {{"org.opencontainers.image.ref.name", tag}}}}}}};
  write_test_file(dir / "index.json", index.dump());
  write_test_file(dir / "oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}");
  return md;
}

}  // namespace vireo::image::testing
