// Package builder builds Dockerfiles: it takes the typed instructions of
// package dockerfile (buildkit's parser and lexer stay behind it) and
// drives the same stages as commit, one step at a time: RUN in a
// namespaced sandbox (package sandbox) over an overlay mount → diff of the upper dir →
// layer → image, with BuildKit's dockerfile frontend's semantics (ARG
// over an earlier ENV, ARGs inherited by a stage FROM another, WORKDIR
// made as the USER, HEALTHCHECK --start-interval) and, with
// Options.Legacy (DOCKER_BUILDKIT=0), the legacy builder's where they
// differ; legacy-style history, a build cache under the state dir and
// reproducible output with a source date epoch. Metadata instructions are applied by
// dockerfile.Dispatcher, the one commit --change uses. Heredocs and
// platforms (Options.Platform, the automatic TARGET*/BUILD* ARGs, FROM
// --platform) follow BuildKit's dockerfile frontend, proven against a
// real BuildKit (buildkit_linux_test.go); RUN runs only on a platform the
// host runs, with no emulator. RUN --mount (bind, cache, tmpfs, secret,
// ssh) takes BuildKit's options and defaults (mount_linux.go, ssh.go);
// mounts live in the RUN's mount namespace only.
//
// Non-goals: parsing (package dockerfile), BuildKit's LLB, parallel
// stages, remote build contexts (git, URL tarballs), Windows
// images.
package builder
