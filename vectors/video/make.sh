#!/bin/sh
# Regenerates the VP8 clips of this directory (see README.md for why these settings).
# Usage: vectors/video/make.sh   (needs ffmpeg built with libvpx)
# After a regeneration, update vectors/SHA256SUMS:
#   cd vectors && sha256sum ./video/*.ivf   (and replace the three lines)
set -eu
cd "$(dirname "$0")"
ffmpeg -version | head -n 1

# clip   size       bitrate
for spec in "low 320x180 80" "medium 640x360 250" "high 1280x720 1000"; do
    set -- $spec
    ffmpeg -hide_banner -loglevel error -y -nostdin \
        -f lavfi -i "testsrc2=size=$2:rate=15" -t 4 \
        -c:v libvpx -b:v "${3}k" -minrate "${3}k" -maxrate "${3}k" \
        -g 15 -keyint_min 15 -force_key_frames 'expr:gte(t,n_forced*1)' \
        -deadline realtime -cpu-used -8 -lag-in-frames 0 -auto-alt-ref 0 \
        -threads 1 -pix_fmt yuv420p -fflags +bitexact -flags +bitexact \
        -f ivf "$1.ivf"
done
ls -l ./*.ivf
