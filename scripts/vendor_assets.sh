#!/usr/bin/env bash
# Vendors the website's front-end libraries from npm into _static/vendor/ so the built site renders
# diagrams (Mermaid) and math (MathJax) with no internet. _config.yml points at these files
# (mermaid_use_local, mathjax_path); _static/vendor/ is git-ignored and rebuilt by `make setup`.
#
# Idempotent: when _static/vendor/VERSIONS already names the pinned versions and the entry files exist,
# it prints one line and exits. Change a version below and the next run replaces that library.
set -euo pipefail
cd "$(dirname "$0")/.."

MERMAID_VERSION=11.12.1   # the version sphinxcontrib-mermaid 2.1.1 would otherwise load from a CDN
MATHJAX_VERSION=3.2.2     # Sphinx 7.4 loads MathJax 3 (es5/tex-mml-chtml.js) from a CDN by default

vendor=_static/vendor
stamp="$vendor/VERSIONS"
wanted="mermaid@$MERMAID_VERSION mathjax@$MATHJAX_VERSION"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] \
   && [ -f "$vendor/mermaid/mermaid.esm.min.mjs" ] && [ -f "$vendor/mathjax/tex-mml-chtml.js" ]; then
  echo "web assets: present ($wanted)"
  exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "error: npm is missing, and the website needs it once to vendor Mermaid and MathJax." >&2
  echo "       Install Node.js and npm (Debian/Ubuntu: sudo apt-get install -y npm), then run: make assets" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# npm pack downloads the published tarball and checks it against the registry's integrity hash.
echo "web assets: fetching $wanted from npm"
(cd "$work" && npm pack --silent "mermaid@$MERMAID_VERSION" "mathjax@$MATHJAX_VERSION" >/dev/null)
mkdir -p "$work/mermaid" "$work/mathjax"
tar -xzf "$work/mermaid-$MERMAID_VERSION.tgz" -C "$work/mermaid" --strip-components=1
tar -xzf "$work/mathjax-$MATHJAX_VERSION.tgz" -C "$work/mathjax" --strip-components=1

staging="$work/vendor"
mkdir -p "$staging/mermaid/chunks" "$staging/mathjax"
# Mermaid: the ES-module entry point imports ./chunks/mermaid.esm.min/*.mjs (source maps left out).
cp "$work/mermaid/dist/mermaid.esm.min.mjs" "$staging/mermaid/"
cp -r "$work/mermaid/dist/chunks/mermaid.esm.min" "$staging/mermaid/chunks/"
find "$staging/mermaid" -name '*.map' -delete
cp "$work/mermaid/LICENSE" "$staging/mermaid/LICENSE"
# MathJax: the combined TeX+MathML+CHTML component, plus what it loads on demand (fonts, TeX extensions
# through autoload, the menu's accessibility and speech modules).
cp "$work/mathjax/es5/tex-mml-chtml.js" "$staging/mathjax/"
for folder in a11y adaptors input output sre ui; do
  cp -r "$work/mathjax/es5/$folder" "$staging/mathjax/"
done
cp "$work/mathjax/LICENSE" "$staging/mathjax/LICENSE"

for required in "$staging/mermaid/mermaid.esm.min.mjs" "$staging/mathjax/tex-mml-chtml.js" \
                "$staging/mathjax/output/chtml/fonts/woff-v2"; do
  [ -e "$required" ] || { echo "error: $required is missing from the npm packages" >&2; exit 1; }
done
echo "$wanted" > "$staging/VERSIONS"

# Swap in the new folder only once it is complete, so an interrupted run leaves no half-vendored state.
mkdir -p _static
rm -rf "$vendor.old"
[ -d "$vendor" ] && mv "$vendor" "$vendor.old"
mv "$staging" "$vendor"
rm -rf "$vendor.old"
echo "web assets: installed $wanted into $vendor ($(du -sh "$vendor" | cut -f1))"
