// Pure parts of the runtime: mount options, signal names, cgroup value conversions, state
// round trips, and the default spec passing the runtime's own validation.
#include <signal.h>
#include <sys/mount.h>

#include <gtest/gtest.h>

#include "container/cgroup_files.h"
#include "container/config.h"
#include "container/default_spec.h"
#include "container/mount_options.h"
#include "container/runtime.h"
#include "container/state.h"

namespace vireo::container {
namespace {

TEST(MountOptionsTest, FlagsPropagationAndDataAreSeparated) {
  auto o = parse_mount_options({"rbind", "ro", "nosuid", "rslave", "mode=755", "size=1m"});
  ASSERT_TRUE(o);
  EXPECT_EQ(o->flags, static_cast<unsigned long>(MS_BIND | MS_REC | MS_RDONLY | MS_NOSUID));
  EXPECT_TRUE(o->recursive_bind());
  ASSERT_EQ(o->propagation.size(), 1u);
  EXPECT_EQ(o->propagation[0], static_cast<unsigned long>(MS_SLAVE | MS_REC));
  EXPECT_EQ(o->data, "mode=755,size=1m");
}

TEST(MountOptionsTest, LaterOptionsOverrideEarlierOnes) {
  auto o = parse_mount_options({"ro", "rw", "noexec", "exec", "nodev"});
  ASSERT_TRUE(o);
  EXPECT_EQ(o->flags, static_cast<unsigned long>(MS_NODEV));
}

TEST(MountOptionsTest, RecursiveAttributesUseMountSetattr) {
  auto o = parse_mount_options({"bind", "rro", "rnosuid"});
  ASSERT_TRUE(o);
  EXPECT_EQ(o->attr_set, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID);
  EXPECT_FALSE(o->recursive_bind());
}

TEST(MountOptionsTest, IdmapIsRejected) {
  auto o = parse_mount_options({"idmap"});
  ASSERT_FALSE(o);
  EXPECT_EQ(o.error().message(), "mount option \"idmap\" is not supported");
}

TEST(MountOptionsTest, BindRemountKeepsOnlyRemountableFlags) {
  EXPECT_EQ(remount_flags(MS_BIND | MS_REC | MS_RDONLY | MS_NOEXEC),
            static_cast<unsigned long>(MS_RDONLY | MS_NOEXEC));
}

TEST(SignalTest, NamesNumbersAndPrefixes) {
  EXPECT_EQ(*parse_signal("KILL"), SIGKILL);
  EXPECT_EQ(*parse_signal("SIGTERM"), SIGTERM);
  EXPECT_EQ(*parse_signal("9"), 9);
  EXPECT_EQ(*parse_signal("RTMIN+2"), SIGRTMIN + 2);
  EXPECT_FALSE(parse_signal("SIGNOPE"));
  EXPECT_FALSE(parse_signal("0"));
}

TEST(CgroupTest, V1ValuesConvertToV2Ranges) {
  EXPECT_EQ(cpu_shares_to_weight(2), 1u);
  EXPECT_EQ(cpu_shares_to_weight(1024), 39u);
  EXPECT_EQ(cpu_shares_to_weight(262144), 10000u);
  EXPECT_EQ(blkio_weight_to_io_weight(10), 1u);
  EXPECT_EQ(blkio_weight_to_io_weight(1000), 10000u);
}

TEST(CgroupTest, PathsRoundTripThroughJson) {
  auto cg = Cgroup::from_json(Json{{"mode", 0}, {"unified", "/sys/fs/cgroup/a/b"}});
  ASSERT_TRUE(cg);
  EXPECT_EQ(cg->path_of("memory"), "/sys/fs/cgroup/a/b");
  EXPECT_EQ(cg->to_json()["unified"], "/sys/fs/cgroup/a/b");
  EXPECT_FALSE(Cgroup::from_json(Json{{"unified", 3}}));
}

TEST(StateTest, RoundTripsThroughJson) {
  State s;
  s.id = "abc";
  s.saved_status = Status::kCreated;
  s.pid = 42;
  s.start_time = 7;
  s.bundle = "/b";
  s.rootfs = "/b/rootfs";
  s.created = "2026-01-01T00:00:00.000Z";
  s.annotations = {{"k", "v"}};
  s.poststop = {Hook{"/bin/true", {"true"}, {"A=1"}, 3}};
  auto back = State::from_json(s.to_json());
  ASSERT_TRUE(back);
  EXPECT_EQ(back->id, "abc");
  EXPECT_EQ(back->saved_status, Status::kCreated);
  EXPECT_EQ(back->pid, 42);
  EXPECT_EQ(back->poststop.at(0).timeout, 3);
  Json oci = oci_state(*back, Status::kRunning);
  EXPECT_EQ(oci["status"], "running");
  EXPECT_EQ(oci["annotations"]["k"], "v");
  EXPECT_EQ(oci_state(*back, Status::kStopped)["pid"], 0);
}

TEST(StateTest, CorruptStateIsAnError) {
  auto s = State::from_json(Json{{"id", 1}});
  ASSERT_FALSE(s);
  EXPECT_TRUE(s.error().message().starts_with("corrupt state file")) << s.error().message();
}

TEST(StateTest, IdsAreSafePathComponents) {
  EXPECT_TRUE(StateDir::validate_id("0123abcdef-_.+x"));
  EXPECT_FALSE(StateDir::validate_id(""));
  EXPECT_FALSE(StateDir::validate_id(".."));
  EXPECT_FALSE(StateDir::validate_id("a/b"));
  EXPECT_FALSE(StateDir::validate_id(std::string(1025, 'a')));
}

TEST(DefaultSpecTest, PassesTheRuntimesOwnValidation) {
  std::vector<std::string> warnings;
  auto c = parse_config(default_spec().dump(), "/bundle", &warnings);
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_TRUE(warnings.empty());
  EXPECT_EQ(c->process->capabilities->bounding.size(), 14u);
  EXPECT_EQ(c->linux.seccomp->default_action, "SCMP_ACT_ERRNO");
  auto rootless = parse_config(default_spec({true, 1000, 1000}).dump(), "/bundle");
  ASSERT_TRUE(rootless) << rootless.error().message();
  EXPECT_TRUE(rootless->linux.has_namespace(NamespaceType::kUser));
}

}  // namespace
}  // namespace vireo::container
