// vireo app pack / run FILE.vapp: a program with a library of its own runs from its package after
// the library is gone from the host; altered or malformed packages never run.
#include "sandbox_fixture.h"

namespace vireo::sandbox::testing {
namespace {

class PackageTest : public SandboxTest {
 protected:
  void SetUp() override {
    SandboxTest::SetUp();
    if (IsSkipped()) return;
    src_ = root_ / "src";
    fs::create_directories(src_ / "lib");
    std::ofstream(src_ / "vt.c")
        << "const char* vt_greeting(void) { return \"hello from libvt\"; }\n";
    std::ofstream(src_ / "prog.c")
        << "#include <stdio.h>\nconst char* vt_greeting(void);\n"
           "int main(int argc, char** argv) {\n"
           "  FILE* f = fopen(\"/etc/os-release\", \"r\"); if (!f) return 3; fclose(f);\n"
           "  printf(\"%s %s\\n\", vt_greeting(), argc > 1 ? argv[1] : \"-\"); return 5; }\n";
    run({"cc", "-shared", "-fPIC", "-o", (src_ / "lib/libvt.so").string(),
         (src_ / "vt.c").string()});
    run({"cc", "-o", (src_ / "prog").string(), (src_ / "prog.c").string(),
         "-L" + (src_ / "lib").string(), "-lvt", "-Wl,-rpath," + (src_ / "lib").string()});
    pkg_ = root_ / "prog.vapp";
  }
  void run(const std::vector<std::string>& argv) {
    auto r = run_process(argv, {.timeout = std::chrono::seconds(60)});
    ASSERT_TRUE(r && r->ok()) << (r ? r->err : r.error().message());
  }
  ProcessResult pack() {
    return vireo({"app", "pack", "--name", "prog", "--include", "/etc/os-release", "-o",
                  pkg_.string(), "--", (src_ / "prog").string(), "packed"});
  }
  // Rewrites the package with python's tarfile: manifest text and file contents by name.
  void rewrite(const std::string& python_edit) {
    std::string script =
        "import tarfile, io, sys\n"
        "src = tarfile.open(sys.argv[1]); members = [(m, src.extractfile(m).read()) for m in src]\n"
        "def put(name, data):\n"
        "    global members\n"
        "    members = [(m, data if m.name == name else d) for m, d in members]\n" +
        python_edit +
        "\nout = tarfile.open(sys.argv[1], 'w:gz')\n"
        "for m, d in members:\n"
        "    m.size = len(d); out.addfile(m, io.BytesIO(d))\n"
        "out.close()\n";
    run({"python3", "-c", script, pkg_.string()});
  }
  fs::path src_, pkg_;
};

TEST_F(PackageTest, PackedAppRunsWhereItsLibraryIsNotInstalled) {
  auto p = pack();
  ASSERT_EQ(p.exit_code, 0) << p.err;
  EXPECT_NE(p.out.find("sha256:"), std::string::npos) << p.out;
  fs::remove_all(src_ / "lib");
  auto direct = run_process({(src_ / "prog").string()});
  ASSERT_TRUE(direct);
  EXPECT_NE(direct->exit_code, 5) << "the library should be gone from the host";

  auto r = vireo({"app", "run", pkg_.string(), "extra"});
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_EQ(r.out, "hello from libvt packed\n");  // argv[1] is the packed "packed"
  // The app's writes go to the store of the package's app name, as for any app.
  auto again = vireo({"app", "run", pkg_.string()});
  EXPECT_EQ(again.exit_code, 5);
  // An unprivileged user runs the same package.
  ASSERT_EQ(::chmod(pkg_.c_str(), 0644), 0);
  auto user = vireo({"app", "run", pkg_.string()}, As::kUser);
  EXPECT_EQ(user.exit_code, 5) << user.err;
  EXPECT_EQ(user.out, "hello from libvt packed\n");
}

TEST_F(PackageTest, AlteredFileIsRefusedBeforeAnythingRuns) {
  ASSERT_EQ(pack().exit_code, 0);
  rewrite("put('files/etc/os-release', b'tampered\\n')");
  auto r = vireo({"app", "run", pkg_.string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("does not match its digest"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(root_ / "apps/prog/store")) << "nothing may run";
}

TEST_F(PackageTest, AlteredOrMalformedManifestIsRefused) {
  ASSERT_EQ(pack().exit_code, 0);
  fs::copy_file(pkg_, root_ / "orig.vapp");
  rewrite("put('manifest.json', b'{not json')");
  auto r = vireo({"app", "run", pkg_.string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("manifest is not JSON"), std::string::npos) << r.err;

  fs::copy_file(root_ / "orig.vapp", pkg_, fs::copy_options::overwrite_existing);
  rewrite(
      "import json\nm = json.loads([d for m, d in members if m.name == 'manifest.json'][0])\n"
      "m['command'].append('--evil')\nput('manifest.json', json.dumps(m).encode())");
  r = vireo({"app", "run", pkg_.string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("manifest digest does not match"), std::string::npos) << r.err;

  // A manifest re-signed with a consistent digest still may not place files outside the
  // redirected system paths.
  fs::copy_file(root_ / "orig.vapp", pkg_, fs::copy_options::overwrite_existing);
  rewrite(
      "import json, hashlib\n"
      "m = json.loads([d for m, d in members if m.name == 'manifest.json'][0])\n"
      "m['files'][0]['path'] = '../../tmp/vireo-sbx-evil'\ndel m['digest']\n"
      "m['digest'] = 'sha256:' + hashlib.sha256(json.dumps(m, sort_keys=True, "
      "separators=(',', ':'), ensure_ascii=False).encode()).hexdigest()\n"
      "put('manifest.json', json.dumps(m).encode())");
  r = vireo({"app", "run", pkg_.string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("is not clean"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists("/tmp/vireo-sbx-evil"));

  std::ofstream(root_ / "junk.vapp") << "not an archive at all";
  r = vireo({"app", "run", (root_ / "junk.vapp").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("junk.vapp"), std::string::npos) << r.err;
}

TEST_F(PackageTest, PackRefusesWhatCannotBePackaged) {
  auto r = vireo({"app", "pack", "--name", "p", "--include", "/root", "--", "/bin/true"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("only files under"), std::string::npos) << r.err;
  r = vireo({"app", "pack", "--name", "p", "--", "/no/such/prog"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not found"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace vireo::sandbox::testing
