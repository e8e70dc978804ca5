// HTML to PDF with headless Chromium (Debian's `chromium`, the browser the tests drive): the
// report's print stylesheet decides the A4 layout. Torch-free.
#pragma once

#include <string>

namespace malaria {

// The PDF's bytes. Throws std::runtime_error when Chromium is missing, fails, or takes longer
// than `timeout_s` (it is then killed).
std::string html_to_pdf(const std::string& html, int timeout_s = 60);

}  // namespace malaria
