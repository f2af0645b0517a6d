#!/usr/bin/env bash
# Install the Debian programs that the browser test and `make pdf` need, when they are missing:
#   chromium       the browser that opens the built book (driven by Playwright through executable_path;
#                  `playwright install` is never used: it downloads a browser build of its own)
#   poppler-utils  pdftotext / pdfimages, which check the PDF
# Needs root (or password-less sudo) and apt-get. Where it cannot install, it says what is missing and how to
# install it, and exits 0: the Python environment and the book build do not need these programs, only the
# browser test and `make pdf` do, and they fail with the same advice.
# Usage: install_system_packages.sh [STAMP]   (STAMP is touched only when every program is present)
set -uo pipefail
stamp=${1:-}

declare -A package_of=([chromium]=chromium [pdftotext]=poppler-utils [pdfimages]=poppler-utils)
programs=(chromium pdftotext pdfimages)

missing_packages() {
  local program missing=()
  for program in "${programs[@]}"; do
    command -v "$program" >/dev/null 2>&1 || missing+=("${package_of[$program]}")
  done
  printf '%s\n' "${missing[@]}" | sort -u | grep -v '^$'
}

mapfile -t missing < <(missing_packages)
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    as_root=()
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  else
    as_root=(none)
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "!! set-up could not install ${missing[*]}: this machine has no apt-get (install them with its package" \
         "manager); the browser test and make pdf need them" >&2
  elif [[ ${as_root[0]:-} == none ]]; then
    echo "!! set-up could not install ${missing[*]}: it is not root and has no password-less sudo." \
         "Run: sudo apt-get install -y --no-install-recommends ${missing[*]}   (the browser test and make pdf" \
         "need them)" >&2
  else
    echo ">> installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! { "${as_root[@]}" apt-get update -qq &&
           "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
      echo "!! set-up could not install ${missing[*]} with apt-get (see its message above);" \
           "the browser test and make pdf need them" >&2
    fi
  fi
  mapfile -t missing < <(missing_packages)
fi

if ((${#missing[@]})); then
  echo "!! still missing: ${missing[*]}" >&2
  exit 0
fi
echo ">> system programs present: $(command -v chromium), $(command -v pdftotext), $(command -v pdfimages)"
if [[ -n $stamp ]]; then
  touch "$stamp"
fi
