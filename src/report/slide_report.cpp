#include "report/slide_report.h"

#include <sodium.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <sstream>

#include "field/parasitemia.h"
#include "util/text.h"

namespace malaria {

using json = nlohmann::json;

namespace {

bool usable(const StoredField& f) { return f.quality_verdict != "fail"; }
bool counted(const StoredCell& c) { return c.decision != "Rejected"; }

struct Tally {
  size_t cells = 0, parasitized = 0;
  std::array<size_t, 4> stages{};
  json to_json(double rbc_per_ul) const {
    const Interval ci = wilson_interval(parasitized, cells);
    const double share = cells ? double(parasitized) / cells : 0;
    json stage_counts = json::object();
    for (size_t s = 0; s < kStageNames.size(); ++s) stage_counts[kStageNames[s]] = stages[s];
    return {{"cells", cells},
            {"parasitized", parasitized},
            {"parasitemia_percent", 100 * share},
            {"ci_low", 100 * ci.low},
            {"ci_high", 100 * ci.high},
            {"stages", stage_counts},
            {"gametocytes_present", stages[3] > 0},
            {"parasites_per_ul",
             {{"value", share * rbc_per_ul},
              {"ci_low", ci.low * rbc_per_ul},
              {"ci_high", ci.high * rbc_per_ul}}}};
  }
  void add(const std::string& label, const std::string& stage) {
    if (label == "Not a cell") return;
    cells++;
    if (label != "Parasitized") return;
    parasitized++;
    for (size_t s = 0; s < kStageNames.size(); ++s)
      if (stage == kStageNames[s]) stages[s]++;
  }
};

// A stable pseudo-random order for the quality-control sample (FNV-1a of the id).
uint64_t id_hash(const std::string& id) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : id) h = (h ^ c) * 1099511628211ull;
  return h;
}

std::string percent(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, v < 1 ? "%.3f%%" : "%.2f%%", v);
  return buf;
}

std::string count_per_ul(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}

// A cell cut from its field with a margin, 72 px square, as a data: URL.
std::string thumbnail(const cv::Mat& field, const StoredCell& c) {
  const int margin = std::max(c.width, c.height) / 4;
  cv::Rect box(c.x - margin, c.y - margin, c.width + 2 * margin, c.height + 2 * margin);
  box &= cv::Rect(0, 0, field.cols, field.rows);
  if (box.area() <= 0) return "";
  cv::Mat small;
  cv::resize(field(box), small, cv::Size(72, 72), 0, 0, cv::INTER_AREA);
  std::vector<uchar> png;
  cv::imencode(".png", small, png);
  return "data:image/png;base64," + base64_encode(std::string(png.begin(), png.end()));
}

}  // namespace

namespace {

json summarize(const Slide& slide, const std::vector<StoredField>& fields, const json& queue) {
  Tally model, reviewed;
  size_t inconclusive = 0, cells_reviewed = 0, not_cells = 0, used = 0;
  json failed = json::array();
  for (const auto& f : fields) {
    if (!usable(f)) {
      failed.push_back(
          {{"field_id", f.id},
           {"file", f.filename},
           {"reasons", f.result.value("quality", json::object()).value("reasons", json::array())}});
      continue;
    }
    used++;
    for (const auto& c : f.cells) {
      if (c.review) cells_reviewed++;
      if (c.review && c.review->decision == "Not a cell") not_cells++;
      if (counted(c)) {
        model.add(c.label, c.stage);
        inconclusive += c.decision == "Inconclusive";
      }
      if (c.review)
        reviewed.add(c.review->decision, c.review->stage);
      else if (counted(c))
        reviewed.add(c.label, c.stage);
    }
  }
  const double rbc = slide.info.rbc_per_ul.value_or(kDefaultRbcPerMicrolitre);
  size_t pending = 0;
  std::map<std::string, bool> is_reviewed;
  for (const auto& f : fields)
    for (const auto& c : f.cells) is_reviewed[c.id] = bool(c.review);
  for (const auto& q : queue) pending += !is_reviewed[q["cell_id"].get<std::string>()];
  json j = {{"fields", fields.size()},
            {"fields_used", used},
            {"fields_failed", failed},
            {"rbc_per_ul", rbc},
            {"rbc_per_ul_assumed", !slide.info.rbc_per_ul.has_value()},
            {"model", model.to_json(rbc)},
            {"reviewed", reviewed.to_json(rbc)}};
  j["model"]["inconclusive"] = inconclusive;
  j["reviewed"]["cells_reviewed"] = cells_reviewed;
  j["reviewed"]["not_cells"] = not_cells;
  j["reviewed"]["pending"] = pending;
  j["review_queue_size"] = queue.size();
  if (model.cells < kSlideMinimumCells)
    j["warning"] = "fewer than " + std::to_string(kSlideMinimumCells) +
                   " red cells counted: the parasitemia is mostly counting noise";
  return j;
}

}  // namespace

json slide_summary(const Slide& slide, const std::vector<StoredField>& fields) {
  return summarize(slide, fields, review_queue(fields));
}

json slide_record_json(const Slide& slide, const std::vector<StoredField>& fields) {
  const json queue = review_queue(fields);
  json j = slide.to_json();
  j["summary"] = summarize(slide, fields, queue);
  j["review_queue"] = queue;
  j["fields"] = json::array();
  for (const auto& f : fields) j["fields"].push_back(f.to_json());
  return j;
}

json review_queue(const std::vector<StoredField>& fields) {
  json flagged = json::array();
  std::vector<std::pair<uint64_t, json>> uninfected;
  for (const auto& f : fields) {
    if (!usable(f)) continue;
    for (const auto& c : f.cells) {
      if (!counted(c)) continue;
      if (c.decision == "Inconclusive" || c.label == "Parasitized")
        flagged.push_back({{"cell_id", c.id},
                           {"field_id", f.id},
                           {"why", c.decision == "Inconclusive" ? "Inconclusive" : "Parasitized"}});
      else
        uninfected.push_back(
            {id_hash(c.id), {{"cell_id", c.id}, {"field_id", f.id}, {"why", "quality control"}}});
    }
  }
  std::sort(uninfected.begin(), uninfected.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  const size_t sample = std::min(uninfected.size(), std::max<size_t>(10, uninfected.size() / 20));
  for (size_t i = 0; i < sample; ++i) flagged.push_back(uninfected[i].second);
  return flagged;
}

namespace {

const char* kReportCss = R"(
@page { size: A4; margin: 16mm 14mm; }
body { font: 10.5pt/1.4 "DejaVu Sans", sans-serif; color: #111; max-width: 180mm; margin: 0 auto; }
h1 { font-size: 16pt; margin: 0 0 2mm; } h2 { font-size: 12pt; margin: 5mm 0 2mm; border-bottom: 1px solid #999; }
table { border-collapse: collapse; width: 100%; } td, th { text-align: left; padding: 1mm 2mm; border-bottom: 1px solid #ddd; vertical-align: top; }
th { width: 38%; font-weight: 600; } .numbers th { width: auto; }
.draft { color: #a00; font-weight: 700; border: 2px solid #a00; padding: 1mm 3mm; display: inline-block; }
.cells { display: flex; flex-wrap: wrap; gap: 2mm; } .cells figure { margin: 0; text-align: center; font-size: 8pt; }
.cells img { width: 18mm; height: 18mm; border: 1px solid #888; image-rendering: auto; }
.statement { border: 1px solid #333; padding: 2mm 3mm; margin-top: 5mm; font-size: 9.5pt; }
h2, table, figure { break-inside: avoid; }
)";

std::string row(const std::string& name, const std::string& value) {
  return "<tr><th>" + html_escape(name) + "</th><td>" + value + "</td></tr>\n";
}

std::string side_cells(const json& side, double rbc, bool assumed) {
  return "<td>" + percent(side["parasitemia_percent"].get<double>()) + " <small>(95% CI " +
         percent(side["ci_low"].get<double>()) + "&ndash;" +
         percent(side["ci_high"].get<double>()) + ")</small></td><td>" +
         count_per_ul(side["parasites_per_ul"]["value"].get<double>()) + " <small>(" +
         count_per_ul(side["parasites_per_ul"]["ci_low"].get<double>()) + "&ndash;" +
         count_per_ul(side["parasites_per_ul"]["ci_high"].get<double>()) + "; RBC " +
         count_per_ul(rbc) + "/&micro;L" + (assumed ? ", assumed" : "") + ")</small></td><td>" +
         std::to_string(side["parasitized"].get<size_t>()) + " / " +
         std::to_string(side["cells"].get<size_t>()) + "</td>";
}

// Thumbnails of the cells called (or reviewed) Parasitized, at most 60, cut from the kept images.
std::string infected_cells_html(const std::vector<StoredField>& fields,
                                const std::map<std::string, std::string>& images) {
  std::ostringstream h;
  h << "\n<h2>Infected cells</h2><div class=\"cells\">";
  size_t shown = 0, positives = 0;
  for (const auto& f : fields) {
    if (!usable(f)) continue;
    cv::Mat image;
    for (const auto& c : f.cells) {
      if (c.final_label() != "Parasitized" || (!c.review && !counted(c))) continue;
      positives++;
      if (shown >= 60) continue;
      if (image.empty()) {
        const auto it = images.find(f.id);
        if (it == images.end()) break;
        image = cv::imdecode(std::vector<uchar>(it->second.begin(), it->second.end()),
                             cv::IMREAD_COLOR);
        if (image.empty()) break;
      }
      const std::string src = thumbnail(image, c);
      if (src.empty()) continue;
      const std::string stage = c.review ? c.review->stage : c.stage;
      h << "<figure><img alt=\"infected cell\" src=\"" << src << "\"><figcaption>field " << f.seq
        << (stage.empty() ? "" : ", " + stage) << (c.review ? ", reviewed" : "")
        << "</figcaption></figure>";
      shown++;
    }
  }
  h << "</div><p>" << shown << " of " << positives << " infected cells shown"
    << (positives > shown ? " (the others are in the slide record)" : "") << ".</p>\n";
  return h.str();
}

}  // namespace

std::string report_style_csp_source() {
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, reinterpret_cast<const unsigned char*>(kReportCss),
                     std::strlen(kReportCss));
  char base64[sodium_base64_ENCODED_LEN(crypto_hash_sha256_BYTES, sodium_base64_VARIANT_ORIGINAL)];
  sodium_bin2base64(base64, sizeof base64, digest, sizeof digest, sodium_base64_VARIANT_ORIGINAL);
  return std::string("'sha256-") + base64 + "'";
}

std::string slide_report_html(const Slide& slide, const std::vector<StoredField>& fields,
                              const std::map<std::string, std::string>& images,
                              const ReportContext& context) {
  const json summary = slide_summary(slide, fields);
  const double rbc = summary["rbc_per_ul"];
  const bool assumed = summary["rbc_per_ul_assumed"];
  std::ostringstream h;
  h << "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
       "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
       "style-src 'unsafe-inline'\"><title>Malaria screening "
       "report "
    << html_escape(slide.info.sample_id) << "</title><style>" << kReportCss
    << "</style></head><body>\n<h1>Malaria screening report</h1>\n";
  if (slide.status == "amended")
    h << "<p class=\"draft\">AMENDED after its signature: to be signed again. The figures below "
         "include the amendment; the signature below is the earlier one.</p>\n";
  else if (slide.status != "signed")
    h << "<p class=\"draft\">NOT SIGNED: preliminary, status " << html_escape(slide.status)
      << "</p>\n";
  h << "<table>" << row("Sample", html_escape(slide.info.sample_id))
    << row("Slide record", html_escape(slide.id)) << row("Site", html_escape(slide.info.site))
    << row("Collected",
           html_escape(slide.info.collected_on.empty() ? "not recorded" : slide.info.collected_on))
    << row("Stain", html_escape(slide.info.stain))
    << row("Operator", html_escape(slide.info.operator_name))
    << row("Screened", html_escape(slide.created_at) + " by " + html_escape(slide.created_by))
    << row("Reviewed and signed", slide.signed_by.empty() ? "not signed"
                                                          : html_escape(slide.signed_by) + ", " +
                                                                html_escape(slide.signed_at))
    << row("Report generated", html_escape(context.generated_at)) << "</table>\n";
  h << "<h2>Parasitemia</h2><table class=\"numbers\"><tr><th></th><th>Parasitemia</th>"
       "<th>Parasites per &micro;L</th><th>Infected / red cells</th></tr><tr><th>Model</th>"
    << side_cells(summary["model"], rbc, assumed) << "</tr><tr><th>Reviewed</th>"
    << side_cells(summary["reviewed"], rbc, assumed) << "</tr></table>\n";
  h << "<p>" << summary["reviewed"]["cells_reviewed"].get<size_t>() << " cells reviewed; "
    << summary["reviewed"]["pending"].get<size_t>() << " flagged cells not yet reviewed; "
    << summary["model"]["inconclusive"].get<size_t>()
    << " cells the model could not decide (Inconclusive).</p>\n";
  if (summary.contains("warning"))
    h << "<p class=\"draft\">" << html_escape(summary["warning"].get<std::string>()) << "</p>\n";
  h << "<h2>Stages (reviewed)</h2><table class=\"numbers\"><tr>";
  for (const std::string& s : kStageNames) h << "<th>" << s << "</th>";
  h << "<th>gametocytes present</th></tr><tr>";
  for (const std::string& s : kStageNames)
    h << "<td>" << summary["reviewed"]["stages"][s].get<size_t>() << "</td>";
  h << "<td>" << (summary["reviewed"]["gametocytes_present"].get<bool>() ? "yes" : "no")
    << "</td></tr></table>\n";
  h << "<h2>Fields</h2><p>" << summary["fields_used"].get<size_t>() << " of "
    << summary["fields"].get<size_t>() << " fields used.</p>";
  if (!summary["fields_failed"].empty()) {
    h << "<table>";
    for (const auto& f : summary["fields_failed"]) {
      std::string reasons;
      for (const auto& r : f["reasons"])
        reasons += (reasons.empty() ? "" : "; ") + r.get<std::string>();
      h << row("Not used: " + f["file"].get<std::string>(), html_escape(reasons));
    }
    h << "</table>";
  }
  h << infected_cells_html(fields, images);
  h << "<h2>Model</h2><table>"
    << row("Model", html_escape(context.model.value("name", "")) + " <small>" +
                        html_escape(context.model.value("id", "")) + "</small>");
  for (const auto& line : context.model.value("validated", json::array()))
    h << row("Validated", html_escape(line.get<std::string>()));
  h << "</table>\n<p class=\"statement\"><strong>Assistive tool.</strong> These counts were made "
       "by "
       "software that assists and does not replace a trained microscopist. The reviewed figures "
       "include the corrections of the reviewer named above. Interpret with the clinical "
       "picture; confirm doubtful or negative slides with a microscopist.</p>\n</body></html>\n";
  return h.str();
}

namespace {

constexpr const char* kLoinc = "http://loinc.org";
constexpr const char* kLocalCodes = "urn:malaria-screen:observation";

json coding(const char* system, const std::string& code, const std::string& display) {
  return {{"coding", {{{"system", system}, {"code", code}, {"display", display}}}},
          {"text", display}};
}

json quantity(double value, const std::string& unit, const std::string& ucum) {
  return {
      {"value", value}, {"unit", unit}, {"system", "http://unitsofmeasure.org"}, {"code", ucum}};
}

}  // namespace

namespace {

struct ObservationSpec {
  std::string key;  // the Observation's id is KEY-SLIDE_ID
  json code;
  std::string value_key;  // valueQuantity, valueString, ...
  json value;
  std::string note;
};

// What the report states, from the reviewed figures: presence, parasitemia with its interval,
// parasites per microlitre, red cells counted, stages seen.
std::vector<ObservationSpec> report_observations(const json& reviewed) {
  const bool detected = reviewed["parasitized"].get<size_t>() > 0;
  std::string stages;
  for (const std::string& s : kStageNames)
    if (reviewed["stages"][s].get<size_t>() > 0)
      stages += (stages.empty() ? "" : ", ") + s + " " +
                std::to_string(reviewed["stages"][s].get<size_t>());
  return {
      {"presence",
       coding(kLoinc, "51587-4", "Plasmodium sp [Presence] in Blood by Light microscopy"),
       "valueCodeableConcept",
       // A negative over too few cells is no negative.
       detected ? coding("http://snomed.info/sct", "260373001", "Detected")
       : reviewed["cells"].get<size_t>() >= kSlideMinimumCells
           ? coding("http://snomed.info/sct", "260415000", "Not detected")
           : coding("http://snomed.info/sct", "82334004", "Indeterminate"),
       ""},
      {"parasitemia",
       coding(kLoinc, "101343-2", "Erythrocytes.parasite sp infected/Cells in Blood"),
       "valueQuantity", quantity(reviewed["parasitemia_percent"], "%", "%"),
       "95% interval " + percent(reviewed["ci_low"]) + " to " + percent(reviewed["ci_high"]) +
           " over " + std::to_string(reviewed["cells"].get<size_t>()) + " red cells"},
      {"parasite-density",
       coding(kLocalCodes, "parasites-per-ul", "Plasmodium parasites per microlitre"),
       "valueQuantity", quantity(reviewed["parasites_per_ul"]["value"], "/uL", "/uL"), ""},
      {"rbc-counted", coding(kLocalCodes, "rbc-counted", "Red blood cells counted"),
       "valueQuantity", quantity(double(reviewed["cells"].get<size_t>()), "cells", "{cells}"), ""},
      {"stages",
       coding(kLoinc, "41451-6", "Plasmodium stage [Identifier] in Blood by Light microscopy"),
       "valueString", stages.empty() ? std::string("none seen") : stages, ""}};
}

json fhir_specimen(const Slide& slide) {
  const std::string stain = slide.info.stain.empty() ? "not recorded" : slide.info.stain;
  return {{"resourceType", "Specimen"},
          {"id", "specimen-" + slide.id},
          {"identifier",
           {{{"system", "urn:malaria-screen:sample-id"}, {"value", slide.info.sample_id}}}},
          {"type", coding("http://terminology.hl7.org/CodeSystem/v2-0487", "BLD", "Whole blood")},
          {"note", {{{"text", "Thin blood smear, stain: " + stain}}}}};
}

}  // namespace

json slide_report_fhir(const Slide& slide, const std::vector<StoredField>& fields,
                       const ReportContext& context) {
  const json summary = slide_summary(slide, fields);
  const json& reviewed = summary["reviewed"];
  // Signed: final (amended once changed after a signature); otherwise preliminary.
  // FHIR: final once signed; "amended" once signed again after a change; an amendment awaiting
  // its signature is not released, so preliminary.
  const std::string status = slide.status != "signed" ? "preliminary"
                             : slide.amendments > 0   ? "amended"
                                                      : "final";
  const std::string when =
      slide.info.collected_on.empty() ? slide.created_at : slide.info.collected_on;
  const std::string base = context.base_url.empty() ? "urn:malaria-screen:" : context.base_url;
  const std::string specimen_ref = "Specimen/specimen-" + slide.id;
  json entries = json::array(), results = json::array();
  for (const ObservationSpec& spec : report_observations(reviewed)) {
    const std::string id = spec.key + "-" + slide.id;
    json o = {{"resourceType", "Observation"},
              {"id", id},
              {"status", status},
              {"category",
               {coding("http://terminology.hl7.org/CodeSystem/observation-category", "laboratory",
                       "Laboratory")}},
              {"code", spec.code},
              {"effectiveDateTime", when},
              {"specimen", {{"reference", specimen_ref}}},
              {spec.value_key, spec.value}};
    if (!spec.note.empty()) o["note"] = {{{"text", spec.note}}};
    results.push_back({{"reference", "Observation/" + id}});
    entries.push_back({{"fullUrl", base + "Observation/" + id}, {"resource", std::move(o)}});
  }
  json report = {
      {"resourceType", "DiagnosticReport"},
      {"id", "report-" + slide.id},
      {"identifier", {{{"system", "urn:malaria-screen:slide"}, {"value", slide.id}}}},
      {"status", status},
      {"category", {coding("http://terminology.hl7.org/CodeSystem/v2-0074", "MB", "Microbiology")}},
      {"code", coding(kLoinc, "51587-4", "Plasmodium sp [Presence] in Blood by Light microscopy")},
      {"effectiveDateTime", when},
      {"issued", context.generated_at},
      {"performer",
       {{{"display",
          slide.info.operator_name.empty() ? slide.created_by : slide.info.operator_name}}}},
      {"specimen", {{{"reference", specimen_ref}}}},
      {"result", results},
      {"conclusion",
       std::string(reviewed["parasitized"].get<size_t>() > 0 ? "Plasmodium detected"
                   : reviewed["cells"].get<size_t>() >= kSlideMinimumCells
                       ? "No Plasmodium detected"
                       : "Indeterminate: too few red cells counted for a negative") +
           ", parasitemia " + percent(reviewed["parasitemia_percent"]) + " (" +
           (slide.status == "signed"    ? "reviewed and signed"
            : slide.status == "amended" ? "amended after signature, awaiting a new signature"
                                        : "not signed: preliminary") +
           "). Assistive tool: confirm with a microscopist."}};
  if (slide.status == "signed") report["resultsInterpreter"] = {{{"display", slide.signed_by}}};
  entries.insert(entries.begin(), json{{"fullUrl", base + "DiagnosticReport/report-" + slide.id},
                                       {"resource", report}});
  entries.push_back({{"fullUrl", base + specimen_ref}, {"resource", fhir_specimen(slide)}});
  return {{"resourceType", "Bundle"},
          {"type", "collection"},
          {"timestamp", context.generated_at},
          {"entry", entries}};
}

std::string annotation_image_name(const StoredField& field) {
  const std::string ext = field.image_format == "jpeg" ? "jpg" : field.image_format;
  return field.id + "." + (ext.empty() ? "img" : ext);
}

std::string slide_annotations_csv(const Slide& slide, const std::vector<StoredField>& fields) {
  std::string csv = "image,x,y,w,h,label,group\n";
  for (const auto& f : fields) {
    if (!usable(f)) continue;
    for (const auto& c : f.cells) {
      std::string label = c.final_label(), stage = c.review ? c.review->stage : c.stage;
      if (label == "Not a cell") continue;
      if (!c.review && !counted(c))
        label = "difficult";
      else if (label == "Parasitized" && !stage.empty())
        label = stage;
      csv += annotation_image_name(f) + "," + std::to_string(c.x) + "," + std::to_string(c.y) +
             "," + std::to_string(c.width) + "," + std::to_string(c.height) + "," + label + "," +
             slide.id + "\n";
    }
  }
  return csv;
}

}  // namespace malaria
