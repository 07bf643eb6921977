// Package commit is the orchestration of layercommit's commands over the
// stages: Commit (an upper dir onto a base image, as docker commit does),
// CommitContainer (a container of a Docker data root, as dockerd's docker
// commit does, byte for byte; or, with the podman runtime, of a
// containers-storage store as podman 4.3's podman commit does,
// podman_linux.go), Copy (an image unchanged from any source to
// any destination), Build (a Dockerfile built by package builder, its
// bases resolved through export by Resolver, the image written to the
// destination) and GC (the cleanup of the stores a request names).
//
// Stage: on top of the pipeline. Commit drives diff (the change set) ->
// layer (one pass to the compressed blob, written into the destination's
// blob dir) -> image (docker commit's config rules) -> export (the
// destination). It owns no format and no store: what each store holds,
// how it is locked and what of it gc may remove is said by the package
// that writes it (export, dockerroot, statedir); GC only dispatches to
// them and reports what they removed and kept.
//
// Failure: a failed commit leaves the destination as it was and removes
// the layer blob it made; what a killed one leaves behind is a temp entry
// that GC removes.
//
// Non-goals: interpreting Dockerfiles (package builder), progress display
// and flag parsing (the CLI), choosing a destination for the caller.
package commit
