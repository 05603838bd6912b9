.PHONY: all build test demo fmt vet

all: build

build:
	go build -o bin/ ./cmd/...

# Every test, installing what the tests need on a fresh Debian machine.
test:
	bash hack/test.sh

# The main job: a real multi-host lab.
demo:
	bash hack/demo.sh

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	go vet ./...
