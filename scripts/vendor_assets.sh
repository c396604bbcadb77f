#!/usr/bin/env bash
# Vendors the website's front-end libraries from npm into _static/vendor/ so the built site renders
# diagrams (Mermaid), math (MathJax) and the embedded ipywidgets (RequireJS + @jupyter-widgets/html-manager)
# with no internet. _config.yml points at these files (mermaid_use_local, mathjax_path, nb_ipywidgets_js);
# _static/vendor/ is git-ignored and rebuilt by `make setup`.
#
# Idempotent: when _static/vendor/VERSIONS already names the pinned versions and the entry files exist,
# it prints one line and exits. Change a version below and the next run replaces that library.
set -euo pipefail
cd "$(dirname "$0")/.."

MERMAID_VERSION=11.12.1   # the version sphinxcontrib-mermaid 2.1.1 would otherwise load from a CDN
MATHJAX_VERSION=3.2.2     # Sphinx 7.4 loads MathJax 3 (es5/tex-mml-chtml.js) from a CDN by default
# myst-nb 1.4 loads these two from CDNs on pages whose notebook saved widget state (chapters 5 and 8):
REQUIREJS_VERSION=2.3.8       # RequireJS, the AMD loader that embed-amd.js needs
HTML_MANAGER_VERSION=1.0.15   # @jupyter-widgets/html-manager for ipywidgets 8 (renders the saved widgets)

vendor=_static/vendor
stamp="$vendor/VERSIONS"
wanted="mermaid@$MERMAID_VERSION mathjax@$MATHJAX_VERSION requirejs@$REQUIREJS_VERSION"
wanted="$wanted @jupyter-widgets/html-manager@$HTML_MANAGER_VERSION"
entry_files=(mermaid/mermaid.esm.min.mjs mathjax/tex-mml-chtml.js requirejs/require.js
             jupyter-widgets/embed-amd.js)
all_present() {
  local file
  for file in "${entry_files[@]}"; do [ -f "$1/$file" ] || return 1; done
}

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] && all_present "$vendor"; then
  echo "web assets: present ($wanted)"
  exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "error: npm is missing, and the website needs it once to vendor Mermaid, MathJax and the widget" \
       "libraries." >&2
  echo "       Install Node.js and npm (Debian/Ubuntu: sudo apt-get install -y npm), then run: make assets" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# npm pack downloads the published tarball and checks it against the registry's integrity hash.
echo "web assets: fetching $wanted from npm"
(cd "$work" && npm pack --silent "mermaid@$MERMAID_VERSION" "mathjax@$MATHJAX_VERSION" \
   "requirejs@$REQUIREJS_VERSION" "@jupyter-widgets/html-manager@$HTML_MANAGER_VERSION" >/dev/null)
mkdir -p "$work/mermaid" "$work/mathjax" "$work/requirejs" "$work/html-manager"
tar -xzf "$work/mermaid-$MERMAID_VERSION.tgz" -C "$work/mermaid" --strip-components=1
tar -xzf "$work/mathjax-$MATHJAX_VERSION.tgz" -C "$work/mathjax" --strip-components=1
tar -xzf "$work/requirejs-$REQUIREJS_VERSION.tgz" -C "$work/requirejs" --strip-components=1
tar -xzf "$work/jupyter-widgets-html-manager-$HTML_MANAGER_VERSION.tgz" -C "$work/html-manager" --strip-components=1

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
# RequireJS: the loader itself (its licence is in the file's header).
mkdir -p "$staging/requirejs"
cp "$work/requirejs/require.js" "$work/requirejs/package.json" "$staging/requirejs/"
# html-manager: embed-amd.js bundles the widget manager with the base, controls and output widgets, and
# finds its icon fonts next to itself (webpack's public path is the script's own folder). The other
# bundles (embed.js, libembed-amd.js) and the source map are not loaded by the pages.
mkdir -p "$staging/jupyter-widgets"
cp "$work/html-manager/dist/embed-amd.js" "$work/html-manager/dist/embed.js.LICENSE.txt" \
   "$work/html-manager/package.json" "$staging/jupyter-widgets/"
find "$work/html-manager/dist" -maxdepth 1 -type f \
     \( -name '*.woff2' -o -name '*.woff' -o -name '*.ttf' -o -name '*.eot' -o -name '*.svg' \) \
     -exec cp {} "$staging/jupyter-widgets/" \;

for required in "$staging/mermaid/mermaid.esm.min.mjs" "$staging/mathjax/tex-mml-chtml.js" \
                "$staging/mathjax/output/chtml/fonts/woff-v2" "$staging/requirejs/require.js" \
                "$staging/jupyter-widgets/embed-amd.js"; do
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
