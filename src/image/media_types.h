#pragma once
// Media types of the OCI image spec and of Docker's v2 schema 2, which the store reads, and
// Vireo's own for VM disk images (an OCI manifest whose config and single layer are ours).
#include <string_view>

namespace vireo::image::media {

inline constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view kOciConfig = "application/vnd.oci.image.config.v1+json";
inline constexpr std::string_view kOciLayerTar = "application/vnd.oci.image.layer.v1.tar";
inline constexpr std::string_view kOciLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip";
inline constexpr std::string_view kOciLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd";
inline constexpr std::string_view kDockerManifest =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view kDockerManifestList =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr std::string_view kDockerConfig = "application/vnd.docker.container.image.v1+json";
inline constexpr std::string_view kDockerLayer =
    "application/vnd.docker.image.rootfs.diff.tar.gzip";
inline constexpr std::string_view kDockerForeignLayer =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

// A VM disk image: this config (format, virtual size) and one layer that is the disk file as is.
inline constexpr std::string_view kVmConfig = "application/vnd.vireo.vm.config.v1+json";
inline constexpr std::string_view kVmDiskQcow2 = "application/vnd.vireo.vm.disk.qcow2";
inline constexpr std::string_view kVmDiskRaw = "application/vnd.vireo.vm.disk.raw";

inline bool is_manifest(std::string_view t) {
  return t == kOciManifest || t == kDockerManifest;
}
inline bool is_index(std::string_view t) {
  return t == kOciIndex || t == kDockerManifestList;
}
inline bool is_config(std::string_view t) {
  return t == kOciConfig || t == kDockerConfig;
}
// Layers are tar streams, uncompressed or gzip/zstd; the compression is detected from the
// content when unpacking, the media type only has to be one of these.
inline bool is_layer(std::string_view t) {
  return t == kOciLayerTar || t == kOciLayerGzip || t == kOciLayerZstd || t == kDockerLayer ||
         t == kDockerForeignLayer ||
         t == "application/vnd.oci.image.layer.nondistributable.v1.tar" ||
         t == "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" ||
         t == "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
}

// A disk is never a tar: these layers are neither unpacked nor a container's root.
inline bool is_vm_disk(std::string_view t) {
  return t == kVmDiskQcow2 || t == kVmDiskRaw;
}

}  // namespace vireo::image::media
