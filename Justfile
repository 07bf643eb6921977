# Mirrors the README's commands; `just` is optional.

# Build the CLI and diff a demo upper dir prepared with a real overlay mount.
demo:
    go build -o bin/layercommit ./cmd/layercommit && ./bin/layercommit demo

# The whole test suite against the real peers.
test:
    bash .ci/run

# Benchmarks (see bench/).
bench-diff:
    bash bench/diff.sh
