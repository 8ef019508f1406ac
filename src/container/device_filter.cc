#include "container/device_filter.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>

#include "base/fd.h"

namespace vireo::container {

namespace {

// Registers of the program: r1 holds the context (struct bpf_cgroup_dev_ctx) on entry.
constexpr uint8_t kCtx = 1, kScratch = 1, kType = 2, kAccess = 3, kMajor = 4, kMinor = 5;

bpf_insn insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
  bpf_insn i{};
  i.code = code;
  i.dst_reg = dst & 0xf;
  i.src_reg = src & 0xf;
  i.off = off;
  i.imm = imm;
  return i;
}

bpf_insn load_u32(uint8_t dst, int16_t offset) {
  return insn(BPF_LDX | BPF_MEM | BPF_W, dst, kCtx, offset, 0);
}
bpf_insn alu_imm(uint8_t op, uint8_t dst, int32_t imm) {
  return insn(BPF_ALU64 | op | BPF_K, dst, 0, 0, imm);
}
bpf_insn mov_reg(uint8_t dst, uint8_t src) {
  return insn(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0);
}
bpf_insn jump_if_not_equal(uint8_t reg, int32_t imm, int16_t off) {
  return insn(BPF_JMP | BPF_JNE | BPF_K, reg, 0, off, imm);
}
bpf_insn exit_insn() {
  return insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
}

int32_t access_bits(const std::string& access) {
  if (access.empty()) return BPF_DEVCG_ACC_MKNOD | BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE;
  int32_t bits = 0;
  for (char c : access) {
    if (c == 'm') bits |= BPF_DEVCG_ACC_MKNOD;
    if (c == 'r') bits |= BPF_DEVCG_ACC_READ;
    if (c == 'w') bits |= BPF_DEVCG_ACC_WRITE;
  }
  return bits;
}

// One rule: a run of "skip to the next rule unless ..." checks, then the verdict.
std::vector<bpf_insn> rule_block(const DeviceRule& rule) {
  enum { kToNext = 0x7fff };  // patched to the block's end below
  std::vector<bpf_insn> block;
  if (rule.type != 'a') {
    int32_t type = rule.type == 'b' ? BPF_DEVCG_DEV_BLOCK : BPF_DEVCG_DEV_CHAR;
    block.push_back(jump_if_not_equal(kType, type, kToNext));
  }
  int32_t allowed = access_bits(rule.access);
  if (allowed != (BPF_DEVCG_ACC_MKNOD | BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE)) {
    // Matches only when every requested access is among the rule's.
    block.push_back(mov_reg(kScratch, kAccess));
    block.push_back(alu_imm(BPF_AND, kScratch, ~allowed));
    block.push_back(jump_if_not_equal(kScratch, 0, kToNext));
  }
  if (rule.type != 'a' && rule.major && *rule.major >= 0)
    block.push_back(jump_if_not_equal(kMajor, static_cast<int32_t>(*rule.major), kToNext));
  if (rule.type != 'a' && rule.minor && *rule.minor >= 0)
    block.push_back(jump_if_not_equal(kMinor, static_cast<int32_t>(*rule.minor), kToNext));
  block.push_back(alu_imm(BPF_MOV, 0, rule.allow ? 1 : 0));
  block.push_back(exit_insn());
  const int16_t size = static_cast<int16_t>(block.size());
  for (int16_t i = 0; i < size; ++i)
    if (block[i].off == kToNext) block[i].off = static_cast<int16_t>(size - i - 1);
  return block;
}

long bpf(int cmd, bpf_attr& attr) {
  return ::syscall(__NR_bpf, cmd, &attr, sizeof attr);
}

Result<Fd> load_program(const std::vector<bpf_insn>& program) {
  static const char kLicense[] = "Apache";
  std::string log(16384, '\0');
  bpf_attr attr{};
  attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
  attr.insns = reinterpret_cast<uint64_t>(program.data());
  attr.insn_cnt = static_cast<uint32_t>(program.size());
  attr.license = reinterpret_cast<uint64_t>(kLicense);
  attr.log_buf = reinterpret_cast<uint64_t>(log.data());
  attr.log_size = static_cast<uint32_t>(log.size());
  attr.log_level = 1;
  int fd = static_cast<int>(bpf(BPF_PROG_LOAD, attr));
  if (fd < 0) {
    int saved = errno;
    log.resize(std::strlen(log.c_str()));
    return std::unexpected(Error::from_errno(
        saved, fmt::format("load the device eBPF program{}{}", log.empty() ? "" : ": ", log)));
  }
  return Fd(fd);
}

// IDs of the device programs attached to the cgroup now.
Result<std::vector<uint32_t>> attached_programs(int cgroup_fd) {
  std::vector<uint32_t> ids(64);
  bpf_attr attr{};
  attr.query.target_fd = static_cast<uint32_t>(cgroup_fd);
  attr.query.attach_type = BPF_CGROUP_DEVICE;
  attr.query.prog_ids = reinterpret_cast<uint64_t>(ids.data());
  attr.query.prog_cnt = static_cast<uint32_t>(ids.size());
  if (bpf(BPF_PROG_QUERY, attr) < 0) return errno_error("query the cgroup's device programs");
  ids.resize(attr.query.prog_cnt);
  return ids;
}

Result<void> detach_program(int cgroup_fd, uint32_t id) {
  bpf_attr get{};
  get.prog_id = id;
  Fd prog(static_cast<int>(bpf(BPF_PROG_GET_FD_BY_ID, get)));
  if (!prog) return errno == ENOENT ? Result<void>() : errno_error("open a device program");
  bpf_attr attr{};
  attr.target_fd = static_cast<uint32_t>(cgroup_fd);
  attr.attach_bpf_fd = static_cast<uint32_t>(prog.get());
  attr.attach_type = BPF_CGROUP_DEVICE;
  if (bpf(BPF_PROG_DETACH, attr) < 0 && errno != ENOENT)
    return errno_error("detach the old device program");
  return {};
}

}  // namespace

std::vector<bpf_insn> device_filter_program(const std::vector<DeviceRule>& rules) {
  std::vector<bpf_insn> program = {
      load_u32(kType, offsetof(bpf_cgroup_dev_ctx, access_type)),
      mov_reg(kAccess, kType),
      alu_imm(BPF_RSH, kAccess, 16),
      alu_imm(BPF_AND, kType, 0xffff),
      load_u32(kMajor, offsetof(bpf_cgroup_dev_ctx, major)),
      load_u32(kMinor, offsetof(bpf_cgroup_dev_ctx, minor)),
  };
  // Last rule first: the first block that matches returns, so the list's last match wins.
  for (auto it = rules.rbegin(); it != rules.rend(); ++it) {
    auto block = rule_block(*it);
    program.insert(program.end(), block.begin(), block.end());
    // A block without checks always returns; the verifier refuses code after it.
    if (block.size() == 2) return program;
  }
  program.push_back(alu_imm(BPF_MOV, 0, 0));
  program.push_back(exit_insn());
  return program;
}

Result<void> attach_device_filter(const std::string& cgroup_dir,
                                  const std::vector<DeviceRule>& rules) {
  Fd cgroup(::open(cgroup_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!cgroup) return errno_error(fmt::format("open cgroup {}", cgroup_dir));
  auto old = TRY(attached_programs(cgroup.get()));
  Fd program = TRY(load_program(device_filter_program(rules)));
  bpf_attr attr{};
  attr.target_fd = static_cast<uint32_t>(cgroup.get());
  attr.attach_bpf_fd = static_cast<uint32_t>(program.get());
  attr.attach_type = BPF_CGROUP_DEVICE;
  attr.attach_flags = BPF_F_ALLOW_MULTI;
  if (bpf(BPF_PROG_ATTACH, attr) < 0)
    return errno_error(fmt::format("attach the device eBPF program to {}", cgroup_dir));
  // The new program is in force before the old ones go, so there is no moment without one.
  for (uint32_t id : old) TRY(detach_program(cgroup.get(), id));
  return {};
}

}  // namespace vireo::container
