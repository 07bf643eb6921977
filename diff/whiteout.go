package diff

// The one table of whiteout names and overlay marks: the layer tar's
// spelling (the OCI image spec's, from aufs) and overlayfs' on disk. diff
// reads upper dirs with them, unpack applies tars with them, dockerroot
// writes overlay2 dirs with them.
const (
	// WhiteoutPrefix marks a deleted entry in a layer tar: ".wh.NAME".
	WhiteoutPrefix = ".wh."
	// WhiteoutMetaPrefix starts the names aufs keeps for itself.
	WhiteoutMetaPrefix = WhiteoutPrefix + WhiteoutPrefix
	// WhiteoutOpaqueDir marks a directory that hides the layers below.
	WhiteoutOpaqueDir = WhiteoutMetaPrefix + ".opq"

	// OverlayXattrPrefix is where overlayfs keeps its marks (opaque,
	// redirect, metacopy); UserOverlayXattrPrefix with the userxattr
	// mount option (unprivileged overlays).
	OverlayXattrPrefix     = "trusted.overlay."
	UserOverlayXattrPrefix = "user.overlay."
	// OpaqueXattr is set to "y" on an opaque directory of an upper dir;
	// an overlay whiteout is a character device 0/0.
	OpaqueXattr = OverlayXattrPrefix + "opaque"
)
