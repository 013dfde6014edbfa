#!/usr/bin/env bash
# Debian packages qs4d's data builders, tests and demo use. Installs only what is missing.
set -euo pipefail
PKGS=(espeak-ng flite sox festival festvox-us-slt-hts festvox-kallpc16k festvox-kdlpc16k
      asterisk-core-sounds-en-wav asterisk-core-sounds-es-wav asterisk-core-sounds-fr-wav
      asterisk-core-sounds-it-wav asterisk-core-sounds-ru-wav asterisk-prompt-it-menardi-wav
      asterisk-moh-opsound-wav
      pulseaudio pulseaudio-utils libasound2-plugins libportaudio2)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
