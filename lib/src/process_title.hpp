#pragma once

// Process titles: what ps shows for the fork server and the workers.

namespace parallelcode::detail {

// In a child of the pool: sets its short name (comm, 15 bytes) and, if the host
// called name_processes(), its full title over the memory that held argv.
void set_process_title(const char* comm, const char* title) noexcept;

}  // namespace parallelcode::detail
