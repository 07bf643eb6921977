// Package statedir is the one owner of layercommit's state dir (--state-dir,
// Default): its layout on disk, the schema of its build-cache entries, its
// lock protocol and its gc. The builder uses it through Open; layercommit
// gc through GC; nothing else knows what is inside.
//
// Layout:
//
//	blobs/sha256/<hex>      compressed layer blobs made by builds
//	layers/<diffID hex>     layers unpacked in overlay form (lowers), by diffID
//	layers/<diffID hex>.boot the boot id that published it, unsynced: a dir
//	                        is trusted in that boot only (Dir.HasLayer)
//	cache/<key>.json        build cache entries (CacheEntry)
//	tmp/                    scratch space of running builds (step dirs, unpacks)
//	init/                   the init layer RUN steps put under a container
//	cache-mounts/<hex>/<n>/ RUN --mount=type=cache dirs, by sha256 of their key
//	                        (instance n: one per concurrent private user;
//	                        flocked while in use; kept by gc)
//	images/                 the embedded image store (local:), an OCI layout
//	                        written, locked and cleaned by package export
//
// Lock protocol: a build holds a shared flock on the state dir from Open
// to Close, so builds run side by side; GC takes it exclusive without
// waiting and refuses while any build holds it (unless forced), so it
// never cleans what a running build is making.
//
// Stage: a store beside the pipeline (diff -> layer -> image -> export):
// it keeps what builds made or unpacked so that later steps and later
// builds reuse it. Every blob reopened from it is size- and
// digest-checked on read (layer.FromFile); every unpacked layer is
// checked against its diffID, and an unpacked or adopted one is not
// synced (the builder's overlays are volatile) but trusted only in the
// boot that wrote it, then unpacked again from its blob.
//
// Non-goals: sharing a state dir between hosts, an eviction policy (the
// cache grows until gc or the user removes it; gc keeps unpacked layers
// and named blobs), and images as such: the image store of the CLI
// contract's local: transport is only named here (ImagesDir).
package statedir
