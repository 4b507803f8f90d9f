#!/usr/bin/env bash
# Mutation testing: how many small deliberate bugs in a module its own tests catch.
# Not run in CI (minutes per module); run it by hand after changing a module or its tests.
#
#   scripts/mutation.sh                  # urls urlhosts scope robots config parser
#   scripts/mutation.sh robots config    # only these
#   MUTATION_KEEP=1 scripts/mutation.sh robots   # keep the work dir to inspect survivors
#
# For each MODULE, in a throwaway copy of the repository (mutmut writes ./mutants and
# must never run in the shared tree), mutmut 3 mutates crawler/MODULE.py only and runs
# only that module's own test file(s) (MODULE_TESTS below) against every mutant.
#
# Reading the output, one line per module:
#   mutants   every mutant mutmut made in the module
#   killed    a test failed: the tests caught it
#   timeout   the tests hung or ran far longer (an infinite loop, a wait that never ends);
#             counted as caught
#   survived  every test passed: either a gap in the tests or an equivalent mutant
#   no-tests  the module's tests never run that code: a gap, counted as survived
#   equiv     survivors listed in scripts/mutation-equivalent.txt: mutants that behave
#             exactly like the original (no test can tell them apart), left out of the score
#   score     (killed + timeout) / (mutants - equiv)
# Below each line come the survivors not judged equivalent: the to-do list. See one with
#   cd WORKDIR/MODULE && mutmut show NAME      (needs MUTATION_KEEP=1; WORKDIR is printed)
#
# Equivalent mutants: scripts/mutation-equivalent.txt has one per line,
#   <mutant name>  # why no test can kill it
# (names as mutmut prints them, e.g. crawler.robots.x_fetch_rules__mutmut_29). Judge each
# one by reading its diff; "hard to test" is not equivalent. mutmut numbers mutants in
# source order, so when a module changes, its entries must be checked again: the script
# flags entries that match no surviving mutant ("stale"), which usually means the numbering
# moved.
#
# Settings: MUTATION_JOBS (parallel mutants, default: CPUs), PYTHON (default .venv/bin/python
# of this repository, which needs `pip install mutmut`). Shared mutmut settings live in
# pyproject.toml [tool.mutmut]; this script adds only_mutate and the test selection per module.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
jobs="${MUTATION_JOBS:-$(nproc)}"
equivalent="$root/scripts/mutation-equivalent.txt"
modules=("$@")
[ ${#modules[@]} -gt 0 ] || modules=(urls urlhosts scope robots config parser)

"$python" -c "import mutmut" 2>/dev/null || {
    echo "mutation.sh: mutmut is not installed: $python -m pip install 'mutmut>=3,<4'" >&2
    exit 2
}

# Each module's own tests: a mutant must be caught by the tests written for that module.
module_tests() {
    case "$1" in
        urls|urlhosts) echo tests/test_urls.py tests/test_url_wpt.py ;;
        *) echo "tests/test_$1.py" ;;
    esac
}

work="$(mktemp -d "${TMPDIR:-/tmp}/mutation.XXXXXX")"
if [ -z "${MUTATION_KEEP:-}" ]; then
    trap 'rm -rf "$work"' EXIT
fi
echo "work dir: $work"

# One snapshot of the tree for every module, so that all of them see the same code.
mkdir "$work/src"
tar -C "$root" --exclude=./.venv --exclude=./.git --exclude=./mutants \
    --exclude=__pycache__ --exclude=.pytest_cache --exclude=.mypy_cache --exclude=.ruff_cache \
    --exclude='*.db' --exclude='*.db-*' -cf - . | tar -C "$work/src" -xf -
# The editable install maps subpackages kept elsewhere (crawler.migrations = migrations/)
# to the shared tree: put copies where a plain import from the snapshot finds them first.
(cd "$work/src" && "$python" - <<'EOF'
import shutil, tomllib
from pathlib import Path

setuptools = tomllib.loads(Path("pyproject.toml").read_text("utf-8")).get("tool", {})
for package, folder in setuptools.get("setuptools", {}).get("package-dir", {}).items():
    target = Path(*package.split("."))
    if "." in package and Path(folder) != target and not target.exists():
        shutil.copytree(folder, target)
EOF
)

status=0
for module in "${modules[@]}"; do
    if [ ! -f "$work/src/crawler/$module.py" ]; then
        echo "$module: no crawler/$module.py" >&2
        status=2
        continue
    fi
    tests=()
    for t in $(module_tests "$module"); do
        [ -f "$work/src/$t" ] && tests+=("$t")
    done
    if [ ${#tests[@]} -eq 0 ]; then
        echo "$module: no test file" >&2
        status=2
        continue
    fi
    dir="$work/$module"
    cp -a "$work/src" "$dir"
    cd "$dir"

    # [tool.mutmut] of pyproject.toml, with this module's only_mutate and tests.
    "$python" - "crawler/$module.py" "${tests[@]}" <<'EOF'
import json, re, sys, tomllib
from pathlib import Path

path = Path("pyproject.toml")
text = path.read_text(encoding="utf-8")
section = tomllib.loads(text).get("tool", {}).get("mutmut", {})
section |= {"only_mutate": [sys.argv[1]], "pytest_add_cli_args_test_selection": sys.argv[2:]}
text = re.sub(r"(?ms)^\[tool\.mutmut\]\n.*?(?=^\[|\Z)", "", text)
# json.dumps writes strings, numbers, booleans and lists of them as valid TOML.
lines = [f"{key} = {json.dumps(value)}" for key, value in section.items()]
path.write_text(text.rstrip("\n") + "\n\n[tool.mutmut]\n" + "\n".join(lines) + "\n", "utf-8")
EOF

    # mutmut needs a green suite: say so plainly rather than through its traceback.
    if ! "$python" -m pytest -q -x -p no:cacheprovider "${tests[@]}" >"$dir/baseline.log" 2>&1; then
        echo "$module: its tests fail before any mutation; see $dir/baseline.log" >&2
        tail -n 20 "$dir/baseline.log" >&2
        status=1
        cd "$root"
        continue
    fi
    echo "$module: mutating crawler/$module.py against ${tests[*]} ..."
    if ! "$python" -m mutmut run --max-children "$jobs" >"$dir/mutmut.log" 2>&1; then
        echo "$module: mutmut failed; see $dir/mutmut.log" >&2
        tail -n 20 "$dir/mutmut.log" >&2
        status=1
        cd "$root"
        continue
    fi

    "$python" - "$module" "$equivalent" <<'EOF'
import json, sys
from pathlib import Path

from mutmut.stats import status_by_exit_code

module, equivalent_file = sys.argv[1], Path(sys.argv[2])
meta = json.loads(Path(f"mutants/crawler/{module}.py.meta").read_text("utf-8"))
status = {name: status_by_exit_code[code] for name, code in meta["exit_code_by_key"].items()}
listed = {}
if equivalent_file.exists():
    for line in equivalent_file.read_text("utf-8").splitlines():
        name, _, why = line.partition("#")
        if name.strip().startswith(f"crawler.{module}."):
            listed[name.strip()] = why.strip()

def count(*kinds):
    return sum(1 for s in status.values() if s in kinds)

equiv = [n for n in listed if status.get(n) == "survived"]
stale = [n for n in listed if status.get(n) != "survived"]
killed, timeout = count("killed"), count("timeout")
survived, no_tests = count("survived") - len(equiv), count("no tests")
other = len(status) - killed - timeout - survived - len(equiv) - no_tests
scored = len(status) - len(equiv)
score = 100.0 * (killed + timeout) / scored if scored else 100.0
print(
    f"{module:8} mutants {len(status):4}  killed {killed:4}  timeout {timeout:3}  "
    f"survived {survived:3}  no-tests {no_tests:3}  equiv {len(equiv):3}"
    + (f"  other {other}" if other else "")
    + f"  score {score:5.1f}%"
)
for name in sorted(status):
    if status[name] in ("survived", "no tests") and name not in listed:
        print(f"    {status[name]:9} {name}")
for name in stale:
    print(f"    stale     {name} is listed as equivalent but {status.get(name, 'no such mutant')}")
EOF
    cd "$root"
done
exit "$status"
