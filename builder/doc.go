// Package builder is the Dockerfile front end: it parses a Dockerfile
// (buildkit's parser and shell lexer, our own typed instructions) and
// builds it by driving the same stages as commit, one step at a time:
// RUN in package sandbox over an overlay mount → diff of the upper
// dir → layer → image, with docker build's (legacy builder's) config and
// history, a build cache under the state dir and reproducible output
// with a source date epoch.
//
// Non-goals: BuildKit's LLB, RUN --mount, parallel stages, remote build
// contexts (git, URL tarballs), Windows images.
package builder
