// Web assets (page, script, styles, OpenAPI document, Swagger UI) compiled into the binary, so the
// server needs no files at run time and works offline.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace malaria {

struct Asset {
  std::string path;  // URL path, e.g. "/app.js"
  std::string content_type;
  std::string_view content;
};

const std::vector<Asset>& web_assets();
const Asset* find_asset(const std::string& path);

}  // namespace malaria
