#!/usr/bin/env bash
# Build a private virtual environment holding GENFIRE's published Python code, unmodified, for
# benchmarks/bench_reconstruct.py --genfire-python. genfire 1.1.11 crashes with numpy >= 1.24
# when R_free is on (its default), so it gets the numpy/scipy/matplotlib it was written for.
#
#   bash benchmarks/setup_genfire_env.sh            # -> ${XDG_CACHE_HOME:-~/.cache}/aet/genfire-venv
#   bash benchmarks/setup_genfire_env.sh DIR        # -> DIR
#
# Prints the path of the venv's python on its last line.
set -euo pipefail
dir="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/aet/genfire-venv}"
py="${PYTHON:-python3.11}"
if [ ! -x "$dir/bin/python" ]; then
    "$py" -m venv "$dir"
fi
if ! "$dir/bin/python" -c "import genfire" 2>/dev/null; then
    "$dir/bin/pip" install --quiet "genfire==1.1.11" "numpy==1.23.5" "scipy<1.12" \
        "matplotlib<3.8"
fi
"$dir/bin/python" -c "import genfire, numpy; print('genfire ok, numpy', numpy.__version__)" >&2
echo "$dir/bin/python"
