#include <gtest/gtest.h>
#include "data/dataset.h"
TEST(PatientId, CutsAtImg) { EXPECT_EQ(malaria::patient_id("C33P1thinF_IMG_1_cell_2.png"), "C33P1thinF"); }
