// Package dockerfile is the Dockerfile language of layercommit, ahead of
// the stages that make layers: it is the only package that imports
// buildkit (its parser and shell lexer), and both `build` and `commit
// -c/--change` read Dockerfile text through it.
//
// Parse turns a Dockerfile into typed instructions (one parse function
// per instruction, the location attached once; every error is a
// *LineError "Dockerfile:LINE: ..." wrapping its cause). Lex expands
// words. A Dispatcher applies the metadata instructions (ENV, LABEL,
// EXPOSE, USER, WORKDIR, CMD, ENTRYPOINT, VOLUME, STOPSIGNAL, HEALTHCHECK,
// ONBUILD, SHELL) to a v1.Config with the semantics of moby's legacy
// builder, which Docker uses for docker commit --change (and for docker
// build with DOCKER_BUILDKIT=0), or in its BuildKit mode those of
// BuildKit's dockerfile2llb where they differ (the build's environment,
// HEALTHCHECK --start-interval): words are expanded with the Env before the instruction,
// EXPOSE takes docker's port specs (ranges, protocols), STOPSIGNAL is
// checked as moby checks it. ApplyChanges is docker commit --change
// (moby's BuildFromConfig): the same parser and the same dispatchers, on
// a copy of the config. Parse also checks the `# syntax=` directive (only
// the built-in docker/dockerfile:1 channel) and `# check=` (BuildKit's
// option parser; no lint rules are run); ParseChmod and ParseGitSource
// read COPY/ADD --chmod values and git sources as BuildKit reads them.
//
// Non-goals: running anything (RUN, COPY and ADD are typed here and
// carried out by package builder), ARG scoping and stages' order
// (builder), merging a commit's config with its container's (image),
// BuildKit's LLB and frontends, Windows semantics.
package dockerfile
