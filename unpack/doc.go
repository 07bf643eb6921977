// Package unpack applies a layer tar to a directory: the inverse of diff.
// It is used to check layers (round trips), to fill Docker's overlay2 diff
// dirs, to prepare build bases and to extract ADD archives.
//
// Every entry is first checked from its header alone (names that climb
// out of the root, NUL bytes, whiteout names, device numbers, entry types,
// duplicates, limits), giving a typed error before any file system call.
// Then every path is resolved inside the root with chroot semantics
// (internal/safepath: openat2 with RESOLVE_IN_ROOT, or an O_NOFOLLOW walk),
// and entries are made with *at system calls on the parent directory's
// descriptor, so no entry, symlink or hard link of a layer can reach
// outside the root. A PAX sparse entry (GNU 1.0) has its map checked
// from its bytes, then only its data is written and the file truncated to
// its real size, so holes stay holes. Only security.capability and user.*
// xattrs are applied; trusted.* never is. Nothing from the root is executed and no
// name is looked up in its user database.
//
// Non-goals: decompression and digest checks (callers hand in the
// uncompressed stream and verify what they tee off it; Apply reads it to
// EOF so they can), user-namespace id mapping, and unpacking while another
// process changes the tree.
package unpack
