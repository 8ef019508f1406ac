#include "monitor/options.h"

#include <arpa/inet.h>

#include <charconv>
#include <string_view>

namespace vireo::monitor {

namespace {

Result<uint64_t> parse_number(std::string_view name, const std::string& text, uint64_t max) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size())
    return make_error(ErrorCode::kInvalidArgument,
                      std::string(name) + ": \"" + text + "\" is not a number");
  if (v > max) return make_error(ErrorCode::kInvalidArgument, std::string(name) + ": too large");
  return v;
}

// A dotted-quad IPv4 address, in network byte order.
bool parse_ipv4(std::string_view text, uint32_t& out) {
  uint32_t host = 0;
  for (int i = 0; i < 4; ++i) {
    size_t dot = i < 3 ? text.find('.') : text.size();
    if (dot == std::string_view::npos) return false;
    std::string_view part = text.substr(0, dot);
    unsigned v = 0;
    auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), v);
    if (part.empty() || part.size() > 3 || ec != std::errc() || end != part.data() + part.size() ||
        v > 255)
      return false;
    host = host << 8 | v;
    text.remove_prefix(i < 3 ? dot + 1 : dot);
  }
  out = htonl(host);
  return true;
}

bool parse_port(std::string_view text, uint16_t& out) {
  unsigned v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || v < 1 || v > 65535)
    return false;
  out = static_cast<uint16_t>(v);
  return true;
}

}  // namespace

Result<PublishedPort> parse_publish(const std::string& text) {
  auto bad = [&](std::string_view why) {
    return make_error(ErrorCode::kInvalidArgument,
                      "--publish: \"" + text + "\": " + std::string(why));
  };
  std::string_view f[5];
  std::string_view rest = text;
  for (int i = 0; i < 5; ++i) {
    size_t colon = rest.find(':');
    if ((i < 4) != (colon != std::string_view::npos))
      return bad("expected PROTO:HOST_IP:HOST_PORT:CTR_IP:CTR_PORT");
    f[i] = rest.substr(0, colon);
    rest.remove_prefix(i < 4 ? colon + 1 : rest.size());
  }
  PublishedPort p;
  if (f[0] == "tcp") {
    p.proto = Proto::kTcp;
  } else if (f[0] == "udp") {
    p.proto = Proto::kUdp;
  } else {
    return bad("protocol must be tcp or udp");
  }
  if (!parse_ipv4(f[1], p.host_ip)) return bad("host address is not an IPv4 address");
  if (!parse_port(f[2], p.host_port)) return bad("host port must be a number from 1 to 65535");
  if (!parse_ipv4(f[3], p.ctr_ip)) return bad("container address is not an IPv4 address");
  if (!parse_port(f[4], p.ctr_port)) return bad("container port must be a number from 1 to 65535");
  return p;
}

const char* usage() {
  return "usage: vireo-monitor --id ID --bundle DIR --runtime PATH [--runtime-root DIR]\n"
         "                     --state-dir DIR [--tty] [--stdin] [--log-max-size BYTES]\n"
         "                     [--log-max-files N] [--ready-fd N] [--netns PATH]\n"
         "                     [--publish PROTO:HOST_IP:HOST_PORT:CTR_IP:CTR_PORT]...\n";
}

Result<Options> parse_options(const std::vector<std::string>& args) {
  Options o;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--tty") {
      o.terminal = Terminal::kTty;
      continue;
    }
    if (a == "--stdin") {
      o.stdin_mode = Stdin::kOpen;
      continue;
    }
    // Every other option takes a value, as "--opt value" or "--opt=value".
    std::string name = a, value;
    if (auto eq = a.find('='); eq != std::string::npos) {
      name = a.substr(0, eq);
      value = a.substr(eq + 1);
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return make_error(ErrorCode::kInvalidArgument, a + ": needs a value");
    }
    if (name == "--id") {
      o.id = value;
    } else if (name == "--bundle") {
      o.bundle = value;
    } else if (name == "--runtime") {
      o.runtime = value;
    } else if (name == "--runtime-root") {
      o.runtime_root = value;
    } else if (name == "--state-dir") {
      o.state_dir = value;
    } else if (name == "--log-max-size") {
      o.log_max_size = TRY(parse_number(name, value, uint64_t{1} << 40));
    } else if (name == "--log-max-files") {
      o.log_max_files = static_cast<int>(TRY(parse_number(name, value, 1000)));
      if (o.log_max_files < 1)
        return make_error(ErrorCode::kInvalidArgument, "--log-max-files: at least 1");
    } else if (name == "--ready-fd") {
      o.ready_fd = static_cast<int>(TRY(parse_number(name, value, 1 << 20)));
    } else if (name == "--netns") {
      if (value.empty()) return make_error(ErrorCode::kInvalidArgument, "--netns: empty path");
      o.netns = value;
    } else if (name == "--publish") {
      o.publish.push_back(TRY(parse_publish(value)));
    } else {
      return make_error(ErrorCode::kInvalidArgument, "unknown option " + name);
    }
  }
  for (auto [name, value] : {std::pair<const char*, const std::string*>{"--id", &o.id},
                             {"--bundle", &o.bundle},
                             {"--runtime", &o.runtime},
                             {"--state-dir", &o.state_dir}}) {
    if (value->empty())
      return make_error(ErrorCode::kInvalidArgument, std::string(name) + " is required");
  }
  if (!o.publish.empty() && o.netns.empty())
    return make_error(ErrorCode::kInvalidArgument, "--netns is required with --publish");
  // The ID ends up in file names and in the runtime's command line.
  for (char c : o.id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.';
    if (!ok)
      return make_error(ErrorCode::kInvalidArgument,
                        "--id: \"" + o.id + "\" has invalid characters");
  }
  if (o.id == "." || o.id == "..")
    return make_error(ErrorCode::kInvalidArgument, "--id: \"" + o.id + "\" is not a valid ID");
  return o;
}

}  // namespace vireo::monitor
