// download-data against a local HTTP server on 127.0.0.1: full download, resume after a cut
// connection, checksum and size refusal, and extraction to the layout `train` reads.
#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include "data/dataset.h"
#include "data/download.h"
#include "test_helpers.h"

using namespace malaria;
using testing_support::TempDir;
namespace fs = std::filesystem;

namespace {

// A zip in the official layout: cell_images/{Parasitized,Uninfected}/*.png plus Thumbs.db.
std::string make_zip(const std::string& path) {
  const std::string src = testing_support::cell_images();
  archive* a = archive_write_new();
  archive_write_set_format_zip(a);
  archive_write_open_filename(a, path.c_str());
  auto add = [&](const std::string& name, const std::string& bytes) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_size(e, static_cast<la_int64_t>(bytes.size()));
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_write_header(a, e);
    archive_write_data(a, bytes.data(), bytes.size());
    archive_entry_free(e);
  };
  for (const char* cls : {"Parasitized", "Uninfected"}) {
    int n = 0;
    for (const auto& f : fs::directory_iterator(fs::path(src) / cls)) {
      add(std::string("cell_images/") + cls + "/" + f.path().filename().string(),
          testing_support::read_bytes(f.path()));
      if (++n == 40) break;
    }
    add(std::string("cell_images/") + cls + "/Thumbs.db", "thumbnail cache");
  }
  archive_write_close(a);
  archive_write_free(a);
  return testing_support::read_bytes(path);
}

class LocalServer {
 public:
  explicit LocalServer(std::string body) : body_(std::move(body)) {
    server_.Get("/cell_images.zip", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(body_, "application/zip");  // httplib answers Range requests with 206
    });
    // The first request is cut halfway through; later ones (with Range) complete.
    server_.Get("/flaky.zip", [this](const httplib::Request& req, httplib::Response& res) {
      const bool first = flaky_calls_++ == 0;
      if (first) {
        res.set_content_provider(body_.size(), "application/zip",
                                 [this](size_t offset, size_t, httplib::DataSink& sink) {
                                   if (offset >= body_.size() / 2)
                                     return false;  // drop the connection
                                   sink.write(body_.data() + offset, body_.size() / 2 - offset);
                                   return true;
                                 });
      } else {
        ranged_requests_ += req.has_header("Range");
        res.set_content(body_, "application/zip");
      }
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ~LocalServer() {
    server_.stop();
    thread_.join();
  }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  int ranged_requests() const { return ranged_requests_; }

 private:
  std::string body_;
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::atomic<int> flaky_calls_{0}, ranged_requests_{0};
};

class Download : public ::testing::Test {
 protected:
  void SetUp() override {
    MALARIA_REQUIRE_DIR(testing_support::cell_images());
    zip_bytes_ = make_zip(work_ / "source.zip");
    server_ = std::make_unique<LocalServer>(zip_bytes_);
    sha_ = sha256_file(work_ / "source.zip");
  }
  DownloadOptions options(const std::string& path, const std::string& out) {
    DownloadOptions o;
    o.url = server_->url(path);
    o.out_dir = out;
    o.expected_bytes = zip_bytes_.size();
    o.expected_sha256 = sha_;
    o.progress = false;
    return o;
  }
  TempDir work_;
  std::string zip_bytes_, sha_;
  std::unique_ptr<LocalServer> server_;
};

}  // namespace

TEST_F(Download, FetchesVerifiesAndExtractsToTheTrainingLayout) {
  const std::string dir = download_dataset(options("/cell_images.zip", work_ / "out"));
  EXPECT_EQ(dir, work_ / "out/cell_images");
  const Dataset ds = scan_dataset(dir);
  EXPECT_EQ(ds.summary.per_class[kParasitized], 40u);
  EXPECT_EQ(ds.summary.per_class[kUninfected], 40u);
  EXPECT_FALSE(fs::exists(work_ / "out/cell_images.zip.part"));
  EXPECT_FALSE(fs::exists(work_ / "out/cell_images.zip"));  // not kept unless asked
}

TEST_F(Download, ResumesAfterACutConnection) {
  const std::string dir = download_dataset(options("/flaky.zip", work_ / "out"));
  EXPECT_EQ(server_->ranged_requests(), 1);  // the second request asked only for the rest
  EXPECT_EQ(scan_dataset(dir).samples.size(), 80u);
}

TEST_F(Download, ResumesAPartialFileLeftByAnEarlierRun) {
  testing_support::write_bytes(work_ / "out/cell_images.zip.part",
                               zip_bytes_.substr(0, zip_bytes_.size() / 3));
  const std::string dir = download_dataset(options("/cell_images.zip", work_ / "out"));
  EXPECT_EQ(scan_dataset(dir).samples.size(), 80u);
}

TEST_F(Download, RefusesAChecksumMismatchAndKeepsNothing) {
  auto o = options("/cell_images.zip", work_ / "out");
  o.expected_sha256 = std::string(64, '0');
  try {
    download_dataset(o);
    FAIL() << "expected a checksum error";
  } catch (const DownloadError& e) {
    EXPECT_NE(std::string(e.what()).find("SHA-256 mismatch"), std::string::npos);
  }
  EXPECT_FALSE(fs::exists(work_ / "out/cell_images.zip.part"));
  EXPECT_FALSE(fs::exists(work_ / "out/cell_images.zip"));
  EXPECT_FALSE(fs::exists(work_ / "out/cell_images"));
}

TEST_F(Download, RefusesASizeMismatch) {
  auto o = options("/cell_images.zip", work_ / "out");
  o.expected_bytes += 10;
  o.attempts = 2;
  EXPECT_THROW(download_dataset(o), DownloadError);
  EXPECT_FALSE(fs::exists(work_ / "out/cell_images"));
}

TEST_F(Download, MissingFileOnTheServerIsAClearError) {
  try {
    download_dataset(options("/nothing-here.zip", work_ / "out"));
    FAIL();
  } catch (const DownloadError& e) {
    EXPECT_NE(std::string(e.what()).find("404"), std::string::npos);
  }
}
