#!/usr/bin/env bash
# Runs every test: formatting, vet, unit tests and (as root) the privileged
# real-kernel tests. Called by `make test` and by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

BRINDLE_WITH_KUBE=1 bash hack/setup.sh

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt needed on:" >&2
	echo "$unformatted" >&2
	exit 1
fi

echo "== go vet"
go vet ./...

echo "== go test"
go test -count=1 -timeout 60m ./...
