#pragma once
// The WWW-Authenticate header of a 401 (RFC 7235 challenges), as registries send it:
//   Bearer
//   realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull" Basic
//   realm="Registry"
// Parsed from untrusted input: quoted strings with escapes, several challenges in one value.
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace vireo::image::remote {

struct Challenge {
  std::string scheme;                         // lower case: "bearer", "basic"
  std::map<std::string, std::string> params;  // names in lower case
  std::string param(const std::string& name) const {
    auto it = params.find(name);
    return it == params.end() ? std::string() : it->second;
  }
};

[[nodiscard]] Result<std::vector<Challenge>> parse_www_authenticate(std::string_view value);

}  // namespace vireo::image::remote
