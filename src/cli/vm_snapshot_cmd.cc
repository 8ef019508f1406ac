// vireo vm snapshot: save a VM's disks (and with --memory its running state) and go back to
// them later. Slow steps run as daemon operations, followed here with a progress bar.
#include "cli/vm_snapshot_cmd.h"

#include "base/strings.h"

namespace vireo::cli {

namespace {

struct SnapshotFlags {
  std::string vm, snapshot;
  bool memory = false;
};

std::string snapshot_path(const SnapshotFlags& f) {
  return fmt::format("/1.0/vms/{}/snapshots/{}", percent_encode(f.vm), percent_encode(f.snapshot));
}

std::string disks_text(const Json& snap) {
  std::vector<std::string> out;
  for (const auto& d : snap.value("disks", Json::array()))
    out.push_back(plain(d.value("volume", d.value("path", Json()))));
  return out.empty() ? "-" : fmt::format("{}", fmt::join(out, ", "));
}

}  // namespace

void add_vm_snapshot_commands(CLI::App* noun, Context& ctx) {
  static SnapshotFlags f;
  auto* sub =
      noun->add_subcommand("snapshot", "Save a VM's disks (and memory) and go back to them");
  sub->require_subcommand(1);

  auto* create = sub->add_subcommand(
      "create", "Snapshot the disks of VM NAME as SNAP (the guest pauses meanwhile)");
  create->add_option("name", f.vm)->required();
  create->add_option("snapshot", f.snapshot)->required();
  create->add_flag("--memory", f.memory,
                   "Also save the running guest's memory and device state (restore resumes it)");
  create->callback([&ctx] {
    ctx.outcome = [&]() -> Result<void> {
      Json body = {{"name", f.snapshot}, {"memory", f.memory}};
      Json r = TRY(run_operation(
          ctx, "POST", fmt::format("/1.0/vms/{}/snapshots", percent_encode(f.vm)), &body));
      print(ctx.format(), r,
            {{"snapshot:", plain(r.value("name", Json()))},
             {"status:", plain(r.value("status", Json()))},
             {"memory:", plain(r.value("memory", Json()))},
             {"guest paused:", fmt::format("{} ms", plain(r.value("pause_ms", Json(0))))}});
      return {};
    }();
  });

  auto* ls = sub->add_subcommand("ls", "List the snapshots of VM NAME");
  ls->add_option("name", f.vm)->required();
  ls->callback([&ctx] {
    ctx.outcome = [&]() -> Result<void> {
      Json list =
          TRY(TRY(ctx.client())
                  ->request("GET", fmt::format("/1.0/vms/{}/snapshots", percent_encode(f.vm))))
              .body;
      std::vector<std::vector<std::string>> rows = {
          {"NAME", "CREATED", "VM STATUS", "MEMORY", "DISKS"}};
      for (const auto& s : list)
        rows.push_back({plain(s.value("name", Json())), plain(s.value("created_at", Json())),
                        plain(s.value("status", Json())), s.value("memory", false) ? "yes" : "no",
                        disks_text(s)});
      print(ctx.format(), list, rows);
      return {};
    }();
  });

  auto* restore = sub->add_subcommand(
      "restore", "Revert VM NAME to snapshot SNAP (a running VM is stopped first)");
  restore->add_option("name", f.vm)->required();
  restore->add_option("snapshot", f.snapshot)->required();
  restore->callback([&ctx] {
    ctx.outcome = [&]() -> Result<void> {
      TRY(run_operation(ctx, "POST", snapshot_path(f) + "/restore", nullptr));
      return {};
    }();
  });

  auto* rm = sub->add_subcommand("rm", "Delete snapshot SNAP of VM NAME");
  rm->add_option("name", f.vm)->required();
  rm->add_option("snapshot", f.snapshot)->required();
  rm->callback([&ctx] {
    ctx.outcome = [&]() -> Result<void> {
      TRY(run_operation(ctx, "DELETE", snapshot_path(f), nullptr));
      return {};
    }();
  });
}

}  // namespace vireo::cli
