// Package image is the third stage of layercommit: it puts a layer on top
// of a base v1.Image the way `docker commit` does. Commit returns a new
// lazy image; the base is never edited.
//
// The config rules are moby's daemon/commit.go (see ../shared/FORMAT.md
// 6.2 and 6.3): --change lines run on a copy of the container's config
// through dockerfile.ApplyChanges (the build's own dispatchers, as
// moby's BuildFromConfig), the result is merged with the container
// config, and a history entry is always appended (marked empty_layer,
// with no layer added, when the change set is empty). CommitLayers puts
// a change set split into several layers on with one entry per layer;
// WithSquash replaces the base's layers and history with the new ones
// (podman's and buildah's --squash). ValidateChanges
// holds the one per-profile rule on changes (Docker 20.10 refuses
// STOPSIGNAL).
//
// Non-goals: parsing or interpreting Dockerfile instructions (package
// dockerfile), byte-exact Docker config JSON (key order, container and
// container_config; the docker-root transport owns that), building
// Dockerfiles (package builder), and where the image is written (export).
package image
