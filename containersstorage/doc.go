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
// their IDs and base layers against their diff digests.
//
// Non-goals: drivers other than overlay (refused by name), writing into
// the store, libpod's own database (bolt_state.db: the container's
// Entrypoint and Cmd as given to podman run) and additional image stores.
package containersstorage
