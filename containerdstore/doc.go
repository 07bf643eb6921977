// Package containerdstore reads and writes a containerd root on disk with
// no daemon call: the metadata store (io.containerd.metadata.v1.bolt/
// meta.db, bbolt: v1/<namespace>/{images,containers,content/blob,
// snapshots/<snapshotter>}), the local content store
// (io.containerd.content.v1.content/blobs/sha256/<hex>) and the overlayfs
// snapshotter (io.containerd.snapshotter.v1.overlayfs/metadata.db:
// backend key -> id, parent, kind; snapshots/<id>/{fs,work}), as
// containerd 1.6 and 2.3 lay them out. Both write schema v1 with the same
// buckets, keys and encodings (varint sizes, time.MarshalBinary times,
// labels sub-buckets); meta.db's v1/version is 3 under 1.6 and 4 under
// 2.3, whose migration adds the sandboxes bucket this package does not
// read, and neither version changes what is written here. It serves both Docker 29's containerd image
// store (namespace "moby"; Docker's supervised containerd keeps its root
// at <data-root>/containerd/daemon, see DockerRoot) and containerd under
// Kubernetes (namespace "k8s.io").
//
// Reading never blocks on a live containerd, which holds an exclusive
// flock on both db files: a db whose lock is held is read from a copy
// proven consistent (view.go). Writing (WriteImage) refuses with
// ErrRunning while a daemon holds meta.db, and otherwise writes blobs
// (temp file, fsync, rename) and then every record in one bolt
// transaction, labelled so that containerd's garbage collector keeps them.
//
// Non-goals: snapshotters other than overlayfs for Snapshot (the records
// of any snapshotter are read), leases, creating snapshots (containerd
// unpacks a written image when a container is made from it), removing
// images or content.
package containerdstore
