// Package containersstorage reads a containers-storage store (podman's
// and buildah's /var/lib/containers/storage, with its run root) as
// containers/storage 1.43 (podman 4.3, buildah 1.28) lays it out with the
// overlay driver, with no podman call: containers through
// overlay-containers/containers.json, their layers through
// overlay-layers/layers.json (and the run root's volatile-layers.json) and
// overlay/<id>/{diff,lower}, images through overlay-images/images.json and
// their big-data files.
//
// Every read of a record file happens under a shared fcntl lock on the
// store's *.lock file beside it, the lock containers/storage takes; a lock
// held by a writer is waited for up to a timeout, then refused with
// ErrLocked, never waited on forever. Image configs are checked against
// their IDs and base layers, rebuilt from the store's tar-split
// (internal/tarsplit), against their diff digests (Image).
//
// Libpod reads libpod's database (libpod/bolt_state.db, bbolt, read-only
// under bolt's shared flock with the same timeout): the container's
// config as podman run made it. CommitConfig merges it into the new
// image config by podman commit's rules, in either of podman's formats.
// Destination writes an image into the store (containers-storage:NAME)
// under the exclusive locks of the layer and image stores.
//
// Non-goals: drivers other than overlay (refused by name), additional
// image stores, removing images or layers, podman's other commit options
// (--squash, --include-volumes).
package containersstorage
