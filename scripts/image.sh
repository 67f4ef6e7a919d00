#!/usr/bin/env bash
# The production image, built and tested for real: `make image` and `make image-test`.
#
#   scripts/image.sh build   build localhost/symphony:dev from Dockerfile.production
#   scripts/image.sh test    build, then scripts/image_smoke.py: migrate, serve read-only, probe, run_agent
#   scripts/image.sh base    only make sure the Dockerfile's base image is there (pulled, or the stand-in)
#
# Engine: docker when a Docker engine answers, else podman (installed from Debian's packages when
# missing). For podman, everything the sandbox needs is made here, under .cache/image/ (ignored by git
# and by the build context), never in the machine's /etc: storage, containers.conf (runc, cgroupfs, the
# open-file and process limits the machine allows), registries.conf. Build steps reach Debian and PyPI
# through the host network with the host's CA bundle mounted read-only (this machine's egress re-signs
# TLS). The docker path (plain `docker build`, no stand-in) was never run here: no engine.
#
# Where the official base image cannot be pulled (no container registry reachable), a stand-in is built
# from Debian bookworm with debootstrap --variant=minbase, Debian's python3 and a virtual environment at
# /usr/local laid out like the official image's, and tagged with the name the Dockerfile expects. It says
# so: label org.symphony.base.stand-in on the image, and a line on stderr at every build.
#
# Variables: IMAGE (localhost/symphony:dev), IMAGE_ENGINE (docker|podman, else detected),
# IMAGE_CACHE_DIR (.cache/image), IMAGE_PULL_TIMEOUT (20 s), IMAGE_TEST_* (scripts/image_smoke.py).
set -euo pipefail
shopt -s inherit_errexit  # a failure inside $(...) stops the script too
cd "$(dirname "$0")/.."
ROOT=$PWD
IMAGE=${IMAGE:-localhost/symphony:dev}
CACHE=${IMAGE_CACHE_DIR:-$ROOT/.cache/image}
PULL_TIMEOUT=${IMAGE_PULL_TIMEOUT:-20}
HOST_CA=${IMAGE_HOST_CA:-/etc/ssl/certs/ca-certificates.crt}
DEBIAN_MIRROR=${IMAGE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# The ARG default of Dockerfile.production, and its fully qualified name (what podman resolves it to).
PYTHON_IMAGE=$(sed -n 's/^ARG PYTHON_IMAGE=//p' Dockerfile.production | head -1)
case $PYTHON_IMAGE in
  */*/*) BASE_REF=$PYTHON_IMAGE ;;
  */*) BASE_REF=docker.io/$PYTHON_IMAGE ;;
  *) BASE_REF=docker.io/library/$PYTHON_IMAGE ;;
esac
STANDIN_LABEL=org.symphony.base.stand-in

say() { printf 'image: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
# Exit 0 with a reason: only for a machine where no container can run at all.
skip() { printf '\nimage: SKIPPED: %s\n' "$*" >&2; exit 0; }

# ---- engine and sandbox ---------------------------------------------------------------------------

docker_answers() { command -v docker >/dev/null && timeout 10 docker info >/dev/null 2>&1; }

install_podman() {
  local missing=() pkg
  for pkg in podman buildah runc debootstrap uidmap fuse-overlayfs slirp4netns containernetworking-plugins; do
    dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null ||
    skip "no Docker engine, and podman is missing: installing it needs root and apt (missing: ${missing[*]})"
  say "installing ${missing[*]} (Debian packages)"
  # Other jobs on the machine may hold dpkg's lock for a while: wait for it rather than fail.
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

# podman reads only these files (CONTAINERS_CONF and friends replace the machine's): nothing outside
# .cache/image changes. Rewritten every run, so a fresh clone and an old cache get the same settings.
podman_sandbox() {
  mkdir -p "$CACHE/storage" "$CACHE/run" "$CACHE/tmp"
  local driver=overlay nofile nproc
  grep -qw overlay /proc/filesystems || driver=vfs
  # podman asks runc for RLIMIT_NOFILE and RLIMIT_NPROC of 1048576 in every container, more than this
  # machine lets even root set ("error setting rlimit type 7: operation not permitted"). Ask for this
  # shell's hard open-file limit, and for processes at most kernel.pid_max (runc was refused one more
  # here); a --ulimit on the command line drops these defaults, so give both or neither.
  nofile=$(ulimit -Hn)
  nproc=$(ulimit -Hu)
  [ "$nofile" = unlimited ] && nofile=1048576
  [ "$nproc" = unlimited ] || [ "$nproc" -gt "$(cat /proc/sys/kernel/pid_max)" ] && nproc=$(cat /proc/sys/kernel/pid_max)
  cat > "$CACHE/storage.conf" <<EOF
[storage]
driver = "$driver"
graphroot = "$CACHE/storage"
runroot = "$CACHE/run/storage"
EOF
  cat > "$CACHE/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
log_driver = "k8s-file"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$CACHE/run/events.log"
tmp_dir = "$CACHE/run/libpod"
EOF
  cat > "$CACHE/registries.conf" <<EOF
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"
EOF
  cat > "$CACHE/policy.json" <<EOF
{"default": [{"type": "insecureAcceptAnything"}]}
EOF
  export CONTAINERS_CONF=$CACHE/containers.conf CONTAINERS_STORAGE_CONF=$CACHE/storage.conf
  export CONTAINERS_REGISTRIES_CONF=$CACHE/registries.conf TMPDIR=$CACHE/tmp
  # The build steps' network is the host's (no bridge, no iptables needed); limits as above.
  # --format docker: the OCI format has no HEALTHCHECK, and buildah would drop the Dockerfile's.
  BUILD_FLAGS=(--format docker --network host --ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc"
    --signature-policy "$CACHE/policy.json")
  [ -r "$HOST_CA" ] && BUILD_FLAGS+=(--volume "$HOST_CA:/etc/ssl/certs/ca-certificates.crt:ro")
}

select_engine() {
  ENGINE=${IMAGE_ENGINE:-}
  if [ -z "$ENGINE" ]; then
    if docker_answers; then ENGINE=docker; else ENGINE=podman; fi
  fi
  BUILD_FLAGS=()
  case $ENGINE in
    docker)
      docker_answers || die "IMAGE_ENGINE=docker but no Docker engine answers"
      ;;
    podman)
      install_podman
      [ "$(id -u)" = 0 ] || skip "no Docker engine, and podman runs here only as root (rootless needs subuid ranges)"
      podman_sandbox
      podman info >/dev/null 2>&1 || skip "podman cannot run on this machine: $(podman info 2>&1 | tail -1)"
      ;;
    *) die "IMAGE_ENGINE must be docker or podman, got $ENGINE" ;;
  esac
  export ENGINE
  say "engine: $ENGINE ($($ENGINE --version))"
}

# ---- base image -----------------------------------------------------------------------------------

image_exists() { $ENGINE image inspect "$1" >/dev/null 2>&1; }

is_standin() {
  local label
  label=$($ENGINE image inspect --format "{{index .Config.Labels \"$STANDIN_LABEL\"}}" "$1" 2>/dev/null || true)
  [ -n "$label" ] && [ "$label" != "<no value>" ]
}

# A Debian bookworm minbase root with Debian's python3, /usr/local a virtual environment holding pip
# (python, python3, pip in /usr/local/bin; site-packages in /usr/local/lib/python3.11), trimmed the way
# debian:bookworm-slim is. Kept as a tarball under .cache/image: rebuilt only when this recipe changes.
standin_key() { printf '%s\n%s\n' "$(declare -f standin_tarball standin_rootfs)" "$DEBIAN_MIRROR" | sha1sum | cut -c1-12; }

standin_tarball() {
  local tarball rootfs
  tarball=$CACHE/standin-python3.11-bookworm-$(standin_key).tar
  if [ -s "$tarball" ]; then
    printf '%s\n' "$tarball"
    return
  fi
  command -v debootstrap >/dev/null || die "debootstrap is needed to build the stand-in base image"
  rm -f "$CACHE"/standin-python3.11-bookworm-*.tar
  rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
  # shellcheck disable=SC2064 # expand now: the trap runs after this function returned
  trap "rm -rf '$rootfs'" EXIT
  standin_rootfs "$rootfs" >&2
  tar --numeric-owner --xattrs -C "$rootfs" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  rm -rf "$rootfs"
  trap - EXIT
  printf '%s\n' "$tarball"
}

# A command in the new root with a clean environment (this script's TMPDIR does not exist in there).
in_root() {
  local rootfs=$1
  shift
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
    chroot "$rootfs" "$@"
}

standin_rootfs() {
  local rootfs=$1
  say "building the stand-in base with debootstrap (bookworm, minbase) from $DEBIAN_MIRROR"
  mkdir -p "$CACHE/debs"
  debootstrap --variant=minbase --cache-dir="$CACHE/debs" \
    --include=ca-certificates,netbase,tzdata,python3,python3-venv bookworm "$rootfs" "$DEBIAN_MIRROR"
  # The sources of debian:bookworm-slim (deb822), with the updates and security suites.
  rm -f "$rootfs/etc/apt/sources.list"
  cat > "$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $DEBIAN_MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${DEBIAN_MIRROR%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # debian:bookworm-slim's dpkg excludes: no docs, man pages or locales in later apt-get installs either.
  cat > "$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
  cat > "$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' > "$rootfs/etc/apt/apt.conf.d/docker-no-languages"
  # debootstrap installs from bookworm alone; the official image carries the point and security updates.
  in_root "$rootfs" apt-get update -qq
  in_root "$rootfs" apt-get -y -qq upgrade >/dev/null
  # /usr/local as the official image has it: python, python3, pip, pip3 there, packages in its site-packages.
  in_root "$rootfs" /usr/bin/python3 -m venv /usr/local
  find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright -delete 2>/dev/null || true
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
  rm -rf "$rootfs"/usr/share/{man,groff,info,lintian,linda,locale}/* "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/log/*.log \
    "$rootfs"/var/log/apt/* "$rootfs"/tmp/* "$rootfs"/root/.cache
  find "$rootfs/usr" -name __pycache__ -prune -exec rm -rf {} +
  : > "$rootfs/etc/machine-id"
  # debootstrap copied the build machine's resolv.conf and hostname: the engine provides its own.
  rm -f "$rootfs/etc/resolv.conf" "$rootfs/etc/hostname"
}

ensure_base() {
  if image_exists "$BASE_REF"; then
    if ! is_standin "$BASE_REF"; then
      return
    fi
    if [ "$($ENGINE image inspect --format "{{index .Config.Labels \"$STANDIN_LABEL.recipe\"}}" "$BASE_REF")" = "$(standin_key)" ]; then
      say "base $BASE_REF is a STAND-IN (debootstrap bookworm + Debian python3), not the official image"
      return
    fi
    say "the stand-in's recipe changed: making it again"
    $ENGINE untag "$BASE_REF"  # the old one stays under the images built on it, until they are pruned
  fi
  say "pulling $BASE_REF (at most ${PULL_TIMEOUT}s)"
  if timeout "$PULL_TIMEOUT" $ENGINE pull -q "$BASE_REF" >/dev/null 2>&1; then
    return
  fi
  [ "$ENGINE" = podman ] || die "cannot pull $BASE_REF, and the stand-in base is made for podman only"
  say "cannot pull $BASE_REF (no container registry reachable): building a STAND-IN for it"
  local tarball version started=$SECONDS
  tarball=$(standin_tarball)
  version=$(tar -xOf "$tarball" ./var/lib/dpkg/status | awk '/^Package: python3.11$/ {p = 1} p && /^Version:/ && !v {v = $2} END {print v}')
  podman import -q \
    --change "LABEL $STANDIN_LABEL.recipe=$(standin_key)" \
    --change "LABEL $STANDIN_LABEL=\"debootstrap --variant=minbase bookworm + Debian python3 $version in a venv at /usr/local; not $PYTHON_IMAGE\"" \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "ENV PYTHON_VERSION=${version%%-*}" \
    --change 'CMD ["python3"]' \
    "$tarball" "$BASE_REF" >/dev/null
  say "stand-in $BASE_REF imported from $(basename "$tarball") in $((SECONDS - started))s"
}

# ---- build ------------------------------------------------------------------------------------------

build() {
  ensure_base
  local started=$SECONDS revision created
  revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
  # The commit's time, not the clock's: an unchanged tree rebuilds from cache to the same labels.
  created=$(git log -1 --format=%cI 2>/dev/null || echo unknown)
  $ENGINE build "${BUILD_FLAGS[@]}" -f Dockerfile.production -t "$IMAGE" \
    --build-arg VERSION="$(sed -n 's/^VERSION = "\(.*\)"/\1/p' symphony/settings.py)" \
    --build-arg VCS_REF="$revision" --build-arg BUILD_DATE="$created" .
  say "built $IMAGE in $((SECONDS - started))s: $($ENGINE image inspect --format '{{.Size}}' "$IMAGE") bytes" \
    "(base $BASE_REF: $($ENGINE image inspect --format '{{.Size}}' "$BASE_REF") bytes)"
  is_standin "$BASE_REF" && say "NOTE: built on the STAND-IN base, not the official $PYTHON_IMAGE"
  if [ "$ENGINE" = podman ]; then
    # Earlier builds' images, untagged now, would pile up in .cache/image (about 50 MB a commit). The
    # label is on the final stage only, so the cached builder and static stages stay.
    podman image prune -f --filter label=org.opencontainers.image.title=Symphony >/dev/null
  fi
  return 0
}

case ${1:-} in
  base) select_engine; ensure_base ;;
  build) select_engine; build ;;
  test)
    select_engine
    build
    exec "${IMAGE_TEST_PYTHON:-python3}" scripts/image_smoke.py --engine "$ENGINE" --image "$IMAGE"
    ;;
  *) echo "usage: $0 build|test|base" >&2; exit 2 ;;
esac
