#include "train/run_state.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "field/field_cells.h"
#include "util/files.h"

namespace malaria {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string onednn_isa_cap() {
  const char* cap = std::getenv("ONEDNN_MAX_CPU_ISA");
  if (!cap) cap = std::getenv("DNNL_MAX_CPU_ISA");
  std::string isa(cap ? cap : "");
  for (char& c : isa) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return isa;
}

bool cpu_has_bf16() {
  // A cap below the bfloat16 level keeps oneDNN from its bf16 kernels: the convolutions would
  // then fail, so the CPU counts as one without bfloat16.
  const std::string cap = onednn_isa_cap();
  if (!cap.empty() && cap != "ALL" && cap.rfind("AVX512_CORE_BF16", 0) != 0 &&
      cap.rfind("AVX512_CORE_AMX", 0) != 0 && cap.rfind("AVX512_CORE_FP16", 0) != 0)
    return false;
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);)
    if (line.rfind("flags", 0) == 0)
      return line.find(" avx512_bf16") != std::string::npos ||
             line.find(" amx_bf16") != std::string::npos;
  return false;
}

json TrainOptions::to_json() const {
  return {{"data_dir", data_dir},
          {"fields_dir", fields_dir},
          {"field_positive_repeat", field_positive_repeat},
          {"out_dir", out_dir},
          {"arch", arch},
          {"image_size", image_size},
          {"epochs", epochs},
          {"batch_size", batch_size},
          {"learning_rate", learning_rate},
          {"lr_schedule", lr_schedule},
          {"patience", patience},
          {"split", malaria::to_string(split)},
          {"fractions", {fractions.train, fractions.val, fractions.test}},
          {"seed", seed},
          {"threads", threads},
          {"workers", workers},
          {"cache", cache},
          {"strict", strict},
          {"augment", augment.to_json()},
          {"time_limit_minutes", time_limit_minutes},
          {"max_steps", max_steps},
          {"bf16", bf16},
          {"flip_tta", flip_tta},
          {"cv_folds", cv_folds},
          {"cv_fold", cv_fold},
          {"fold_seed", fold_seed},
          {"ema_decay", ema_decay},
          {"label_smoothing", label_smoothing},
          {"mixup_alpha", mixup_alpha},
          {"exclude_list", exclude_list},
          {"optimizer", "adam"},
          {"loss", "binary_cross_entropy_with_logits"},
          {"early_stopping", fractions.val > 0 ? "validation loss, best weights restored"
                                               : "none: the fixed schedule runs to its end"}};
}

TrainOptions TrainOptions::from_json(const json& j) {
  TrainOptions o;
  o.data_dir = j.at("data_dir");
  o.fields_dir = j.value("fields_dir", "");
  o.field_positive_repeat = j.value("field_positive_repeat", 1);
  o.out_dir = j.at("out_dir");
  o.arch = j.at("arch");
  o.image_size = j.at("image_size");
  o.epochs = j.at("epochs");
  o.batch_size = j.at("batch_size");
  o.learning_rate = j.at("learning_rate");
  o.lr_schedule = j.value("lr_schedule", "constant");
  o.patience = j.at("patience");
  o.split = parse_split_mode(j.at("split"));
  o.fractions = {j.at("fractions")[0], j.at("fractions")[1], j.at("fractions")[2]};
  o.seed = j.at("seed");
  o.threads = j.at("threads");
  o.workers = j.at("workers");
  o.cache = j.at("cache");
  o.strict = j.at("strict");
  const auto& a = j.at("augment");
  o.augment = {a.at("rotation_deg"),         a.at("zoom"),
               a.at("horizontal_flip"),      a.at("vertical_flip"),
               a.value("color_jitter", 0.0), a.value("stain", 0.0)};
  o.time_limit_minutes = j.at("time_limit_minutes");
  o.max_steps = j.at("max_steps");
  o.bf16 = j.value("bf16", false);
  o.flip_tta = j.value("flip_tta", false);
  o.cv_folds = j.value("cv_folds", 0);
  o.cv_fold = j.value("cv_fold", 0);
  o.fold_seed = j.value("fold_seed", o.seed);
  o.ema_decay = j.value("ema_decay", 0.0);
  o.label_smoothing = j.value("label_smoothing", 0.0);
  o.mixup_alpha = j.value("mixup_alpha", 0.0);
  o.exclude_list = j.value("exclude_list", "");
  return o;
}

void write_history(const std::string& dir, const std::vector<EpochRecord>& history) {
  std::ostringstream csv;
  csv << "epoch,train_loss,train_accuracy,val_loss,val_accuracy,learning_rate,seconds,images_per_"
         "second\n";
  json j = json::array();
  for (const auto& r : history) {
    csv << r.epoch << ',' << r.train_loss << ',' << r.train_accuracy << ',' << r.val_loss << ','
        << r.val_accuracy << ',' << r.learning_rate << ',' << r.seconds << ','
        << r.images_per_second << '\n';
    j.push_back(r);
  }
  write_text_atomic(dir + "/history.csv", csv.str());
  write_text_atomic(dir + "/history.json", j.dump(2));
}

namespace {
// Removes the listed paths from the training and validation parts; the test part keeps them.
void leave_out_of_training(Split& split, const std::string& list_path) {
  std::set<std::string> listed;
  std::istringstream in(read_text(list_path));
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && line[0] != '#') listed.insert(line);
  size_t removed = 0;
  for (auto* part : {&split.train, &split.val}) {
    const size_t before = part->size();
    part->erase(std::remove_if(part->begin(), part->end(),
                               [&](const Sample& s) { return listed.count(s.path) > 0; }),
                part->end());
    removed += before - part->size();
  }
  spdlog::info("left {} of {} listed images out of training ({})", removed, listed.size(),
               list_path);
}
}  // namespace

RunData prepare_run_data(const TrainOptions& opt, bool resuming) {
  const std::string dir = opt.out_dir;
  fs::create_directories(dir);
  RunData data;
  if (resuming) {
    data.split = read_split_csv(dir + "/split.csv");
    data.summary = json::parse(read_text(dir + "/data_summary.json"));
    return data;
  }
  ScanOptions scan;
  scan.strict = opt.strict;
  // "none": only the cells of the annotated fields.
  Dataset ds = opt.data_dir == "none" && !opt.fields_dir.empty() ? Dataset{"none", {}, {}}
                                                                 : scan_dataset(opt.data_dir, scan);
  json fields;
  if (!opt.fields_dir.empty()) {
    spdlog::info("cutting training cells from the annotated fields in {}", opt.fields_dir);
    fields = extract_field_cells(opt.fields_dir, dir + "/field-cells");
    const Dataset cells = scan_dataset(dir + "/field-cells", scan);
    ds.samples.insert(ds.samples.end(), cells.samples.begin(), cells.samples.end());
    for (int l : {kUninfected, kParasitized}) ds.summary.per_class[l] += cells.summary.per_class[l];
    ds.summary.patients += cells.summary.patients;
    fields["scan"] = cells.summary.to_json();
    spdlog::info("fields: {} cells ({} Parasitized) from {} fields in {} groups",
                 cells.samples.size(), cells.summary.per_class[kParasitized],
                 fields.value("fields", 0), fields.value("groups", 0));
  }
  data.split = opt.cv_folds > 0 ? cross_validation_split(
                                      ds.samples, opt.cv_folds, opt.cv_fold,
                                      opt.fractions.val / (opt.fractions.train + opt.fractions.val),
                                      opt.fold_seed)
                                : split_dataset(ds.samples, opt.split, opt.fractions, opt.seed);
  if (!opt.exclude_list.empty()) leave_out_of_training(data.split, opt.exclude_list);
  data.summary = {{"root", ds.root},
                  {"dataset", ds.summary.to_json()},
                  {"split", split_summary(data.split)},
                  {"split_mode", opt.cv_folds > 0 ? "patient cross-validation fold " +
                                                        std::to_string(opt.cv_fold + 1) + " of " +
                                                        std::to_string(opt.cv_folds)
                                                  : malaria::to_string(opt.split)},
                  {"split_seed", opt.cv_folds > 0 ? opt.fold_seed : opt.seed}};
  if (!fields.is_null()) data.summary["fields"] = fields;
  write_split_csv(data.split, dir + "/split.csv");
  write_text_atomic(dir + "/data_summary.json", data.summary.dump(2));
  write_text_atomic(dir + "/config.json", opt.to_json().dump(2));
  spdlog::info(
      "data: {} images of {} patients ({} Parasitized, {} Uninfected), {} unreadable skipped",
      ds.samples.size(), ds.summary.patients, ds.summary.per_class[kParasitized],
      ds.summary.per_class[kUninfected], ds.summary.unreadable.size());
  return data;
}

}  // namespace malaria
