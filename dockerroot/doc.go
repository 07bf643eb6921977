// Package dockerroot reads and writes a Docker data root (/var/lib/docker)
// as dockerd's overlay2 graphdriver stores it, with no daemon: images by
// name or ID through image/overlay2/repositories.json and imagedb, their
// layers through layerdb (chainIDs) and overlay2/<cache-id>/diff, and
// containers through containers/<id>/config.v2.json and layerdb/mounts.
// FORMAT.md sections 3-5 describe every file.
//
// Everything read is verified: configs against their IDs, layer streams
// against their diffIDs at EOF. Writes (see write.go) are crash-safe and
// locked.
//
// Non-goals: the containerd image store (Docker 29's default) and other
// storage drivers, which are refused with an error naming them; volumes,
// networks and container state.
package dockerroot
