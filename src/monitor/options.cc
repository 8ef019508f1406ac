#include "monitor/options.h"

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

}  // namespace

const char* usage() {
  return "usage: vireo-monitor --id ID --bundle DIR --runtime PATH [--runtime-root DIR]\n"
         "                     --state-dir DIR [--tty] [--stdin] [--log-max-size BYTES]\n"
         "                     [--log-max-files N] [--ready-fd N]\n";
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
