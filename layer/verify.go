package layer

import "github.com/layercommit/layercommit/internal/verify"

// The sentinels of the one verifying reader (internal/verify), named here
// for library users: a blob read back from a file fails with them.
var (
	ErrDigestMismatch = verify.ErrDigestMismatch
	ErrSizeMismatch   = verify.ErrSizeMismatch
)
