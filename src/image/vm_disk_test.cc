#include "image/vm_disk.h"

#include <gtest/gtest.h>

#include <fstream>

#include "image/image_store.h"
#include "image/media_types.h"
#include "image/store_test_fixture.h"
#include "image/tar_builder.h"
#include "image/test_util.h"
#include "storage/qcow2/qcow2.h"

namespace vireo::image {
namespace {

namespace fs = std::filesystem;

void write(const fs::path& p, const std::string& content) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << content;
}

// A 1 MiB raw disk with an MBR boot signature.
std::string mbr_disk() {
  std::string d(1 << 20, '\0');
  d[0] = '\xeb';
  d[510] = '\x55';
  d[511] = '\xaa';
  return d;
}

void patch(const fs::path& p, off_t offset, const std::string& bytes) {
  std::fstream f(p, std::ios::binary | std::ios::in | std::ios::out);
  f.seekp(offset);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void make_qcow2(const fs::path& p, uint64_t size, const std::string& backing = "") {
  auto r = storage::Qcow2::create(p, {.size = size, .backing_file = backing});
  ASSERT_TRUE(r) << r.error().message();
  auto q = storage::Qcow2::open(p);
  ASSERT_TRUE(q) << q.error().message();
  std::string data(65536, 'v');
  ASSERT_TRUE((*q)->write({reinterpret_cast<const uint8_t*>(data.data()), data.size()}, 0));
  ASSERT_TRUE((*q)->flush());
}

std::string manifest_with(std::string_view config_type, const std::vector<std::string>& layers) {
  const std::string digest = "sha256:" + std::string(64, 'a');
  Json m = {{"schemaVersion", 2},
            {"mediaType", media::kOciManifest},
            {"config", {{"mediaType", config_type}, {"digest", digest}, {"size", 10}}},
            {"layers", Json::array()}};
  for (const auto& t : layers)
    m["layers"].push_back({{"mediaType", t}, {"digest", digest}, {"size", 10}});
  return m.dump();
}

TEST(VmDiskTest, DetectsFormatsByContent) {
  EXPECT_EQ(detect_disk_format(std::string_view("QFI\xfb\0\0\0\3", 8)), DiskFormat::kQcow2);
  EXPECT_EQ(detect_disk_format(std::string_view(mbr_disk())), DiskFormat::kRaw);
  std::string gpt(1024, '\0');
  gpt.replace(512, 8, "EFI PART");
  EXPECT_EQ(detect_disk_format(std::string_view(gpt)), DiskFormat::kRaw);
  std::string ext(2048, '\0');
  ext[1080] = '\x53';
  ext[1081] = '\xef';
  EXPECT_EQ(detect_disk_format(std::string_view(ext)), DiskFormat::kRaw);
  EXPECT_EQ(detect_disk_format(std::string_view(std::string(4096, '\0'))), std::nullopt);
  EXPECT_EQ(detect_disk_format(std::string_view("QFI")), std::nullopt);
  EXPECT_EQ(detect_disk_format(std::string_view("")), std::nullopt);
  std::string tar = testing::TarBuilder().file("a", "x").build(testing::Compression::kNone);
  EXPECT_EQ(detect_disk_format(std::string_view(tar)), std::nullopt);
}

TEST(VmDiskTest, DetectsFromFile) {
  testing::TempDir tmp;
  write(tmp.path() / "disk.img", mbr_disk());
  auto f = detect_disk_format(tmp.path() / "disk.img");
  ASSERT_TRUE(f) << f.error().message();
  EXPECT_EQ(*f, DiskFormat::kRaw);
  auto missing = detect_disk_format(tmp.path() / "nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
}

TEST(VmDiskTest, ConfigRoundTripsAndRejectsBadFields) {
  VmDiskConfig c{
      .format = DiskFormat::kQcow2, .virtual_size = 1 << 30, .created = "2026-01-01T00:00:00Z"};
  auto back = parse_vm_config(c.to_json().dump());
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->format, DiskFormat::kQcow2);
  EXPECT_EQ(back->virtual_size, 1u << 30);
  EXPECT_EQ(back->architecture, "amd64");
  EXPECT_EQ(back->created, "2026-01-01T00:00:00Z");
  for (const auto& [json, field] : std::vector<std::pair<std::string, std::string>>{
           {R"({"virtual_size": 1})", "format"},
           {R"({"format": "vmdk", "virtual_size": 1})", "vmdk"},
           {R"({"format": "raw"})", "virtual_size"},
           {R"({"format": "raw", "virtual_size": 0})", "virtual_size"},
           {R"({"format": "raw", "virtual_size": "1G"})", "virtual_size"},
           {R"({"format": "raw", "virtual_size": -1})", "virtual_size"},
           {R"({"format": "raw", "virtual_size": 1, "architecture": 5})", "architecture"},
           {R"([1])", "JSON object"},
           {R"({"format": )", "invalid JSON"}}) {
    auto r = parse_vm_config(json);
    ASSERT_FALSE(r) << json;
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(r.error().message().find(field), std::string::npos) << r.error().message();
  }
}

TEST(VmDiskTest, ManifestOfAVmImageHasOneDiskLayer) {
  auto vm = parse_manifest(manifest_with(media::kVmConfig, {std::string(media::kVmDiskQcow2)}));
  ASSERT_TRUE(vm) << vm.error().message();
  EXPECT_TRUE(vm->is_vm());
  auto container =
      parse_manifest(manifest_with(media::kOciConfig, {std::string(media::kOciLayerGzip)}));
  ASSERT_TRUE(container);
  EXPECT_FALSE(container->is_vm());

  auto tar_in_vm =
      parse_manifest(manifest_with(media::kVmConfig, {std::string(media::kOciLayerGzip)}));
  ASSERT_FALSE(tar_in_vm);
  EXPECT_NE(tar_in_vm.error().message().find("layers[0].mediaType"), std::string::npos);
  auto disk_in_container =
      parse_manifest(manifest_with(media::kOciConfig, {std::string(media::kVmDiskRaw)}));
  ASSERT_FALSE(disk_in_container);
  EXPECT_NE(disk_in_container.error().message().find("unsupported layer media type"),
            std::string::npos);
  auto two = parse_manifest(manifest_with(
      media::kVmConfig, {std::string(media::kVmDiskRaw), std::string(media::kVmDiskRaw)}));
  ASSERT_FALSE(two);
  EXPECT_NE(two.error().message().find("exactly one layer"), std::string::npos);
  auto none = parse_manifest(manifest_with(media::kVmConfig, {}));
  ASSERT_FALSE(none);
}

TEST(VmDiskTest, InspectsQcow2AndRaw) {
  testing::TempDir tmp;
  make_qcow2(tmp.path() / "d.qcow2", 64 << 20);
  auto size = inspect_disk(tmp.path() / "d.qcow2", DiskFormat::kQcow2);
  ASSERT_TRUE(size) << size.error().message();
  EXPECT_EQ(*size, 64u << 20);
  write(tmp.path() / "d.img", mbr_disk());
  size = inspect_disk(tmp.path() / "d.img", DiskFormat::kRaw);
  ASSERT_TRUE(size) << size.error().message();
  EXPECT_EQ(*size, 1u << 20);

  write(tmp.path() / "empty.img", "");
  auto empty = inspect_disk(tmp.path() / "empty.img", DiskFormat::kRaw);
  ASSERT_FALSE(empty);
  EXPECT_NE(empty.error().message().find("empty"), std::string::npos);
  // A raw file is not a qcow2.
  auto not_qcow2 = inspect_disk(tmp.path() / "d.img", DiskFormat::kQcow2);
  ASSERT_FALSE(not_qcow2);
  EXPECT_NE(not_qcow2.error().message().find("not a valid qcow2 image"), std::string::npos);
}

TEST(VmDiskTest, RefusesCorruptQcow2Headers) {
  testing::TempDir tmp;
  struct Case {
    const char* name;
    off_t offset;
    std::string bytes;
  };
  for (const auto& c :
       std::vector<Case>{{"version", 4, std::string("\0\0\0\x09", 4)},
                         {"cluster_bits", 20, std::string("\0\0\0\x40", 4)},
                         {"size", 24, std::string("\xff\xff\xff\xff\xff\xff\xff\xff", 8)},
                         {"l1_size", 36, std::string("\x7f\xff\xff\xff", 4)},
                         {"truncated", -1, ""}}) {
    fs::path p = tmp.path() / (std::string(c.name) + ".qcow2");
    make_qcow2(p, 64 << 20);
    if (c.offset < 0)
      fs::resize_file(p, 100);
    else
      patch(p, c.offset, c.bytes);
    auto r = inspect_disk(p, DiskFormat::kQcow2);
    ASSERT_FALSE(r) << c.name;
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument) << c.name;
    EXPECT_NE(r.error().message().find("not a valid qcow2 image"), std::string::npos)
        << r.error().message();
    EXPECT_EQ(r.error().message().find('\n'), std::string::npos) << r.error().message();
  }
}

TEST(VmDiskTest, RefusesQcow2WithABackingFile) {
  testing::TempDir tmp;
  write(tmp.path() / "base.img", mbr_disk());
  make_qcow2(tmp.path() / "top.qcow2", 1 << 20, (tmp.path() / "base.img").string());
  auto r = inspect_disk(tmp.path() / "top.qcow2", DiskFormat::kQcow2);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("backing file"), std::string::npos) << r.error().message();
}

using VmImageStoreTest = testing::StoreTest;

TEST_F(VmImageStoreTest, ImportsARawDiskAsOneLayerKeptAsIs) {
  auto store = open_store("s");
  write(path("disk.img"), mbr_disk());
  auto info = store->import_vm_disk(path("disk.img"), "deb-vm");
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ(info->kind, ImageKind::kVm);
  ASSERT_TRUE(info->vm);
  EXPECT_EQ(info->vm->format, DiskFormat::kRaw);
  EXPECT_EQ(info->vm->virtual_size, 1u << 20);
  EXPECT_EQ(info->tags, std::vector<std::string>{"deb-vm:latest"});
  EXPECT_EQ(info->manifest.config.media_type, media::kVmConfig);
  ASSERT_EQ(info->manifest.layers.size(), 1u);
  EXPECT_EQ(info->manifest.layers[0].media_type, media::kVmDiskRaw);
  EXPECT_EQ(info->size, 1u << 20);
  // The layer is the file, byte for byte; nothing was unpacked.
  auto blob = store->blobs().read(info->manifest.layers[0].digest, 2 << 20);
  ASSERT_TRUE(blob);
  EXPECT_EQ(*blob, mbr_disk());
  EXPECT_TRUE(store->layers().list()->empty());

  auto listed = store->list();
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].kind, ImageKind::kVm);
  auto disk = store->vm_disk("deb-vm");
  ASSERT_TRUE(disk) << disk.error().message();
  EXPECT_EQ(disk->file, store->blobs().path_of(info->manifest.layers[0].digest));
  EXPECT_EQ(disk->format, DiskFormat::kRaw);
}

TEST_F(VmImageStoreTest, ImportsQcow2WithItsVirtualSize) {
  auto store = open_store("s");
  make_qcow2(path("disk.qcow2"), 256 << 20);
  auto info = store->import_vm_disk(path("disk.qcow2"), "q:1");
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ(info->vm->format, DiskFormat::kQcow2);
  EXPECT_EQ(info->vm->virtual_size, 256u << 20);
  EXPECT_EQ(info->manifest.layers[0].media_type, media::kVmDiskQcow2);
  EXPECT_EQ(info->size, fs::file_size(path("disk.qcow2")));
  // Forced raw: the same bytes as a raw disk of the file's size.
  auto raw = store->import_vm_disk(path("disk.qcow2"), "q:raw", DiskFormat::kRaw);
  ASSERT_TRUE(raw) << raw.error().message();
  EXPECT_EQ(raw->vm->virtual_size, fs::file_size(path("disk.qcow2")));
}

TEST_F(VmImageStoreTest, RefusedDisksStoreNothing) {
  auto store = open_store("s");
  make_qcow2(path("bad.qcow2"), 64 << 20);
  patch(path("bad.qcow2"), 4, std::string("\0\0\0\x09", 4));
  write(path("plain.bin"), std::string(8192, 'x'));
  for (const auto& [file, format] : std::vector<std::pair<std::string, std::optional<DiskFormat>>>{
           {"bad.qcow2", std::nullopt},
           {"plain.bin", std::nullopt},
           {"plain.bin", DiskFormat::kQcow2},
           {"missing.img", std::nullopt}}) {
    auto r = store->import_vm_disk(path(file), "x", format);
    ASSERT_FALSE(r) << file;
    EXPECT_NE(r.error().message().find(file), std::string::npos) << r.error().message();
  }
  EXPECT_TRUE(store->blobs().list()->empty());
  EXPECT_TRUE(store->list()->empty());
}

TEST_F(VmImageStoreTest, NeverAContainerRoot) {
  auto store = open_store("s");
  write(path("disk.img"), mbr_disk());
  ASSERT_TRUE(store->import_vm_disk(path("disk.img"), "vm"));
  auto unpacked = store->unpack("vm");
  ASSERT_FALSE(unpacked);
  EXPECT_NE(unpacked.error().message().find("is a VM disk image"), std::string::npos);
  auto rootfs = store->prepare_rootfs("vm", path("ctr"), RootfsMode::kCopy);
  ASSERT_FALSE(rootfs);
  EXPECT_NE(rootfs.error().message().find("is a VM disk image"), std::string::npos);
  EXPECT_FALSE(store->export_rootfs_tar("vm", path("rootfs.tar")));
  auto docker = store->export_docker_archive("vm", path("docker.tar"));
  ASSERT_FALSE(docker);
  EXPECT_NE(docker.error().message().find("OCI layout or archive"), std::string::npos);
  EXPECT_FALSE(fs::exists(path("docker.tar")));

  write(path("rootfs.tar"),
        testing::TarBuilder().file("a", "x").build(testing::Compression::kNone));
  ASSERT_TRUE(store->import_rootfs_tar(path("rootfs.tar"), "ctr"));
  auto disk = store->vm_disk("ctr");
  ASSERT_FALSE(disk);
  EXPECT_NE(disk.error().message().find("not a VM disk image"), std::string::npos);
}

TEST_F(VmImageStoreTest, ExportsAndReimportsAsOciLayoutAndArchive) {
  auto store = open_store("s");
  make_qcow2(path("disk.qcow2"), 64 << 20);
  auto info = store->import_vm_disk(path("disk.qcow2"), "vm:1");
  ASSERT_TRUE(info) << info.error().message();
  ASSERT_TRUE(store->export_oci_layout("vm:1", path("layout")));
  ASSERT_TRUE(store->export_oci_archive("vm:1", path("vm.tar")));
  auto other = open_store("other");
  auto from_layout = other->import_oci_layout(path("layout"), "vm:1");
  ASSERT_TRUE(from_layout) << from_layout.error().message();
  EXPECT_EQ(from_layout->manifest_digest, info->manifest_digest);
  EXPECT_EQ(from_layout->kind, ImageKind::kVm);
  auto from_archive = other->import_oci_archive(path("vm.tar"), "vm:2");
  ASSERT_TRUE(from_archive) << from_archive.error().message();
  EXPECT_EQ(from_archive->manifest_digest, info->manifest_digest);
}

TEST_F(VmImageStoreTest, CommitChecksTheDiskAgainstItsConfig) {
  auto store = open_store("s");
  write(path("disk.img"), mbr_disk());
  auto disk = store->blobs().put(mbr_disk());
  ASSERT_TRUE(disk);
  auto commit_with = [&](const VmDiskConfig& c, std::string_view layer_type) {
    auto config = store->blobs().put(c.to_json().dump());
    EXPECT_TRUE(config);
    Manifest m;
    m.media_type = media::kOciManifest;
    m.config = {std::string(media::kVmConfig), config->digest, config->size, {}, {}};
    m.layers.push_back({std::string(layer_type), disk->digest, disk->size, {}, {}});
    return store->commit(m.to_json().dump(), "c");
  };
  EXPECT_TRUE(
      commit_with({.format = DiskFormat::kRaw, .virtual_size = 1 << 20}, media::kVmDiskRaw));
  auto wrong_size =
      commit_with({.format = DiskFormat::kRaw, .virtual_size = 1 << 30}, media::kVmDiskRaw);
  ASSERT_FALSE(wrong_size);
  EXPECT_NE(wrong_size.error().message().find("virtual size"), std::string::npos);
  auto mismatch =
      commit_with({.format = DiskFormat::kQcow2, .virtual_size = 1 << 20}, media::kVmDiskRaw);
  ASSERT_FALSE(mismatch);
  EXPECT_NE(mismatch.error().message().find("config says qcow2"), std::string::npos);
  // A raw disk's bytes under a qcow2 media type are not a qcow2.
  auto not_qcow2 =
      commit_with({.format = DiskFormat::kQcow2, .virtual_size = 1 << 20}, media::kVmDiskQcow2);
  ASSERT_FALSE(not_qcow2);
  EXPECT_NE(not_qcow2.error().message().find("not a valid qcow2"), std::string::npos);
}

TEST_F(VmImageStoreTest, RemoveAndPruneFreeTheDisk) {
  auto store = open_store("s");
  write(path("disk.img"), mbr_disk());
  ASSERT_TRUE(store->import_vm_disk(path("disk.img"), "vm"));
  auto kept = store->prune();
  ASSERT_TRUE(kept);
  EXPECT_EQ(kept->blobs_removed, 0u);
  ASSERT_TRUE(store->remove("vm"));
  auto pruned = store->prune();
  ASSERT_TRUE(pruned) << pruned.error().message();
  EXPECT_EQ(pruned->blobs_removed, 3u);  // manifest, config, disk
  EXPECT_GE(pruned->bytes_freed, 1u << 20);
  EXPECT_TRUE(store->blobs().list()->empty());
}

TEST_F(VmImageStoreTest, ACorruptedDiskBlobIsNotHandedOut) {
  auto store = open_store("s");
  write(path("disk.img"), mbr_disk());
  auto info = store->import_vm_disk(path("disk.img"), "vm");
  ASSERT_TRUE(info);
  fs::path blob = store->blobs().path_of(info->manifest.layers[0].digest);
  fs::permissions(blob, fs::perms::owner_write, fs::perm_options::add);
  patch(blob, 4096, "corrupt");
  auto disk = store->vm_disk("vm");
  ASSERT_FALSE(disk);
  EXPECT_NE(disk.error().message().find("corrupt"), std::string::npos) << disk.error().message();
}

}  // namespace
}  // namespace vireo::image
