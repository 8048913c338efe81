#pragma once

// glibc 2.36's <sys/pidfd.h> forgets extern "C" (fixed in 2.37).
extern "C" {
#include <sys/pidfd.h>
}
