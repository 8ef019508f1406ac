#include "image/layer_store.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "base/fd.h"
#include "base/file.h"
#include "base/json.h"
#include "image/manifest.h"
#include "image/tree.h"

namespace vireo::image {

namespace fs = std::filesystem;

Result<std::unique_ptr<LayerStore>> LayerStore::create(const fs::path& root, bool privileged) {
  auto store = std::unique_ptr<LayerStore>(new LayerStore(root / "layers", privileged));
  TRY(make_dirs(store->dir_, 0755));
  return store;
}

bool LayerStore::has(const Digest& diff_id) const {
  struct stat st;
  return ::lstat(path_of(diff_id).c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

Result<Layer> LayerStore::unpack(const ReadFn& source, const std::optional<Digest>& expected) {
  std::string tmp = (dir_ / ".tmp-XXXXXX").string();
  if (!::mkdtemp(tmp.data())) return errno_error(fmt::format("mkdtemp in {}", dir_.string()));
  auto fail = [&](Error e) -> Result<Layer> {
    (void)remove_tree(tmp);
    return std::unexpected(std::move(e));
  };
  Fd fd(::open(tmp.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return fail(Error::from_errno(errno, "open " + tmp));
  UnpackOptions options{.mode = UnpackMode::kLayer, .privileged = privileged_};
  auto summary = unpack_tar(source, fd.get(), options);
  if (!summary) return fail(summary.error());
  if (expected && summary->diff_id != *expected)
    return fail(Error(ErrorCode::kInvalidArgument,
                      fmt::format("layer diff_id mismatch: config says {}, content is {}",
                                  expected->str(), summary->diff_id.str())));
  if (::fchmod(fd.get(), 0755) != 0) return fail(Error::from_errno(errno, "chmod " + tmp));
  auto layer = commit(tmp, *summary);
  if (!layer) return fail(layer.error());
  return layer;
}

Result<Layer> LayerStore::commit(const fs::path& tmp, const UnpackSummary& s) {
  if (has(s.diff_id)) {
    TRY(remove_tree(tmp));
    return get(s.diff_id);
  }
  if (!s.whiteouts.empty() || !s.opaque_dirs.empty()) {
    Json j = {{"whiteouts", s.whiteouts}, {"opaque_dirs", s.opaque_dirs}};
    TRY(write_file_atomic(sidecar_of(s.diff_id), dump_json(j) + "\n", 0644));
  } else {
    ::unlink(sidecar_of(s.diff_id).c_str());
  }
  if (::rename(tmp.c_str(), path_of(s.diff_id).c_str()) != 0)
    return errno_error(fmt::format("rename layer into {}", path_of(s.diff_id).string()));
  return Layer{s.diff_id, path_of(s.diff_id), s.whiteouts, s.opaque_dirs};
}

Result<Layer> LayerStore::get(const Digest& diff_id) const {
  if (!has(diff_id))
    return make_error(ErrorCode::kNotFound, "layer {} is not unpacked", diff_id.str());
  Layer layer{diff_id, path_of(diff_id), {}, {}};
  std::error_code ec;
  if (!fs::exists(sidecar_of(diff_id), ec)) return layer;
  std::string text = TRY(read_file(sidecar_of(diff_id)));
  Json j = TRY_CTX(parse_untrusted_json(text), "{}", sidecar_of(diff_id).string());
  try {
    layer.whiteouts = j.at("whiteouts").get<std::vector<std::string>>();
    layer.opaque_dirs = j.at("opaque_dirs").get<std::vector<std::string>>();
  } catch (const Json::exception& e) {
    return make_error(ErrorCode::kInvalidArgument, "{}: {}", sidecar_of(diff_id).string(),
                      e.what());
  }
  return layer;
}

Result<std::vector<Digest>> LayerStore::list() const {
  std::vector<Digest> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    auto d = Digest::parse("sha256:" + e.path().filename().string());
    if (d && e.is_directory(ec)) out.push_back(std::move(*d));
  }
  if (ec) return make_error(ErrorCode::kIo, "list {}: {}", dir_.string(), ec.message());
  return out;
}

Result<uint64_t> LayerStore::remove(const Digest& diff_id) {
  uint64_t size = tree_size(path_of(diff_id));
  TRY(remove_tree(path_of(diff_id)));
  ::unlink(sidecar_of(diff_id).c_str());
  return size;
}

uint64_t LayerStore::remove_temporaries() {
  uint64_t freed = 0;
  std::error_code ec;
  std::vector<fs::path> doomed;
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    std::string name = e.path().filename().string();
    if (name.starts_with(".tmp-")) doomed.push_back(e.path());
    // A marker list whose layer is gone.
    auto hex = name.substr(0, name.find('.'));
    if (name.ends_with(".whiteouts.json") && !fs::exists(dir_ / hex, ec))
      doomed.push_back(e.path());
  }
  for (const auto& p : doomed) {
    if (fs::is_directory(p, ec)) {
      freed += tree_size(p);
    } else {
      auto size = fs::file_size(p, ec);
      freed += ec ? 0 : size;
    }
    (void)remove_tree(p);
  }
  return freed;
}

}  // namespace vireo::image
