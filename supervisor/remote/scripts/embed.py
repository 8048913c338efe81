#!/usr/bin/env python3
# Writes scripts.hpp: each Lua script of scripts/ as a string constant, so the sources stay .lua files.
import os, sys
out, sources = sys.argv[1], sys.argv[2:]
with open(out, 'w') as f:
    f.write('#pragma once\n// Generated from supervisor/remote/scripts/*.lua by embed.py.\n#include <string_view>\n\n')
    f.write('namespace parallelcode::remote::scripts {\n\n')
    for s in sources:
        name = os.path.splitext(os.path.basename(s))[0]
        text = open(s).read()
        assert ')lua"' not in text
        f.write('inline constexpr std::string_view %s = R"lua(%s)lua";\n\n' % (name, text))
    f.write('}  // namespace parallelcode::remote::scripts\n')
