#include "data/download.h"

#include <archive.h>
#include <archive_entry.h>
#include <curl/curl.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <vector>

#include "util/progress.h"

namespace malaria {

namespace fs = std::filesystem;

std::string sha256_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DownloadError("cannot read " + path);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), buf.size());
    EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(in.gcount()));
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &len);
  std::string hex;
  char byte[3];
  for (unsigned i = 0; i < len; ++i)
    std::snprintf(byte, sizeof byte, "%02x", digest[i]), hex += byte;
  return hex;
}

namespace {

struct Transfer {
  FILE* file = nullptr;
  uint64_t start = 0;  // bytes already on disk when this attempt began
  uint64_t total = 0;  // expected size, for the progress bar
  ProgressBar* bar = nullptr;
};

size_t write_body(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  return std::fwrite(data, size, count, t->file) * size;
}

int on_progress(void* user, curl_off_t, curl_off_t now, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  if (t->bar) t->bar->update(t->start + static_cast<uint64_t>(now));
  return 0;
}

// One attempt: appends to `part` from its current size. Returns the curl result and HTTP status.
std::pair<CURLcode, long> fetch(const std::string& url, const std::string& part, uint64_t total,
                                ProgressBar* bar, std::string& error) {
  const uint64_t have = fs::exists(part) ? fs::file_size(part) : 0;
  Transfer t;
  t.file = std::fopen(part.c_str(), "ab");
  if (!t.file) throw DownloadError("cannot write " + part);
  t.start = have;
  t.total = total;
  t.bar = bar;
  CURL* curl = curl_easy_init();
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl, CURLOPT_FAILONERROR, 0L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, write_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &t);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 30L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);  // a stalled transfer counts as cut
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 60L);
  if (have > 0) curl_easy_setopt(curl, CURLOPT_RESUME_FROM_LARGE, static_cast<curl_off_t>(have));
  const CURLcode rc = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(curl);
  std::fclose(t.file);
  error = errbuf[0] ? errbuf : curl_easy_strerror(rc);
  // A server that ignored the range sent the whole file again after what we had: start over.
  if (have > 0 && status == 200) {
    std::ofstream(part, std::ios::binary | std::ios::trunc);
    return {CURLE_RANGE_ERROR, status};
  }
  return {rc, status};
}

void extract_zip(const std::string& zip, const std::string& into) {
  std::unique_ptr<archive, decltype(&archive_read_free)> in(archive_read_new(), archive_read_free);
  archive_read_support_format_zip(in.get());
  std::unique_ptr<archive, decltype(&archive_write_free)> out(archive_write_disk_new(),
                                                              archive_write_free);
  // Refuse entries that would escape the target folder (names are checked below, before the
  // target prefix makes them absolute).
  archive_write_disk_set_options(out.get(), ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                                                ARCHIVE_EXTRACT_SECURE_SYMLINKS);
  if (archive_read_open_filename(in.get(), zip.c_str(), 1 << 16) != ARCHIVE_OK)
    throw DownloadError("cannot open archive " + zip + ": " + archive_error_string(in.get()));
  archive_entry* entry;
  int rc;
  while ((rc = archive_read_next_header(in.get(), &entry)) == ARCHIVE_OK) {
    const fs::path name = archive_entry_pathname(entry);
    for (const auto& part : name)
      if (part == "..") throw DownloadError("unsafe path in archive: " + name.string());
    if (name.is_absolute())
      throw DownloadError("unsafe absolute path in archive: " + name.string());
    const std::string target = (fs::path(into) / name).string();
    archive_entry_set_pathname(entry, target.c_str());
    if (archive_write_header(out.get(), entry) != ARCHIVE_OK)
      throw DownloadError("cannot extract " + target + ": " + archive_error_string(out.get()));
    const void* block;
    size_t size;
    la_int64_t offset;
    int r;
    while ((r = archive_read_data_block(in.get(), &block, &size, &offset)) == ARCHIVE_OK)
      if (archive_write_data_block(out.get(), block, size, offset) != ARCHIVE_OK)
        throw DownloadError("cannot write " + target + ": " + archive_error_string(out.get()));
    if (r != ARCHIVE_EOF)
      throw DownloadError("corrupt archive entry " + target + ": " +
                          archive_error_string(in.get()));
    archive_write_finish_entry(out.get());
  }
  if (rc != ARCHIVE_EOF)
    throw DownloadError("corrupt archive " + zip + ": " + archive_error_string(in.get()));
}

// The folder inside `root` that holds Parasitized/ and Uninfected/.
std::string find_dataset_root(const std::string& root) {
  if (fs::is_directory(fs::path(root) / "Parasitized") &&
      fs::is_directory(fs::path(root) / "Uninfected"))
    return root;
  for (const auto& e : fs::recursive_directory_iterator(root))
    if (e.is_directory() && fs::is_directory(e.path() / "Parasitized") &&
        fs::is_directory(e.path() / "Uninfected"))
      return e.path().string();
  throw DownloadError("the archive has no Parasitized/ and Uninfected/ folders");
}

}  // namespace

std::string download_dataset(const DownloadOptions& o) {
  if (o.out_dir.empty()) throw DownloadError("an output folder (--out) is required");
  fs::create_directories(o.out_dir);
  const std::string final_dir = (fs::path(o.out_dir) / "cell_images").string();
  if (fs::is_directory(fs::path(final_dir) / "Parasitized") &&
      fs::is_directory(fs::path(final_dir) / "Uninfected"))
    throw DownloadError(final_dir + " already exists; remove it to download again");
  const std::string zip = (fs::path(o.out_dir) / "cell_images.zip").string();
  const std::string part = zip + ".part";

  if (!fs::exists(zip)) {
    static const bool curl_ready = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
    if (!curl_ready) throw DownloadError("cannot initialise libcurl");
    std::unique_ptr<ProgressBar> bar;
    if (o.progress) bar = std::make_unique<ProgressBar>(o.expected_bytes, "download", "B");
    std::string error;
    bool done = false;
    for (int attempt = 1; attempt <= o.attempts && !done; ++attempt) {
      if (o.expected_bytes > 0 && fs::exists(part) && fs::file_size(part) == o.expected_bytes) {
        done = true;
        break;
      }
      const auto [rc, status] = fetch(o.url, part, o.expected_bytes, bar.get(), error);
      if (status == 404 || status == 403 || status == 401)
        throw DownloadError("the server answered " + std::to_string(status) + " for " + o.url);
      if (status == 416 && o.expected_bytes == 0) done = true;  // nothing left to fetch
      if (rc == CURLE_OK && (status == 200 || status == 206)) done = true;
      if (!done)
        spdlog::warn("download interrupted ({}), resuming (attempt {} of {})", error, attempt + 1,
                     o.attempts);
    }
    if (bar) bar->finish();
    if (!done)
      throw DownloadError("download failed after " + std::to_string(o.attempts) +
                          " attempts: " + error + " (run the command again to resume)");
    const uint64_t size = fs::file_size(part);
    if (o.expected_bytes > 0 && size != o.expected_bytes) {
      fs::remove(part);
      throw DownloadError("downloaded " + std::to_string(size) + " bytes, expected " +
                          std::to_string(o.expected_bytes) + ": refusing the file (deleted)");
    }
    if (!o.expected_sha256.empty()) {
      const std::string digest = sha256_file(part);
      if (digest != o.expected_sha256) {
        fs::remove(part);
        throw DownloadError("SHA-256 mismatch: got " + digest + ", expected " + o.expected_sha256 +
                            ": refusing the file (deleted)");
      }
    }
    fs::rename(part, zip);
  }

  // Extract next to the target, then move into place in one rename.
  const std::string staging =
      (fs::path(o.out_dir) / (".extract-" + std::to_string(::getpid()))).string();
  fs::remove_all(staging);
  try {
    extract_zip(zip, staging);
    fs::rename(find_dataset_root(staging), final_dir);
    fs::remove_all(staging);
  } catch (...) {
    std::error_code ignored;
    fs::remove_all(staging, ignored);
    throw;
  }
  if (!o.keep_archive) fs::remove(zip);
  return final_dir;
}

}  // namespace malaria
