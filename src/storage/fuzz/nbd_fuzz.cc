// Fuzz target: the byte stream an NBD client sends (handshake, options, requests, payloads),
// served by a real NbdServer session over a socketpair to a 1 MiB in-memory export; also the
// option and request parsers directly.
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "base/log.h"
#include "storage/fuzz/fuzz.h"
#include "storage/io.h"
#include "storage/nbd/protocol.h"
#include "storage/nbd/server.h"
#include "storage/raw_file.h"

using namespace vireo;
using namespace vireo::storage;
using namespace vireo::storage::nbd;

namespace {

std::unique_ptr<NbdServer> make_server() {
  spdlog::set_level(spdlog::level::off);
  int fd = ::memfd_create("nbd-fuzz", MFD_CLOEXEC);
  if (fd < 0 || ::ftruncate(fd, 1 << 20) != 0) return nullptr;
  auto dev = RawFile::open("/proc/self/fd/" + std::to_string(fd), OpenMode::kReadWrite);
  ::close(fd);
  if (!dev) return nullptr;
  std::shared_ptr<BlockDevice> shared(std::move(*dev));
  auto server = NbdServer::create({{"", shared, false, ""}, {"ro", shared, true, "x"}});
  return server ? std::move(*server) : nullptr;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static std::unique_ptr<NbdServer> server = make_server();
  std::span<const uint8_t> in(data, size);
  if (size >= kRequestSize) {
    auto r = parse_request(in.first<kRequestSize>());
    if (r) (void)validate_request(*r, Session{.export_size = 1 << 20, .base_allocation = true});
  }
  (void)parse_go(in);
  (void)parse_meta_context(in);
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 0;
  Fd client(sv[0]);
  std::thread serving([fd = Fd(sv[1])]() mutable { server->serve(std::move(fd)); });
  std::thread sending([&] {
    (void)!::send(client.get(), data, size, MSG_NOSIGNAL);
    ::shutdown(client.get(), SHUT_WR);
  });
  char sink[65536];
  while (::recv(client.get(), sink, sizeof sink, 0) > 0) {
  }
  sending.join();
  serving.join();
  return 0;
}

namespace {

void put_option(std::string& s, uint32_t opt, const std::string& data) {
  uint8_t h[16];
  store_be64(h, kOptMagic);
  store_be32(h + 8, opt);
  store_be32(h + 12, uint32_t(data.size()));
  s.append(reinterpret_cast<char*>(h), 16);
  s += data;
}

void put_request(std::string& s, uint16_t flags, uint16_t type, uint64_t off, uint32_t len) {
  uint8_t r[28];
  store_be32(r, kRequestMagic);
  store_be16(r + 4, flags);
  store_be16(r + 6, type);
  store_be64(r + 8, 7);
  store_be64(r + 16, off);
  store_be32(r + 24, len);
  s.append(reinterpret_cast<char*>(r), 28);
}

}  // namespace

std::vector<std::string> vireo_fuzz_seeds() {
  std::string hello("\0\0\0\3", 4);
  std::string meta = std::string("\0\0\0\0\0\0\0\1\0\0\0\x0f", 12) + "base:allocation";
  std::string go("\0\0\0\0\0\0", 6);
  std::string full = hello;
  put_option(full, kOptList, "");
  put_option(full, kOptStructuredReply, "");
  put_option(full, kOptSetMetaContext, meta);
  put_option(full, kOptInfo, go);
  put_option(full, kOptGo, go);
  put_request(full, 0, kCmdWrite, 4096, 16);
  full += std::string(16, 'x');
  put_request(full, kCmdFlagFua, kCmdRead, 4000, 200);
  put_request(full, kCmdFlagReqOne, kCmdBlockStatus, 0, 1 << 20);
  put_request(full, kCmdFlagFastZero, kCmdWriteZeroes, 8192, 65536);
  put_request(full, 0, kCmdTrim, 0, 65536);
  put_request(full, 0, kCmdFlush, 0, 0);
  put_request(full, 0, kCmdDisc, 0, 0);
  std::string old = hello;
  put_option(old, kOptExportName, "ro");
  put_request(old, 0, kCmdRead, 0, 512);
  put_request(old, 0, kCmdWrite, 0, 4);
  old += "abcd";
  return {full, old, hello};
}
