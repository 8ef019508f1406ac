// vireo vm console NAME: the VM's serial console on the CLI's terminal through
// /1.0/vms/NAME/console/attach (raw bytes both ways). Ctrl-] detaches, as virsh console; every
// other key, Ctrl-C included, goes to the guest. Without a terminal, or with --log, it prints
// the console's ring log instead.
#include "cli/vm_console.h"

#include <fcntl.h>
#include <poll.h>

#include <iostream>
#include <mutex>

#include "cli/terminal.h"

namespace vireo::cli {

namespace {

constexpr char kDetachKey = 0x1d;  // Ctrl-]

struct StreamState {
  std::mutex mu;
  bool closed = false;
  std::string reason;
  Fd wake_r, wake_w;
};

Result<void> print_log(Context& ctx, const std::string& name) {
  auto reply = TRY(TRY(ctx.client())->request("GET", "/1.0/vms/" + name + "/console"));
  std::cout << reply.body.value("log", "");
  return {};
}

// Relays stdin to the stream until Ctrl-], the stream's end or a signal; true when detached.
Result<bool> relay(client::MessageStream& stream, StreamState& state, BlockedSignals& signals) {
  char buf[4096];
  for (;;) {
    {
      std::lock_guard lock(state.mu);
      if (state.closed) return false;
    }
    pollfd fds[3] = {
        {state.wake_r.get(), POLLIN, 0}, {signals.fd(), POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
    if (::poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      return errno_error("poll");
    }
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo info;
      bool quit = false;
      while (::read(signals.fd(), &info, sizeof info) == sizeof info)
        quit = quit || info.ssi_signo != SIGWINCH;  // a serial console has no size to pass on
      if (quit) return true;
    }
    if (!(fds[2].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return true;
    std::string_view input(buf, static_cast<size_t>(n));
    auto detach = input.find(kDetachKey);
    if (detach != 0) stream.send(std::string(input.substr(0, detach)));
    if (detach != std::string_view::npos) return true;
  }
}

Result<void> attach(Context& ctx, const std::string& name) {
  auto state = std::make_shared<StreamState>();
  int p[2];
  if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) return errno_error("pipe");
  state->wake_r = Fd(p[0]);
  state->wake_w = Fd(p[1]);
  BlockedSignals signals;  // before the stream's thread starts
  auto* c = TRY(ctx.client());
  auto stream =
      TRY(c->open_stream("/1.0/vms/" + name + "/console/attach",
                         {.on_message = [](std::string_view m) { write_all(STDOUT_FILENO, m); },
                          .on_closed =
                              [state](Result<std::string> reason) {
                                std::lock_guard lock(state->mu);
                                state->closed = true;
                                state->reason = reason ? *reason : reason.error().message();
                                (void)!::write(state->wake_w.get(), "x", 1);
                              }}));
  std::cerr << "Connected to the console of VM " << name << "; detach with Ctrl-]\n";
  bool detached = false;
  {
    RawTerminal raw;
    detached = TRY(relay(*stream, *state, signals));
  }
  if (detached) {
    stream->close();
    std::cerr << "\nDetached from VM " << name << "\n";
    return {};
  }
  std::lock_guard lock(state->mu);
  std::cerr << "\nConsole of VM " << name << " closed"
            << (state->reason.empty() ? "" : ": " + state->reason) << "\n";
  return {};
}

}  // namespace

void add_vm_console_command(CLI::App* noun, Context& ctx) {
  static std::string name;
  static bool log = false;
  auto* console = noun->add_subcommand(
      "console", "Attach to a VM's serial console (detach with Ctrl-]), or print its log");
  console->add_option("name", name)->required();
  console->add_flag("--log", log, "Print the console's ring log (the default without a terminal)");
  console->callback([&ctx] {
    ctx.outcome = log || !::isatty(STDIN_FILENO) ? print_log(ctx, name) : attach(ctx, name);
  });
}

}  // namespace vireo::cli
