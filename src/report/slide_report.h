// What a slide's records add up to: the model's and the reviewed parasitemia side by side, the
// cells a reviewer must look at, and the slide's report (HTML for print, FHIR R4 JSON) and
// corrections (annotations.csv, the format `train --fields` reads). Torch-free.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "store/slide_store.h"

namespace malaria {

// {"fields", "fields_used", "fields_failed": [{"field_id", "file", "reasons"}], "rbc_per_ul",
//  "rbc_per_ul_assumed", "model": {...}, "reviewed": {...}} where each side holds "cells",
// "parasitized", "parasitemia_percent", "ci_low", "ci_high" (Wilson 95%, percent), "stages",
// "gametocytes_present", "parasites_per_ul": {"value", "ci_low", "ci_high"}; the model's side
// also "inconclusive", the reviewed side "cells_reviewed", "not_cells" and "pending" (cells in
// the review queue not yet reviewed).
nlohmann::json slide_summary(const Slide& slide, const std::vector<StoredField>& fields);

// The slide with its "summary", "review_queue" and "fields" (each with its cells): what
// GET /api/v1/slides/{id} and `malaria slides show` answer.
nlohmann::json slide_record_json(const Slide& slide, const std::vector<StoredField>& fields);

// The cells a reviewer must see, in order: every cell the model called Parasitized or
// Inconclusive on a usable field, then a fixed random sample (the same every time) of the
// Uninfected ones for quality control: 5%, at least 10. [{"cell_id", "field_id", "why"}]
nlohmann::json review_queue(const std::vector<StoredField>& fields);

// Facts about the models that made the calls, for the report: {"id", "name", "validated": [...
// lines of text]}.
struct ReportContext {
  nlohmann::json model;
  std::string generated_at;
  std::string base_url;  // for the FHIR fullUrls; may be empty
};

// A self-contained HTML page that prints on A4: thumbnails of the positive cells are cut from
// the kept field images (`images`: field id -> encoded bytes; missing ones are skipped).
std::string slide_report_html(const Slide& slide, const std::vector<StoredField>& fields,
                              const std::map<std::string, std::string>& images,
                              const ReportContext& context);
// The report's one style block as a CSP source ('sha256-...'). A report the page fetches with a
// token opens as a blob, which inherits the page's CSP; the page allows this block, so it keeps
// its look.
std::string report_style_csp_source();

// A FHIR R4 Bundle (type "collection"): the DiagnosticReport, its Observations and the Specimen.
nlohmann::json slide_report_fhir(const Slide& slide, const std::vector<StoredField>& fields,
                                 const ReportContext& context);

// image,x,y,w,h,label,group: one row per counted cell of a usable field, with the reviewed class
// where there is one (stage names for staged parasites, "difficult" for an unreviewed Rejected
// cell; "Not a cell" is left out). Images are named FIELD_ID.EXT (see annotation_image_name).
std::string slide_annotations_csv(const Slide& slide, const std::vector<StoredField>& fields);
std::string annotation_image_name(const StoredField& field);

}  // namespace malaria
