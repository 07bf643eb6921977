// Package diff is the first stage of layercommit: it finds the changes in a
// container's file system and writes them as a layer tar.
//
// A Source (Overlay, WithFuse for fuse-overlayfs's upper dirs, Aufs or
// Naive; Walking and Snapshot for containerd's
// whole-tree comparison) walks a change set and reports it as ordered
// Changes through a ChangeFunc; Squash is the whole merged file
// system of a stack of layer dirs as one change set, and Exclude and
// Split reshape a Source (paths left out; several layers of bounded
// size). Write turns those changes into the exact tar bytes of a
// compat.Profile and returns the diffID computed in the same pass. The two
// halves meet only at the Change type.
//
// Order is part of the contract: changes come depth first, parents before
// children, and the entries of each directory sorted by the raw bytes of
// their on-disk names (the order moby's filepath.Walk gives). The one
// exception is containerd's: Walking writes the unchanged names of a
// linked file right after the first changed name of the file, wherever
// they are (their parents still first), as containerd's ChangeWriter does.
//
// Non-goals: compression, images and stores (see the export package),
// applying layers, and following a container while it writes.
package diff
