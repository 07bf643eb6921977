// Package unpack applies a layer tar to a directory: the inverse of diff.
// It is used to check layers (round trips), to fill Docker's overlay2 diff
// dirs and to prepare build bases.
//
// Every path is resolved inside the root (os.Root, and *at system calls on
// a parent directory opened through it), so no entry, symlink or hard link
// of a layer can reach outside it. Only security.capability and user.*
// xattrs are applied; trusted.* never is. Nothing from the root is executed
// and no name is looked up in its user database.
//
// Non-goals: decompression (callers hand in the uncompressed stream),
// user-namespace id mapping, and sparse output files.
package unpack
