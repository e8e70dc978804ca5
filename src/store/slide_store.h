// The lab's records: slides, their screened fields (with the image, kept for a second look), each
// field's cells with the model's call, reviewers' corrections, an append-only audit trail, and
// users. Written once over Database, so SQLite and PostgreSQL behave the same. Torch-free.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "store/database.h"

namespace malaria {

// A request the records refuse as it stands: unknown id (404), a signed slide (409), bad values.
struct StoreError : std::runtime_error {
  StoreError(int status, const std::string& message)
      : std::runtime_error(message), status(status) {}
  int status;
};

inline constexpr const char* kRoleTechnician = "technician";
inline constexpr const char* kRoleReviewer = "reviewer";
inline constexpr const char* kRoleAdmin = "admin";

struct User {
  std::string id, name, role;
  std::vector<std::string> sites;  // empty: every site
  std::string created_at;
  std::string expires_at;  // of the token; empty: never
  bool may_see_site(const std::string& site) const;
  bool may_review() const { return role == kRoleReviewer || role == kRoleAdmin; }
  bool may_manage_users() const { return role == kRoleAdmin; }
  // Users, tokens and the administrative audit belong to an admin of every site.
  bool manages_every_site() const { return may_manage_users() && sites.empty(); }
};

struct SlideInfo {  // what the lab enters; sample ids only, never a patient's name
  std::string sample_id, site, operator_name, collected_on, stain, notes;
  std::optional<double> rbc_per_ul;  // the patient's red-cell count, when measured
  nlohmann::json to_json() const;
  // Validates lengths and formats; throws StoreError(400) naming the field.
  static SlideInfo from_json(const nlohmann::json& j);
};

// screened (fields stored, nobody reviewed), in_review, signed, amended (changed after signing:
// to be signed again).
struct Slide {
  std::string id;
  SlideInfo info;
  std::string status, created_at, created_by, signed_at, signed_by;
  int fields = 0;
  int amendments = 0;  // changes made after a signature
  nlohmann::json to_json() const;
};

struct CellReview {
  std::string decision, stage, user, at;
};

struct StoredCell {
  std::string id;
  int x = 0, y = 0, width = 0, height = 0;
  double probability = 0;
  // The model's call: its side of the threshold (empty when Rejected), the decision
  // (Parasitized, Uninfected, Inconclusive or Rejected) and the stage (empty when unknown).
  std::string label, decision, stage;
  std::optional<CellReview> review;
  // The reviewed class when there is one ("Not a cell" included), else the model's side.
  const std::string& final_label() const { return review ? review->decision : label; }
  nlohmann::json to_json() const;
};

struct FieldInput {
  std::string filename, image_format, image;  // the uploaded bytes, kept for review
  int width = 0, height = 0;
  std::string quality_verdict;  // "pass", "warn" or "fail"
  nlohmann::json result;        // the screening's answer for this field, without its cells
  std::string model_id;
  std::vector<StoredCell> cells;  // ids are assigned on store
};

struct StoredField {
  std::string id, slide_id, filename, image_format, quality_verdict, model_id, created_at;
  int seq = 0, width = 0, height = 0;
  nlohmann::json result;
  std::vector<StoredCell> cells;
  bool image_kept = true;  // false once purged
  nlohmann::json to_json() const;
};

struct AuditEvent {
  long long seq = 0;
  std::string slide_id, cell_id, at, user, action, model_id;
  nlohmann::json before, after;
  nlohmann::json to_json() const;
};

struct SlideFilter {
  std::string status, site, from, to;  // dates as YYYY-MM-DD, inclusive, on created_at
  size_t limit = 50, offset = 0;
};

class SlideStore {
 public:
  // Opens the records at `url` (see Database::open) and brings the schema up to date.
  explicit SlideStore(const std::string& url);
  explicit SlideStore(std::unique_ptr<Database> db);
  Database& database() { return *db_; }
  int schema_version();

  // With a key (an Idempotency-Key), a retry answers the slide the first request made.
  Slide create_slide(const SlideInfo& info, const User& by, const std::string& key = "");
  // The slide, or StoreError(404) when it does not exist or `by` may not see its site.
  Slide slide(const std::string& id, const User& by);
  // Newest first; `total` is the count matching the filter before paging.
  std::vector<Slide> list_slides(const SlideFilter& filter, const User& by, size_t* total);
  std::vector<StoredField> fields(const std::string& slide_id, const User& by);

  // The field id an earlier upload with this key stored on this slide, if any; StoreError(422)
  // when that upload's image was another one.
  std::optional<std::string> field_for_key(const std::string& slide_id, const std::string& key,
                                           const std::string& image);
  // Stores a screened field with its cells in one transaction; refuses (409) a signed slide.
  // With a key already used on this slide, stores nothing and returns the first field's id.
  std::string add_field(const std::string& slide_id, const FieldInput& field,
                        const std::string& idempotency_key, const User& by);
  // {format, bytes}; StoreError(404) when unknown, 410 when purged.
  std::pair<std::string, std::string> field_image(const std::string& field_id, const User& by);

  // A cell and the id of its field; StoreError(404) when unknown or on a site `by` may not see.
  std::pair<StoredCell, std::string> cell(const std::string& cell_id, const User& by);
  // A reviewer's call on a cell ("Parasitized", "Uninfected"; stage for a Parasitized cell).
  // On a signed slide it is an amendment and needs a reason; the slide becomes "amended".
  StoredCell review_cell(const std::string& cell_id, const std::string& decision,
                         const std::string& stage, const std::string& amendment_reason,
                         const User& by);
  // Refused (409) while a cell of the review queue is unreviewed or no field is usable.
  Slide sign_slide(const std::string& slide_id, const User& by);
  std::vector<AuditEvent> audit(const std::string& slide_id, const User& by);

  // Deletes the kept images of signed slides' fields stored more than `days` ago (a slide still
  // in review keeps them); returns how many.
  size_t purge_images_older_than(double days, const std::string& actor = "cli");

  // Users. The token is returned once; only a salted hash is stored. It stops working after
  // `valid_days` (0: never).
  std::string add_user(const std::string& name, const std::string& role,
                       const std::vector<std::string>& sites, const std::string& actor = "cli",
                       double valid_days = 0);
  // A new token for the user, valid for `valid_days` (0: never); the old one stops at once.
  std::string rotate_token(const std::string& name, const std::string& actor = "cli",
                           double valid_days = 0);
  // An admin's grant: the sites whose slides the user sees from now on (empty: every site).
  void set_sites(const std::string& name, const std::vector<std::string>& sites,
                 const std::string& actor = "cli");
  // The user's token stops working at once.
  void remove_user(const std::string& name, const std::string& actor = "cli");
  // Events that belong to no slide: users added, granted sites or removed, and purges (`actor`
  // above: who did it).
  std::vector<AuditEvent> admin_audit();
  std::vector<User> users();
  size_t user_count();
  // The token's user; nullopt for a wrong token; StoreError(401) for an expired one.
  std::optional<User> authenticate(const std::string& token);

 private:
  void migrate();
  std::unique_ptr<Database> db_;
};

}  // namespace malaria
