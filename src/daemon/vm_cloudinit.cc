#include "daemon/vm_cloudinit.h"

#include <array>
#include <cctype>
#include <set>

#include "base/base64.h"
#include "base/file.h"
#include "base/strings.h"
#include "base/subprocess.h"

namespace vireo::daemon {

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr size_t kMaxKeyBytes = 16 * 1024;
constexpr uint64_t kMinImageBytes = 1 << 20;

bool is_dns_label(std::string_view s) {
  if (s.empty() || s.size() > 63 || s.front() == '-' || s.back() == '-') return false;
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
  return true;
}

// "TYPE BASE64 [COMMENT]" with a known key type whose blob starts with that same type, as
// ssh-keygen writes them. Key options (from="...", ...) are not accepted.
bool is_ssh_public_key(std::string_view key) {
  static const std::set<std::string_view> kTypes = {"ssh-ed25519",
                                                    "ssh-rsa",
                                                    "ssh-dss",
                                                    "ecdsa-sha2-nistp256",
                                                    "ecdsa-sha2-nistp384",
                                                    "ecdsa-sha2-nistp521",
                                                    "sk-ssh-ed25519@openssh.com",
                                                    "sk-ecdsa-sha2-nistp256@openssh.com"};
  if (key.empty() || key.size() > kMaxKeyBytes) return false;
  for (char c : key)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return false;
  auto space = key.find(' ');
  if (space == std::string_view::npos) return false;
  std::string_view type = key.substr(0, space);
  std::string_view rest = key.substr(space + 1);
  std::string_view blob = rest.substr(0, rest.find(' '));
  if (!kTypes.contains(type) || blob.empty()) return false;
  auto raw = base64_decode(blob);
  if (!raw || raw->size() < 4 + type.size()) return false;
  const auto* b = reinterpret_cast<const unsigned char*>(raw->data());
  const size_t len = size_t(b[0]) << 24 | size_t(b[1]) << 16 | size_t(b[2]) << 8 | b[3];
  return len == type.size() && std::string_view(*raw).substr(4, len) == type;
}

std::string program(const std::string& name) {
  std::string path = find_program(name);
  for (const char* dir : {"/usr/sbin/", "/sbin/"})
    if (path.empty() && fs::exists(std::string(dir) + name)) path = std::string(dir) + name;
  return path;
}

Result<void> run_tool(const std::vector<std::string>& argv) {
  RunOptions options;
  options.timeout = 30s;
  options.extra_env = {"MTOOLS_SKIP_CHECK=1"};
  auto r = TRY_CTX(run_process(argv, options), "{}", argv[0]);
  if (!r.ok())
    return make_error(ErrorCode::kIo, "{} failed: {}", fs::path(argv[0]).filename().string(),
                      std::string(trim(r.err.empty() ? r.out : r.err)));
  return {};
}

}  // namespace

Result<Json> validate_cloud_init(const Json& value) {
  if (!value.is_object())
    return make_error(ErrorCode::kInvalidArgument,
                      "field 'cloud_init' must be an object with hostname, ssh_authorized_keys, "
                      "user_data");
  Json out = Json::object();
  for (const auto& [key, v] : value.items()) {
    if (key == "hostname") {
      if (!v.is_string() || !is_dns_label(v.get<std::string>()))
        return make_error(ErrorCode::kInvalidArgument,
                          "cloud_init.hostname must be a DNS label (letters, digits, '-', at most "
                          "63 characters)");
      out[key] = v;
    } else if (key == "ssh_authorized_keys") {
      if (!v.is_array() || v.size() > kMaxSshKeys)
        return make_error(ErrorCode::kInvalidArgument,
                          "cloud_init.ssh_authorized_keys must be a list of at most {} keys",
                          kMaxSshKeys);
      for (size_t i = 0; i < v.size(); ++i)
        if (!v[i].is_string() || !is_ssh_public_key(v[i].get<std::string>()))
          return make_error(ErrorCode::kInvalidArgument,
                            "cloud_init.ssh_authorized_keys[{}] is not an OpenSSH public key "
                            "(TYPE BASE64 [COMMENT], as in id_ed25519.pub)",
                            i);
      out[key] = v;
    } else if (key == "user_data") {
      if (!v.is_string())
        return make_error(ErrorCode::kInvalidArgument, "cloud_init.user_data must be a string");
      if (v.get_ref<const std::string&>().size() > kMaxUserDataBytes)
        return make_error(ErrorCode::kInvalidArgument,
                          "cloud_init.user_data is {} bytes, more than the {} KiB allowed",
                          v.get_ref<const std::string&>().size(), kMaxUserDataBytes / 1024);
      out[key] = v;
    } else {
      return make_error(ErrorCode::kInvalidArgument,
                        "cloud_init: unknown field '{}' (it has hostname, ssh_authorized_keys, "
                        "user_data)",
                        key);
    }
  }
  return out;
}

std::string yaml_quote(std::string_view value) {
  std::string out = "\"";
  for (size_t i = 0; i < value.size(); ++i) {
    const auto c = static_cast<unsigned char>(value[i]);
    // YAML also breaks lines at NEL (U+0085), LS (U+2028) and PS (U+2029).
    if (c == 0xc2 && i + 1 < value.size() && static_cast<unsigned char>(value[i + 1]) == 0x85) {
      out += "\\N";
      ++i;
    } else if (c == 0xe2 && value.substr(i + 1, 2) == "\x80\xa8") {
      out += "\\L";
      i += 2;
    } else if (c == 0xe2 && value.substr(i + 1, 2) == "\x80\xa9") {
      out += "\\P";
      i += 2;
    } else if (c == '"' || c == '\\') {
      out += '\\';
      out += char(c);
    } else if (c < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += char(c);
    }
  }
  return out + "\"";
}

CloudInitSeed cloud_init_seed(const Json& cloud_init, std::string_view instance_id) {
  const std::string hostname = cloud_init.value("hostname", "");
  const Json keys = cloud_init.value("ssh_authorized_keys", Json::array());
  auto key_list = [&keys](std::string& out) {
    for (const auto& k : keys) out += "  - " + yaml_quote(k.get<std::string>()) + "\n";
  };
  CloudInitSeed seed;
  seed.meta_data = "instance-id: " + yaml_quote(instance_id) + "\n";
  if (!hostname.empty()) seed.meta_data += "local-hostname: " + yaml_quote(hostname) + "\n";
  if (!keys.empty()) {
    seed.meta_data += "public-keys:\n";
    key_list(seed.meta_data);
  }
  if (cloud_init.contains("user_data")) {
    seed.user_data = cloud_init["user_data"].get<std::string>();
    return seed;
  }
  seed.user_data = "#cloud-config\n";
  if (!hostname.empty()) seed.user_data += "hostname: " + yaml_quote(hostname) + "\n";
  if (!keys.empty()) {
    seed.user_data += "ssh_authorized_keys:\n";
    key_list(seed.user_data);
  }
  return seed;
}

Result<compute::DiskSpec> write_cloud_init_seed(const CloudInitSeed& seed, const fs::path& dir) {
  const std::string mkfs = program("mkfs.vfat"), mcopy = program("mcopy");
  if (mkfs.empty() || mcopy.empty())
    return make_error(ErrorCode::kUnavailable,
                      "the cloud-init seed needs mkfs.vfat (dosfstools) and mcopy (mtools)");
  TRY(make_dirs(dir, 0700));
  const fs::path files = dir / "cloud-init";
  TRY(make_dirs(files, 0700));
  TRY(write_file_atomic(files / "meta-data", seed.meta_data, 0600));
  TRY(write_file_atomic(files / "user-data", seed.user_data, 0600));
  const fs::path image = dir / "cloud-init.img", tmp = dir / "cloud-init.img.tmp";
  std::error_code ec;
  fs::remove(tmp, ec);
  // Twice the content plus room for FAT's own structures.
  const uint64_t size = std::max<uint64_t>(
      kMinImageBytes, 2 * (seed.meta_data.size() + seed.user_data.size()) + (256 << 10));
  TRY(write_file_atomic(tmp, "", 0600));
  fs::resize_file(tmp, (size + 65535) / 65536 * 65536, ec);
  if (ec) return make_error(ErrorCode::kIo, "resize {}: {}", tmp.string(), ec.message());
  TRY(run_tool({mkfs, "-n", "CIDATA", tmp.string()}));
  for (const char* name : {"meta-data", "user-data"})
    TRY(run_tool({mcopy, "-i", tmp.string(), (files / name).string(), std::string("::") + name}));
  fs::rename(tmp, image, ec);
  if (ec) return make_error(ErrorCode::kIo, "rename {}: {}", tmp.string(), ec.message());
  compute::DiskSpec disk;
  disk.path = image.string();
  disk.format = compute::DiskFormat::kRaw;
  disk.access = compute::Access::kReadOnly;
  return disk;
}

}  // namespace vireo::daemon
