#pragma once
// Typed, path-aware access to the fields of an untrusted JSON document (config.json, process.json).
// Every error names the field by its JSON path: "config.json: process.user.uid: expected an
// unsigned integer, got string".
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/json.h"
#include "base/result.h"

namespace vireo::container {

class JsonFields {
 public:
  // doc names the document in errors ("config.json"); warnings collects unknown fields.
  JsonFields(std::string doc, std::vector<std::string>* warnings)
      : doc_(std::move(doc)), warnings_(warnings) {}

  std::unexpected<Error> fail(const std::string& path, std::string_view what) const;

  static std::string join(const std::string& path, std::string_view key);
  static std::string index(const std::string& path, size_t i);

  // The member key of obj, or nullptr when absent or null. obj must be an object.
  static const Json* find(const Json& obj, std::string_view key);

  [[nodiscard]] Result<void> expect_object(const Json& j, const std::string& path) const;
  [[nodiscard]] Result<void> expect_array(const Json& j, const std::string& path) const;
  // Warns about members of obj not listed in known.
  void warn_unknown(const Json& obj, const std::string& path,
                    std::initializer_list<std::string_view> known) const;

  [[nodiscard]] Result<std::string> string(const Json& j, const std::string& path) const;
  [[nodiscard]] Result<bool> boolean(const Json& j, const std::string& path) const;
  [[nodiscard]] Result<uint64_t> unsigned_int(const Json& j, const std::string& path,
                                              uint64_t max) const;
  [[nodiscard]] Result<int64_t> signed_int(const Json& j, const std::string& path) const;
  [[nodiscard]] Result<std::vector<std::string>> string_list(const Json& j,
                                                             const std::string& path) const;
  [[nodiscard]] Result<std::map<std::string, std::string>> string_map(
      const Json& j, const std::string& path) const;

  // Optional members: leave out untouched when the member is absent or null.
  [[nodiscard]] Result<void> get(const Json& obj, const std::string& path, std::string_view key,
                                 std::string& out) const;
  [[nodiscard]] Result<void> get(const Json& obj, const std::string& path, std::string_view key,
                                 bool& out) const;
  [[nodiscard]] Result<void> get(const Json& obj, const std::string& path, std::string_view key,
                                 std::vector<std::string>& out) const;
  [[nodiscard]] Result<void> get(const Json& obj, const std::string& path, std::string_view key,
                                 std::map<std::string, std::string>& out) const;

  template <typename T>
  requires std::is_unsigned_v<T>
  [[nodiscard]] Result<void> get(const Json& obj, const std::string& path, std::string_view key,
                                 T& out) const {
    const Json* v = find(obj, key);
    if (!v) return {};
    out = static_cast<T>(TRY(unsigned_int(*v, join(path, key), std::numeric_limits<T>::max())));
    return {};
  }
  template <typename T>
  [[nodiscard]] Result<void> get(const Json& obj, const std::string& path, std::string_view key,
                                 std::optional<T>& out) const {
    const Json* v = find(obj, key);
    if (!v) return {};
    if constexpr (std::is_same_v<T, bool>) {
      out = TRY(boolean(*v, join(path, key)));
    } else if constexpr (std::is_unsigned_v<T>) {
      out = static_cast<T>(TRY(unsigned_int(*v, join(path, key), std::numeric_limits<T>::max())));
    } else {
      int64_t x = TRY(signed_int(*v, join(path, key)));
      if (x < std::numeric_limits<T>::min() || x > std::numeric_limits<T>::max())
        return fail(join(path, key), "integer out of range");
      out = static_cast<T>(x);
    }
    return {};
  }
  // A member that must be present.
  [[nodiscard]] Result<const Json*> require(const Json& obj, const std::string& path,
                                            std::string_view key) const;

 private:
  std::string doc_;
  std::vector<std::string>* warnings_;
};

}  // namespace vireo::container
