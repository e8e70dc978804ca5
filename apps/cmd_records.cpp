// The lab's records from the command line: users and their tokens, slides (list, show, export,
// corrections for training) and the retention of field images.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>

#include "commands.h"
#include "report/slide_report.h"
#include "store/slide_store.h"
#include "util/files.h"
#include "util/text.h"

namespace malaria::cli {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// Whoever runs the CLI on the store's machine can read the database file anyway: an admin.
const User kCliUser{"cli", "cli", kRoleAdmin, {}, "", ""};

void add_store_option(CLI::App* sub, std::string& url) {
  sub->add_option("--store", url,
                  "records: sqlite:PATH or postgresql://USER@HOST/DB (default: $MALARIA_STORE, "
                  "else sqlite:~/.local/share/malaria/records.db)");
}

std::string store_url(const std::string& given) {
  return given.empty() ? default_store_url() : given;
}

std::string slides_csv(SlideStore& store, const std::vector<Slide>& slides) {
  std::string csv =
      "id,sample_id,site,operator,collected_on,stain,status,created_at,signed_by,signed_at,fields,"
      "cells,model_parasitemia_percent,reviewed_parasitemia_percent,reviewed_ci_low,"
      "reviewed_ci_high,gametocytes_present,cells_reviewed\n";
  for (const auto& s : slides) {
    const json sum = slide_summary(s, store.fields(s.id, kCliUser));
    char numbers[256];
    std::snprintf(numbers, sizeof numbers, "%zu,%.4f,%.4f,%.4f,%.4f,%s,%zu",
                  sum["model"]["cells"].get<size_t>(),
                  sum["model"]["parasitemia_percent"].get<double>(),
                  sum["reviewed"]["parasitemia_percent"].get<double>(),
                  sum["reviewed"]["ci_low"].get<double>(), sum["reviewed"]["ci_high"].get<double>(),
                  sum["reviewed"]["gametocytes_present"].get<bool>() ? "yes" : "no",
                  sum["reviewed"]["cells_reviewed"].get<size_t>());
    for (const std::string& v :
         {s.id, s.info.sample_id, s.info.site, s.info.operator_name, s.info.collected_on,
          s.info.stain, s.status, s.created_at, s.signed_by, s.signed_at, std::to_string(s.fields)})
      csv += csv_field(v) + ",";
    csv += std::string(numbers) + "\n";
  }
  return csv;
}

struct SlidesOptions {
  std::string store, format = "table", out, id, annotations_dir;
  bool include_unsigned = false;
  SlideFilter filter;
};

std::vector<Slide> every_slide(SlideStore& store, SlideFilter filter) {
  std::vector<Slide> all;
  filter.limit = 500;
  for (size_t total = 0;; filter.offset += filter.limit) {
    const auto page = store.list_slides(filter, kCliUser, &total);
    all.insert(all.end(), page.begin(), page.end());
    if (page.size() < filter.limit) return all;
  }
}

void emit(const std::string& text, const std::string& out) {
  if (out.empty() || out == "-")
    std::cout << text;
  else
    write_text_atomic(out, text);
}

int run_slides_list(const SlidesOptions& o) {
  SlideStore store(store_url(o.store));
  const std::vector<Slide> slides = every_slide(store, o.filter);
  if (o.format == "csv") {
    emit(slides_csv(store, slides), o.out);
  } else if (o.format == "json") {
    json all = json::array();
    for (const auto& s : slides) {
      json j = s.to_json();
      j["summary"] = slide_summary(s, store.fields(s.id, kCliUser));
      all.push_back(j);
    }
    emit(all.dump(2) + "\n", o.out);
  } else {
    std::printf("%-18s %-16s %-10s %-10s %6s  %s\n", "id", "sample", "site", "status", "fields",
                "created");
    for (const auto& s : slides)
      std::printf("%-18s %-16s %-10s %-10s %6d  %s\n", s.id.c_str(), s.info.sample_id.c_str(),
                  s.info.site.c_str(), s.status.c_str(), s.fields, s.created_at.c_str());
    std::printf("%zu slides\n", slides.size());
  }
  return 0;
}

int run_slides_show(const SlidesOptions& o) {
  SlideStore store(store_url(o.store));
  const Slide slide = store.slide(o.id, kCliUser);
  const std::vector<StoredField> fields = store.fields(o.id, kCliUser);
  json j = slide_record_json(slide, fields);
  j["audit"] = json::array();
  for (const auto& e : store.audit(o.id, kCliUser)) j["audit"].push_back(e.to_json());
  emit(j.dump(2) + "\n", o.out);
  return 0;
}

// DIR/images/FIELD.jpg and DIR/annotations.csv for each chosen slide: what `train --fields DIR`
// reads, so a lab's reviewed corrections train its next model.
int run_slides_export(const SlidesOptions& o) {
  SlideStore store(store_url(o.store));
  std::vector<Slide> slides =
      o.id.empty() ? every_slide(store, o.filter) : std::vector<Slide>{store.slide(o.id, kCliUser)};
  if (o.annotations_dir.empty()) return run_slides_list(o);
  // Training data are what reviewers signed; the model's own calls only when asked for.
  const size_t before = slides.size();
  if (!o.include_unsigned)
    slides.erase(std::remove_if(slides.begin(), slides.end(),
                                [](const Slide& s) { return s.status != "signed"; }),
                 slides.end());
  if (slides.size() < before)
    std::fprintf(stderr, "left out %zu unsigned slides (--include-unsigned takes them)\n",
                 before - slides.size());
  fs::create_directories(fs::path(o.annotations_dir) / "images");
  std::string csv;
  size_t images = 0, skipped = 0;
  for (const auto& s : slides) {
    const auto fields = store.fields(s.id, kCliUser);
    for (const auto& f : fields) {
      if (!f.image_kept) continue;
      write_text_atomic(
          (fs::path(o.annotations_dir) / "images" / annotation_image_name(f)).string(),
          store.field_image(f.id, kCliUser).second);
      images++;
    }
    std::string rows = slide_annotations_csv(s, fields);
    rows.erase(0, rows.find('\n') + 1);  // one header for all slides
    // Rows of purged images cannot be trained on: left out.
    std::string kept;
    for (size_t start = 0; start < rows.size();) {
      const size_t end = rows.find('\n', start);
      const std::string line = rows.substr(start, end - start + 1);
      const std::string image = line.substr(0, line.find(','));
      if (fs::exists(fs::path(o.annotations_dir) / "images" / image))
        kept += line;
      else
        skipped++;
      start = end + 1;
    }
    csv += kept;
  }
  write_text_atomic((fs::path(o.annotations_dir) / "annotations.csv").string(),
                    "image,x,y,w,h,label,group\n" + csv);
  std::fprintf(stderr, "wrote %zu field images and their cells from %zu slides to %s%s\n", images,
               slides.size(), o.annotations_dir.c_str(),
               skipped
                   ? (" (" + std::to_string(skipped) + " cells of purged images left out)").c_str()
                   : "");
  return 0;
}

void add_filter_options(CLI::App* sub, SlidesOptions& o) {
  sub->add_option("--status", o.filter.status, "screened, in_review, signed or amended");
  sub->add_option("--site", o.filter.site, "one site");
  sub->add_option("--from", o.filter.from, "created on or after YYYY-MM-DD");
  sub->add_option("--to", o.filter.to, "created on or before YYYY-MM-DD");
}

Command add_slides(CLI::App& app, std::vector<Command>& leaves) {
  auto* slides = app.add_subcommand("slides", "The slides in the records: list, show, export");
  slides->require_subcommand(1);
  auto o = std::make_shared<SlidesOptions>();
  auto* list = slides->add_subcommand("list", "List slides, newest first");
  add_store_option(list, o->store);
  add_filter_options(list, *o);
  list->add_option("--format", o->format, "table, csv or json")
      ->check(CLI::IsMember({"table", "csv", "json"}))
      ->capture_default_str();
  leaves.push_back({list, [o] { return run_slides_list(*o); }});
  o = std::make_shared<SlidesOptions>();
  auto* show = slides->add_subcommand("show", "One slide as JSON: fields, cells, reviews, audit");
  show->add_option("id", o->id, "slide id")->required();
  add_store_option(show, o->store);
  show->add_option("--out", o->out, "write to this file instead of stdout");
  leaves.push_back({show, [o] { return run_slides_show(*o); }});
  o = std::make_shared<SlidesOptions>();
  o->format = "csv";
  auto* exp = slides->add_subcommand(
      "export", "Slides as CSV or JSON, or (--annotations DIR) reviewed cells for train --fields");
  add_store_option(exp, o->store);
  add_filter_options(exp, *o);
  exp->add_option("--slide", o->id, "only this slide");
  exp->add_option("--format", o->format, "csv or json")
      ->check(CLI::IsMember({"csv", "json"}))
      ->capture_default_str();
  exp->add_option("--out", o->out, "file to write (default: stdout)");
  exp->add_option("--annotations", o->annotations_dir,
                  "write DIR/images/ and DIR/annotations.csv (the format train --fields reads)");
  exp->add_flag("--include-unsigned", o->include_unsigned,
                "with --annotations: also slides nobody signed (their cells carry the model's "
                "own calls)");
  leaves.push_back({exp, [o] { return run_slides_export(*o); }});
  return {slides, [] { return 0; }};
}

struct UsersOptions {
  std::string store, name, role;
  std::vector<std::string> sites;
  double valid_days = 0;
};

CLI::Option* add_valid_days_option(CLI::App* app, double& days) {
  return add_number(app, "--valid-days", days, 0, 3650,
                    "the token stops working after this many days, 1 or more (0: never)");
}

// The commands that print a token: once, on the last line (only a hash is kept).
void add_token_commands(CLI::App* users, std::vector<Command>& leaves) {
  auto o = std::make_shared<UsersOptions>();
  auto* add = users->add_subcommand(
      "add", "Add a user; prints the user's token once, on the last line (only a hash is kept)");
  add->add_option("name", o->name, "user name (no spaces)")->required();
  add->add_option("--role", o->role, "technician (uploads), reviewer (reviews, signs), admin")
      ->required()
      ->check(CLI::IsMember({"technician", "reviewer", "admin"}));
  add->add_option("--site", o->sites, "a site whose slides the user sees (repeat; none: all)");
  add_valid_days_option(add, o->valid_days);
  add_store_option(add, o->store);
  leaves.push_back({add, [o] {
                      SlideStore store(store_url(o->store));
                      const std::string token =
                          store.add_user(o->name, o->role, o->sites, "cli", o->valid_days);
                      std::fprintf(stderr, "added %s (%s); the token below is shown only once\n",
                                   o->name.c_str(), o->role.c_str());
                      std::printf("%s\n", token.c_str());
                      return 0;
                    }});
  o = std::make_shared<UsersOptions>();
  auto* rotate = users->add_subcommand(
      "rotate", "Give a user a new token (the old one stops at once); prints it once, last line");
  rotate->add_option("name", o->name, "user name")->required();
  add_valid_days_option(rotate, o->valid_days);
  add_store_option(rotate, o->store);
  leaves.push_back({rotate, [o] {
                      SlideStore store(store_url(o->store));
                      const std::string token = store.rotate_token(o->name, "cli", o->valid_days);
                      std::fprintf(stderr, "new token for %s; shown only once\n", o->name.c_str());
                      std::printf("%s\n", token.c_str());
                      return 0;
                    }});
}

void add_users(CLI::App& app, std::vector<Command>& leaves) {
  auto* users = app.add_subcommand("users", "People who may use the server, and their roles");
  users->require_subcommand(1);
  add_token_commands(users, leaves);
  auto o = std::make_shared<UsersOptions>();
  auto* grant = users->add_subcommand(
      "sites", "Set the sites whose slides a user sees (no --site: every site)");
  grant->add_option("name", o->name, "user name")->required();
  grant->add_option("--site", o->sites, "a site (repeat)");
  auto all_sites = std::make_shared<bool>(false);
  grant->add_flag("--all-sites", *all_sites, "every site, now and later");
  add_store_option(grant, o->store);
  leaves.push_back({grant, [o, all_sites] {
                      // Saying nothing must not grant everything.
                      if (o->sites.empty() == !*all_sites)
                        throw CLI::ValidationError("users sites",
                                                   "give --site (repeat) or --all-sites");
                      SlideStore store(store_url(o->store));
                      store.set_sites(o->name, o->sites);
                      std::fprintf(stderr, "%s now sees %s\n", o->name.c_str(),
                                   o->sites.empty() ? "every site" : "the sites given");
                      return 0;
                    }});
  o = std::make_shared<UsersOptions>();
  auto* remove = users->add_subcommand("remove", "Remove a user: their token stops working");
  remove->add_option("name", o->name, "user name")->required();
  add_store_option(remove, o->store);
  leaves.push_back({remove, [o] {
                      SlideStore(store_url(o->store)).remove_user(o->name);
                      std::fprintf(stderr, "removed %s\n", o->name.c_str());
                      return 0;
                    }});
  o = std::make_shared<UsersOptions>();
  auto* list = users->add_subcommand("list", "List users and roles");
  add_store_option(list, o->store);
  leaves.push_back({list, [o] {
                      SlideStore store(store_url(o->store));
                      for (const auto& u : store.users()) {
                        std::string sites;
                        for (const auto& s : u.sites) sites += (sites.empty() ? "" : ",") + s;
                        const std::string token = u.expires_at.empty() ? "token never expires"
                                                  : u.expires_at <= now_iso8601()
                                                      ? "token expired " + u.expires_at
                                                      : "token expires " + u.expires_at;
                        std::printf("%-20s %-11s %-24s %s\n", u.name.c_str(), u.role.c_str(),
                                    sites.empty() ? "all sites" : sites.c_str(), token.c_str());
                      }
                      return 0;
                    }});
}

void add_store(CLI::App& app, std::vector<Command>& leaves) {
  auto* store_cmd = app.add_subcommand("store", "Maintenance of the records");
  store_cmd->require_subcommand(1);
  auto url = std::make_shared<std::string>();
  auto days = std::make_shared<double>(-1);
  auto* purge = store_cmd->add_subcommand(
      "purge", "Delete kept field images older than DAYS (results, reviews and audit stay)");
  add_number(purge, "--older-than", *days, 0, 1e5, "days")->required();
  add_store_option(purge, *url);
  leaves.push_back({purge, [url, days] {
                      SlideStore store(store_url(*url));
                      const size_t n = store.purge_images_older_than(*days);
                      std::printf("purged %zu field images\n", n);
                      return 0;
                    }});
  auto audit_url = std::make_shared<std::string>();
  auto* audit = store_cmd->add_subcommand(
      "audit", "Events that belong to no slide (users added, granted, removed; purges) as JSON");
  add_store_option(audit, *audit_url);
  leaves.push_back({audit, [audit_url] {
                      json events = json::array();
                      for (const auto& e : SlideStore(store_url(*audit_url)).admin_audit())
                        events.push_back(e.to_json());
                      std::cout << events.dump(2) << "\n";
                      return 0;
                    }});
}

}  // namespace

std::string default_store_url() {
  if (const char* env = std::getenv("MALARIA_STORE"); env && *env) return env;
  const char* data_home = std::getenv("XDG_DATA_HOME");
  const char* home = std::getenv("HOME");
  const fs::path base = data_home && *data_home ? fs::path(data_home)
                        : home && *home         ? fs::path(home) / ".local/share"
                                                : fs::path(".");
  fs::create_directories(base / "malaria");
  return "sqlite:" + (base / "malaria" / "records.db").string();
}

std::vector<Command> add_records_commands(CLI::App& app, const GlobalOptions&) {
  std::vector<Command> leaves;
  add_slides(app, leaves);
  add_users(app, leaves);
  add_store(app, leaves);
  return leaves;
}

}  // namespace malaria::cli
