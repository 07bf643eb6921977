// Package export is the last stage of layercommit: it reads base images
// from, and writes committed images to, the places an image reference
// names (see ../shared/CLI.md):
//
//	scratch                          the empty image (source only)
//	oci:DIR[:TAG]                    an OCI image layout
//	docker-archive:FILE[:NAME[:TAG]] a `docker save` / `docker load` tarball
//	docker://HOST[:PORT]/REPO[:TAG]  a registry (plain HTTP for loopback)
//	docker-root:NAME[:TAG]           a Docker data root (not supported yet)
//
// Each transport lives in its own file and registers itself in init, so
// adding one is adding a file. Images travel as go-containerregistry
// v1.Image values; Commit drives the whole pipeline (diff -> layer ->
// image -> destination) for the CLI.
//
// Writes are all-or-nothing at the destination: blobs and files go to
// temp names beside their destination and are renamed when complete; an
// OCI layout's index.json is replaced last, atomically.
//
// Non-goals: signing, multi-platform indexes as destinations, garbage
// collection of unreferenced blobs (layercommit gc).
package export
