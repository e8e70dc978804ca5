// Training cells cut from annotated fields: every red-cell candidate the segmentation finds,
// masked as at screening time and labelled by the annotation it matches. Torch-free.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace malaria {

// Writes OUT/Parasitized/*.png and OUT/Uninfected/*.png (the NIH layout) named
// GROUP_IMG_FIELD_N.png, so the field group is the "patient" and splits keep fields of one group
// together. A candidate matching an infected box is Parasitized; one matching a difficult box is
// left out; every other one, including white cells, platelets and debris the annotators did not
// box, is Uninfected: the model must learn that they are not infected red cells. Cells cut by
// the edge are left out, as screening does not count them. The folder is built beside OUT and
// renamed into place; an existing OUT with its summary.json is reused. Returns the summary:
// fields, groups, cells per class, infected boxes the segmentation missed.
nlohmann::json extract_field_cells(const std::string& fields_dir, const std::string& out_dir,
                                   int threads = 0);

// True for a sample whose patient id is a field group of extract_field_cells.
bool is_field_group(const std::string& patient);

}  // namespace malaria
