#!/usr/bin/env bash
# Debian packages qs4d's data builders, tests and demo use. Installs only what is missing.
#   scripts/sysdeps.sh              main-archive packages (synthesizers, Asterisk prompts, audio)
#   scripts/sysdeps.sh --non-free   also SVOX Pico and the English MBROLA voices (Debian
#                                   non-free: `qs4d data kws --pico-per-word/--mbrola-per-word`);
#                                   enables the contrib and non-free components in
#                                   /etc/apt/sources.list.d/qs4d-non-free.sources when apt has
#                                   no candidate for them. A failure there is a warning: those
#                                   builder options and their tests then say they are missing.
set -euo pipefail
PKGS=(espeak-ng flite sox festival festvox-us-slt-hts festvox-kallpc16k festvox-kdlpc16k
      asterisk-core-sounds-en-wav asterisk-core-sounds-es-wav asterisk-core-sounds-fr-wav
      asterisk-core-sounds-it-wav asterisk-core-sounds-ru-wav asterisk-prompt-it-menardi-wav
      asterisk-moh-opsound-wav
      pulseaudio pulseaudio-utils libasound2-plugins libportaudio2)
NONFREE=(libttspico-utils mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1)  # mbrola: contrib
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

missing() {  # the packages of "$@" that are not installed
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

mapfile -t need < <(missing "${PKGS[@]}")
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ "${1:-}" = "--non-free" ]; then
  mapfile -t need < <(missing "${NONFREE[@]}")
  if [ ${#need[@]} -gt 0 ]; then
    if ! apt-cache policy "${need[0]}" 2>/dev/null | grep -q "Candidate: [0-9]"; then
      . /etc/os-release
      printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: %s\nComponents: contrib non-free\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "${VERSION_CODENAME:-bookworm}" | $SUDO tee /etc/apt/sources.list.d/qs4d-non-free.sources >/dev/null
      $SUDO apt-get update -qq || true
    fi
    $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
      || echo "sysdeps: could not install ${need[*]} (non-free); the pico and mbrola voices of" \
              "qs4d data kws stay unavailable" >&2
  fi
fi
