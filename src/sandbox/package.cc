#include "sandbox/package.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>

#include "base/digest.h"
#include "base/fd.h"
#include "base/file.h"
#include "base/ids.h"
#include "base/strings.h"
#include "base/subprocess.h"
#include "container/linux_sys.h"
#include "sandbox/app_paths.h"

namespace vireo::sandbox {

namespace {

namespace fs = std::filesystem;
constexpr size_t kManifestLimit = 1 << 20;
constexpr const char* kLoaderList = "/lib64/ld-linux-x86-64.so.2";

std::string app_dir(const std::string& name) {
  return "usr/lib/vireo-apps/" + name;
}

struct PackedFile {
  std::string source;  // on the host
  std::string path;    // in files/, relative
};

// The shared libraries the dynamic loader maps for program, and the loader itself; empty for
// a static program.
Result<std::vector<std::string>> elf_closure(const std::string& program) {
  auto r =
      TRY(run_process({kLoaderList, "--list", program}, {.timeout = std::chrono::seconds(30)}));
  if (!r.ok()) {
    if (r.out.find("not a dynamic executable") != std::string::npos ||
        r.err.find("not a dynamic executable") != std::string::npos)
      return std::vector<std::string>{};
    return make_error(ErrorCode::kInvalidArgument, "{}: not a program the loader can list: {}",
                      program, std::string(trim(r.err)));
  }
  std::vector<std::string> libs;
  for (const auto& raw : split(r.out, '\n')) {
    std::string line(trim(raw));
    if (line.empty() || line.starts_with("linux-vdso")) continue;
    if (line.find("=> not found") != std::string::npos)
      return make_error(ErrorCode::kNotFound, "{}: library {} not found", program,
                        line.substr(0, line.find(' ')));
    auto arrow = line.find("=> ");
    std::string path =
        arrow == std::string::npos ? line.substr(0, line.find(' ')) : line.substr(arrow + 3);
    path = path.substr(0, path.find(" ("));
    if (path.starts_with("/")) libs.push_back(path);
  }
  return libs;
}

Result<std::string> under_redirected_root(const std::string& path) {
  auto abs = TRY(checked_absolute_path(path, "--include"));
  for (const auto& root : default_redirected_paths())
    if (abs.starts_with(root + "/")) return abs.substr(1);
  return make_error(
      ErrorCode::kInvalidArgument,
      "--include {}: only files under /usr, /etc, /opt, /var and /srv can be packaged", path);
}

Result<void> add_include(const std::string& path, std::vector<PackedFile>& files) {
  std::error_code ec;
  if (!fs::exists(path, ec))
    return make_error(ErrorCode::kNotFound, "--include {}: not found", path);
  if (!fs::is_directory(path, ec)) {
    files.push_back({path, TRY(under_redirected_root(path))});
    return {};
  }
  for (auto it = fs::recursive_directory_iterator(path, ec); !ec && it != fs::end(it);
       it.increment(ec))
    if (it->is_regular_file(ec))
      files.push_back({it->path().string(), TRY(under_redirected_root(it->path().string()))});
  if (ec) return make_error(ErrorCode::kIo, "--include {}: {}", path, ec.message());
  return {};
}

std::string profile_name(Profile p) {
  return p == Profile::kStrict ? "strict" : "default";
}

Result<std::pair<std::string, uint64_t>> hash_file(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  struct stat st;
  if (!fd || ::fstat(fd.get(), &st) != 0) return errno_error("open " + path);
  auto digest = TRY_CTX(digest_of_file(fd.get()), "{}", path);
  return std::pair{digest.hex, static_cast<uint64_t>(st.st_size)};
}

struct ArchiveWriter {
  archive* a = archive_write_new();
  ~ArchiveWriter() { archive_write_free(a); }
  std::unexpected<Error> fail(const std::string& what) {
    return make_error(ErrorCode::kIo, "{}: {}", what, archive_error_string(a));
  }
  Result<void> add(const std::string& name, const std::string& data, int mode) {
    std::unique_ptr<archive_entry, decltype(&archive_entry_free)> e(archive_entry_new(),
                                                                    archive_entry_free);
    archive_entry_set_pathname(e.get(), name.c_str());
    archive_entry_set_filetype(e.get(), AE_IFREG);
    archive_entry_set_perm(e.get(), mode);
    archive_entry_set_size(e.get(), data.size());
    if (archive_write_header(a, e.get()) != ARCHIVE_OK) return fail("write " + name);
    if (archive_write_data(a, data.data(), data.size()) != static_cast<la_ssize_t>(data.size()))
      return fail("write " + name);
    return {};
  }
};

}  // namespace

std::string manifest_digest(const Json& manifest) {
  Json copy = manifest;
  copy.erase("digest");
  return "sha256:" + sha256_hex(copy.dump());
}

Result<void> validate_manifest(const Json& m) {
  auto bad = [](const std::string& why) {
    return make_error(ErrorCode::kInvalidArgument, "package manifest: {}", why);
  };
  if (!m.is_object()) return bad("not a JSON object");
  // Checked by type first: value() throws when the field is there with another type (found by
  // the fuzzer: "vireo_app": []).
  auto version = m.find("vireo_app");
  if (version == m.end() || !version->is_number_integer() || *version != 1)
    return bad("\"vireo_app\" must be 1");
  for (const char* key : {"name", "digest", "profile", "net"})
    if (!m.contains(key) || !m[key].is_string())
      return bad(fmt::format("\"{}\" must be a string", key));
  TRY(validate_app_name(m["name"].get<std::string>()));
  for (const char* key : {"command", "env", "files"})
    if (!m.contains(key) || !m[key].is_array())
      return bad(fmt::format("\"{}\" must be a list", key));
  if (m["command"].empty()) return bad("\"command\" is empty");
  for (const auto& a : m["command"])
    if (!a.is_string()) return bad("\"command\" holds a non-string");
  for (const auto& a : m["env"])
    if (!a.is_string() || a.get<std::string>().find('=') == std::string::npos)
      return bad("\"env\" entries must be \"KEY=VALUE\"");
  if (m["profile"] != "default" && m["profile"] != "strict") return bad("unknown profile");
  if (m["net"] != "host" && m["net"] != "none") return bad("unknown net");
  for (const auto& f : m["files"]) {
    if (!f.is_object() || !f.contains("path") || !f["path"].is_string() || !f.contains("sha256") ||
        !f["sha256"].is_string() || !f.contains("mode") || !f["mode"].is_number_integer() ||
        f["mode"].get<int64_t>() < 0)
      return bad("a file entry needs path, sha256 and mode");
    std::string path = f["path"].get<std::string>();
    auto checked = checked_absolute_path("/" + path, "package file");
    if (!checked || *checked != "/" + path) return bad("file path '" + path + "' is not clean");
    auto root = under_redirected_root("/" + path);
    if (!root) return bad("file path '" + path + "' is outside the redirected system paths");
  }
  return {};
}

Result<PackResult> pack_app(const PackOptions& o) {
  TRY(validate_app_name(o.name));
  if (o.command.empty())
    return make_error(ErrorCode::kInvalidArgument,
                      "usage: vireo app pack --name APP -- CMD [ARGS]");
  std::string program =
      o.command[0].find('/') == std::string::npos ? find_program(o.command[0]) : o.command[0];
  std::error_code ec;
  if (program.empty() || !fs::is_regular_file(program, ec))
    return make_error(ErrorCode::kNotFound, "program {} not found", o.command[0]);
  program = fs::canonical(program).string();
  std::string dir = app_dir(o.name);
  std::string prog_name = fs::path(program).filename().string();
  std::vector<PackedFile> files{{program, dir + "/bin/" + prog_name}};
  auto libs = TRY(elf_closure(program));
  std::string loader;
  for (const auto& lib : libs) {
    std::string base = fs::path(lib).filename().string();
    files.push_back({fs::canonical(lib, ec).string(), dir + "/lib/" + base});
    if (base.starts_with("ld-linux")) loader = "/" + dir + "/lib/" + base;
  }
  for (const auto& inc : o.includes) TRY(add_include(inc, files));

  Json command = Json::array();
  if (!loader.empty())
    command = {loader, "--library-path", "/" + dir + "/lib", "--argv0", o.command[0]};
  command.push_back("/" + dir + "/bin/" + prog_name);
  for (size_t i = 1; i < o.command.size(); ++i) command.push_back(o.command[i]);
  Json manifest = {{"vireo_app", 1},
                   {"name", o.name},
                   {"command", command},
                   {"env", o.env},
                   {"profile", profile_name(o.profile)},
                   {"net", o.net == NetMode::kNone ? "none" : "host"},
                   {"files", Json::array()}};
  PackResult result;
  for (const auto& f : files) {
    auto [sha, size] = TRY(hash_file(f.source));
    struct stat st;
    if (::stat(f.source.c_str(), &st) != 0) return errno_error("stat " + f.source);
    manifest["files"].push_back({{"path", f.path}, {"sha256", sha}, {"mode", st.st_mode & 0755}});
    result.bytes += size;
  }
  manifest["digest"] = manifest_digest(manifest);
  result.digest = manifest["digest"];
  result.files = files.size();
  result.path = o.output.empty() ? o.name + ".vapp" : o.output;

  std::string tmp = result.path + ".tmp";
  ArchiveWriter w;
  archive_write_set_format_pax_restricted(w.a);
  archive_write_add_filter_gzip(w.a);
  if (archive_write_open_filename(w.a, tmp.c_str()) != ARCHIVE_OK) return w.fail("create " + tmp);
  auto write_all = [&]() -> Result<void> {
    TRY(w.add("manifest.json", manifest.dump(2) + "\n", 0644));
    for (size_t i = 0; i < files.size(); ++i)
      TRY(w.add("files/" + files[i].path, TRY(read_file(files[i].source)),
                manifest["files"][i]["mode"].get<int>()));
    if (archive_write_close(w.a) != ARCHIVE_OK) return w.fail("finish " + tmp);
    return {};
  }();
  if (!write_all || ::rename(tmp.c_str(), result.path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    if (!write_all) return std::unexpected(write_all.error());
    return errno_error("rename " + tmp);
  }
  return result;
}

namespace {

struct ArchiveReader {
  archive* a = archive_read_new();
  ~ArchiveReader() { archive_read_free(a); }
  std::unexpected<Error> fail(const std::string& what) {
    return make_error(ErrorCode::kInvalidArgument, "{}: {}", what, archive_error_string(a));
  }
};

std::string cache_base() {
  if (const char* dir = std::getenv("VIREO_APP_CACHE"); dir && dir[0] == '/') return dir;
  if (::geteuid() == 0) return "/var/cache/vireo/apps";
  if (const char* c = std::getenv("XDG_CACHE_HOME"); c && c[0] == '/')
    return std::string(c) + "/vireo/apps";
  return home_directory() + "/.cache/vireo/apps";
}

Result<Json> read_manifest(ArchiveReader& r, const std::string& file) {
  archive_entry* e = nullptr;
  if (archive_read_next_header(r.a, &e) != ARCHIVE_OK)
    return r.fail(fmt::format("package {}: not a readable package", file));
  if (std::string(archive_entry_pathname(e)) != "manifest.json")
    return make_error(ErrorCode::kInvalidArgument, "package {}: manifest.json must come first",
                      file);
  if (archive_entry_size(e) > static_cast<la_int64_t>(kManifestLimit))
    return make_error(ErrorCode::kInvalidArgument, "package {}: manifest over 1 MiB", file);
  std::string text(archive_entry_size(e), '\0');
  if (archive_read_data(r.a, text.data(), text.size()) != static_cast<la_ssize_t>(text.size()))
    return r.fail(fmt::format("package {}: read manifest", file));
  auto m = parse_json(text);
  if (!m) return make_error(ErrorCode::kInvalidArgument, "package {}: manifest is not JSON", file);
  TRY_CTX(validate_manifest(*m), "package {}", file);
  if ((*m)["digest"] != manifest_digest(*m))
    return make_error(ErrorCode::kInvalidArgument,
                      "package {}: manifest digest does not match its content (changed after "
                      "packing?)",
                      file);
  return *m;
}

// Streams one entry into dest (an exclusive new file below root, never through a symlink) while
// hashing it.
Result<std::string> extract_entry(ArchiveReader& r, int root_fd, const std::string& path,
                                  int mode) {
  auto parent = fs::path(path).parent_path().string();
  auto dir = TRY(container::sys::make_dirs_in_root(root_fd, parent, 0755));
  Fd dir_fd(::openat(dir.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd) return errno_error("open " + parent);
  std::string base = fs::path(path).filename().string();
  Fd out(::openat(dir_fd.get(), base.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  mode & 0755));
  if (!out) return errno_error("create " + path);
  Hasher h;
  char buf[1 << 16];
  for (la_ssize_t n; (n = archive_read_data(r.a, buf, sizeof buf)) != 0;) {
    if (n < 0) return r.fail("read " + path);
    h.update(buf, n);
    TRY(container::sys::write_all(out.get(), std::string_view(buf, n)));
  }
  return h.digest().hex;
}

Result<void> extract_files(ArchiveReader& r, const Json& manifest, const std::string& dest,
                           const std::string& file) {
  std::map<std::string, std::pair<std::string, int>> expected;
  for (const auto& f : manifest["files"])
    expected[f["path"]] = {f["sha256"].get<std::string>(), f["mode"].get<int>()};
  TRY(make_dirs(dest));
  Fd root(::open(dest.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root) return errno_error("open " + dest);
  archive_entry* e = nullptr;
  int rc;
  while ((rc = archive_read_next_header(r.a, &e)) == ARCHIVE_OK) {
    std::string name = archive_entry_pathname(e);
    std::string path = name.starts_with("files/") ? name.substr(6) : "";
    auto it = expected.find(path);
    if (it == expected.end() || archive_entry_filetype(e) != AE_IFREG)
      return make_error(ErrorCode::kInvalidArgument,
                        "package {}: entry '{}' is not a file listed in the manifest", file, name);
    auto sha = TRY_CTX(extract_entry(r, root.get(), path, it->second.second), "package {}", file);
    if (sha != it->second.first)
      return make_error(ErrorCode::kInvalidArgument,
                        "package {}: {} does not match its digest (the package was altered)", file,
                        path);
    expected.erase(it);
  }
  if (rc != ARCHIVE_EOF) return r.fail(fmt::format("package {}", file));
  if (!expected.empty())
    return make_error(ErrorCode::kInvalidArgument, "package {}: {} is missing", file,
                      expected.begin()->first);
  return {};
}

}  // namespace

Result<Package> open_package(const std::string& file) {
  ArchiveReader r;
  archive_read_support_filter_all(r.a);
  archive_read_support_format_tar(r.a);
  if (archive_read_open_filename(r.a, file.c_str(), 1 << 16) != ARCHIVE_OK)
    return r.fail("open package " + file);
  Json m = TRY(read_manifest(r, file));
  std::string digest = m["digest"];
  std::string dest = cache_base() + "/" + digest.substr(7);
  // Every run verifies the whole package; the unpacked copy is reused only when it exists.
  std::string tmp = fmt::format("{}.tmp-{}", dest, ::getpid());
  auto extracted = extract_files(r, m, tmp, file);
  std::error_code ec;
  if (!extracted) {
    fs::remove_all(tmp, ec);
    return std::unexpected(extracted.error());
  }
  if (::rename(tmp.c_str(), dest.c_str()) != 0) fs::remove_all(tmp, ec);

  Package p;
  p.name = m["name"];
  p.digest = digest;
  p.files_dir = dest;
  for (const auto& a : m["command"]) p.command.push_back(a);
  for (const auto& a : m["env"]) p.env.push_back(a);
  p.profile = m["profile"] == "strict" ? Profile::kStrict : Profile::kDefault;
  p.net = m["net"] == "none" ? NetMode::kNone : NetMode::kHost;
  return p;
}

}  // namespace vireo::sandbox
