// Package export is the transport stage of layercommit: it reads base
// images from, and writes images to, the places an image reference names
// (see ../shared/CLI.md):
//
//	scratch                          the empty image (source only)
//	oci:DIR[:TAG]                    an OCI image layout
//	docker-archive:FILE[:NAME[:TAG]] a `docker save` / `docker load` tarball
//	docker://HOST[:PORT]/REPO[:TAG]  a registry (plain HTTP for loopback)
//	docker-root:NAME[:TAG] or ID     a Docker data root on disk, no daemon
//	                                 (package dockerroot does the store)
//	local:NAME[:TAG] or ID           the embedded image store: an OCI layout
//	                                 under the state dir (Store, local.go),
//	                                 written by the oci: writer
//	docker-daemon:NAME[:TAG]         a running dockerd, through its API
//	                                 (Options.DockerHost; load and save)
//	oci-archive:FILE[:TAG]           an OCI layout in a tarball (destination only)
//	rootfs:DIR, rootfs-tar:FILE      the image's final file system, as a dir
//	                                 or a tarball (destination only)
//
// ParseOutput maps BuildKit's --output type=... spelling onto these.
//
// Parse, Open and NewDestination pick the transport by prefix; each
// transport lives in its own file and registers itself in init, so adding
// one is adding a file. Images travel as go-containerregistry v1.Image
// values. What to write (a commit, a copy, a build) is decided upstream:
// package commit drives diff -> layer -> image -> export for the CLI.
//
// Writes are all-or-nothing at the destination: blobs and files go to
// temp names beside their destination and are renamed when complete; an
// OCI layout's index.json is replaced last, atomically. Writers hold the
// store's locks (lock.go) and flock their temp entries while they live.
// The cleanup of each store written here lives beside its writer and
// takes the same locks: GCLayout for an OCI layout (oci_gc.go), GCArchive
// for the temp files beside a docker-archive file (archive.go); a Docker
// data root is cleaned by dockerroot.GC.
//
// Non-goals: signing, multi-platform indexes as destinations, the
// orchestration of commits, copies and gc (package commit).
package export
