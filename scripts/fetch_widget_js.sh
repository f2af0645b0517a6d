#!/usr/bin/env bash
# Put the two JavaScript files that ipywidgets need into book/_static/, from the npm registry,
# so widgets render in the built HTML without internet. They are build inputs, not committed.
# Without npm we write tiny loaders that fetch the same files from a CDN at view time, and say so.
set -euo pipefail
dest=${1:-book/_static}
mkdir -p "$dest"
HTML_MANAGER=@jupyter-widgets/html-manager@1.0.6
REQUIREJS=requirejs@2.3.4
if [[ -s "$dest/embed-amd.js" && -s "$dest/require.js" ]] && ! grep -q "glassbox-cdn-fallback" "$dest/require.js"; then
  exit 0
fi
if command -v npm >/dev/null 2>&1; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  if (cd "$tmp" && npm pack --silent "$HTML_MANAGER" "$REQUIREJS" >/dev/null 2>&1); then
    tar -xzf "$tmp"/jupyter-widgets-html-manager-*.tgz -C "$tmp" package/dist/embed-amd.js
    cp "$tmp/package/dist/embed-amd.js" "$dest/embed-amd.js"
    rm -rf "$tmp/package"
    tar -xzf "$tmp"/requirejs-*.tgz -C "$tmp" package/require.js
    cp "$tmp/package/require.js" "$dest/require.js"
    echo ">> ipywidgets JavaScript from npm: $dest/embed-amd.js, $dest/require.js"
    exit 0
  fi
  echo "!! npm could not fetch $HTML_MANAGER / $REQUIREJS" >&2
fi
echo "!! WARNING: npm is missing or failed; widgets in the built book will load their JavaScript from a CDN (needs internet to view)." >&2
cat > "$dest/require.js" <<'JS'
/* glassbox-cdn-fallback: npm was unavailable at set-up, so load require.js from a CDN. */
document.write('<script src="https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.4/require.min.js"><\/script>');
JS
cat > "$dest/embed-amd.js" <<'JS'
/* glassbox-cdn-fallback: npm was unavailable at set-up, so load the widget manager from a CDN. */
document.write('<script src="https://cdn.jsdelivr.net/npm/@jupyter-widgets/html-manager@1.0.6/dist/embed-amd.js"><\/script>');
JS
