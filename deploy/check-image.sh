#!/usr/bin/env bash
# Builds the container image (deploy/Containerfile) and checks what docs/deploy.md promises
# of it: at most 40 MB, runs as uid 65532, serves /health and /ready with a proxy key.
# Needs docker or podman and the registries; the release workflow runs it on every tag.
#   bash deploy/check-image.sh [tag]
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-llmux:check}
engine=$(command -v docker || command -v podman || true)
if [[ -z $engine ]]; then
  echo "check-image: neither docker nor podman is installed" >&2
  exit 2
fi

"$engine" build -f deploy/Containerfile -t "$tag" .

bytes=$("$engine" image inspect --format '{{.Size}}' "$tag")
limit=$((40 * 1024 * 1024))
echo "image $tag: $((bytes / 1024 / 1024)) MB (limit 40 MB)"
if ((bytes > limit)); then
  echo "check-image: the image is larger than 40 MB" >&2
  exit 1
fi

user=$("$engine" image inspect --format '{{.Config.User}}' "$tag")
if [[ $user != "65532:65532" ]]; then
  echo "check-image: the image runs as '$user', not 65532:65532" >&2
  exit 1
fi

name=llmux-check-$$
port=${CHECK_PORT:-18000}
"$engine" run -d --name "$name" -p "127.0.0.1:$port:8000" \
  -e LLM_INTERACTIVE_PROXY_API_KEY=check-image-key -e ALLOWED_HOSTS='*' "$tag" >/dev/null
trap '"$engine" rm -f "$name" >/dev/null 2>&1 || true' EXIT
for _ in $(seq 1 50); do
  if curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1; then
    break
  fi
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$port/health"
echo
curl -fsS "http://127.0.0.1:$port/ready"
echo
echo "check-image: ok"
