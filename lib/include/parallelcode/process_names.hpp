#pragma once

#include <parallelcode/export.hpp>

namespace parallelcode {

// Lets the pools name their processes in ps ("parallelcode: worker 3"): call it
// first thing in main(), with main's arguments. It moves the environment to the
// heap and gives the memory that held argv and environ to the titles.
PARALLELCODE_API void name_processes(int argc, char** argv);

}  // namespace parallelcode
