#!/usr/bin/env bash
# Installs the Debian packages the book needs, when they are missing: the offline data (espeak-ng, sox,
# Fashion-MNIST, the KJV Bible) and, for tests/test_site_browser.py, Debian's own headless Chromium and
# its WebDriver (no browser is ever downloaded at run time; fonts-dejavu-core gives screenshots a font).
# As root (or with password-less sudo) it installs them; otherwise it says what to install and goes on:
# the chapters that need a missing package raise an error naming the same command, and the browser test
# is skipped with the same advice.
set -euo pipefail
packages=(espeak-ng sox dataset-fashion-mnist bible-kjv chromium chromium-driver fonts-dejavu-core)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present (${packages[*]})"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "system packages missing: ${missing[*]}. This is not a Debian/Ubuntu system: install espeak-ng and sox" \
       "(and Chromium with its chromedriver for the browser test) with your package manager; Fashion-MNIST and the KJV Bible can be fetched with" \
       "'python -m mmtutorial download fashion-mnist' (needs internet)." >&2
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "system packages missing: ${missing[*]}. Install them with:" >&2
  echo "    sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 0
fi
echo "installing system packages: ${missing[*]}"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
echo "system packages: installed ${missing[*]}"
