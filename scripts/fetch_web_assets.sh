#!/usr/bin/env bash
# Vendor every web asset the built book loads, from the npm registry, into book/_vendor/ (not committed).
# _config.yml serves that folder through Sphinx's html_extra_path (copied to the root of the built HTML;
# not _static, whose every .js/.css Jupyter Book would inject into every page a second time) and points
# mathjax_path and nb_ipywidgets_js at it, so a built page loads nothing from outside the book:
#   mathjax/                               MathJax 3 (its es5/ build: tex-mml-chtml.js, components, fonts)
#   requirejs/require.js                   the AMD loader that the widget manager needs
#   @jupyter-widgets/html-manager/dist/    the ipywidgets HTML manager (embed-amd.js) and its icon fonts;
#                                          it loads the fonts relative to this path, so the layout is kept
# Usage: fetch_web_assets.sh [DEST]   (default book/_vendor). Redoes the work only when this script changed.
# Without npm (or when npm fails) it installs nothing, says what is missing and exits 1: a book built
# without these files shows raw TeX and no widgets offline.
set -euo pipefail
dest=${1:-book/_vendor}
MATHJAX=mathjax@3.2.2
REQUIREJS=requirejs@2.3.8
HTML_MANAGER=@jupyter-widgets/html-manager@1.0.15   # ipywidgets 8.1 (widget state 2.x)

manifest="$dest/.glassbox-web-assets"
want="script $(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)"
if [[ -f $manifest ]] && [[ $(head -n1 "$manifest") == "$want" ]]; then
  echo ">> web assets up to date in $dest"
  exit 0
fi

# the previous set-up script put two files into book/_static; Jupyter Book would inject them into every page
for stale in book/_static/require.js book/_static/embed-amd.js; do
  [[ -f $stale ]] && rm -f "$stale" && echo ">> removed the stale $stale"
done
rmdir book/_static 2>/dev/null || true

if ! command -v npm >/dev/null 2>&1; then
  echo "!! set-up could not vendor the web assets: npm is missing (Debian: apt-get install npm; conda: nodejs)." \
       "Without them the book cannot be built for offline reading: MathJax, require.js and the widget manager" \
       "would be missing." >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! (cd "$tmp" && npm pack --silent "$MATHJAX" "$REQUIREJS" "$HTML_MANAGER" >npm.log 2>&1); then
  echo "!! set-up could not vendor the web assets: npm pack $MATHJAX $REQUIREJS $HTML_MANAGER failed:" >&2
  cat "$tmp/npm.log" >&2
  exit 1
fi

unpack() {  # unpack TARBALL's package/ into $tmp/NAME
  mkdir -p "$tmp/$2"
  tar -xzf "$1" -C "$tmp/$2"
}
unpack "$tmp"/mathjax-*.tgz mathjax
unpack "$tmp"/requirejs-*.tgz requirejs
unpack "$tmp"/jupyter-widgets-html-manager-*.tgz html-manager

new="$tmp/out"
mkdir -p "$new/requirejs" "$new/@jupyter-widgets/html-manager"
cp -r "$tmp/mathjax/package/es5" "$new/mathjax"
cp "$tmp/requirejs/package/require.js" "$new/requirejs/require.js"
cp -r "$tmp/html-manager/package/dist" "$new/@jupyter-widgets/html-manager/dist"
# each package's package.json: its version and licence beside the files
cp "$tmp/mathjax/package/package.json" "$new/mathjax/package.json"
cp "$tmp/requirejs/package/package.json" "$new/requirejs/package.json"
cp "$tmp/html-manager/package/package.json" "$new/@jupyter-widgets/html-manager/package.json"
# source maps and the non-AMD bundle are never loaded by a page (about 8 MB)
rm -f "$new/@jupyter-widgets/html-manager/dist/"*.map "$new/@jupyter-widgets/html-manager/dist/embed.js"
for needed in mathjax/tex-mml-chtml.js requirejs/require.js @jupyter-widgets/html-manager/dist/embed-amd.js; do
  if [[ ! -s $new/$needed ]]; then
    echo "!! set-up could not vendor the web assets: $needed is missing from the npm packages" >&2
    exit 1
  fi
done
{
  echo "$want"
  echo "$MATHJAX $REQUIREJS $HTML_MANAGER"
} >"$new/.glassbox-web-assets"

rm -rf "$dest"
mkdir -p "$(dirname "$dest")"
mv "$new" "$dest"
echo ">> web assets from npm ($MATHJAX, $REQUIREJS, $HTML_MANAGER) in $dest ($(du -sh "$dest" | cut -f1))"
